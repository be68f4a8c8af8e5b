"""
L{fmtp.store.sql.groupcommit}: writes that wait while a commit is in
flight are committed together, each still failing alone, and none is
answered before it is durable.  Commits are counted with SQLite's trace
hook on a real file, never timed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList
from twisted.trial.unittest import SynchronousTestCase

from fmtp.fairness import current_principal
from fmtp.store.sql.groupcommit import BatchConnection, GroupCommitScheduler
from fmtp.store.sqlite import SQLiteStore
from tests.conformance.object_store import make
from tests.test_fairness import FakeThread


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "fmtp.db"


async def traced(store: SQLiteStore) -> list[str]:
    statements: list[str] = []
    await store.run_query(lambda conn: conn.set_trace_callback(statements.append))
    return statements


def stored_ids(path: Path) -> set[str]:
    """
    The ids in the file, read by another connection: what is durable.
    """
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM objects")}
    finally:
        conn.close()


def with_principal(principal: object, call):
    token = current_principal.set(principal)
    try:
        return call()
    finally:
        current_principal.reset(token)


@pytest_twisted.ensureDeferred
async def test_concurrent_writes_share_commits(db_path: Path) -> None:
    """
    Fifty writes made at once, by ten clients, take fewer commits than
    writes, and each is in the file when its Deferred fires.
    """
    store = SQLiteStore(db_path)
    await store.open()
    try:
        statements = await traced(store)
        objects = [make(n) for n in range(50)]
        durable_when_answered: list[bool] = []

        def check(_: object, obj) -> None:
            durable_when_answered.append(obj.id in stored_ids(db_path))

        calls = []
        for n, obj in enumerate(objects):
            d = with_principal(f"client{n % 10}", lambda o=obj: store.put_object(o))
            d.addCallback(check, obj)
            calls.append(d)
        results = await DeferredList(calls, fireOnOneErrback=True)
        assert all(ok for ok, _ in results)
        commits = statements.count("COMMIT")
        assert 1 <= commits < len(objects)
        assert durable_when_answered == [True] * len(objects)
        assert stored_ids(db_path) == {obj.id for obj in objects}
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_a_failing_write_fails_alone(db_path: Path) -> None:
    """
    A write that raises in the middle of a batch is rolled back, its own
    statements too; the writes before and after it commit.
    """
    store = SQLiteStore(db_path)
    await store.open()
    try:
        statements = await traced(store)
        bad = make(99)

        def half_then_fail(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO objects (id, type, owner, public, digest, properties, "
                "body) VALUES (?, 'post', ?, 1, '', '{}', x'')",
                (bad.id, bad.owner),
            )
            raise KeyError("bug")

        before = [store.put_object(make(n)) for n in range(3)]
        failing = store.run_interaction(half_then_fail)
        after = [store.put_object(make(n)) for n in range(3, 6)]
        results = await DeferredList([*before, failing, *after], consumeErrors=True)
        oks = [ok for ok, _ in results]
        assert oks == [True] * 3 + [False] + [True] * 3
        assert results[3][1].check(KeyError)
        assert stored_ids(db_path) == {make(n).id for n in range(6)}
        # Shared: the failure did not cost the others their batch.
        assert statements.count("COMMIT") < 7
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_a_failed_commit_retries_each_write_alone(db_path: Path) -> None:
    """
    When COMMIT itself fails (here a deferred foreign key, checked only at
    commit), the batch is rolled back and each write is tried again in a
    transaction of its own: the one that broke the commit fails, the
    others are durable.
    """
    store = SQLiteStore(db_path)
    await store.open()
    try:

        def schema(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            conn.execute(
                "CREATE TABLE child (parent INTEGER REFERENCES parent (id) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
            conn.execute("INSERT INTO parent VALUES (1)")

        await store.run_interaction(schema)
        statements = await traced(store)

        def child(conn: sqlite3.Connection, parent: int) -> None:
            conn.execute("INSERT INTO child VALUES (?)", (parent,))

        calls = [store.run_interaction(child, p) for p in (1, 1, 7, 1)]
        results = await DeferredList(calls, consumeErrors=True)
        assert [ok for ok, _ in results] == [True, True, False, True]
        assert results[2][1].check(sqlite3.IntegrityError)
        rows = await store.run_query(
            lambda conn: conn.execute("SELECT count(*) FROM child").fetchone()[0]
        )
        assert rows == 3
        # The batch's COMMIT failed and was rolled back; the retries
        # committed one by one.
        assert "ROLLBACK" in statements
    finally:
        await store.close()


class GroupCommitSchedulerTests(SynchronousTestCase):
    """
    Batches are taken in the principals' fair order, bounded, and a read
    is never in a batch.
    """

    def setUp(self) -> None:
        self.thread = FakeThread()
        self.conn = sqlite3.connect(
            ":memory:", isolation_level=None, factory=BatchConnection
        )
        self.addCleanup(self.conn.close)
        self.conn.execute("CREATE TABLE log (name TEXT)")
        self.statements: list[str] = []
        self.conn.set_trace_callback(self.statements.append)
        self.scheduler = GroupCommitScheduler(
            self.thread.in_thread,
            self.thread.from_thread,
            lambda: self.conn,
            max_batch=4,
        )

    def write(self, principal: str, name: str):
        def insert(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT INTO log VALUES (?)", (name,))
            return name

        return self.scheduler.run_write(principal, insert)

    def names(self) -> list[str]:
        return [name for (name,) in self.conn.execute("SELECT name FROM log")]

    def test_batches_in_fair_order_bounded(self) -> None:
        flood = [self.write("flooder", f"f{i}") for i in range(8)]
        mine = self.write("victim", "v")
        self.thread.run_thread()
        self.assertEqual(
            self.names(), ["f0", "v", "f1", "f2", "f3", "f4", "f5", "f6", "f7"]
        )
        # Nine writes, at most four a batch: three commits.
        self.assertEqual(self.scheduler.commits, 3)
        self.assertEqual(self.statements.count("COMMIT"), 3)
        self.assertNoResult(mine)
        self.thread.run_reactor()
        self.assertEqual(self.successResultOf(mine), "v")
        self.assertEqual(self.successResultOf(flood[-1]), "f7")

    def test_a_read_ends_a_batch_and_runs_alone(self) -> None:
        self.write("a", "w1")
        read = self.scheduler.run(
            "a", lambda: self.conn.execute("SELECT count(*) FROM log").fetchone()[0]
        )
        self.write("a", "w2")
        self.thread.run_thread()
        self.thread.run_reactor()
        # The read saw the first write committed, and not the second.
        self.assertEqual(self.successResultOf(read), 1)
        self.assertEqual(self.scheduler.commits, 2)

    def test_no_connection(self) -> None:
        from fmtp.errors import StoreUnavailable

        scheduler = GroupCommitScheduler(
            self.thread.in_thread, self.thread.from_thread, lambda: None
        )
        d = scheduler.run_write(None, lambda conn: None)
        self.thread.run_thread()
        self.thread.run_reactor()
        self.failureResultOf(d, StoreUnavailable)
