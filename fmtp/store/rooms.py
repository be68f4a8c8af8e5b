"""
What the room store (L{fmtp.interfaces.IRoomStore}) and its users share:
rooms, members and their roles, the entries of a room's history, the
rules that decide a join, an invitation, an append and a retraction, and
their errors.

The rules are here, once, so that every store applies the same ones; a
store only keeps rows, and makes each rule's reads and write one step.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from fmtp.errors import FMTPError, Forbidden, InvalidAddress, NotFound, ObjectSealed
from fmtp.objects import FMTPObject, domain_of, normalize_address, normalize_domain
from fmtp.store.checks import check_address, check_counts, check_domain, check_time


class Role(enum.Enum):
    """
    What an address is to a room.
    """

    #: May configure and destroy the room, and name moderators.
    OWNER = "owner"
    #: May kick, ban, give voice and retract others' messages.
    MODERATOR = "moderator"
    #: Receives the room's messages and may read its history.
    MEMBER = "member"
    #: May not join (a ban outlives leaving, and is kept on a deleted
    #: account, so the address cannot come back through either).
    BANNED = "banned"
    #: May join a members-only room; not a member until then.
    INVITED = "invited"


#: The roles of members: who receives the room's messages, reads its
#: history and counts towards its size.
MEMBER_ROLES = frozenset({Role.OWNER, Role.MODERATOR, Role.MEMBER})
#: The standings a leave, a kick or a declined invitation ends: all but a
#: ban, which only an unban lifts.
UNBANNED_ROLES = MEMBER_ROLES | {Role.INVITED}


@dataclass(frozen=True, slots=True)
class RoomConfig:
    """
    How a room's owner configured it.

    @ivar name: the room's display name.
    @ivar topic: its topic.
    @ivar public: listed for anyone (a public room object), or not.
    @ivar members_only: only the invited may join.
    @ivar password_hash: if not L{None}, joining needs the password, as
        encoded by L{fmtp.accounts.hash_password} (never the password).
    @ivar moderated: only members with voice speak.
    @ivar max_members: the most members the room takes (0: no limit),
        checked by L{fmtp.interfaces.IRoomStore.join} in the same step as
        the join.
    @ivar limits: further limits the chat protocol sets and enforces
        (message and join rates...), by name; kept, not interpreted.
    """

    name: str = ""
    topic: str = ""
    public: bool = False
    members_only: bool = False
    password_hash: str | None = None
    moderated: bool = False
    max_members: int = 0
    limits: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A copy nobody can change: a store keeps the value it was given.
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))

    def to_json(self) -> str:
        """
        The form a store keeps: new settings are new keys, so they need no
        schema step, and a setting missing from an older row reads as its
        default.
        """
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values["limits"] = dict(self.limits)
        return json.dumps(values, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RoomConfig:
        values = json.loads(text)
        known = cls.__dataclass_fields__
        return cls(**{name: value for name, value in values.items() if name in known})


@dataclass(frozen=True, slots=True)
class Room:
    """
    A room this server is the home of.

    @ivar address: its C{room@domain} address.
    @ivar creator: who created it (its first owner; owners are members
        with L{Role.OWNER}).
    @ivar config: its L{RoomConfig}.
    @ivar created: when it was created, in seconds since the epoch.
    """

    address: str
    creator: str
    config: RoomConfig
    created: float


@dataclass(frozen=True, slots=True)
class Member:
    """
    One address's standing in a room: a member, an invitation or a ban.

    @ivar address: the address, of this domain or another.
    @ivar role: its L{Role}.
    @ivar voice: whether it may speak in a moderated room.
    @ivar since: when it took this standing (joined, was invited or
        banned), in seconds since the epoch.
    @ivar reason: why it was banned, or L{None}.
    """

    address: str
    role: Role
    voice: bool = False
    since: float = 0.0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """
    One entry of a room's history.

    The history is one hash-linked chain: entry N's C{parent_digest} is
    entry N-1's C{digest} (the empty string for entry 1), and C{digest} is
    the digest of the object as appended, whose C{Parent-Digest} property
    is C{parent_digest}.  A retracted entry keeps both digests and loses
    its object, so the chain still verifies end to end
    (L{verify_chain}).

    @ivar seq: its place, from 1, with no gaps.
    @ivar obj: the L{FMTPObject}, or L{None} once retracted.
    @ivar appended: when it was appended, in seconds since the epoch.
    @ivar retracts: for a retraction (a tombstone), the entry it retracts.
    @ivar retracted_by: for a retracted entry, its tombstone's C{seq}.
    """

    seq: int
    digest: str
    parent_digest: str
    obj: FMTPObject | None
    appended: float
    retracts: int | None = None
    retracted_by: int | None = None


#: The head of an empty history: no entry, so no digest to link to.
EMPTY_HEAD = (0, "")


class RoomNotFound(NotFound):
    default_message = "no such room"


class RoomExists(FMTPError):
    """
    The room's address is taken: by a room, or by the tombstone of a room
    destroyed not long ago.
    """

    code = 554
    default_message = "that room exists"


class MemberBanned(Forbidden):
    default_message = "banned from the room"


class InvitationRequired(Forbidden):
    default_message = "the room is for members only"


class RoomFull(Forbidden):
    default_message = "the room is full"


class HistoryConflict(FMTPError):
    """
    An entry's C{Parent-Digest} is not the digest of the room's last entry:
    another entry was appended since the caller read the head, and
    appending this one would fork the chain.  The caller links its entry
    to L{head} and tries again.

    @ivar head: C{(seq, digest)} of the room's last entry, or
        L{EMPTY_HEAD}.
    """

    code = 451
    default_message = "the room's history moved on; try again"

    def __init__(self, head: tuple[int, str]) -> None:
        super().__init__(f"{self.default_message} (now at entry {head[0]})")
        self.head = head


#: What the address of a whole domain's ban starts with: C{*@DOMAIN}
#: stands for every address of DOMAIN.  No user has it (C{*} is not a
#: character of a user part), so it is kept as one more banned address
#: among a room's standings.
DOMAIN_BAN_PREFIX = "*@"


def domain_ban_address(domain: str) -> str:
    """
    The address under which a ban of C{domain} (in normal form) is kept.
    """
    return DOMAIN_BAN_PREFIX + domain


def banned_domain(address: str) -> str | None:
    """
    The domain C{address} bans whole if it is a domain's ban address
    (C{*@DOMAIN}), else L{None}.
    """
    if address.startswith(DOMAIN_BAN_PREFIX):
        return address[len(DOMAIN_BAN_PREFIX) :]
    return None


def normalize_ban_address(text: str) -> str:
    """
    What a BAN or UNBAN names, in normal form: a user's address, or
    C{*@DOMAIN} for every address of a domain.

    @raise InvalidAddress: if it is neither.
    """
    domain = banned_domain(text) if isinstance(text, str) else None
    if domain is None:
        return normalize_address(text)
    return domain_ban_address(normalize_domain(domain))


def standing_with(own: Member | None, domain: Member | None) -> Member | None:
    """
    An address's standing, from its own row and its domain's ban (if the
    room bans its domain): the domain's ban holds over anything but a ban
    of the address's own, which keeps its reason.
    """
    if domain is None or (own is not None and own.role is Role.BANNED):
        return own
    return domain


def join_role(config: RoomConfig, member: Member | None, count: int) -> Role | None:
    """
    The role a join gives an address whose standing is C{member}, in a
    room of C{count} members.

    @return: L{Role.MEMBER}, or L{None} if the address is a member already
        (nothing to change).
    @raise MemberBanned: if it is banned.
    @raise InvitationRequired: if the room is members-only and it is not
        invited.
    @raise RoomFull: if the room has C{max_members} members.
    """
    if member is not None and member.role in MEMBER_ROLES:
        return None
    if member is not None and member.role is Role.BANNED:
        raise MemberBanned()
    if config.members_only and member is None:
        raise InvitationRequired()
    if config.max_members and count >= config.max_members:
        raise RoomFull()
    return Role.MEMBER


def may_invite(member: Member | None) -> bool:
    """
    Whether to record an invitation for an address whose standing is
    C{member}: not for a member or an address invited already.

    @raise MemberBanned: if it is banned (lift the ban first).
    """
    if member is not None and member.role is Role.BANNED:
        raise MemberBanned()
    return member is None


def with_role(
    member: Member | None,
    address: str,
    role: Role,
    voice: bool,
    now: float,
    reason: str | None,
) -> Member:
    """
    The standing L{fmtp.interfaces.IRoomStore.set_role} gives: a member
    keeps the time it joined; a ban has no voice, and only a ban keeps a
    reason.
    """
    stays = member is not None and member.role in MEMBER_ROLES
    if role is Role.BANNED:
        return Member(address, role, False, now, reason)
    since = member.since if stays and member is not None else now
    return Member(address, role, voice, since, None)


def parent_of(obj: FMTPObject) -> str:
    """
    The digest an object says it follows (its C{Parent-Digest}).
    """
    return obj.properties.get("Parent-Digest", "")


def appendable(
    head: tuple[int, str], held: str | None, digest: str, parent: str
) -> bool:
    """
    Whether to append an entry of C{digest} linked to C{parent}, when an
    entry of its id is held with digest C{held} (or none is).

    @return: C{False} for a replay of an entry already appended.
    @raise ObjectSealed: if the id is held with other content.
    @raise HistoryConflict: if C{parent} is not the head's digest.
    """
    if held is not None:
        if held != digest:
            raise ObjectSealed("an entry of that id is in the history already")
        return False
    if parent != head[1]:
        raise HistoryConflict(head)
    return True


def check_retractable(seq: int, entry: HistoryEntry | None) -> None:
    """
    Refuse to retract entry C{seq} unless it is an entry still holding its
    object that is not itself a retraction.

    @raise NotFound: if there is no such entry to retract.
    """
    if entry is None or entry.obj is None or entry.retracts is not None:
        raise NotFound(f"no message {seq} to retract in this room")


def verify_chain(entries: Sequence[HistoryEntry], parent: str = "") -> None:
    """
    Check that C{entries}, consecutive and in order, form one hash-linked
    chain following C{parent} (the digest of the entry before the first,
    empty if the first is entry 1): what a member does with a page of
    history.

    @raise ValueError: naming the first entry that does not link.
    """
    for entry in entries:
        if entry.parent_digest != parent:
            raise ValueError(f"entry {entry.seq} does not follow the one before")
        obj = entry.obj
        if obj is not None and (
            obj.digest() != entry.digest or parent_of(obj) != parent
        ):
            raise ValueError(f"entry {entry.seq} is not the object it claims")
        parent = entry.digest


def check_config(config: object) -> None:
    """
    Refuse a room configuration that is not a well-typed L{RoomConfig}.

    @raise ValueError: naming what is wrong.
    """
    if not isinstance(config, RoomConfig):
        raise ValueError(f"not a RoomConfig: {config!r}")
    for name in ("name", "topic"):
        if not isinstance(getattr(config, name), str):
            raise ValueError(f"the room's {name} must be text")
    for name in ("public", "members_only", "moderated"):
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"the room's {name} must be True or False")
    if config.password_hash is not None and not isinstance(config.password_hash, str):
        raise ValueError("the room's password hash must be text or None")
    check_counts(max_members=config.max_members)
    if not isinstance(config.limits, Mapping):
        raise ValueError("the room's limits must map names to numbers")
    for name, value in config.limits.items():
        if not isinstance(name, str):
            raise ValueError(f"a room limit's name must be text: {name!r}")
        check_counts(**{name: value})


def check_member(room: object, address: object) -> None:
    """
    Refuse a room or member address that is not in normal form.

    @raise ValueError: naming what is wrong.
    """
    check_address(room=room, address=address)


def check_ban_address(room: object, address: object) -> None:
    """
    Refuse a room address, or an address to ban or unban (a user's, or
    C{*@DOMAIN}), that is not in normal form.

    @raise ValueError: naming what is wrong.
    """
    check_address(room=room)
    if not isinstance(address, str) or normalize_ban_address(address) != address:
        raise InvalidAddress(f"address {address!r} is not an address in normal form")


def in_domain(address: str, domain: str) -> bool:
    """
    Whether C{address} is a user's address of C{domain} (not the domain's
    own ban address).
    """
    return domain_of(address) == domain and banned_domain(address) is None


def check_join(room: object, address: object, now: object, voice: object) -> None:
    """
    Refuse arguments of L{fmtp.interfaces.IRoomStore.join} that have no
    meaning.

    @raise ValueError: naming what is wrong.
    """
    check_member(room, address)
    check_time(now=now)
    if not isinstance(voice, bool):
        raise ValueError(f"voice must be True or False, not {voice!r}")


def check_role(role: object, voice: object, now: object, reason: object) -> None:
    """
    Refuse arguments of L{fmtp.interfaces.IRoomStore.set_role} that have
    no meaning: an invitation is made with C{invite}.

    @raise ValueError: naming what is wrong.
    """
    if not isinstance(role, Role) or role is Role.INVITED:
        raise ValueError(f"not a role to set: {role!r}")
    if not isinstance(voice, bool):
        raise ValueError(f"voice must be True or False, not {voice!r}")
    check_time(now=now)
    if reason is not None and not isinstance(reason, str):
        raise ValueError(f"a reason must be text, not {reason!r}")


def check_ban_domain(room: object, domain: object, now: object, reason: object) -> None:
    """
    Refuse arguments of L{fmtp.interfaces.IRoomStore.ban_domain} that have
    no meaning.

    @raise ValueError: naming what is wrong.
    """
    check_address(room=room)
    check_domain(domain=domain)
    check_role(Role.BANNED, False, now, reason)


def check_entry(room: object, obj: object, now: object) -> None:
    """
    Refuse an entry that is not an object with a valid id and digest.

    @raise ValueError: naming what is wrong (L{fmtp.errors.InvalidObject}
        or L{fmtp.errors.InvalidObjectId} for the object).
    """
    check_address(room=room)
    if not isinstance(obj, FMTPObject):
        raise ValueError(f"not an FMTPObject: {obj!r}")
    obj.digest()
    obj.owner  # noqa: B018 - checks the id
    check_time(now=now)


def check_seq(seq: object) -> None:
    """
    Refuse a history position that is not a positive integer.

    @raise ValueError: naming the value.
    """
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError(f"seq must be a positive integer, not {seq!r}")
