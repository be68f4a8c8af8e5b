"""
A store in one SQLite file.

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

The schema is versioned with C{PRAGMA user_version}.  L{SCHEMA_STEPS} lists
the upgrade steps in order; step N takes the schema from version N-1 to N.
A later change to the schema appends a step and never edits an old one, so
a file written by any earlier fmtp is brought up to date when opened.
"""

from __future__ import annotations

import enum
import json
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
from zope.interface import implementer

from fmtp.delivery import (
    QueuedDelivery,
    SendKey,
    SendRecord,
    StoredObject,
    sender_of,
)
from fmtp.errors import AccountExists, ObjectSealed, SendKeyUsed, StoreUnavailable
from fmtp.fairness import FairScheduler, current_principal
from fmtp.interfaces import IAccountStore, IDeliveryStore, IObjectStore
from fmtp.objects import FMTPObject, ObjectSummary, owner_of
from fmtp.store.checks import check_counts, check_deliveries, check_page

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


def _execute_all(conn: sqlite3.Connection, statements: Sequence[str]) -> None:
    """
    Run each statement in turn.

    Not L{sqlite3.Connection.executescript}: it commits any open
    transaction first, which would break the one-transaction-per-step
    promise of L{upgrade_schema}.
    """
    for statement in statements:
        conn.execute(statement)


def _v1_objects_and_accounts(conn: sqlite3.Connection) -> None:
    """
    Version 1: objects and accounts.

    C{objects.seq} orders listings by first storage: an upsert keeps it, and
    C{AUTOINCREMENT} never reuses the number of a deleted row, so a listing
    position (and any future paging cursor) always means the same place.
    C{owner}, C{public} and C{digest} are derived from the object but kept
    in columns so that listings filter and summarize without decoding
    properties or reading bodies.

    Each listing index ends in C{seq} so that a filtered listing is read
    in order straight from the index, with no sort.  C{public} is left as
    a residual filter: most listings ask for public objects only, so an
    index on it would select little.
    """
    _execute_all(
        conn,
        [
            """
            CREATE TABLE objects (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                owner TEXT NOT NULL,
                public INTEGER NOT NULL CHECK (public IN (0, 1)),
                digest TEXT NOT NULL,
                properties TEXT NOT NULL,
                body BLOB NOT NULL
            )
            """,
            "CREATE INDEX objects_type_seq ON objects (type, seq)",
            "CREATE INDEX objects_owner_seq ON objects (owner, seq)",
            "CREATE INDEX objects_owner_type_seq ON objects (owner, type, seq)",
            """
            CREATE TABLE accounts (
                address TEXT PRIMARY KEY NOT NULL,
                password_hash TEXT NOT NULL,
                created INTEGER NOT NULL
            )
            """,
        ],
    )


def _v2_delivery(conn: sqlite3.Connection) -> None:
    """
    Version 2: the outbound queue, inboxes and approved senders
    (L{fmtp.interfaces.IDeliveryStore}).

    C{queue} has one row per object and destination domain; the object
    itself stays in C{objects}.  Its recipients are a JSON list, since they
    are only ever read together.  C{queue_due} serves both the due batch
    and the earliest due time in order, with no sort (its tail is the tie
    order); C{queue_domain} serves a domain's whole queue, oldest first.

    C{inbox.seq} is the order of arrival and the device's paging cursor;
    C{AUTOINCREMENT} makes it grow across recipients and never reuse the
    number of a dropped entry, so a cursor always means the same place.
    C{sender} is copied from the object (L{fmtp.delivery.sender_of}) so the
    confirm policy's per-sender questions need no JSON decoding.  There is
    no foreign key to C{objects}: an entry outlives a deleted object, to
    keep de-duplicating its id.  C{inbox_recipient_held_seq} reads a
    user's unheld (or held) entries in order straight from the index.
    """
    _execute_all(
        conn,
        [
            """
            CREATE TABLE queue (
                object_id TEXT NOT NULL,
                domain TEXT NOT NULL,
                recipients TEXT NOT NULL,
                created REAL NOT NULL,
                attempts INTEGER NOT NULL,
                next_attempt REAL NOT NULL,
                last_error TEXT,
                PRIMARY KEY (object_id, domain)
            )
            """,
            "CREATE INDEX queue_due ON queue (next_attempt, object_id, domain)",
            "CREATE INDEX queue_domain ON queue (domain, created, object_id)",
            """
            CREATE TABLE inbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                recipient TEXT NOT NULL,
                object_id TEXT NOT NULL,
                sender TEXT NOT NULL,
                held INTEGER NOT NULL CHECK (held IN (0, 1)),
                UNIQUE (recipient, object_id)
            )
            """,
            "CREATE INDEX inbox_recipient_held_seq ON inbox (recipient, held, seq)",
            """
            CREATE TABLE approved_senders (
                recipient TEXT NOT NULL,
                sender TEXT NOT NULL,
                PRIMARY KEY (recipient, sender)
            )
            """,
        ],
    )


