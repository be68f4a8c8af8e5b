"""
Group commit: the writes that wait while a commit is on its way to disk
are committed together, in one transaction with one C{fsync}.

An SQLite commit with C{synchronous=FULL} costs one C{fsync}, far more
than the statements it makes durable.  Committed one by one, a burst of
messages spends nearly all its time waiting for the disk, and each write
waits for every commit before it.  The idea is the one Postgres and
Synapse's event persister use: while one transaction is being committed,
the writes that arrive queue up, and the next transaction takes them all,
so the cost of the C{fsync} is shared and the writes per second grow with
the load instead of being bound by the disk's latency.  Nothing is
promised earlier: every write's L{Deferred} fires only once the
transaction that holds it is committed.

A batch must not make writes depend on each other.  Each write runs in
its own C{SAVEPOINT} inside the batch's transaction: a write that raises
is rolled back to its savepoint and fails alone, the others commit.  If
the transaction itself cannot be committed (disk full, an I/O error), or
a failure broke the transaction so that a savepoint cannot be rolled back
to, it is rolled back whole and its writes are tried again one per
transaction, as they were before there were batches: each then succeeds
or fails on its own.  A write function must therefore be safe to run
again after a rollback, which every function of a connection is (it
touches nothing but the connection).

Batches are taken from the L{fmtp.fairness.FairQueue}, so they follow the
principals' turns: a batch is the next writes in fair order, at most
L{MAX_BATCH}, and a flooding client fills a batch only with the turns it
would have had anyway.  A read is never put in a batch: it runs on its own
in autocommit mode when its turn comes, after the batch before it has
committed, so it never sees a write that might still be rolled back and
never waits for a commit that is not ahead of it in line.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from fmtp.errors import StoreUnavailable
from fmtp.fairness import FairScheduler

#: The most writes committed in one transaction: enough to share an
#: C{fsync} among many, few enough that a batch does not hold the write
#: lock (and the reads behind it) for long.
MAX_BATCH = 64


class BatchConnection(sqlite3.Connection):
    """
    The store's connection, which knows whether it is running a batch:
    L{fmtp.store.sql.engine.transaction} then makes a savepoint instead of
    beginning a transaction.
    """

    in_batch = False


class GroupCommitScheduler(FairScheduler):
    """
    A L{FairScheduler} that runs reads one at a time, as it does, and
    writes in batches, each batch one transaction (see the module's
    docstring).

    @param connection: returns the connection to write with (on the
        worker thread), or L{None} if the store is not open.
    @param max_batch: the most writes in one transaction.
    @ivar commits: how many batch transactions were committed, for
        statistics.
    """

    def __init__(
        self,
        in_thread: Callable[[Callable[[], None]], object],
        from_thread: Callable[..., object],
        connection: Callable[[], sqlite3.Connection | None],
        max_batch: int = MAX_BATCH,
    ) -> None:
        super().__init__(in_thread, from_thread)
        self._connection = connection
        self._max_batch = max_batch
        self.commits = 0

    def run_write(
        self, principal: object, f: Callable[..., Any], *args: Any
    ) -> Deferred[Any]:
        """
        Call C{f(connection, *args)} on the worker thread in C{principal}'s
        turn, in a transaction it may share with other writes.

        @return: a L{Deferred} that fires, once the transaction is
            committed, with what C{f} returns, or fails with what it
            raised (and then none of its statements were kept), or with
            what made the commit fail.
        """
        return self._put(principal, f, args, True)

    def _run_turn(self) -> bool:
        with self._lock:
            if not self._queue:
                self._working = False
                return False
            _, _, _, write = self._queue.peek()
            if not write:
                batch = None
            else:
                batch = [self._queue.take()]
                while (
                    len(batch) < self._max_batch
                    and self._queue
                    and self._queue.peek()[3]
                ):
                    batch.append(self._queue.take())
        if batch is None:
            return super()._run_turn()
        self._commit(batch)
        return True

    def _commit(
        self, batch: list[tuple[Callable[..., Any], tuple, Deferred, bool]]
    ) -> None:
        """
        On the worker thread: run C{batch} in one transaction, a savepoint
        each, commit, and deliver every result; if the transaction fails
        as a whole, run each write again in a transaction of its own.
        """
        conn = self._connection()
        if conn is None:
            self._deliver(
                batch, [Failure(StoreUnavailable("store is not open"))] * len(batch)
            )
            return
        results: list[Any] = []
        try:
            if conn.in_transaction:
                # A rollback that failed earlier left a transaction open.
                conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            conn.in_batch = True
            try:
                for f, args, _, _ in batch:
                    conn.execute("SAVEPOINT write")
                    try:
                        result = f(conn, *args)
                    except BaseException:
                        results.append(Failure())
                        conn.execute("ROLLBACK TO write")
                    else:
                        results.append(result)
                    conn.execute("RELEASE write")
            finally:
                conn.in_batch = False
            conn.execute("COMMIT")
        except BaseException:
            failure = Failure()
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    # The next batch retries the rollback.
                    pass
            if len(batch) > 1:
                for call in batch:
                    self._commit([call])
            else:
                # The write's own failure, if it had one, says more than
                # the savepoint that could not be rolled back to.
                own = results[0] if results else None
                self._deliver(batch, [own if isinstance(own, Failure) else failure])
            return
        self.commits += 1
        self._deliver(batch, results)

    def _deliver(self, batch: list[tuple[Any, ...]], results: list[Any]) -> None:
        for (_, _, d, _), result in zip(batch, results, strict=True):
            self._from_thread(d.callback, result)
