"""
Tests for the room store beyond its conformance suite (which
C{tests/conformance/test_stores.py} runs against every store): the
values and rules of L{fmtp.store.rooms}, what only the SQLite store does
(one write per join and one read per fan-out in a room of a thousand,
plans, one chain under two writers on one file), and the memory store
agreeing with the SQLite store's SQL on random sequences of calls.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import DeferredList, ensureDeferred

from fmtp.store import MemoryStore, SQLiteStore
from fmtp.store.rooms import (
    UNBANNED_ROLES,
    HistoryConflict,
    HistoryEntry,
    Member,
    Role,
    RoomConfig,
    verify_chain,
)
from fmtp.store.sql.engine import upgrade_schema
from fmtp.store.sql.rooms import (
    HISTORY_QUERY,
    MEMBERS_QUERY,
    _append,
    _configure_room,
    _create_room,
    _entry_row,
    _history,
    _invite,
    _join,
    _members,
    _remove_member,
    _room_head,
    _rooms_of,
    _set_role,
)
from fmtp.store.sql.schema import SCHEMA_STEPS
from tests.conformance.agreement import fired, fired_outcome, outcome
from tests.conformance.rooms import ALICE, BOB, CAROL, CONFIG, LOST, LOUNGE, T0, line

# Values and rules


def test_config_round_trips_and_reads_old_rows() -> None:
    assert RoomConfig.from_json(CONFIG.to_json()) == CONFIG
    # A setting missing from an older row reads as its default, and one
    # this code does not know is ignored.
    assert RoomConfig.from_json('{"name": "x", "later": 1}') == RoomConfig(name="x")


def test_config_is_immutable() -> None:
    limits = {"rate": 1}
    config = RoomConfig(limits=limits)
    limits["rate"] = 2
    assert config.limits == {"rate": 1}
    with pytest.raises(TypeError):
        config.limits["rate"] = 3  # type: ignore[index]


def test_verify_chain_finds_a_break() -> None:
    first = line(1)
    second = line(2, first.digest())
    entries = [
        HistoryEntry(1, first.digest(), "", first, T0),
        HistoryEntry(2, second.digest(), first.digest(), None, T0, retracted_by=3),
    ]
    verify_chain(entries)
    with pytest.raises(ValueError, match="entry 2"):
        verify_chain([entries[0], replace(entries[1], parent_digest="0" * 64)])
    with pytest.raises(ValueError, match="entry 1"):
        verify_chain([replace(entries[0], obj=line(9))])
    with pytest.raises(ValueError, match="entry 2"):
        verify_chain(entries[1:])


# SQLite


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "fmtp.db"


@pytest_twisted.async_yield_fixture
async def sqlite_store(db_path):
    s = SQLiteStore(db_path)
    await s.open()
    yield s
    await s.close()


async def thousand_members(store: SQLiteStore) -> list[str]:
    """
    Make the lounge a room of a thousand members, written in one go (the
    joins themselves are tested elsewhere).
    """
    await store.create_room(LOUNGE, ALICE, RoomConfig(max_members=1002), T0)
    addresses = [f"user{n:04d}@lenore.org" for n in range(999)]

    def add(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO room_members (room, address, role, voice, since, reason) "
            "VALUES (?, ?, 'member', 0, ?, NULL)",
            [(LOUNGE, address, T0) for address in addresses],
        )

    await store.run_interaction(add)
    return [ALICE, *addresses]


async def traced(store: SQLiteStore, call) -> list[str]:
    """
    The SQL statements C{call()} makes the store run, without the
    savepoints that group commit wraps each write in.
    """
    statements: list[str] = []
    await store.run_query(lambda conn: conn.set_trace_callback(statements.append))
    try:
        await call()
    finally:
        await store.run_query(lambda conn: conn.set_trace_callback(None))
    statements = [" ".join(s.split()) for s in statements]
    return [s for s in statements if not s.startswith(("SAVEPOINT", "RELEASE"))]


@pytest_twisted.ensureDeferred
async def test_joining_a_room_of_a_thousand_is_one_write(
    sqlite_store: SQLiteStore,
) -> None:
    members = await thousand_members(sqlite_store)
    statements = await traced(sqlite_store, lambda: sqlite_store.join(LOUNGE, BOB, T0))
    writes = [s for s in statements if s.split()[0] in ("INSERT", "UPDATE", "DELETE")]
    assert len(writes) == 1 and writes[0].startswith("INSERT INTO room_members")
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    assert len(statements) <= 6
    assert len(await sqlite_store.members(LOUNGE)) == len(members) + 1


@pytest_twisted.ensureDeferred
async def test_fan_out_is_one_read(sqlite_store: SQLiteStore) -> None:
    members = await thousand_members(sqlite_store)
    found: list[list[Member]] = []

    async def read() -> None:
        found.append(await sqlite_store.members(LOUNGE))

    assert len(await traced(sqlite_store, read)) == 1
    assert [m.address for m in found[0]] == members


@pytest.mark.parametrize("query", [MEMBERS_QUERY, HISTORY_QUERY])
@pytest_twisted.ensureDeferred
async def test_reads_need_no_sort(sqlite_store: SQLiteStore, query: str) -> None:
    """
    A fan-out's member list and a page of history are read in order from
    the primary key.
    """
    params = [LOUNGE] if query is MEMBERS_QUERY else [LOUNGE, 0, 10]

    def plan(conn: sqlite3.Connection) -> str:
        rows = conn.execute("EXPLAIN QUERY PLAN " + query, params).fetchall()
        return "\n".join(row[-1] for row in rows)

    text = await sqlite_store.run_interaction(plan)
    assert "TEMP B-TREE" not in text
    assert "PRIMARY KEY" in text or "USING INDEX sqlite_autoindex" in text


@pytest_twisted.ensureDeferred
async def test_two_writers_keep_one_chain(db_path: Path) -> None:
    """
    Two stores on one file (two nodes of a domain) appending to one room
    at once, each linking to the head it read and trying again when told
    the chain moved on: every entry is appended once, in one unforked
    chain.
    """
    first, second = SQLiteStore(db_path), SQLiteStore(db_path)
    await first.open()
    await second.open()
    await first.create_room(LOUNGE, ALICE, RoomConfig(), T0)
    conflicts = []

    async def write(store: SQLiteStore, sender: str) -> None:
        for n in range(15):
            for _ in range(100):
                _, digest = await store.head(LOUNGE)
                try:
                    await store.append(LOUNGE, line(n, digest, sender), T0)
                    break
                except HistoryConflict as e:
                    conflicts.append(e)
            else:
                raise AssertionError("never appended")

    try:
        results = await DeferredList(
            [
                ensureDeferred(write(first, BOB)),
                ensureDeferred(write(second, LOST)),
            ],
            fireOnOneErrback=True,
            consumeErrors=True,
        )
        assert all(ok for ok, _ in results)
        history = await first.history(LOUNGE, 0, 100)
        assert [e.seq for e in history] == list(range(1, 31))
        verify_chain(history)
        senders = [e.obj.properties["From"] for e in history]
        assert sorted(senders) == [BOB] * 15 + [LOST] * 15
    finally:
        await first.close()
        await second.close()


# The memory store against the SQLite store's SQL

_addresses = st.sampled_from([BOB, CAROL, LOST])
#: The store's removals, with the roles each removes.
_REMOVALS = {
    "leave": UNBANNED_ROLES,
    "decline": {Role.INVITED},
    "unban": {Role.BANNED},
}
_times = st.integers(0, 5).map(lambda n: T0 + n)
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("join"), _addresses, _times, st.booleans()),
        st.tuples(st.just("invite"), _addresses, _times),
        st.tuples(st.just("remove"), _addresses, st.sampled_from(sorted(_REMOVALS))),
        st.tuples(
            st.just("role"),
            _addresses,
            st.sampled_from([Role.OWNER, Role.MODERATOR, Role.MEMBER, Role.BANNED]),
            st.booleans(),
            _times,
        ),
        st.tuples(st.just("configure"), st.integers(0, 3), st.booleans()),
        # Follow the head, or an entry before it (a stale writer).
        st.tuples(st.just("append"), st.integers(0, 9), st.integers(0, 2)),
        st.tuples(st.just("retract"), st.integers(1, 5), st.integers(0, 9)),
    ),
    max_size=25,
)


@settings(max_examples=100, deadline=None)
@given(operations=_operations)
def test_sqlite_agrees_with_memory(operations) -> None:
    """
    Any sequence of joins, invitations, roles and appends leaves both
    stores with the same members and the same chain.
    """
    memory = MemoryStore()
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        upgrade_schema(conn, SCHEMA_STEPS)
        fired(memory.create_room(LOUNGE, ALICE, RoomConfig(), T0))
        _create_room(conn, LOUNGE, ALICE, RoomConfig(), T0)
        digests = [""]
        for op in operations:
            if op[0] == "join":
                _, address, now, voice = op
                assert fired_outcome(memory.join(LOUNGE, address, now, voice)) == (
                    outcome(_join, conn, LOUNGE, address, now, voice)
                )
            elif op[0] == "invite":
                _, address, now = op
                assert fired_outcome(memory.invite(LOUNGE, address, now)) == (
                    outcome(_invite, conn, LOUNGE, address, now)
                )
            elif op[0] == "remove":
                _, address, how = op
                call = getattr(memory, how)
                assert fired(call(LOUNGE, address)) == _remove_member(
                    conn, LOUNGE, address, _REMOVALS[how]
                )
            elif op[0] == "role":
                _, address, role, voice, now = op
                assert fired(
                    memory.set_role(LOUNGE, address, role, voice, now, "why")
                ) == _set_role(conn, LOUNGE, address, role, voice, now, "why")
            elif op[0] == "configure":
                config = RoomConfig(max_members=op[1], members_only=op[2])
                fired(memory.configure_room(LOUNGE, config))
                _configure_room(conn, LOUNGE, config)
            else:
                retracts = op[1] if op[0] == "retract" else None
                n = op[2] if retracts is not None else op[1]
                back = 0 if retracts is not None else op[2]
                parent = digests[max(0, len(digests) - 1 - back)]
                obj = line(n, parent)
                call = (
                    memory.append(LOUNGE, obj, T0)
                    if retracts is None
                    else memory.retract(LOUNGE, retracts, obj, T0)
                )
                result = fired_outcome(call)
                assert result == outcome(
                    _append, conn, LOUNGE, _entry_row(obj), T0, retracts
                )
                if isinstance(result, int):
                    digests.append(obj.digest())
        for role in (None, *Role):
            assert _members(conn, LOUNGE, role) == fired(memory.members(LOUNGE, role))
        for address in (ALICE, BOB, CAROL, LOST):
            assert _rooms_of(conn, address) == fired(memory.rooms_of(address))
        history = _history(conn, LOUNGE, 0, 100)
        assert history == fired(memory.history(LOUNGE, 0, 100))
        verify_chain(history)
        assert _room_head(conn, LOUNGE) == fired(memory.head(LOUNGE))
    finally:
        conn.close()