def _v3_sealing_and_sending(conn: sqlite3.Connection) -> None:
    """
    Version 3: who holds what (DESIGN decision 15), and what was sent.

    C{objects.sealed} marks an object sent or filed for a recipient: it
    never changes again.  C{objects.removed} marks a sealed object its
    owner deleted: hidden from the owner and listings, kept for those who
    hold it.  Objects already queued or filed are sealed by this step.
    C{inbox.removed} marks an entry its recipient removed, kept so that a
    replayed id is not filed again.

    C{sent} records each object queued for a domain, with its digest, for
    as long as the countersign may be asked about it (C{sent_created}
    serves the clean-up); rows for what is queued now are made from the
    queue, so CONFIRM answers for them after the upgrade too.
    C{send_keys} remembers each C{Idempotency-Key} with the message it
    sent.
    """
    _execute_all(
        conn,
        [
            "ALTER TABLE objects ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE objects ADD COLUMN removed INTEGER NOT NULL DEFAULT 0",
            """
            UPDATE objects SET sealed = 1
            WHERE id IN (SELECT object_id FROM inbox)
               OR id IN (SELECT object_id FROM queue)
            """,
            "ALTER TABLE inbox ADD COLUMN removed INTEGER NOT NULL DEFAULT 0",
            """
            CREATE TABLE sent (
                object_id TEXT NOT NULL,
                domain TEXT NOT NULL,
                digest TEXT NOT NULL,
                created REAL NOT NULL,
                PRIMARY KEY (object_id, domain)
            )
            """,
            "CREATE INDEX sent_created ON sent (created)",
            """
            INSERT INTO sent (object_id, domain, digest, created)
            SELECT queue.object_id, queue.domain, objects.digest, queue.created
            FROM queue JOIN objects ON objects.id = queue.object_id
            """,
            """
            CREATE TABLE send_keys (
                sender TEXT NOT NULL,
                key TEXT NOT NULL,
                request_digest TEXT NOT NULL,
                object_id TEXT NOT NULL,
                results TEXT,
                created REAL NOT NULL,
                PRIMARY KEY (sender, key)
            )
            """,
            "CREATE INDEX send_keys_created ON send_keys (created)",
        ],
    )


#: The upgrade steps, in order: C{SCHEMA_STEPS[N - 1]} takes a file from
#: version N-1 to N.  Append new steps; never change a released one.
SCHEMA_STEPS: Sequence[SchemaStep] = (
    _v1_objects_and_accounts,
    _v2_delivery,
    _v3_sealing_and_sending,
)

#: The schema version this code writes.
SCHEMA_VERSION = len(SCHEMA_STEPS)


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
    steps: Sequence[SchemaStep] = SCHEMA_STEPS,
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


def _object_row(obj: FMTPObject) -> tuple[Any, ...]:
    """
    The C{objects} row for C{obj}, computed when C{put_object} is called.

    Computing it on the caller's thread snapshots the object: a caller
    that changes C{obj} after C{put_object} returns does not change what
    is stored.  Properties are stored as JSON with non-ASCII escaped, so
    any Python string (even one SQLite's UTF-8 text could not hold) round
    trips.

    @raise fmtp.errors.InvalidObjectId: if the id names no owner.
    """
    return (
        obj.id,
        obj.type,
        owner_of(obj.id),
        1 if obj.public else 0,
        obj.digest(),
        json.dumps(dict(obj.properties), separators=(",", ":")),
        bytes(obj.body),
    )


