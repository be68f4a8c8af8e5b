"""
The SQLite engine every SQL store module runs on: one thread, one
connection, transactions, the store's lifecycle and schema upgrades.

SQLite is the default store: it needs no server, and one file is easy to
back up.  Its Python binding blocks, so every call runs on one dedicated
thread with one connection made on that thread (the pattern of
L{twisted.enterprise.adbapi} and Synapse's database pool, with a pool of
exactly one): the reactor never waits for the disk, and a single writer
never contends with itself for SQLite's database lock.

The file can still be written by another process at the same time
(C{fmtp adduser} adds an account while the server runs), which is why the
connection uses WAL mode, so readers and the writer do not block each
other, and a busy timeout, so a short lock held by the other process is
waited for rather than reported as an error.

The engine knows no table: each feature's SQL lives in its own module of
L{fmtp.store.sql} as functions of a connection and a mixin of store
methods over L{SQLiteEngine.run_interaction}, as Synapse's storage has one
mixin per feature over one database pool.  The schema is versioned with
C{PRAGMA user_version}; the ordered upgrade steps are in
L{fmtp.store.sql.schema}, and L{upgrade_schema} applies them.
"""

from __future__ import annotations

import enum
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from fmtp.errors import StoreUnavailable
from fmtp.fairness import FairScheduler, current_principal

_T = TypeVar("_T")

#: One schema upgrade step: it runs inside a transaction that also records
#: the new version, so a step that fails leaves the file at the old version.
SchemaStep = Callable[[sqlite3.Connection], None]

#: SQLite integers are signed 64-bit; a bigger C{LIMIT} would overflow.
_MAX_SQLITE_INT = 2**63 - 1


class SchemaTooNew(Exception):
    """
    The file was written by a newer fmtp whose schema this code does not
    know.

    Opening it anyway could corrupt data the newer code relies on, so the
    store refuses; the operator upgrades fmtp or points it at another file.
    """


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """
    Run a block of statements as one write transaction.

    The connection is in autocommit mode (C{isolation_level=None}) so that
    transactions are begun here, explicitly, rather than implicitly by the
    C{sqlite3} module.  C{BEGIN IMMEDIATE} takes the write lock at once:
    with a deferred transaction a reader that later writes can fail with
    C{SQLITE_BUSY} without the busy timeout ever applying, if another
    process wrote in between.

    A failed C{COMMIT} (disk full, lock timeout) leaves the transaction
    open, so it is rolled back here too; otherwise every later statement on
    the connection would fail.
    """
    if conn.in_transaction:
        # A rollback that failed earlier left a transaction open.
        conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                # Report the error that made us roll back; the next
                # transaction retries the rollback.
                pass
        raise


