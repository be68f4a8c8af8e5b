"""
Chat rooms in memory (L{fmtp.interfaces.IRoomStore}).
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field, replace

from twisted.internet.defer import Deferred

from fmtp.objects import FMTPObject, domain_of
from fmtp.store.checks import check_address, check_counts, check_time
from fmtp.store.memory.base import MemoryBase
from fmtp.store.memory.objects import copy_object
from fmtp.store.rooms import (
    EMPTY_HEAD,
    MEMBER_ROLES,
    UNBANNED_ROLES,
    HistoryEntry,
    Member,
    Role,
    Room,
    RoomConfig,
    RoomExists,
    RoomNotFound,
    appendable,
    check_ban_address,
    check_ban_domain,
    check_config,
    check_entry,
    check_join,
    check_member,
    check_retractable,
    check_role,
    check_seq,
    domain_ban_address,
    in_domain,
    join_role,
    may_invite,
    parent_of,
    standing_with,
    with_role,
)


@dataclass(slots=True)
class _Room:
    """
    A room as the memory store holds it: its value, each address's
    standing, and its history, entry N at index N-1.
    """

    room: Room
    members: dict[str, Member] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)

    def head(self) -> tuple[int, str]:
        if not self.history:
            return EMPTY_HEAD
        last = self.history[-1]
        return last.seq, last.digest

    def standing(self, address: str) -> Member | None:
        """
        C{address}'s standing, its domain's ban considered.
        """
        domain = self.members.get(domain_ban_address(domain_of(address)))
        return standing_with(self.members.get(address), domain)

    def count(self) -> int:
        return sum(1 for m in self.members.values() if m.role in MEMBER_ROLES)


def _copy_entry(entry: HistoryEntry) -> HistoryEntry:
    """
    An entry whose object the caller may change without changing the
    store's.
    """
    obj = None if entry.obj is None else copy_object(entry.obj)
    return replace(entry, obj=obj)


class MemoryRooms(MemoryBase):
    """
    L{fmtp.interfaces.IRoomStore}'s methods, over dicts: each room by its
    address, and the tombstones of destroyed rooms with the time until
    which they hold their address.
    """

    def __init__(self) -> None:
        super().__init__()
        self._rooms: dict[str, _Room] = {}
        self._tombstones: dict[str, float] = {}

    def _room(self, room: str) -> _Room:
        found = self._rooms.get(room)
        if found is None:
            raise RoomNotFound(f"no room {room}")
        return found

    # Rooms

    def create_room(
        self, room: str, creator: str, config: RoomConfig, now: float
    ) -> Deferred[Room]:
        return self._call(self._create_room, room, creator, config, now)

    def _create_room(
        self, room: str, creator: str, config: RoomConfig, now: float
    ) -> Room:
        check_address(room=room, creator=creator)
        check_config(config)
        check_time(now=now)
        if room in self._rooms or self._tombstones.get(room, now) > now:
            raise RoomExists(f"{room} is taken")
        self._tombstones.pop(room, None)
        value = Room(room, creator, replace(config), now)
        created = self._rooms[room] = _Room(value)
        created.members[creator] = Member(creator, Role.OWNER, False, now)
        return value

    def get_room(self, room: str) -> Deferred[Room | None]:
        return self._call(self._get_room, room)

    def _get_room(self, room: str) -> Room | None:
        check_address(room=room)
        found = self._rooms.get(room)
        return None if found is None else found.room

    def configure_room(self, room: str, config: RoomConfig) -> Deferred[None]:
        return self._call(self._configure_room, room, config)

    def _configure_room(self, room: str, config: RoomConfig) -> None:
        check_address(room=room)
        check_config(config)
        found = self._room(room)
        found.room = replace(found.room, config=replace(config))

    def destroy_room(self, room: str, now: float, hold_until: float) -> Deferred[bool]:
        return self._call(self._destroy_room, room, now, hold_until)

    def _destroy_room(self, room: str, now: float, hold_until: float) -> bool:
        check_address(room=room)
        check_time(now=now, hold_until=hold_until)
        if self._rooms.pop(room, None) is None:
            return False
        self._tombstones[room] = hold_until
        return True

    def forget_tombstones(self, now: float) -> Deferred[int]:
        return self._call(self._forget_tombstones, now)

    def _forget_tombstones(self, now: float) -> int:
        check_time(now=now)
        old = [room for room, until in self._tombstones.items() if until <= now]
        for room in old:
            del self._tombstones[room]
        return len(old)

    # Members

    def join(
        self, room: str, address: str, now: float, voice: bool = False
    ) -> Deferred[Member]:
        return self._call(self._join, room, address, now, voice)

    def _join(self, room: str, address: str, now: float, voice: bool) -> Member:
        check_join(room, address, now, voice)
        found = self._room(room)
        member = found.standing(address)
        role = join_role(found.room.config, member, found.count())
        if role is None:
            assert member is not None
            return member
        joined = found.members[address] = Member(address, role, voice, now)
        return joined

    def invite(self, room: str, address: str, now: float) -> Deferred[bool]:
        return self._call(self._invite, room, address, now)

    def _invite(self, room: str, address: str, now: float) -> bool:
        check_member(room, address)
        check_time(now=now)
        found = self._room(room)
        if not may_invite(found.standing(address)):
            return False
        found.members[address] = Member(address, Role.INVITED, False, now)
        return True

    def leave(self, room: str, address: str) -> Deferred[bool]:
        return self._call(self._remove_member, room, address, UNBANNED_ROLES)

    def decline(self, room: str, address: str) -> Deferred[bool]:
        return self._call(self._remove_member, room, address, {Role.INVITED})

    def unban(self, room: str, address: str) -> Deferred[bool]:
        return self._call(self._remove_member, room, address, {Role.BANNED})

    def _remove_member(self, room: str, address: str, roles: Set[Role]) -> bool:
        """
        Remove C{address}'s standing if its role is one of C{roles}.
        """
        if Role.BANNED in roles:
            check_ban_address(room, address)
        else:
            check_member(room, address)
        members = self._room(room).members
        member = members.get(address)
        if member is None or member.role not in roles:
            return False
        del members[address]
        return True

    def set_role(
        self,
        room: str,
        address: str,
        role: Role,
        voice: bool,
        now: float,
        reason: str | None = None,
    ) -> Deferred[Member | None]:
        return self._call(self._set_role, room, address, role, voice, now, reason)

    def _set_role(
        self,
        room: str,
        address: str,
        role: Role,
        voice: bool,
        now: float,
        reason: str | None,
    ) -> Member | None:
        check_member(room, address)
        check_role(role, voice, now, reason)
        members = self._room(room).members
        before = members.get(address)
        members[address] = with_role(before, address, role, voice, now, reason)
        return before

    def ban_domain(
        self, room: str, domain: str, now: float, reason: str | None = None
    ) -> Deferred[list[Member]]:
        return self._call(self._ban_domain, room, domain, now, reason)

    def _ban_domain(
        self, room: str, domain: str, now: float, reason: str | None
    ) -> list[Member]:
        check_ban_domain(room, domain, now, reason)
        ban = domain_ban_address(domain)
        members = self._room(room).members
        removed = [
            members.pop(address)
            for address in sorted(members)
            if in_domain(address, domain) and members[address].role is not Role.BANNED
        ]
        members[ban] = Member(ban, Role.BANNED, False, now, reason)
        return removed

    def member(self, room: str, address: str) -> Deferred[Member | None]:
        return self._call(self._member, room, address)

    def _member(self, room: str, address: str) -> Member | None:
        check_member(room, address)
        return self._room(room).standing(address)

    def members(self, room: str, role: Role | None = None) -> Deferred[list[Member]]:
        return self._call(self._members, room, role)

    def _members(self, room: str, role: Role | None) -> list[Member]:
        check_address(room=room)
        if role is not None and not isinstance(role, Role):
            raise ValueError(f"not a role: {role!r}")
        roles = MEMBER_ROLES if role is None else {role}
        members = self._room(room).members
        return [
            members[address]
            for address in sorted(members)
            if members[address].role in roles
        ]

    def rooms_of(self, address: str) -> Deferred[list[str]]:
        return self._call(self._rooms_of, address)

    def _rooms_of(self, address: str) -> list[str]:
        check_address(address=address)
        return sorted(
            room
            for room, found in self._rooms.items()
            if address in found.members and found.members[address].role in MEMBER_ROLES
        )

    def public_rooms(self, start: int, limit: int) -> Deferred[list[Room]]:
        return self._call(self._public_rooms, start, limit)

    def _public_rooms(self, start: int, limit: int) -> list[Room]:
        check_counts(start=start, limit=limit)
        public = [self._rooms[a].room for a in sorted(self._rooms)]
        public = [room for room in public if room.config.public]
        return public[start : start + limit]

    def _forget_memberships(self, address: str) -> None:
        """
        End every membership and invitation of C{address}, for a deleted
        account; its bans stay.
        """
        for found in self._rooms.values():
            member = found.members.get(address)
            if member is not None and member.role is not Role.BANNED:
                del found.members[address]

    # History

    def append(self, room: str, obj: FMTPObject, now: float) -> Deferred[int | None]:
        return self._call(self._append, room, obj, now, None)

    def retract(
        self, room: str, seq: int, tombstone: FMTPObject, now: float
    ) -> Deferred[int | None]:
        return self._call(self._retract, room, seq, tombstone, now)

    def _retract(
        self, room: str, seq: int, tombstone: FMTPObject, now: float
    ) -> int | None:
        check_seq(seq)
        return self._append(room, tombstone, now, seq)

    def _append(
        self, room: str, obj: FMTPObject, now: float, retracts: int | None
    ) -> int | None:
        check_entry(room, obj, now)
        found = self._room(room)
        digest, parent = obj.digest(), parent_of(obj)
        held = found.ids.get(obj.id)
        held_digest = None if held is None else found.history[held - 1].digest
        head = found.head()
        if held_digest is None and retracts is not None:
            target = found.history[retracts - 1] if retracts <= head[0] else None
            check_retractable(retracts, target)
        if not appendable(head, held_digest, digest, parent):
            return None
        seq = head[0] + 1
        found.history.append(
            HistoryEntry(seq, digest, parent, copy_object(obj), now, retracts)
        )
        found.ids[obj.id] = seq
        if retracts is not None:
            target = found.history[retracts - 1]
            found.history[retracts - 1] = replace(target, obj=None, retracted_by=seq)
        return seq

    def history(
        self, room: str, since: int, limit: int
    ) -> Deferred[list[HistoryEntry]]:
        return self._call(self._history, room, since, limit)

    def _history(self, room: str, since: int, limit: int) -> list[HistoryEntry]:
        check_address(room=room)
        check_counts(since=since, limit=limit)
        # Entry N is at index N - 1, so the entries after C{since} start
        # at index C{since}.
        page = self._room(room).history[since : since + limit]
        return [_copy_entry(entry) for entry in page]

    def head(self, room: str) -> Deferred[tuple[int, str]]:
        return self._call(self._head, room)

    def _head(self, room: str) -> tuple[int, str]:
        check_address(room=room)
        return self._room(room).head()