def _put_object(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    # The upsert keeps the existing row, and so its seq and its place in
    # listings, when the id is already stored; it changes nothing of a
    # sealed row, which is then reported.
    cursor = conn.execute(
        """
        INSERT INTO objects (id, type, owner, public, digest, properties, body)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET
            type = excluded.type,
            owner = excluded.owner,
            public = excluded.public,
            digest = excluded.digest,
            properties = excluded.properties,
            body = excluded.body
        WHERE objects.sealed = 0
        """,
        row,
    )
    if cursor.rowcount == 0:
        raise ObjectSealed(f"{row[0]} was sent and cannot be changed")


def _seal_object(
    conn: sqlite3.Connection, row: tuple[Any, ...], replace_draft: bool
) -> None:
    """
    Store the object of C{row} if its id is free, and seal it, inside the
    caller's transaction.  An object of that id that is not sealed (a
    draft) is replaced if C{replace_draft}, keeping its place in listings;
    otherwise, and whenever it is sealed, it must have the same content.

    @raise ObjectSealed: if another object holds the id.
    """
    object_id, digest = row[0], row[4]
    found = conn.execute(
        "SELECT digest, sealed FROM objects WHERE id = ?", (object_id,)
    ).fetchone()
    if found is None:
        conn.execute(
            """
            INSERT INTO objects
                (id, type, owner, public, digest, properties, body, sealed)
            VALUES (?, ?, ?, ?, ?, ?, ?, 1)
            """,
            row,
        )
    elif not found[1] and replace_draft:
        conn.execute(
            """
            UPDATE objects SET type = ?, owner = ?, public = ?, digest = ?,
                properties = ?, body = ?, sealed = 1
            WHERE id = ?
            """,
            (*row[1:], object_id),
        )
    elif found[0] != digest:
        raise ObjectSealed(f"{object_id} is already held with other content")
    elif not found[1]:
        conn.execute("UPDATE objects SET sealed = 1 WHERE id = ?", (object_id,))


def _get_object(conn: sqlite3.Connection, object_id: str) -> FMTPObject | None:
    row = conn.execute(
        "SELECT id, type, properties, body FROM objects WHERE id = ?",
        (object_id,),
    ).fetchone()
    if row is None:
        return None
    found_id, object_type, properties, body = row
    return FMTPObject(found_id, object_type, json.loads(properties), bytes(body))


def _delete_object(conn: sqlite3.Connection, object_id: str) -> bool:
    # A sealed object stays for those who hold it; another goes with its
    # deliveries (see IDeliveryStore).
    with transaction(conn):
        cursor = conn.execute(
            "UPDATE objects SET removed = 1 "
            "WHERE id = ? AND sealed = 1 AND removed = 0",
            (object_id,),
        )
        if cursor.rowcount:
            return True
        cursor = conn.execute(
            "DELETE FROM objects WHERE id = ? AND sealed = 0", (object_id,)
        )
        if cursor.rowcount == 0:
            return False
        conn.execute("DELETE FROM queue WHERE object_id = ?", (object_id,))
        return True


def listing_query(
    start: int,
    limit: int,
    type: str | None = None,
    owner: str | None = None,
    public_only: bool = True,
) -> tuple[str, list[Any]]:
    """
    The SQL and parameters of a C{list_objects} call.

    Public only is written as the literal C{public = 1} rather than a
    parameter so that SQLite can plan with it (and so that a later partial
    index C{WHERE public = 1} could serve it).
    """
    clauses: list[str] = ["removed = 0"]
    params: list[Any] = []
    if public_only:
        clauses.append("public = 1")
    if type is not None:
        clauses.append("type = ?")
        params.append(type)
    if owner is not None:
        clauses.append("owner = ?")
        params.append(owner)
    where = f"WHERE {' AND '.join(clauses)}"
    params += [min(limit, _MAX_SQLITE_INT), min(start, _MAX_SQLITE_INT)]
    return (
        f"SELECT id, type, digest FROM objects {where} ORDER BY seq LIMIT ? OFFSET ?",
        params,
    )


def _list_objects(
    conn: sqlite3.Connection, query: str, params: list[Any]
) -> list[ObjectSummary]:
    return [ObjectSummary(*row) for row in conn.execute(query, params)]


def _add_account(
    conn: sqlite3.Connection, address: str, password_hash: str, created: int
) -> None:
    try:
        conn.execute(
            "INSERT INTO accounts (address, password_hash, created) VALUES (?, ?, ?)",
            (address, password_hash, created),
        )
    except sqlite3.IntegrityError:
        raise AccountExists(f"account {address} exists")


def _set_password_hash(
    conn: sqlite3.Connection, address: str, password_hash: str
) -> bool:
    cursor = conn.execute(
        "UPDATE accounts SET password_hash = ? WHERE address = ?",
        (password_hash, address),
    )
    return cursor.rowcount > 0


def _get_password_hash(conn: sqlite3.Connection, address: str) -> str | None:
    row = conn.execute(
        "SELECT password_hash FROM accounts WHERE address = ?", (address,)
    ).fetchone()
    return None if row is None else row[0]


def _list_accounts(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT address FROM accounts ORDER BY 1")]


def _delete_account(conn: sqlite3.Connection, address: str) -> bool:
    # What only the account could use goes with it; what it sent stays
    # for those who hold it (see IAccountStore.delete_account).
    with transaction(conn):
        gone = conn.execute("DELETE FROM accounts WHERE address = ?", (address,))
        if gone.rowcount == 0:
            return False
        drafts = "SELECT id FROM objects WHERE owner = ? AND sealed = 0"
        conn.execute(f"DELETE FROM queue WHERE object_id IN ({drafts})", (address,))
        conn.execute("DELETE FROM objects WHERE owner = ? AND sealed = 0", (address,))
        conn.execute("UPDATE objects SET removed = 1 WHERE owner = ?", (address,))
        conn.execute("UPDATE inbox SET removed = 1 WHERE recipient = ?", (address,))
        conn.execute("DELETE FROM approved_senders WHERE recipient = ?", (address,))
    return True


# Delivery: the outbound queue

_QUEUE_COLUMNS = (
    "object_id, domain, recipients, created, attempts, next_attempt, last_error"
)


def _queue_row(delivery: QueuedDelivery) -> tuple[Any, ...]:
    """
    The C{queue} row for C{delivery}, computed on the caller's thread as
    L{_object_row} is.
    """
    return (
        delivery.object_id,
        delivery.domain,
        json.dumps(list(delivery.recipients), separators=(",", ":")),
        float(delivery.created),
        int(delivery.attempts),
        float(delivery.next_attempt),
        delivery.last_error,
    )


def _delivery(row: Sequence[Any]) -> QueuedDelivery:
    object_id, domain, recipients, created, attempts, next_attempt, last_error = row
    return QueuedDelivery(
        object_id,
        domain,
        tuple(json.loads(recipients)),
        float(created),
        int(attempts),
        float(next_attempt),
        last_error,
    )


def _enqueue(
    conn: sqlite3.Connection,
    object_row: tuple[Any, ...],
    queue_rows: list[tuple[Any, ...]],
    send_key: SendKey | None,
) -> None:
    object_id, digest = object_row[0], object_row[4]
    with transaction(conn):
        # A draft of the same id (not sealed) is replaced by the copy sent.
        _seal_object(conn, object_row, replace_draft=True)
        # DO NOTHING keeps the first row of a delivery queued twice, with
        # its attempts and schedule, and the first record of its sending.
        conn.executemany(
            f"""
            INSERT INTO queue ({_QUEUE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (object_id, domain) DO NOTHING
            """,
            queue_rows,
        )
        conn.executemany(
            """
            INSERT INTO sent (object_id, domain, digest, created) VALUES (?, ?, ?, ?)
            ON CONFLICT (object_id, domain) DO NOTHING
            """,
            [(object_id, row[1], digest, row[3]) for row in queue_rows],
        )
        if send_key is not None:
            try:
                conn.execute(
                    """
                    INSERT INTO send_keys
                        (sender, key, request_digest, object_id, results, created)
                    VALUES (?, ?, ?, ?, NULL, ?)
                    """,
                    (
                        send_key.sender,
                        send_key.key,
                        send_key.request_digest,
                        object_id,
                        send_key.created,
                    ),
                )
            except sqlite3.IntegrityError:
                raise SendKeyUsed() from None


def _was_sent(
    conn: sqlite3.Connection, object_id: str, domain: str, digest: str
) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sent WHERE object_id = ? AND domain = ? AND digest = ?",
        (object_id, domain, digest),
    ).fetchone()
    return row is not None


def _forget_before(conn: sqlite3.Connection, table: str, before: float) -> int:
    # The table name is one of ours, never a caller's text.
    cursor = conn.execute(f"DELETE FROM {table} WHERE created < ?", (before,))
    return cursor.rowcount


def _find_send(conn: sqlite3.Connection, sender: str, key: str) -> SendRecord | None:
    row = conn.execute(
        "SELECT object_id, request_digest, results FROM send_keys "
        "WHERE sender = ? AND key = ?",
        (sender, key),
    ).fetchone()
    return None if row is None else SendRecord(*row)


def _finish_send(conn: sqlite3.Connection, sender: str, key: str, results: str) -> None:
    conn.execute(
        "UPDATE send_keys SET results = ? WHERE sender = ? AND key = ?",
        (results, sender, key),
    )


#: The due batch: read in order from C{queue_due}, with no sort.
DUE_QUERY = f"""
    SELECT {_QUEUE_COLUMNS} FROM queue WHERE next_attempt <= ?
    ORDER BY next_attempt, object_id, domain LIMIT ?
"""


def _due_deliveries(
    conn: sqlite3.Connection, now: float, limit: int
) -> list[QueuedDelivery]:
    params = (now, min(limit, _MAX_SQLITE_INT))
    return [_delivery(row) for row in conn.execute(DUE_QUERY, params)]


def _next_due_time(conn: sqlite3.Connection) -> float | None:
    (when,) = conn.execute("SELECT min(next_attempt) FROM queue").fetchone()
    return None if when is None else float(when)


def _reschedule(
    conn: sqlite3.Connection,
    object_id: str,
    domain: str,
    next_attempt: float,
    error: str,
    recipients: str | None,
) -> bool:
    cursor = conn.execute(
        """
        UPDATE queue SET attempts = attempts + 1, next_attempt = ?, last_error = ?,
            recipients = COALESCE(?, recipients)
        WHERE object_id = ? AND domain = ?
        """,
        (next_attempt, error, recipients, object_id, domain),
    )
    return cursor.rowcount > 0


def _finish_delivery(conn: sqlite3.Connection, object_id: str, domain: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM queue WHERE object_id = ? AND domain = ?", (object_id, domain)
    )
    return cursor.rowcount > 0


def _make_due(conn: sqlite3.Connection, now: float, domain: str | None) -> int:
    query = "UPDATE queue SET next_attempt = ? WHERE next_attempt > ?"
    if domain is None:
        return conn.execute(query, (now, now)).rowcount
    return conn.execute(query + " AND domain = ?", (now, now, domain)).rowcount


def _queued_for(conn: sqlite3.Connection, domain: str) -> list[QueuedDelivery]:
    return [
        _delivery(row)
        for row in conn.execute(
            f"""
            SELECT {_QUEUE_COLUMNS} FROM queue WHERE domain = ?
            ORDER BY created, object_id
            """,
            (domain,),
        )
    ]


# Delivery: inboxes and approved senders


def _deliver_local(
    conn: sqlite3.Connection,
    recipient: str,
    object_row: tuple[Any, ...],
    sender: str,
    held: bool,
) -> int | None:
    object_id = object_row[0]
    with transaction(conn):
        cursor = conn.execute(
            """
            INSERT INTO inbox (recipient, object_id, sender, held)
            VALUES (?, ?, ?, ?)
            ON CONFLICT (recipient, object_id) DO NOTHING
            """,
            (recipient, object_id, sender, 1 if held else 0),
        )
        if cursor.rowcount == 0:
            # A replay: change nothing, not even a deleted object.
            return None
        seq = cursor.lastrowid
        _seal_object(conn, object_row, replace_draft=False)
    return seq


def _read_object(
    conn: sqlite3.Connection, object_id: str, reader: str | None
) -> StoredObject | None:
    row = conn.execute(
        """
        SELECT objects.type, objects.properties, objects.body, objects.removed,
            EXISTS (
                SELECT 1 FROM inbox WHERE inbox.recipient = ?
                AND inbox.object_id = objects.id
                AND inbox.held = 0 AND inbox.removed = 0
            )
        FROM objects WHERE objects.id = ?
        """,
        (reader, object_id),
    ).fetchone()
    if row is None:
        return None
    object_type, properties, body, removed, filed = row
    obj = FMTPObject(object_id, object_type, json.loads(properties), bytes(body))
    return StoredObject(obj, bool(removed), bool(filed))


def _remove_from_inbox(
    conn: sqlite3.Connection, recipient: str, object_id: str
) -> bool:
    cursor = conn.execute(
        "UPDATE inbox SET removed = 1 "
        "WHERE recipient = ? AND object_id = ? AND removed = 0",
        (recipient, object_id),
    )
    return cursor.rowcount > 0


def inbox_query(recipient: str, since: int, limit: int) -> tuple[str, list[Any]]:
    """
    The SQL and parameters of an C{inbox} call.

    The join drops entries whose object was deleted; C{held = 0} is a
    literal so that SQLite plans with it.
    """
    return (
        """
        SELECT inbox.seq, objects.id, objects.type, objects.properties, objects.body
        FROM inbox JOIN objects ON objects.id = inbox.object_id
        WHERE inbox.recipient = ? AND inbox.held = 0 AND inbox.removed = 0
            AND inbox.seq > ?
        ORDER BY inbox.seq LIMIT ?
        """,
        [recipient, min(since, _MAX_SQLITE_INT), min(limit, _MAX_SQLITE_INT)],
    )


def _inbox(
    conn: sqlite3.Connection, query: str, params: list[Any]
) -> list[tuple[int, FMTPObject]]:
    return [
        (seq, FMTPObject(object_id, object_type, json.loads(properties), bytes(body)))
        for seq, object_id, object_type, properties, body in conn.execute(query, params)
    ]


def _held_senders(conn: sqlite3.Connection, recipient: str) -> list[str]:
    return [
        sender
        for (sender,) in conn.execute(
            """
            SELECT inbox.sender FROM inbox JOIN objects ON objects.id = inbox.object_id
            WHERE inbox.recipient = ? AND inbox.held = 1 AND inbox.removed = 0
            GROUP BY inbox.sender ORDER BY min(inbox.seq)
            """,
            (recipient,),
        )
    ]


def _count_held(conn: sqlite3.Connection, recipient: str, sender: str) -> int:
    """
    How many held entries from C{sender} are visible: what L{_release_held}
    and L{_drop_held} report, though they act on the invisible ones (whose
    object was deleted) too.
    """
    (count,) = conn.execute(
        """
        SELECT count(*) FROM inbox JOIN objects ON objects.id = inbox.object_id
        WHERE inbox.recipient = ? AND inbox.held = 1 AND inbox.removed = 0
            AND inbox.sender = ?
        """,
        (recipient, sender),
    ).fetchone()
    return int(count)


def _release_held(conn: sqlite3.Connection, recipient: str, sender: str) -> int:
    # Released entries get new sequence numbers (re-inserted in their old
    # order), so a device that read past the old ones still finds them.
    with transaction(conn):
        count = _count_held(conn, recipient, sender)
        rows = conn.execute(
            "SELECT object_id FROM inbox WHERE recipient = ? AND held = 1 "
            "AND removed = 0 AND sender = ? ORDER BY seq",
            (recipient, sender),
        ).fetchall()
        conn.execute(
            "DELETE FROM inbox WHERE recipient = ? AND held = 1 AND removed = 0 "
            "AND sender = ?",
            (recipient, sender),
        )
        conn.executemany(
            "INSERT INTO inbox (recipient, object_id, sender, held) "
            "VALUES (?, ?, ?, 0)",
            [(recipient, object_id, sender) for (object_id,) in rows],
        )
    return count


def _drop_held(conn: sqlite3.Connection, recipient: str, sender: str) -> int:
    with transaction(conn):
        count = _count_held(conn, recipient, sender)
        # Kept, removed, so that a replay is not held again.
        conn.execute(
            "UPDATE inbox SET removed = 1 WHERE recipient = ? AND held = 1 "
            "AND sender = ?",
            (recipient, sender),
        )
    return count


def _has_object(conn: sqlite3.Connection, object_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM objects WHERE id = ?", (object_id,)).fetchone()
    return row is not None


def _approve_sender(conn: sqlite3.Connection, recipient: str, sender: str) -> None:
    conn.execute(
        "INSERT INTO approved_senders (recipient, sender) VALUES (?, ?) "
        "ON CONFLICT (recipient, sender) DO NOTHING",
        (recipient, sender),
    )


def _is_approved(conn: sqlite3.Connection, recipient: str, sender: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM approved_senders WHERE recipient = ? AND sender = ?",
        (recipient, sender),
    ).fetchone()
    return row is not None


class _State(enum.Enum):
    NEW = "new"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@implementer(IObjectStore, IAccountStore, IDeliveryStore)
class SQLiteStore:
    """
    L{IObjectStore}, L{IAccountStore} and L{IDeliveryStore} in an SQLite
    file.

    All SQLite work runs on one thread of a private L{ThreadPool}
    (C{min = max = 1}), started by L{open} and stopped by L{close}, with
    one connection made on that thread.  One thread is enough: SQLite
    allows one writer at a time anyway, and it makes the order of one
    client's calls the order of execution, so a C{get_object} issued after
    a C{put_object} sees it (clients take turns: L{run_interaction}).
    The connection's C{check_same_thread} is left on, so a bug that
    touched it from elsewhere fails loudly.

    Each write is one statement in autocommit mode, or one L{transaction}
    when it takes several (C{enqueue}, C{deliver_local}, C{delete_object},
    C{delete_account}, C{release_held}, C{drop_held}), with
    C{synchronous=FULL}: when its L{Deferred} fires the rows are on disk,
    which is what the interfaces require before a 2xx reply.

    A L{sqlite3.OperationalError} after opening (disk full, disk I/O error,
    the file locked by another process for longer than the busy timeout)
    is logged and becomes L{StoreUnavailable}, so the protocol answers 451
    (try again later) and the server keeps serving.  Errors while opening
    are not translated: they are the operator's to read.

    @ivar path: the database file.
    """

    log = Logger()

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
        return f"<SQLiteStore {str(self.path)!r} {self._state.value}>"

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
            _refuse_newer(schema_version(conn), SCHEMA_VERSION, self.path)
            (journal_mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            before = upgrade_schema(conn, SCHEMA_STEPS, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return before, str(journal_mode).lower()

    def _opened(self, result: tuple[int, str]) -> None:
        before, journal_mode = result
        if journal_mode != "wal":
            # WAL needs shared memory, which some network file systems
            # lack; the store still works, but readers and writers in other
            # processes then block each other.
            self.log.warn(
                "SQLite store {path} is in journal mode {mode}, not WAL",
                path=str(self.path),
                mode=journal_mode,
            )
        if before != SCHEMA_VERSION:
            self.log.info(
                "Upgraded the schema of SQLite store {path} from version "
                "{before} to {after}",
                path=str(self.path),
                before=before,
                after=SCHEMA_VERSION,
            )
        self.log.info(
            "Opened SQLite store {path} (schema version {version})",
            path=str(self.path),
            version=SCHEMA_VERSION,
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

    # IObjectStore

    def put_object(self, obj: FMTPObject) -> Deferred[None]:
        try:
            row = _object_row(obj)
        except Exception as e:
            return fail(e)
        return self.run_interaction(_put_object, row)

    def get_object(self, object_id: str) -> Deferred[FMTPObject | None]:
        return self.run_interaction(_get_object, object_id)

    def delete_object(self, object_id: str) -> Deferred[bool]:
        return self.run_interaction(_delete_object, object_id)

    def list_objects(
        self,
        start: int,
        limit: int,
        type: str | None = None,
        owner: str | None = None,
        public_only: bool = True,
    ) -> Deferred[list[ObjectSummary]]:
        try:
            check_page(start, limit)
        except ValueError as e:
            return fail(e)
        query, params = listing_query(start, limit, type, owner, public_only)
        return self.run_interaction(_list_objects, query, params)

    # IAccountStore

    def add_account(self, address: str, password_hash: str) -> Deferred[None]:
        created = int(self._reactor.seconds())
        return self.run_interaction(_add_account, address, password_hash, created)

    def set_password_hash(self, address: str, password_hash: str) -> Deferred[bool]:
        return self.run_interaction(_set_password_hash, address, password_hash)

    def get_password_hash(self, address: str) -> Deferred[str | None]:
        return self.run_interaction(_get_password_hash, address)

    def list_accounts(self) -> Deferred[list[str]]:
        return self.run_interaction(_list_accounts)

    def delete_account(self, address: str) -> Deferred[bool]:
        return self.run_interaction(_delete_account, address)

    # IDeliveryStore: the outbound queue

    def enqueue(
        self,
        obj: FMTPObject,
        deliveries: list[QueuedDelivery],
        send_key: SendKey | None = None,
    ) -> Deferred[None]:
        try:
            object_row = _object_row(obj)
            check_deliveries(obj, deliveries)
            queue_rows = [_queue_row(delivery) for delivery in deliveries]
        except Exception as e:
            return fail(e)
        return self.run_interaction(_enqueue, object_row, queue_rows, send_key)

    def was_sent(self, object_id: str, domain: str, digest: str) -> Deferred[bool]:
        return self.run_interaction(_was_sent, object_id, domain, digest)

    def forget_sent(self, before: float) -> Deferred[int]:
        return self.run_interaction(_forget_before, "sent", before)

    def find_send(self, sender: str, key: str) -> Deferred[SendRecord | None]:
        return self.run_interaction(_find_send, sender, key)

    def finish_send(self, sender: str, key: str, results: str) -> Deferred[None]:
        return self.run_interaction(_finish_send, sender, key, results)

    def forget_send_keys(self, before: float) -> Deferred[int]:
        return self.run_interaction(_forget_before, "send_keys", before)

    def due_deliveries(self, now: float, limit: int) -> Deferred[list[QueuedDelivery]]:
        try:
            check_counts(limit=limit)
        except ValueError as e:
            return fail(e)
        return self.run_interaction(_due_deliveries, now, limit)

    def next_due_time(self) -> Deferred[float | None]:
        return self.run_interaction(_next_due_time)

    def reschedule(
        self,
        object_id: str,
        domain: str,
        next_attempt: float,
        error: str,
        recipients: Sequence[str] | None = None,
    ) -> Deferred[bool]:
        encoded = (
            None
            if recipients is None
            else json.dumps(list(recipients), separators=(",", ":"))
        )
        return self.run_interaction(
            _reschedule, object_id, domain, next_attempt, error, encoded
        )

    def finish_delivery(self, object_id: str, domain: str) -> Deferred[bool]:
        return self.run_interaction(_finish_delivery, object_id, domain)

    def make_due(self, now: float, domain: str | None = None) -> Deferred[int]:
        return self.run_interaction(_make_due, now, domain)

    def queued_for(self, domain: str) -> Deferred[list[QueuedDelivery]]:
        return self.run_interaction(_queued_for, domain)

    # IDeliveryStore: inboxes

    def deliver_local(
        self, recipient: str, obj: FMTPObject, held: bool
    ) -> Deferred[int | None]:
        try:
            object_row = _object_row(obj)
            sender = sender_of(obj)
        except Exception as e:
            return fail(e)
        return self.run_interaction(
            _deliver_local, recipient, object_row, sender, bool(held)
        )

    def inbox(
        self, recipient: str, since: int, limit: int
    ) -> Deferred[list[tuple[int, FMTPObject]]]:
        try:
            check_counts(since=since, limit=limit)
        except ValueError as e:
            return fail(e)
        query, params = inbox_query(recipient, since, limit)
        return self.run_interaction(_inbox, query, params)

    def read_object(
        self, object_id: str, reader: str | None
    ) -> Deferred[StoredObject | None]:
        return self.run_interaction(_read_object, object_id, reader)

    def remove_from_inbox(self, recipient: str, object_id: str) -> Deferred[bool]:
        return self.run_interaction(_remove_from_inbox, recipient, object_id)

    def held_senders(self, recipient: str) -> Deferred[list[str]]:
        return self.run_interaction(_held_senders, recipient)

    def release_held(self, recipient: str, sender: str) -> Deferred[int]:
        return self.run_interaction(_release_held, recipient, sender)

    def drop_held(self, recipient: str, sender: str) -> Deferred[int]:
        return self.run_interaction(_drop_held, recipient, sender)

    def has_object(self, object_id: str) -> Deferred[bool]:
        return self.run_interaction(_has_object, object_id)

    # IDeliveryStore: approved senders

    def approve_sender(self, recipient: str, sender: str) -> Deferred[None]:
        return self.run_interaction(_approve_sender, recipient, sender)

    def is_approved(self, recipient: str, sender: str) -> Deferred[bool]:
        return self.run_interaction(_is_approved, recipient, sender)
