"""
A room's moderation: invitations, kicks, bans (of an address or of a
whole domain), and roles; a part of L{fmtp.protocols.chat.service} kept
apart for size.

Each change of a standing reads what it acts on, and writes, in the
room's turn of such changes (L{room_turn} over C{_standings}): two of
them interleaving with the store would otherwise act on standings read
before the other's write (a room left with no owner, a moderator named
meanwhile removed).
"""

from __future__ import annotations

from dataclasses import replace

from fmtp.auth.router import Event
from fmtp.errors import Forbidden
from fmtp.objects import domain_of
from fmtp.protocols.chat.events import ROOM_INVITATION, Invitation
from fmtp.protocols.chat.history import room_turn
from fmtp.protocols.chat.rules import (
    check_moderator,
    check_over,
    check_role_change,
    is_member,
)
from fmtp.store.rooms import Member, Role, banned_domain, in_domain


class RoomModeration:
    """
    The moderation of L{fmtp.protocols.chat.service.ChatService}'s rooms,
    which uses the service's C{store}, C{clock}, C{domain}, C{router},
    C{live}, C{federation} and C{_standings}, and its C{membership},
    C{refuse}, C{_check_stranger_rate}, C{_announce}, C{_close},
    C{_close_all} and C{_members_changed}.
    """

    async def invite(self, user: str, room: str, address: str) -> bool:
        _, member = await self.membership(user, room)
        check_moderator(member)
        self._check_stranger_rate(user, f"an INVITE into {room}", "inviting")
        invited = await self.store.invite(room, address, self.clock.seconds())
        if invited:
            self.router.deliver(address, Event(ROOM_INVITATION, Invitation(room, user)))
            if self.federation is not None and domain_of(address) != self.domain:
                self.federation.invited(room, address, user)
        return invited

    async def kick(self, user: str, room: str, address: str, reason: str) -> None:
        async with room_turn(self._standings, room):
            _, actor = await self.membership(user, room)
            target = await self.store.member(room, address)
            check_over(actor, target, "kick")
            if not is_member(target):
                raise Forbidden("that address is not a member of the room")
            await self.store.leave(room, address)
        self._members_changed(room, address)
        self._announce(room, None, address, user, reason or None)
        self._close(room, address, "kicked")

    async def ban(self, user: str, room: str, address: str, reason: str) -> None:
        domain = banned_domain(address)
        if domain is not None:
            await self._ban_domain(user, room, domain, reason)
            return
        async with room_turn(self._standings, room):
            _, actor = await self.membership(user, room)
            target = await self.store.member(room, address)
            check_over(actor, target, "ban")
            if target is None:
                self._check_stranger_rate(user, f"a BAN in {room}", "banning")
            now = self.clock.seconds()
            await self.store.set_role(
                room, address, Role.BANNED, False, now, reason or None
            )
        if is_member(target):
            self._members_changed(room, address)
            self._announce(room, None, address, user, reason or None, Role.BANNED.value)
            self._close(room, address, "banned")
        else:
            # None of its sessions went live in the room, here or on its
            # domain's server, which is not told of a room it may not know.
            self.live.close(room, address, "banned")

    async def _ban_domain(self, user: str, room: str, domain: str, reason: str) -> None:
        """
        Ban every address of C{domain}, whose server may make up users at
        will: its members are removed as by a BAN of each, which must be
        allowed on each (no owner, no moderator but by an owner, not the
        actor); never the room's own domain, which holds its owners.
        """
        async with room_turn(self._standings, room):
            _, actor = await self.membership(user, room)
            check_moderator(actor)
            if domain == self.domain:
                error = Forbidden(
                    "the room's own domain cannot be banned: it holds its owners"
                )
                raise self.refuse(user, f"a BAN of {domain} in {room}", error)
            for member in await self.store.members(room):
                if in_domain(member.address, domain):
                    check_over(actor, member, "ban")
            self._check_stranger_rate(user, f"a BAN of {domain} in {room}", "banning")
            now = self.clock.seconds()
            removed = await self.store.ban_domain(room, domain, now, reason or None)
        banned = [member.address for member in removed if is_member(member)]
        if not banned:
            return
        self._members_changed(room, banned[0])
        for address in banned:
            self._announce(room, None, address, user, reason or None, Role.BANNED.value)
        self._close_all(room, banned, "banned")

    async def unban(self, user: str, room: str, address: str) -> bool:
        _, actor = await self.membership(user, room)
        check_moderator(actor)
        return await self.store.unban(room, address)

    async def set_role(
        self, user: str, room: str, address: str, role: Role | None, voice: bool | None
    ) -> Member:
        async with room_turn(self._standings, room):
            _, actor = await self.membership(user, room)
            target = await self.store.member(room, address)
            if target is None or not is_member(target):
                raise Forbidden("that address is not a member of the room")
            role = target.role if role is None else role
            voice = target.voice if voice is None else voice
            check_role_change(actor, target, role, voice)
            if target.role is Role.OWNER and role is not Role.OWNER:
                await self._check_other_owner(room, "the room would have no owner")
            await self.store.set_role(room, address, role, voice, self.clock.seconds())
        changed = replace(target, role=role, voice=voice)
        self._announce(room, changed, actor=user)
        return changed

    async def _check_other_owner(self, room: str, why: str) -> None:
        """
        Refuse, with C{why}, to take away one of C{room}'s owners when it
        is the last.  Called in the room's turn of the changes of
        standings (L{room_turn}), each of which reads the standings it
        acts on in its turn: two owners stepping down at once would
        otherwise each see the other and leave the room with none, and a
        member kicked, banned or leaving as they were made an owner would
        take away an owner read as a member.

        @raise Forbidden: if the room has one owner.
        """
        if len(await self.store.members(room, Role.OWNER)) <= 1:
            raise Forbidden(why)
