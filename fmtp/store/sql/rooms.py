"""
The SQL of chat rooms (L{fmtp.interfaces.IRoomStore}): rooms and their
tombstones, members and their roles, and each room's history.

The rules are L{fmtp.store.rooms}'s, applied inside the transaction that
reads what they decide on and writes the result: a join cannot pass the
size limit or a ban set meanwhile, and two appends cannot both follow the
same entry (C{BEGIN IMMEDIATE} makes writers, in this process or another,
take turns; the primary key C{(room, seq)} would refuse a second entry
of one number anyway).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Set
from typing import Any

from twisted.internet.defer import Deferred, fail

from fmtp.objects import FMTPObject, domain_of
from fmtp.store.checks import check_address, check_counts, check_time
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
    join_role,
    may_invite,
    parent_of,
    standing_with,
    with_role,
)
from fmtp.store.sql.engine import _MAX_SQLITE_INT, SQLiteEngine, transaction

#: The roles of members, as an SQL list of literals (ours, never a
#: caller's), so that SQLite plans with them.
_MEMBER_ROLES_SQL = ", ".join(sorted(f"'{role.value}'" for role in MEMBER_ROLES))


def _room_row(conn: sqlite3.Connection, room: str) -> Room:
    row = conn.execute(
        "SELECT creator, config, created FROM rooms WHERE address = ?", (room,)
    ).fetchone()
    if row is None:
        raise RoomNotFound(f"no room {room}")
    creator, config, created = row
    return Room(room, creator, RoomConfig.from_json(config), float(created))


def _create_room(
    conn: sqlite3.Connection, room: str, creator: str, config: RoomConfig, now: float
) -> Room:
    with transaction(conn):
        taken = conn.execute(
            "SELECT 1 FROM rooms WHERE address = ? UNION ALL "
            "SELECT 1 FROM room_tombstones WHERE address = ? AND until > ?",
            (room, room, now),
        ).fetchone()
        if taken is not None:
            raise RoomExists(f"{room} is taken")
        conn.execute("DELETE FROM room_tombstones WHERE address = ?", (room,))
        conn.execute(
            "INSERT INTO rooms (address, creator, config, created) VALUES (?, ?, ?, ?)",
            (room, creator, config.to_json(), now),
        )
        _put_member(conn, room, Member(creator, Role.OWNER, False, now))
    return Room(room, creator, config, now)


def _get_room(conn: sqlite3.Connection, room: str) -> Room | None:
    try:
        return _room_row(conn, room)
    except RoomNotFound:
        return None


def _configure_room(conn: sqlite3.Connection, room: str, config: RoomConfig) -> None:
    cursor = conn.execute(
        "UPDATE rooms SET config = ? WHERE address = ?", (config.to_json(), room)
    )
    if cursor.rowcount == 0:
        raise RoomNotFound(f"no room {room}")


def _destroy_room(
    conn: sqlite3.Connection, room: str, now: float, hold_until: float
) -> bool:
    with transaction(conn):
        if conn.execute("DELETE FROM rooms WHERE address = ?", (room,)).rowcount == 0:
            return False
        conn.execute("DELETE FROM room_members WHERE room = ?", (room,))
        conn.execute("DELETE FROM room_history WHERE room = ?", (room,))
        conn.execute(
            """
            INSERT INTO room_tombstones (address, destroyed, until) VALUES (?, ?, ?)
            ON CONFLICT (address) DO UPDATE SET
                destroyed = excluded.destroyed, until = excluded.until
            """,
            (room, now, hold_until),
        )
    return True


def _forget_tombstones(conn: sqlite3.Connection, now: float) -> int:
    return conn.execute("DELETE FROM room_tombstones WHERE until <= ?", (now,)).rowcount


# Members

_MEMBER_COLUMNS = "address, role, voice, since, reason"


#: Each role by its value: a fan-out makes one member per row, and a dict
#: lookup is cheaper than the enum's own.
_ROLES = {role.value: role for role in Role}


def _member_of(row: tuple[Any, ...]) -> Member:
    address, role, voice, since, reason = row
    return Member(address, _ROLES[role], voice == 1, float(since), reason)


def _get_member(conn: sqlite3.Connection, room: str, address: str) -> Member | None:
    row = conn.execute(
        f"SELECT {_MEMBER_COLUMNS} FROM room_members WHERE room = ? AND address = ?",
        (room, address),
    ).fetchone()
    return None if row is None else _member_of(row)


def _standing(conn: sqlite3.Connection, room: str, address: str) -> Member | None:
    """
    C{address}'s standing, its domain's ban considered: both rows in one
    read of the primary key.
    """
    ban = domain_ban_address(domain_of(address))
    rows = conn.execute(
        f"SELECT {_MEMBER_COLUMNS} FROM room_members "
        "WHERE room = ? AND address IN (?, ?)",
        (room, address, ban),
    ).fetchall()
    found = {row[0]: _member_of(row) for row in rows}
    return standing_with(found.get(address), found.get(ban))


def _put_member(conn: sqlite3.Connection, room: str, member: Member) -> None:
    conn.execute(
        f"""
        INSERT INTO room_members (room, {_MEMBER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (room, address) DO UPDATE SET role = excluded.role,
            voice = excluded.voice, since = excluded.since, reason = excluded.reason
        """,
        (
            room,
            member.address,
            member.role.value,
            1 if member.voice else 0,
            member.since,
            member.reason,
        ),
    )


def _member(conn: sqlite3.Connection, room: str, address: str) -> Member | None:
    _room_row(conn, room)
    return _standing(conn, room, address)


def _join(
    conn: sqlite3.Connection, room: str, address: str, now: float, voice: bool
) -> Member:
    with transaction(conn):
        config = _room_row(conn, room).config
        member = _standing(conn, room, address)
        (count,) = conn.execute(
            "SELECT count(*) FROM room_members "
            f"WHERE room = ? AND role IN ({_MEMBER_ROLES_SQL})",
            (room,),
        ).fetchone()
        role = join_role(config, member, count)
        if role is None:
            assert member is not None
            return member
        joined = Member(address, role, voice, now)
        _put_member(conn, room, joined)
    return joined


def _invite(conn: sqlite3.Connection, room: str, address: str, now: float) -> bool:
    with transaction(conn):
        _room_row(conn, room)
        if not may_invite(_standing(conn, room, address)):
            return False
        _put_member(conn, room, Member(address, Role.INVITED, False, now))
    return True


def _remove_member(
    conn: sqlite3.Connection, room: str, address: str, roles: Set[Role]
) -> bool:
    """
    Remove C{address}'s standing if its role is one of C{roles}.
    """
    in_roles = ", ".join(sorted(f"'{role.value}'" for role in roles))
    with transaction(conn):
        _room_row(conn, room)
        cursor = conn.execute(
            "DELETE FROM room_members WHERE room = ? AND address = ? "
            f"AND role IN ({in_roles})",
            (room, address),
        )
    return cursor.rowcount > 0


#: The standings of one domain's users in a room other than their bans:
#: what its ban ends.  C{*@DOMAIN} itself is a ban, so never among them.
_DOMAIN_STANDINGS = """
    room_members WHERE room = ? AND role != 'banned' AND substr(address, ?) = ?
"""


def _ban_domain(
    conn: sqlite3.Connection, room: str, domain: str, now: float, reason: str | None
) -> list[Member]:
    suffix = "@" + domain
    where = (room, -len(suffix), suffix)
    with transaction(conn):
        _room_row(conn, room)
        removed = [
            _member_of(row)
            for row in conn.execute(
                f"SELECT {_MEMBER_COLUMNS} FROM {_DOMAIN_STANDINGS} ORDER BY address",
                where,
            )
        ]
        conn.execute(f"DELETE FROM {_DOMAIN_STANDINGS}", where)
        ban = domain_ban_address(domain)
        _put_member(conn, room, Member(ban, Role.BANNED, False, now, reason))
    return removed


def _set_role(
    conn: sqlite3.Connection,
    room: str,
    address: str,
    role: Role,
    voice: bool,
    now: float,
    reason: str | None,
) -> Member | None:
    with transaction(conn):
        _room_row(conn, room)
        before = _get_member(conn, room, address)
        _put_member(conn, room, with_role(before, address, role, voice, now, reason))
    return before


#: A room's members, read in order from the primary key in one query:
#: what every message fans out to.
MEMBERS_QUERY = f"""
    SELECT {_MEMBER_COLUMNS} FROM room_members
    WHERE room = ? AND role IN ({_MEMBER_ROLES_SQL}) ORDER BY address
"""


def _members(conn: sqlite3.Connection, room: str, role: Role | None) -> list[Member]:
    if role is None:
        rows = conn.execute(MEMBERS_QUERY, (room,)).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {_MEMBER_COLUMNS} FROM room_members "
            "WHERE room = ? AND role = ? ORDER BY address",
            (room, role.value),
        ).fetchall()
    if not rows:
        # Only an empty answer needs telling apart from no room, so a
        # fan-out's read is one query.
        _room_row(conn, room)
    return [_member_of(row) for row in rows]


def _rooms_of(conn: sqlite3.Connection, address: str) -> list[str]:
    return [
        room
        for (room,) in conn.execute(
            "SELECT room FROM room_members "
            f"WHERE address = ? AND role IN ({_MEMBER_ROLES_SQL}) ORDER BY room",
            (address,),
        )
    ]


def _public_rooms(conn: sqlite3.Connection, start: int, limit: int) -> list[Room]:
    # The configuration is JSON: a scan, for the rooms of one server (a
    # column of its own when a server holds rooms by the hundred thousand).
    rows = conn.execute(
        "SELECT address, creator, config, created FROM rooms "
        "WHERE json_extract(config, '$.public') ORDER BY address LIMIT ? OFFSET ?",
        (min(limit, _MAX_SQLITE_INT), min(start, _MAX_SQLITE_INT)),
    )
    return [
        Room(address, creator, RoomConfig.from_json(config), float(created))
        for address, creator, config, created in rows
    ]


def _forget_memberships(conn: sqlite3.Connection, address: str) -> None:
    """
    End every membership and invitation of C{address}, for a deleted
    account, inside the caller's transaction; its bans stay.
    """
    conn.execute(
        "DELETE FROM room_members WHERE address = ? AND role != 'banned'", (address,)
    )


# History

_ENTRY_COLUMNS = (
    "seq, digest, parent_digest, object_id, type, properties, body, appended, "
    "retracts, retracted_by"
)


def _entry_of(row: tuple[Any, ...]) -> HistoryEntry:
    (seq, digest, parent, object_id, type, properties, body, appended) = row[:8]
    obj = None
    if type is not None:
        obj = FMTPObject(object_id, type, json.loads(properties), bytes(body))
    return HistoryEntry(seq, digest, parent, obj, float(appended), *row[8:])


def _entry_row(obj: FMTPObject) -> tuple[Any, ...]:
    """
    What an entry's row keeps of C{obj}, computed on the caller's thread
    (as L{fmtp.store.sql.objects._object_row} is): its id, digest, parent
    digest, type, properties and body.
    """
    return (
        obj.id,
        obj.digest(),
        parent_of(obj),
        obj.type,
        json.dumps(dict(obj.properties), separators=(",", ":")),
        bytes(obj.body),
    )


def _head(conn: sqlite3.Connection, room: str) -> tuple[int, str]:
    row = conn.execute(
        "SELECT seq, digest FROM room_history WHERE room = ? ORDER BY seq DESC LIMIT 1",
        (room,),
    ).fetchone()
    return EMPTY_HEAD if row is None else (int(row[0]), row[1])


def _entry(conn: sqlite3.Connection, room: str, seq: int) -> HistoryEntry | None:
    row = conn.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM room_history WHERE room = ? AND seq = ?",
        (room, min(seq, _MAX_SQLITE_INT)),
    ).fetchone()
    return None if row is None else _entry_of(row)


def _append(
    conn: sqlite3.Connection,
    room: str,
    row: tuple[Any, ...],
    now: float,
    retracts: int | None,
) -> int | None:
    object_id, digest, parent = row[:3]
    with transaction(conn):
        _room_row(conn, room)
        held = conn.execute(
            "SELECT digest FROM room_history WHERE room = ? AND object_id = ?",
            (room, object_id),
        ).fetchone()
        if held is None and retracts is not None:
            check_retractable(retracts, _entry(conn, room, retracts))
        head = _head(conn, room)
        if not appendable(head, None if held is None else held[0], digest, parent):
            return None
        seq = head[0] + 1
        conn.execute(
            f"""
            INSERT INTO room_history (room, {_ENTRY_COLUMNS})
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)
            """,
            (room, seq, digest, parent, object_id, *row[3:], now, retracts),
        )
        if retracts is not None:
            conn.execute(
                "UPDATE room_history SET type = NULL, properties = NULL, "
                "body = NULL, retracted_by = ? WHERE room = ? AND seq = ?",
                (seq, room, retracts),
            )
    return seq


#: A page of a room's history, read in order from the primary key.
HISTORY_QUERY = f"""
    SELECT {_ENTRY_COLUMNS} FROM room_history
    WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?
"""


def _history(
    conn: sqlite3.Connection, room: str, since: int, limit: int
) -> list[HistoryEntry]:
    params = (room, min(since, _MAX_SQLITE_INT), min(limit, _MAX_SQLITE_INT))
    rows = conn.execute(HISTORY_QUERY, params).fetchall()
    if not rows:
        _room_row(conn, room)
    return [_entry_of(row) for row in rows]


def _room_head(conn: sqlite3.Connection, room: str) -> tuple[int, str]:
    _room_row(conn, room)
    return _head(conn, room)


class SQLRooms(SQLiteEngine):
    """
    L{fmtp.interfaces.IRoomStore}'s methods, over the engine.
    """

    def create_room(
        self, room: str, creator: str, config: RoomConfig, now: float
    ) -> Deferred[Room]:
        def check() -> None:
            check_address(room=room, creator=creator)
            check_config(config)
            check_time(now=now)

        return self.run_checked(check, _create_room, room, creator, config, now)

    def get_room(self, room: str) -> Deferred[Room | None]:
        return self.run_checked(
            lambda: check_address(room=room), _get_room, room, read=True
        )

    def configure_room(self, room: str, config: RoomConfig) -> Deferred[None]:
        def check() -> None:
            check_address(room=room)
            check_config(config)

        return self.run_checked(check, _configure_room, room, config)

    def destroy_room(self, room: str, now: float, hold_until: float) -> Deferred[bool]:
        def check() -> None:
            check_address(room=room)
            check_time(now=now, hold_until=hold_until)

        return self.run_checked(check, _destroy_room, room, now, hold_until)

    def forget_tombstones(self, now: float) -> Deferred[int]:
        return self.run_checked(lambda: check_time(now=now), _forget_tombstones, now)

    def join(
        self, room: str, address: str, now: float, voice: bool = False
    ) -> Deferred[Member]:
        return self.run_checked(
            lambda: check_join(room, address, now, voice),
            _join,
            room,
            address,
            now,
            voice,
        )

    def invite(self, room: str, address: str, now: float) -> Deferred[bool]:
        def check() -> None:
            check_member(room, address)
            check_time(now=now)

        return self.run_checked(check, _invite, room, address, now)

    def leave(self, room: str, address: str) -> Deferred[bool]:
        return self.run_checked(
            lambda: check_member(room, address),
            _remove_member,
            room,
            address,
            UNBANNED_ROLES,
        )

    def decline(self, room: str, address: str) -> Deferred[bool]:
        return self.run_checked(
            lambda: check_member(room, address),
            _remove_member,
            room,
            address,
            {Role.INVITED},
        )

    def unban(self, room: str, address: str) -> Deferred[bool]:
        return self.run_checked(
            lambda: check_ban_address(room, address),
            _remove_member,
            room,
            address,
            {Role.BANNED},
        )

    def ban_domain(
        self, room: str, domain: str, now: float, reason: str | None = None
    ) -> Deferred[list[Member]]:
        return self.run_checked(
            lambda: check_ban_domain(room, domain, now, reason),
            _ban_domain,
            room,
            domain,
            now,
            reason,
        )

    def set_role(
        self,
        room: str,
        address: str,
        role: Role,
        voice: bool,
        now: float,
        reason: str | None = None,
    ) -> Deferred[Member | None]:
        def check() -> None:
            check_member(room, address)
            check_role(role, voice, now, reason)

        return self.run_checked(
            check, _set_role, room, address, role, voice, now, reason
        )

    def member(self, room: str, address: str) -> Deferred[Member | None]:
        return self.run_checked(
            lambda: check_member(room, address), _member, room, address, read=True
        )

    def members(self, room: str, role: Role | None = None) -> Deferred[list[Member]]:
        def check() -> None:
            check_address(room=room)
            if role is not None and not isinstance(role, Role):
                raise ValueError(f"not a role: {role!r}")

        return self.run_checked(check, _members, room, role, read=True)

    def rooms_of(self, address: str) -> Deferred[list[str]]:
        return self.run_checked(
            lambda: check_address(address=address), _rooms_of, address, read=True
        )

    def public_rooms(self, start: int, limit: int) -> Deferred[list[Room]]:
        return self.run_checked(
            lambda: check_counts(start=start, limit=limit),
            _public_rooms,
            start,
            limit,
            read=True,
        )

    def append(self, room: str, obj: FMTPObject, now: float) -> Deferred[int | None]:
        return self._append_entry(room, obj, now, None)

    def retract(
        self, room: str, seq: int, tombstone: FMTPObject, now: float
    ) -> Deferred[int | None]:
        try:
            check_seq(seq)
        except ValueError as e:
            return fail(e)
        return self._append_entry(room, tombstone, now, seq)

    def _append_entry(
        self, room: str, obj: FMTPObject, now: float, retracts: int | None
    ) -> Deferred[int | None]:
        # The row is computed here, on the caller's thread: a caller
        # changing C{obj} afterwards changes nothing stored.
        try:
            check_entry(room, obj, now)
            row = _entry_row(obj)
        except ValueError as e:
            return fail(e)
        return self.run_interaction(_append, room, row, now, retracts)

    def history(
        self, room: str, since: int, limit: int
    ) -> Deferred[list[HistoryEntry]]:
        def check() -> None:
            check_address(room=room)
            check_counts(since=since, limit=limit)

        return self.run_checked(check, _history, room, since, limit, read=True)

    def head(self, room: str) -> Deferred[tuple[int, str]]:
        return self.run_checked(
            lambda: check_address(room=room), _room_head, room, read=True
        )
