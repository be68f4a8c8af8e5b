"""
Tests for L{fmtp.store}: the conformance suites (objects and accounts;
delivery; presence; rooms) against every store, then what only the SQLite store does
(durability, pragmas, schema versions, threads) and the choice of a store
from a URL.

SQLite tests use real files in pytest's C{tmp_path}; nothing is mocked.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from fmtp.errors import AccountExists, ObjectSealed, StoreUnavailable
from fmtp.objects import FMTPObject
from fmtp.store import MemoryStore, SchemaTooNew, SQLiteStore, store_from_url
from fmtp.store.bridges import DEFAULT_BRIDGE_RATE, Bridge
from fmtp.store.presence import Link
from fmtp.store.sql.engine import schema_version, transaction, upgrade_schema
from fmtp.store.sql.inbox import (
    _deliver_local,
    _inbox,
    _read_object,
    _remove_from_inbox,
    inbox_query,
)
from fmtp.store.sql.objects import (
    _delete_object,
    _get_object,
    _list_objects,
    _object_row,
    _put_object,
    listing_query,
)
from fmtp.store.sql.queue import DUE_QUERY, _enqueue, forget_delivered_query
from fmtp.store.sql.schema import SCHEMA_STEPS, SCHEMA_VERSION
from tests.conformance.agreement import fired, fired_outcome, outcome
from tests.conformance.bridges import BridgeConformance
from tests.conformance.delivery import (
    ANNABEL,
    EDGAR,
    LOST,
    T0,
    DeliveryConformance,
    RescheduleRecipients,
    message,
    queued,
)
from tests.conformance.object_store import ALICE, BOB, StoreConformance, make
from tests.conformance.presence import PresenceConformance
from tests.conformance.rooms import RoomConformance
from tests.conformance.tokens import TokenConformance


def sqlite_threads() -> list[threading.Thread]:
    return [
        t for t in threading.enumerate() if t.name.startswith("PoolThread-fmtp-sqlite")
    ]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """
    Every test closes what it opens: no store thread outlives it.

    Autouse fixtures are set up first and so torn down last, after the
    C{store} fixture has closed its store.  Only threads new to the test
    count, so a leak elsewhere in the run is reported there, not here.
    """
    before = set(sqlite_threads())
    yield
    assert set(sqlite_threads()) - before == set()


@pytest_twisted.async_yield_fixture(params=["memory", "sqlite"])
async def store(request, tmp_path):
    """
    An opened, empty store of each kind, closed after the test.
    """
    if request.param == "memory":
        s = MemoryStore()
    else:
        s = SQLiteStore(tmp_path / "fmtp.db")
    await s.open()
    yield s
    await s.close()


@pytest_twisted.async_yield_fixture
async def reopen(store):
    """
    A function that closes C{store} and opens its data again: the memory
    store reopened (it keeps its data), or a new SQLite store on the same
    file, as after a restart.  What it opens is closed after the test.
    """
    opened = []

    async def reopen_store():
        await store.close()
        again = store if isinstance(store, MemoryStore) else SQLiteStore(store.path)
        await again.open()
        opened.append(again)
        return again

    yield reopen_store
    for s in opened:
        await s.close()


class TestStoreConformance(StoreConformance):
    """
    The conformance suite, run against every store by the C{store} fixture.
    """


class TestRescheduleRecipients(RescheduleRecipients):
    pass


class TestDeliveryConformance(DeliveryConformance):
    """
    The delivery conformance suite, run against every store.
    """


class TestPresenceConformance(PresenceConformance):
    """
    The presence store's conformance suite, run against every store.
    """


class TestRoomConformance(RoomConformance):
    """
    The room store's conformance suite, run against every store.
    """


class TestTokenConformance(TokenConformance):
    """
    The token store's conformance suite, run against every store.
    """


class TestBridgeConformance(BridgeConformance):
    """
    The bridge store's conformance suite, run against every store.
    """


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "fmtp.db"


@pytest_twisted.async_yield_fixture
async def sqlite_store(db_path):
    s = SQLiteStore(db_path)
    await s.open()
    yield s
    await s.close()


def connect(path: Path) -> sqlite3.Connection:
    """
    A second, plain connection to a store's file, as another process
    (C{fmtp adduser}, the sqlite3 shell) would make.
    """
    return sqlite3.connect(path, isolation_level=None, timeout=0)


def pragma(conn: sqlite3.Connection, name: str) -> object:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


# Durability


@pytest_twisted.ensureDeferred
async def test_data_survives_reopen(db_path: Path) -> None:
    obj = make(1, body=b"\x00kept\x00", Subject="kept")
    private = make(2, public=False)
    first = SQLiteStore(db_path)
    await first.open()
    await first.put_object(obj)
    await first.put_object(private)
    await first.add_account(ALICE, "hash-1")
    await first.close()

    second = SQLiteStore(db_path)
    await second.open()
    try:
        assert await second.get_object(obj.id) == obj
        listing = await second.list_objects(0, 10, public_only=False)
        assert listing == [obj.summary(), private.summary()]
        assert await second.get_password_hash(ALICE) == "hash-1"
        # Order continues after a reopen: new objects go last.
        await second.put_object(make(0))
        assert [s.id for s in await second.list_objects(0, 10)] == [
            obj.id,
            make(0).id,
        ]
    finally:
        await second.close()


@pytest_twisted.ensureDeferred
async def test_same_store_reopens(db_path: Path) -> None:
    s = SQLiteStore(db_path)
    await s.open()
    await s.put_object(make(1))
    await s.close()
    await s.open()
    try:
        assert await s.get_object(make(1).id) == make(1)
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_acknowledged_write_is_visible_to_other_process(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    """
    Once a put's Deferred fires, the row is committed: another connection
    (another process) sees it while the store is still open.
    """
    await sqlite_store.put_object(make(1))
    await sqlite_store.add_account(ALICE, "hash-1")
    conn = connect(db_path)
    try:
        assert conn.execute("SELECT id FROM objects").fetchall() == [(make(1).id,)]
        ((address, created),) = conn.execute(
            "SELECT address, created FROM accounts"
        ).fetchall()
        assert address == ALICE
        assert abs(created - time.time()) < 60
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_sees_account_added_by_other_process(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    """
    C{fmtp adduser} writes the file while the server runs.
    """
    conn = connect(db_path)
    try:
        conn.execute(
            "INSERT INTO accounts (address, password_hash, created) "
            "VALUES (?, 'hash-1', 0)",
            (BOB,),
        )
    finally:
        conn.close()
    assert await sqlite_store.get_password_hash(BOB) == "hash-1"
    with pytest.raises(AccountExists):
        await sqlite_store.add_account(BOB, "hash-2")


# Connection settings and schema


@pytest_twisted.ensureDeferred
async def test_connection_pragmas(sqlite_store: SQLiteStore) -> None:
    def read(conn: sqlite3.Connection) -> dict[str, object]:
        return {
            name: pragma(conn, name)
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }

    settings_ = await sqlite_store.run_interaction(read)
    assert settings_["journal_mode"] == "wal"
    assert settings_["synchronous"] == 2  # FULL
    assert settings_["foreign_keys"] == 1
    assert settings_["busy_timeout"] == 5000


@pytest_twisted.ensureDeferred
async def test_wal_and_version_recorded_in_file(db_path: Path) -> None:
    s = SQLiteStore(db_path)
    await s.open()
    await s.close()
    conn = connect(db_path)
    try:
        assert pragma(conn, "journal_mode") == "wal"
        assert schema_version(conn) == SCHEMA_VERSION
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
        assert {"objects", "accounts", "queue", "inbox", "approved_senders"} <= tables
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_busy_timeout_is_configurable(db_path: Path) -> None:
    s = SQLiteStore(db_path, busy_timeout=0.25)
    await s.open()
    try:
        assert await s.run_interaction(pragma, "busy_timeout") == 250
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "fmtp.db"
    s = SQLiteStore(path)
    await s.open()
    await s.close()
    assert path.is_file()


@pytest_twisted.ensureDeferred
async def test_newer_schema_refused(db_path: Path) -> None:
    conn = connect(db_path)
    conn.execute("CREATE TABLE from_the_future (x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = db_path.read_bytes()

    s = SQLiteStore(db_path)
    with pytest.raises(SchemaTooNew) as info:
        await s.open()
    message = str(info.value)
    assert str(db_path) in message
    assert f"version {SCHEMA_VERSION + 1}" in message
    assert f"up to {SCHEMA_VERSION}" in message
    assert "newer fmtp" in message

    # Left as it was found, and the store is closed (its thread stopped,
    # which the autouse fixture checks).
    assert db_path.read_bytes() == before
    with pytest.raises(StoreUnavailable):
        await s.get_object(make(1).id)
    await s.close()


@pytest.mark.parametrize("kind", ["missing", "empty file", "empty database"])
@pytest_twisted.ensureDeferred
async def test_upgrade_from_version_zero(db_path: Path, kind: str) -> None:
    if kind == "empty file":
        db_path.write_bytes(b"")
    elif kind == "empty database":
        conn = connect(db_path)
        conn.execute("PRAGMA journal_mode = DELETE")
        assert schema_version(conn) == 0
        conn.close()
    s = SQLiteStore(db_path)
    await s.open()
    try:
        assert await s.run_interaction(schema_version) == SCHEMA_VERSION
        await s.put_object(make(1))
        assert await s.get_object(make(1).id) == make(1)
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_upgrade_from_version_one(db_path: Path) -> None:
    """
    A file written by an fmtp that knew schema version 1 only (objects and
    accounts) is brought to the current version on open, keeping what it
    held, and the delivery tables work.
    """
    kept = make(1, body=b"kept", Subject="kept")
    conn = connect(db_path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        assert upgrade_schema(conn, SCHEMA_STEPS[:1]) == 0
        assert schema_version(conn) == 1
        assert "queue" not in _tables(conn)
        conn.execute(
            "INSERT INTO objects (id, type, owner, public, digest, properties, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            _object_row(kept),
        )
        conn.execute(
            "INSERT INTO accounts (address, password_hash, created) "
            "VALUES (?, 'hash-1', 0)",
            (ALICE,),
        )
    finally:
        conn.close()

    s = SQLiteStore(db_path)
    await s.open()
    try:
        assert await s.run_interaction(schema_version) == SCHEMA_VERSION == 10
        assert await s.get_object(kept.id) == kept
        assert await s.list_objects(0, 10) == [kept.summary()]
        assert await s.get_password_hash(ALICE) == "hash-1"
        # Objects stored before the upgrade can be queued and delivered.
        await s.enqueue(kept, [queued(kept)])
        assert await s.queued_for("lenore.org") == [queued(kept)]
        seq = await s.deliver_local(LOST, kept, False)
        assert await s.inbox(LOST, 0, 10) == [(seq, kept)]
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_upgrade_from_version_two(db_path: Path) -> None:
    """
    Version 3 seals what version 2 had queued or filed, so a sender can
    no longer rewrite it, and records what was queued, so the countersign
    still answers for messages sent before the upgrade.
    """
    queued_obj, filed, draft = make(1), make(2), make(3)
    conn = connect(db_path)
    try:
        assert upgrade_schema(conn, SCHEMA_STEPS[:2]) == 0
        for obj in (queued_obj, filed, draft):
            conn.execute(
                "INSERT INTO objects (id, type, owner, public, digest, properties,"
                " body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                _object_row(obj),
            )
        conn.execute(
            "INSERT INTO queue (object_id, domain, recipients, created, attempts,"
            " next_attempt, last_error) VALUES (?, 'lenore.org', '[]', 5, 0, 5, NULL)",
            (queued_obj.id,),
        )
        conn.execute(
            "INSERT INTO inbox (recipient, object_id, sender, held)"
            " VALUES (?, ?, ?, 0)",
            (LOST, filed.id, ALICE),
        )
    finally:
        conn.close()

    s = SQLiteStore(db_path)
    await s.open()
    try:
        for sealed in (queued_obj, filed):
            with pytest.raises(ObjectSealed):
                await s.put_object(sealed)
        await s.put_object(draft)
        assert await s.was_sent(queued_obj.id, "lenore.org", queued_obj.digest())
        assert [obj.id for _, obj in await s.inbox(LOST, 0, 10)] == [filed.id]
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_upgrade_from_version_three(db_path: Path) -> None:
    """
    A file written before the store was split per feature (version 3, the
    last schema of one SQLite module) opens with everything it held, and
    gains the presence tables.
    """
    sent, filed = message(1), message(2, ANNABEL)
    old = SQLiteStore(db_path)
    old.schema_steps = SCHEMA_STEPS[:3]
    await old.open()
    try:
        await old.add_account(LOST, "hash-1")
        await old.enqueue(sent, [queued(sent)])
        seq = await old.deliver_local(LOST, filed, True)
        await old.approve_sender(LOST, EDGAR)
    finally:
        await old.close()
    conn = connect(db_path)
    try:
        assert schema_version(conn) == 3
        assert "subscriptions" not in _tables(conn)
    finally:
        conn.close()

    s = SQLiteStore(db_path)
    await s.open()
    try:
        assert await s.run_interaction(schema_version) == SCHEMA_VERSION
        assert await s.get_password_hash(LOST) == "hash-1"
        assert await s.queued_for("lenore.org") == [queued(sent)]
        assert await s.was_sent(sent.id, "lenore.org", sent.digest())
        assert await s.held_senders(LOST) == [ANNABEL]
        assert await s.release_held(LOST, ANNABEL) == 1
        assert [(n > seq, obj) for n, obj in await s.inbox(LOST, 0, 10)] == [
            (True, filed)
        ]
        assert await s.is_approved(LOST, EDGAR)
        await s.request_subscription(EDGAR, LOST, T0, 10)
        assert [r.subscriber for r in await s.pending_requests(LOST)] == [EDGAR]
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_upgrade_from_version_five(db_path: Path) -> None:
    """
    A file written before resumption tokens (version 5) keeps its accounts
    and gains the token table.
    """
    old = SQLiteStore(db_path)
    old.schema_steps = SCHEMA_STEPS[:5]
    await old.open()
    try:
        await old.add_account(LOST, "hash-1")
    finally:
        await old.close()
    s = SQLiteStore(db_path)
    await s.open()
    try:
        assert await s.run_interaction(schema_version) == SCHEMA_VERSION
        assert await s.get_password_hash(LOST) == "hash-1"
        assert await s.add_token(LOST, "ab" * 32, T0 + 60, T0, 10) is True
        assert await s.find_token("ab" * 32, T0) == LOST
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_upgrade_from_version_six(db_path: Path) -> None:
    """
    A file written before hidden requests (version 6) keeps every
    subscription and waiting request, and takes hidden ones.
    """
    old = SQLiteStore(db_path)
    old.schema_steps = SCHEMA_STEPS[:6]
    await old.open()
    try:
        await old.request_subscription(EDGAR, LOST, T0, 10)
        await old.request_subscription(LOST, EDGAR, T0 + 1, 10)
        await old.approve_subscription(EDGAR, LOST, T0 + 2)
        await old.approve_subscription(EDGAR, ANNABEL, T0 + 3)
        with pytest.raises(sqlite3.IntegrityError):
            await old.run_interaction(
                lambda conn: conn.execute("UPDATE subscriptions SET state = 'hidden'")
            )
    finally:
        await old.close()
    s = SQLiteStore(db_path)
    await s.open()
    try:
        assert await s.run_interaction(schema_version) == SCHEMA_VERSION
        assert [r.subscriber for r in await s.pending_requests(LOST)] == [EDGAR]
        assert await s.subscribers(EDGAR) == [LOST]
        assert (await s.subscription(EDGAR, ANNABEL)).preapproved is True
        assert await s.request_subscription(ALICE, LOST, T0, 10, hidden=True) is (
            Link.HIDDEN
        )
        assert [r.subscriber for r in await s.pending_requests(LOST)] == [EDGAR]
    finally:
        await s.close()


@pytest.mark.parametrize("kind", ["not a database", "other application"])
@pytest_twisted.ensureDeferred
async def test_open_foreign_file_fails(db_path: Path, kind: str) -> None:
    """
    A file that is not an fmtp database is reported, not reused.
    """
    if kind == "not a database":
        db_path.write_bytes(b"this is not an SQLite database, " * 100)
    else:
        conn = connect(db_path)
        conn.execute("CREATE TABLE objects (x)")
        conn.close()
    s = SQLiteStore(db_path)
    with pytest.raises(sqlite3.DatabaseError):
        await s.open()
    await s.close()


def _step(name: str):
    def step(conn: sqlite3.Connection) -> None:
        conn.execute(f"CREATE TABLE {name} (x)")

    step.__name__ = name
    return step


def _failing_step(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE half_done (x)")
    raise RuntimeError("step failed")


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {
        name
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }


def test_upgrade_runs_only_missing_steps(db_path: Path) -> None:
    steps = [_step("one"), _step("two"), _step("three")]
    conn = connect(db_path)
    try:
        assert upgrade_schema(conn, steps[:1]) == 0
        assert schema_version(conn) == 1
        assert _tables(conn) == {"one"}

        # Had step one run again, CREATE TABLE one would fail.
        assert upgrade_schema(conn, steps) == 1
        assert schema_version(conn) == 3
        assert _tables(conn) == {"one", "two", "three"}

        assert upgrade_schema(conn, steps) == 3
        assert not conn.in_transaction
    finally:
        conn.close()


def test_failed_step_rolls_back_to_last_version(db_path: Path) -> None:
    conn = connect(db_path)
    try:
        with pytest.raises(RuntimeError, match="step failed"):
            upgrade_schema(conn, [_step("one"), _failing_step, _step("three")])
        assert schema_version(conn) == 1
        assert _tables(conn) == {"one"}
        assert not conn.in_transaction
    finally:
        conn.close()


def test_upgrade_refuses_newer(db_path: Path) -> None:
    conn = connect(db_path)
    try:
        conn.execute(f"PRAGMA user_version = {len(SCHEMA_STEPS) + 1}")
        with pytest.raises(SchemaTooNew, match=f"version {len(SCHEMA_STEPS) + 1}"):
            upgrade_schema(conn, SCHEMA_STEPS)
    finally:
        conn.close()


def test_transaction_commits_or_rolls_back(db_path: Path) -> None:
    conn = connect(db_path)
    try:
        conn.execute("CREATE TABLE t (x)")
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(ZeroDivisionError):
            with transaction(conn):
                conn.execute("INSERT INTO t VALUES (2)")
                1 / 0  # noqa: B018
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
        assert not conn.in_transaction
    finally:
        conn.close()


@pytest.mark.parametrize("type", [None, "post"])
@pytest.mark.parametrize("owner", [None, ALICE])
@pytest.mark.parametrize("public_only", [True, False])
@pytest_twisted.ensureDeferred
async def test_listings_need_no_sort(
    sqlite_store: SQLiteStore, type, owner, public_only
) -> None:
    """
    Every listing is read in order from the table or an index: SQLite
    never sorts all matching rows to find one page.
    """
    query, params = listing_query(0, 10, type, owner, public_only)

    def plan(conn: sqlite3.Connection) -> str:
        rows = conn.execute("EXPLAIN QUERY PLAN " + query, params).fetchall()
        return "\n".join(row[-1] for row in rows)

    text = await sqlite_store.run_interaction(plan)
    assert "TEMP B-TREE" not in text
    if type is not None or owner is not None:
        assert "USING INDEX" in text


@pytest.mark.parametrize("name", ["due", "inbox"])
@pytest_twisted.ensureDeferred
async def test_delivery_reads_need_no_sort(sqlite_store: SQLiteStore, name) -> None:
    """
    The queue service's batch and a device's inbox page are read in order
    from an index, as listings are.
    """
    if name == "due":
        query, params = DUE_QUERY, [T0, 10]
    else:
        query, params = inbox_query(LOST, 0, 10)

    def plan(conn: sqlite3.Connection) -> str:
        rows = conn.execute("EXPLAIN QUERY PLAN " + query, params).fetchall()
        return "\n".join(row[-1] for row in rows)

    text = await sqlite_store.run_interaction(plan)
    assert "TEMP B-TREE" not in text
    assert "USING INDEX" in text or "USING COVERING INDEX" in text


@pytest_twisted.ensureDeferred
async def test_forgetting_delivered_objects_reads_indexes(
    sqlite_store: SQLiteStore,
) -> None:
    """
    The hourly sweep of protocol objects reads only the objects of their
    types, and asks the queue and the sent records by key: it never scans
    a table, however many messages the store holds.
    """
    query, params = forget_delivered_query(["room-push", "subscription"], T0)

    def plan(conn: sqlite3.Connection) -> list[str]:
        rows = conn.execute("EXPLAIN QUERY PLAN " + query, params).fetchall()
        return [row[-1] for row in rows]

    steps = await sqlite_store.run_interaction(plan)
    searches = [step for step in steps if not step.startswith("CORRELATED")]
    assert len(searches) == 3
    assert all(step.startswith("SEARCH") for step in searches), steps
    assert "objects_type_seq" in searches[0]


def _refuse_inserts(path: Path, table: str) -> None:
    """
    Make every insert into C{table} fail, from another connection, so that
    a write that puts rows in several tables fails after its first.
    """
    conn = connect(path)
    try:
        conn.execute(
            f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_enqueue_is_one_transaction(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    """
    The object is written first; when the queue rows then fail, it is
    rolled back with them.
    """
    obj = message(1)
    _refuse_inserts(db_path, "queue")
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        await sqlite_store.enqueue(obj, [queued(obj)])
    assert await sqlite_store.has_object(obj.id) is False
    # Without deliveries there is nothing to refuse.
    await sqlite_store.enqueue(obj, [])
    assert await sqlite_store.has_object(obj.id) is True


@pytest_twisted.ensureDeferred
async def test_deliver_local_is_one_transaction(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    """
    The inbox entry is written first; when the object then fails, the
    entry is rolled back, so a retry is not taken for a replay.
    """
    obj = message(1)
    _refuse_inserts(db_path, "objects")
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        await sqlite_store.deliver_local(LOST, obj, False)
    assert await sqlite_store.inbox(LOST, 0, 10) == []
    conn = connect(db_path)
    try:
        conn.execute("DROP TRIGGER refuse_objects")
    finally:
        conn.close()
    seq = await sqlite_store.deliver_local(LOST, obj, False)
    assert await sqlite_store.inbox(LOST, 0, 10) == [(seq, obj)]


@pytest_twisted.ensureDeferred
async def test_acknowledged_delivery_writes_are_visible_to_other_process(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    obj = message(1)
    await sqlite_store.enqueue(obj, [queued(obj)])
    seq = await sqlite_store.deliver_local(LOST, obj, True)
    await sqlite_store.approve_sender(LOST, BOB)
    conn = connect(db_path)
    try:
        assert conn.execute("SELECT id FROM objects").fetchall() == [(obj.id,)]
        assert conn.execute(
            "SELECT object_id, domain, recipients FROM queue"
        ).fetchall() == [(obj.id, "lenore.org", f'["{LOST}"]')]
        assert conn.execute(
            "SELECT seq, recipient, object_id, sender, held FROM inbox"
        ).fetchall() == [(seq, LOST, obj.id, "edgar@poe.net", 1)]
        assert conn.execute("SELECT * FROM approved_senders").fetchall() == [
            (LOST, BOB)
        ]
    finally:
        conn.close()


# Threads


@pytest_twisted.ensureDeferred
async def test_work_runs_off_the_reactor_thread(sqlite_store: SQLiteStore) -> None:
    here = threading.get_ident()
    there = await sqlite_store.run_interaction(lambda conn: threading.get_ident())
    assert there != here
    again = await sqlite_store.run_interaction(lambda conn: threading.get_ident())
    assert again == there  # One dedicated thread.


@pytest_twisted.ensureDeferred
async def test_calls_return_before_the_work_is_done(sqlite_store: SQLiteStore) -> None:
    """
    A call returns an unfired Deferred: results come back through the
    reactor, which cannot run until this code yields.
    """
    put = sqlite_store.put_object(make(1))
    get = sqlite_store.get_object(make(1).id)
    assert not put.called
    assert not get.called
    # Calls run in the order they were made.
    assert await put is None
    assert await get == make(1)


@pytest_twisted.ensureDeferred
async def test_close_waits_for_queued_work(db_path: Path) -> None:
    s = SQLiteStore(db_path)
    await s.open()
    pool = s._pool
    puts = [s.put_object(make(n)) for n in range(20)]
    closed = s.close()
    assert all(not d.called for d in puts)
    await closed
    assert all(d.called for d in puts)
    for d in puts:
        assert await d is None
    assert pool is not None and not any(t.is_alive() for t in pool.threads)

    conn = connect(db_path)
    try:
        assert conn.execute("SELECT count(*) FROM objects").fetchone() == (20,)
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_close_during_open(db_path: Path) -> None:
    s = SQLiteStore(db_path)
    opened = s.open()
    closed = s.close()
    again = s.close()
    await opened
    await closed
    await again
    with pytest.raises(StoreUnavailable):
        await s.get_object(make(1).id)


@pytest_twisted.ensureDeferred
async def test_calls_while_opening_wait_for_open(db_path: Path) -> None:
    s = SQLiteStore(db_path)
    opened = s.open()
    put = s.put_object(make(1))
    get = s.get_object(make(1).id)
    try:
        assert await put is None
        assert await get == make(1)
        assert await opened is None
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_calls_while_opening_fail_if_open_fails(db_path: Path) -> None:
    conn = connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    s = SQLiteStore(db_path)
    opened = s.open()
    get = s.get_object(make(1).id)
    with pytest.raises(SchemaTooNew):
        await opened
    with pytest.raises(StoreUnavailable):
        await get


@pytest_twisted.ensureDeferred
async def test_calls_before_open_fail(db_path: Path) -> None:
    s = SQLiteStore(db_path)
    with pytest.raises(StoreUnavailable):
        await s.put_object(make(1))
    await s.close()
    assert not db_path.exists()


@pytest_twisted.ensureDeferred
async def test_open_twice_fails(sqlite_store: SQLiteStore) -> None:
    with pytest.raises(RuntimeError, match="open"):
        await sqlite_store.open()
    assert await sqlite_store.get_object(make(1).id) is None


class TriggerRecordingReactor:
    """
    The global reactor, except that system event triggers are recorded
    rather than added, so a test can fire the shutdown trigger without
    shutting the test run down.
    """

    def __init__(self) -> None:
        from twisted.internet import reactor

        self._reactor = reactor
        self.triggers: dict[object, tuple[str, str, object]] = {}

    def __getattr__(self, name: str) -> object:
        return getattr(self._reactor, name)

    def addSystemEventTrigger(self, phase, event, f, *args, **kwargs) -> object:
        handle = object()
        self.triggers[handle] = (phase, event, lambda: f(*args, **kwargs))
        return handle

    def removeSystemEventTrigger(self, handle: object) -> None:
        del self.triggers[handle]


@pytest_twisted.ensureDeferred
async def test_close_removes_shutdown_trigger(db_path: Path) -> None:
    reactor = TriggerRecordingReactor()
    s = SQLiteStore(db_path, reactor)
    await s.open()
    assert [(p, e) for p, e, _ in reactor.triggers.values()] == [("during", "shutdown")]
    await s.close()
    assert reactor.triggers == {}


@pytest_twisted.ensureDeferred
async def test_shutdown_closes_a_forgotten_store(db_path: Path) -> None:
    """
    A store left open when the reactor shuts down is closed then, after the
    calls already made, and its thread is stopped before the trigger
    returns: otherwise it would keep the process alive.
    """
    reactor = TriggerRecordingReactor()
    s = SQLiteStore(db_path, reactor)
    await s.open()
    pool = s._pool
    put = s.put_object(make(1))
    ((_, _, fire),) = reactor.triggers.values()
    fire()
    assert pool is not None and not any(t.is_alive() for t in pool.threads)
    with pytest.raises(StoreUnavailable):
        await s.get_object(make(1).id)
    assert await put is None
    await s.close()

    conn = connect(db_path)
    try:
        assert conn.execute("SELECT id FROM objects").fetchall() == [(make(1).id,)]
    finally:
        conn.close()


# Errors


@pytest_twisted.ensureDeferred
async def test_locked_file_is_temporary(db_path: Path) -> None:
    """
    Another process holding the write lock past the busy timeout makes a
    write fail with StoreUnavailable (451), and the store serves again
    once the lock is released.
    """
    s = SQLiteStore(db_path, busy_timeout=0.05)
    await s.open()
    other = connect(db_path)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable):
            await s.put_object(make(1))
        with pytest.raises(StoreUnavailable):
            await s.add_account(ALICE, "hash")
        # Readers are not blocked by a writer in WAL mode.
        assert await s.get_object(make(1).id) is None
        other.execute("ROLLBACK")

        await s.put_object(make(1))
        assert await s.get_object(make(1).id) == make(1)
    finally:
        other.close()
        await s.close()


@pytest_twisted.ensureDeferred
async def test_other_errors_pass_through(sqlite_store: SQLiteStore) -> None:
    """
    Only OperationalError means "try again later"; a bug in an interaction
    is reported as itself.
    """

    def broken(conn: sqlite3.Connection) -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await sqlite_store.run_interaction(broken)
    with pytest.raises(StoreUnavailable):
        await sqlite_store.run_interaction(
            lambda conn: conn.execute("SELECT * FROM no_such_table")
        )
    assert await sqlite_store.get_object(make(1).id) is None


# The memory store against the SQLite store's SQL


_ids = st.integers(0, 5).map(lambda n: make(n).id)
_operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            st.integers(0, 5),
            st.sampled_from([ALICE, BOB]),
            st.sampled_from(["post", "message"]),
            st.booleans(),
            st.binary(max_size=8),
            # Header values cannot hold line breaks.
            st.text(
                st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]),
                max_size=8,
            ),
        ),
        st.tuples(st.just("delete"), _ids),
        st.tuples(st.just("send"), st.integers(0, 5)),
        st.tuples(st.just("file"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("remove"), _ids),
    ),
    max_size=20,
)


def _filed(result):
    """
    A filing outcome as both stores must agree on it: sequence numbers
    only need to grow, so any number is "filed".
    """
    return "filed" if isinstance(result, int) else result


@settings(max_examples=50, deadline=None)
@given(
    operations=_operations,
    start=st.integers(0, 6),
    limit=st.integers(0, 6),
    type=st.sampled_from([None, "post", "message"]),
    owner=st.sampled_from([None, ALICE, BOB]),
    public_only=st.booleans(),
)
def test_sqlite_agrees_with_memory(
    operations, start, limit, type, owner, public_only
) -> None:
    """
    Any sequence of puts and deletes leaves both stores listing the same
    objects in the same order.

    The SQLite side runs the store's own statements on a plain connection
    to an in-memory database: the threads are tested above, and tests run
    on the reactor's greenlet, where a synchronous test cannot wait for a
    Deferred.
    """
    memory = MemoryStore()
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        upgrade_schema(conn, SCHEMA_STEPS)
        for op in operations:
            if op[0] == "put":
                _, n, who, kind, public, body, subject = op
                obj = make(n, who, kind, public, body, Subject=subject)
                assert fired_outcome(memory.put_object(obj)) == outcome(
                    _put_object, conn, _object_row(obj)
                )
            elif op[0] == "delete":
                assert fired(memory.delete_object(op[1])) == _delete_object(conn, op[1])
            elif op[0] == "send":
                obj = make(op[1], ALICE, "message", False, b"sent")
                assert fired_outcome(memory.enqueue(obj, [])) == outcome(
                    _enqueue, conn, _object_row(obj), [], None
                )
            elif op[0] == "file":
                obj = make(op[1], BOB, "message", False, b"filed")
                assert _filed(
                    fired_outcome(memory.deliver_local(ALICE, obj, op[2]))
                ) == _filed(
                    outcome(_deliver_local, conn, ALICE, _object_row(obj), BOB, op[2])
                )
            else:
                assert fired(memory.remove_from_inbox(ALICE, op[1])) == (
                    _remove_from_inbox(conn, ALICE, op[1])
                )
        expected = fired(memory.list_objects(start, limit, type, owner, public_only))
        query, params = listing_query(start, limit, type, owner, public_only)
        assert _list_objects(conn, query, params) == expected
        for summary in expected:
            assert _get_object(conn, summary.id) == fired(memory.get_object(summary.id))
        for n in range(6):
            object_id = make(n).id
            assert _read_object(conn, object_id, ALICE) == fired(
                memory.read_object(object_id, ALICE)
            )
        query, params = inbox_query(ALICE, 0, 100)
        assert [(obj.id, obj.body) for _, obj in _inbox(conn, query, params)] == [
            (obj.id, obj.body) for _, obj in fired(memory.inbox(ALICE, 0, 100))
        ]
    finally:
        conn.close()


# store_from_url


def test_url_memory() -> None:
    assert isinstance(store_from_url("memory:"), MemoryStore)


@pytest.mark.parametrize(
    "url, path",
    [
        ("sqlite:fmtp.db", "fmtp.db"),
        ("sqlite:fmtp-data/fmtp.db", "fmtp-data/fmtp.db"),
        ("sqlite:/var/lib/fmtp/fmtp.db", "/var/lib/fmtp/fmtp.db"),
        ("sqlite:~/fmtp.db", os.path.expanduser("~/fmtp.db")),
    ],
)
def test_url_sqlite(url: str, path: str) -> None:
    s = store_from_url(url)
    assert isinstance(s, SQLiteStore)
    assert s.path == Path(path)


@pytest_twisted.ensureDeferred
async def test_url_sqlite_relative_to_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = store_from_url("sqlite:fmtp-data/fmtp.db")
    await s.open()
    try:
        await s.put_object(make(1))
    finally:
        await s.close()
    assert (tmp_path / "fmtp-data" / "fmtp.db").is_file()


def test_url_passes_reactor() -> None:
    from twisted.internet import reactor

    assert store_from_url("sqlite:x.db", reactor)._reactor is reactor


@pytest.mark.parametrize(
    "url", ["postgresql://fmtp@localhost/fmtp", "postgres://localhost/fmtp"]
)
def test_url_postgresql_not_built(url: str) -> None:
    with pytest.raises(ValueError, match="PostgreSQL support is not built yet"):
        store_from_url(url)


@pytest.mark.parametrize(
    "url",
    ["", "memory", "memory://", "sqlite:", "sqlite::memory:", "mysql://x", "fmtp.db"],
)
def test_url_unknown(url: str) -> None:
    with pytest.raises(ValueError) as info:
        store_from_url(url)
    message = str(info.value)
    assert "memory:" in message
    assert "sqlite:" in message


@pytest.mark.parametrize("url", ["sqlite:///var/lib/fmtp.db", "sqlite://x/fmtp.db"])
def test_url_sqlite_double_slash_refused(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:PATH|sqlite:/var/lib"):
        store_from_url(url)


def test_memory_store_reopens_with_data() -> None:
    """
    The memory store keeps its data over close and open, as a file does.
    """
    s = MemoryStore()
    s.put_object(FMTPObject(ALICE, "user"))
    s.close()
    s.open()
    assert fired(s.get_object(ALICE)) == FMTPObject(ALICE, "user")


@pytest_twisted.ensureDeferred
async def test_upgrade_from_version_eight_keeps_bridges_without_sources(
    db_path: Path,
) -> None:
    """
    A bridge added under schema version 8 has, after the upgrade, no
    source network and the default rate: its datagrams stay under the
    per-source limit until the admin gives it sources.
    """
    conn = connect(db_path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        assert upgrade_schema(conn, SCHEMA_STEPS[:8]) == 0
        conn.execute(
            "INSERT INTO bridges (name, users, secret, created)"
            " VALUES ('isp', '*@poe.net', ?, 1.5)",
            ("ab" * 32,),
        )
    finally:
        conn.close()
    s = SQLiteStore(db_path)
    await s.open()
    try:
        assert await s.get_bridge("isp") == Bridge(
            "isp", "*@poe.net", "ab" * 32, 1.5, (), DEFAULT_BRIDGE_RATE
        )
    finally:
        await s.close()