def schema_version(conn: sqlite3.Connection) -> int:
    """
    The schema version recorded in the file (0 for a new, empty file).
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


def _refuse_newer(found: int, known: int, path: object) -> None:
    if found > known:
        raise SchemaTooNew(
            f"{path} has fmtp schema version {found}, but this fmtp knows "
            f"versions up to {known} only: the file was written by a newer "
            "fmtp.  Upgrade fmtp, or use another database file."
        )


def upgrade_schema(
    conn: sqlite3.Connection,
    steps: Sequence[SchemaStep],
    path: object = "the database",
) -> int:
    """
    Bring the schema up to C{len(steps)}, one step per transaction.

    Each step runs in its own transaction with the C{user_version} it
    reaches (the header write is part of the transaction), so an
    interrupted upgrade leaves the file at the last completed version and
    the next open resumes from there.  The version is re-read under the
    write lock because another process may have upgraded the file since it
    was first read.

    @return: the version the file had before.
    @raise SchemaTooNew: if the file's version is newer than C{len(steps)}.
    """
    known = len(steps)
    before = schema_version(conn)
    _refuse_newer(before, known, path)
    version = before
    while version < known:
        with transaction(conn):
            version = schema_version(conn)
            _refuse_newer(version, known, path)
            if version == known:
                break
            steps[version](conn)
            version += 1
            # PRAGMA takes no parameters; the value is an int we computed.
            conn.execute(f"PRAGMA user_version = {version:d}")
    return before


class _State(enum.Enum):
    NEW = "new"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class SQLiteEngine:
    """
    The thread, the connection and the lifecycle of a store in an SQLite
    file: what every feature's mixin (L{fmtp.store.sql.objects},
    L{fmtp.store.sql.queue}...) runs its SQL through, with
    L{run_interaction}.

    All SQLite work runs on one thread of a private L{ThreadPool}
    (C{min = max = 1}), started by L{open} and stopped by L{close}, with
    one connection made on that thread.  One thread is enough: SQLite
    allows one writer at a time anyway, and it makes the order of one
    client's calls the order of execution, so a C{get_object} issued after
    a C{put_object} sees it (clients take turns: L{run_interaction}).
    The connection's C{check_same_thread} is left on, so a bug that
    touched it from elsewhere fails loudly.

    Each write is one statement in autocommit mode, or one L{transaction}
    when it takes several, with C{synchronous=FULL}: when its L{Deferred}
    fires the rows are on disk, which is what the interfaces require
    before a 2xx reply.

    A L{sqlite3.OperationalError} after opening (disk full, disk I/O error,
    the file locked by another process for longer than the busy timeout)
    is logged and becomes L{StoreUnavailable}, so the protocol answers 451
    (try again later) and the server keeps serving.  Errors while opening
    are not translated: they are the operator's to read.

    @ivar path: the database file.
    @cvar schema_steps: the upgrade steps of the schema the store's
        features use (L{fmtp.store.sql.schema.SCHEMA_STEPS}), applied by
        L{open}.
    """

    log = Logger()
    schema_steps: Sequence[SchemaStep] = ()

    def __init__(
        self,
        path: str | os.PathLike[str],
        reactor: Any = None,
        *,
        busy_timeout: float = 5.0,
    ) -> None:
        """
        @param path: the database file; it and its parent directory are
            created if missing.
        @param reactor: the reactor to deliver results on (the global one
            if L{None}); it must provide C{IReactorFromThreads},
            C{IReactorCore} and C{IReactorTime}.
        @param busy_timeout: how many seconds a statement waits for a lock
            held by another process before failing with
            L{StoreUnavailable}.
        """
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.path = Path(path)
        self._reactor = reactor
        self._busy_timeout_ms = max(0, int(busy_timeout * 1000))
        self._state = _State.NEW
        self._pool: ThreadPool | None = None
        self._shutdown_trigger: object | None = None
        self._close_waiters: list[Deferred[None]] = []
        # The thread takes calls in turns by principal (fmtp.fairness), so
        # one busy client cannot queue ahead of the others.
        self._turns = FairScheduler(
            lambda work: self._pool.callInThread(work), self._reactor.callFromThread
        )
        # Touched only on the pool's thread.
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"<{name} {str(self.path)!r} {self._state.value}>"

    # Lifecycle

    def open(self) -> Deferred[None]:
        """
        Start the store's thread, connect, and create or upgrade the schema.

        A store may be opened again after L{close}.  If its owner has not
        closed it by the time the reactor shuts down, a shutdown trigger
        does (see L{_close_at_shutdown}).

        @return: a L{Deferred} that fires with L{None} when the store can be
            used, or fails with L{SchemaTooNew} or the L{sqlite3.Error}
            that prevented opening (the store is then closed again).
        """
        if self._state not in (_State.NEW, _State.CLOSED):
            return fail(
                RuntimeError(f"cannot open {self!r}: it is {self._state.value}")
            )
        self._state = _State.OPENING
        pool = ThreadPool(minthreads=1, maxthreads=1, name="fmtp-sqlite")
        pool.start()
        self._pool = pool
        self._shutdown_trigger = self._reactor.addSystemEventTrigger(
            "during", "shutdown", self._close_at_shutdown
        )
        d = deferToThreadPool(self._reactor, pool, self._connect)
        d.addCallbacks(self._opened, self._open_failed)
        return d

    def _connect(self) -> tuple[int, str]:
        """
        On the pool thread: make the connection and prepare the schema.

        The version is checked before anything else so that a file from a
        newer fmtp is left exactly as it was found.

        @return: the schema version found and the journal mode in effect.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms:d}")
            _refuse_newer(schema_version(conn), len(self.schema_steps), self.path)
            (journal_mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            before = upgrade_schema(conn, self.schema_steps, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return before, str(journal_mode).lower()

    def _opened(self, result: tuple[int, str]) -> None:
        before, journal_mode = result
        version = len(self.schema_steps)
        if journal_mode != "wal":
            # WAL needs shared memory, which some network file systems
            # lack; the store still works, but readers and writers in other
            # processes then block each other.
            self.log.warn(
                "SQLite store {path} is in journal mode {mode}, not WAL",
                path=str(self.path),
                mode=journal_mode,
            )
        if before != version:
            self.log.info(
                "Upgraded the schema of SQLite store {path} from version "
                "{before} to {after}",
                path=str(self.path),
                before=before,
                after=version,
            )
        self.log.info(
            "Opened SQLite store {path} (schema version {version})",
            path=str(self.path),
            version=version,
        )
        if self._state is _State.OPENING:
            self._state = _State.OPEN

    def _open_failed(self, failure: Failure) -> Deferred[None] | Failure:
        """
        Close the store, then report the failure.

        Closing goes through the thread like any call, so the calls queued
        behind the open run first (and fail: there is no connection) rather
        than being dropped with their Deferreds never fired.  If L{close}
        was called meanwhile, it is already doing this.
        """
        if self._state is not _State.OPENING:
            return failure
        closed = self.close()
        closed.addCallback(lambda _: failure)
        return closed

    def close(self) -> Deferred[None]:
        """
        Finish the calls already made, close the connection and stop the
        thread.

        Calls made after this fail with L{StoreUnavailable}.  Closing a
        store that is not open does nothing.

        @return: a L{Deferred} that fires with L{None} once the thread has
            stopped.
        """
        if self._state in (_State.NEW, _State.CLOSED):
            return succeed(None)
        if self._state is _State.CLOSING:
            waiter: Deferred[None] = Deferred()
            self._close_waiters.append(waiter)
            return waiter
        self._state = _State.CLOSING
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        assert self._pool is not None
        # After every call already made, those waiting their turn too.
        d = self._turns.when_idle()
        d.addCallback(
            lambda _: deferToThreadPool(self._reactor, self._pool, self._disconnect)
        )
        d.addBoth(self._closed)
        return d

    def _close_at_shutdown(self) -> None:
        """
        Close a store its owner left open, as the reactor shuts down.

        Its thread is not a daemon (a write must not be cut off), so it
        would keep the process alive.  This runs in the C{during} phase,
        after the owner's services have stopped in the C{before} phase, and
        is synchronous, as L{twisted.enterprise.adbapi} is there, because
        only C{before} triggers can delay shutdown with a L{Deferred}: the
        disconnect is queued behind the calls already made and the reactor
        thread waits for the pool's thread to finish them.  Their results
        may never be delivered; the writes among them are committed.
        """
        # The trigger is being fired, so it can no longer be removed.
        self._shutdown_trigger = None
        if self._state in (_State.NEW, _State.CLOSED):
            return
        self.log.warn(
            "SQLite store {path} was still open at shutdown; closing it",
            path=str(self.path),
        )
        self._state = _State.CLOSING
        assert self._pool is not None
        self._pool.callInThread(self._disconnect)
        self._stop()
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _closed(self, result: None | Failure) -> None:
        self._stop()
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        if isinstance(result, Failure):
            self.log.failure(
                "Error closing SQLite store {path}",
                result,
                level=LogLevel.error,
                path=str(self.path),
            )
        return None

    def _stop(self) -> None:
        """
        Stop the pool's thread and forget it.

        L{ThreadPool.stop} joins the thread; it is idle by now (its last
        call has delivered its result), so the join is immediate.
        """
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
        self._state = _State.CLOSED

    # Running SQL

    def run_interaction(
        self,
        func: Callable[..., _T],
        *args: Any,
        **kwargs: Any,
    ) -> Deferred[_T]:
        """
        Call C{func(connection, *args, **kwargs)} on the store's thread.

        This is how every method of the store reaches SQLite, and how code
        extending the store (and tests) can: C{func} may run several
        statements, in a L{transaction} if they must be atomic.  It must not
        keep the connection.

        A call made while the store is opening waits for the open to
        finish (the thread runs calls in order), so a server that starts
        listening before its store is open answers its first requests late
        rather than with 451; if the open fails, so do they.

        Calls reach the thread in turns, one principal after another
        (L{fmtp.fairness.current_principal}: whom the request being
        answered is for), and in order within each: a client's read sees
        its own earlier writes, and a client with many calls waiting
        delays the others by at most one of its calls each turn.

        @return: a L{Deferred} that fires with C{func}'s result, or fails
            with its exception, except that L{sqlite3.OperationalError} is
            logged and becomes L{StoreUnavailable}.  Fails with
            L{StoreUnavailable} if the store is neither open nor opening.
        """
        if self._state not in (_State.OPENING, _State.OPEN):
            return fail(StoreUnavailable(f"store is {self._state.value}"))
        assert self._pool is not None
        d = self._turns.run(
            current_principal.get(), self._call_with_connection, func, args, kwargs
        )
        d.addErrback(self._operational_error, func)
        return d

    def run_checked(
        self,
        check: Callable[[], object],
        func: Callable[..., _T],
        *args: Any,
    ) -> Deferred[_T]:
        """
        Call C{check()} here, then L{run_interaction} C{func(connection,
        *args)}: arguments are checked on the caller's thread, so a bad one
        fails at once without taking a turn on the store's thread.

        @return: as L{run_interaction}, or a failed L{Deferred} with the
            L{ValueError} that C{check} raised.
        """
        try:
            check()
        except ValueError as e:
            return fail(e)
        return self.run_interaction(func, *args)

    def _call_with_connection(
        self,
        func: Callable[..., _T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> _T:
        conn = self._conn
        if conn is None:
            # The open failed, or (a bug) a call outlived close().
            raise StoreUnavailable("store is not open")
        return func(conn, *args, **kwargs)

    def _operational_error(self, failure: Failure, func: Callable[..., Any]) -> Any:
        failure.trap(sqlite3.OperationalError)
        self.log.failure(
            "SQLite store {path}: {operation} failed; answering 'try again later'",
            failure,
            level=LogLevel.error,
            path=str(self.path),
            operation=getattr(func, "__name__", repr(func)).lstrip("_"),
        )
        raise StoreUnavailable() from failure.value
