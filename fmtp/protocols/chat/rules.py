"""
Who may do what to whom in a room, as users of XMPP multi-user chat
expect: owners configure, destroy and name moderators and owners;
moderators kick, ban and give voice to members, never to owners or other
moderators; a moderated room hears only members with voice; a line is
retracted by its poster or a moderator.

Pure functions of the standings involved, so that every command applies
the same rule and a test reads it in one place.
"""

from __future__ import annotations

from fmtp.errors import Forbidden
from fmtp.store.rooms import MEMBER_ROLES, Member, Role

#: Who may moderate: kick, ban, give voice, retract others' lines.
MODERATING = frozenset({Role.OWNER, Role.MODERATOR})


def is_member(member: Member | None) -> bool:
    return member is not None and member.role in MEMBER_ROLES


def check_owner(actor: Member | None) -> None:
    """
    @raise Forbidden: unless C{actor} owns the room.
    """
    if actor is None or actor.role is not Role.OWNER:
        raise Forbidden("only an owner of the room may do that")


def check_moderator(actor: Member | None) -> None:
    """
    @raise Forbidden: unless C{actor} is a moderator or an owner.
    """
    if actor is None or actor.role not in MODERATING:
        raise Forbidden("only a moderator of the room may do that")


def check_over(actor: Member, target: Member | None, act: str) -> None:
    """
    Refuse C{act} (kick, ban) by C{actor} on C{target}: an owner acts on
    moderators and members; a moderator on members only; nobody on an
    owner or on themselves.

    @raise Forbidden: naming why.
    """
    check_moderator(actor)
    if target is not None and target.address == actor.address:
        raise Forbidden(f"you cannot {act} yourself: LEAVE instead")
    if target is None or target.role not in MEMBER_ROLES:
        return
    if target.role is Role.OWNER:
        raise Forbidden("an owner of the room cannot be kicked or banned")
    if target.role is Role.MODERATOR and actor.role is not Role.OWNER:
        raise Forbidden(f"only an owner may {act} a moderator")


def check_role_change(
    actor: Member, target: Member | None, role: Role, voice: bool
) -> None:
    """
    Refuse giving C{target} C{role} and C{voice}: an owner gives any role
    to a member; a moderator only gives or takes a member's voice.

    @raise Forbidden: naming why.
    """
    check_moderator(actor)
    if not is_member(target):
        raise Forbidden("that address is not a member of the room")
    if actor.role is Role.OWNER:
        return
    if target.role is not Role.MEMBER or role is not Role.MEMBER:
        raise Forbidden("only an owner may name or remove moderators and owners")


def check_speak(member: Member, moderated: bool) -> None:
    """
    @raise Forbidden: if the room is moderated and C{member} has no voice.
    """
    if moderated and member.role is Role.MEMBER and not member.voice:
        raise Forbidden("the room is moderated and you have no voice")


def check_retract(actor: Member, poster: str) -> None:
    """
    @raise Forbidden: unless C{actor} posted the line or moderates.
    """
    if actor.address != poster and actor.role not in MODERATING:
        raise Forbidden("only its poster or a moderator may retract a line")
