"""
The SQL of outbound delivery (L{fmtp.interfaces.IDeliveryStore}): the
queue of objects waiting to reach other domains, the record of what was
sent (for the countersign) and the senders' idempotency keys.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail

from fmtp.delivery import QueuedDelivery, SendKey, SendRecord
from fmtp.errors import SendKeyUsed
from fmtp.objects import FMTPObject
from fmtp.store.checks import check_counts, check_deliveries
from fmtp.store.sql.engine import _MAX_SQLITE_INT, SQLiteEngine, transaction
from fmtp.store.sql.objects import _get_object, _object_row, _seal_object

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
    with transaction(conn):
        _enqueue_rows(conn, object_row, queue_rows, send_key)


def _enqueue_rows(
    conn: sqlite3.Connection,
    object_row: tuple[Any, ...],
    queue_rows: list[tuple[Any, ...]],
    send_key: SendKey | None,
) -> None:
    """
    L{_enqueue}'s statements, in the caller's transaction.
    """
    object_id, digest = object_row[0], object_row[4]
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


def forget_delivered_query(
    types: Sequence[str], before: float
) -> tuple[str, list[Any]]:
    """
    The statement of a C{forget_delivered} call: delete the sealed
    objects of C{types} (not empty) with no queue row left and no record
    of being sent at or after C{before}.

    C{objects_type_seq} finds the candidates (from one sweep to the next
    only the protocol objects still queued, or sent within the hour, are
    left); the queue's and the sent records' primary keys, which lead
    with C{object_id}, answer both questions about each.  The objects
    table has no time of its own: the sent records' C{created} (when the
    object was queued) serves, and spares a schema step.
    """
    marks = ", ".join("?" for _ in types)
    query = f"""
        DELETE FROM objects
        WHERE type IN ({marks}) AND sealed = 1
          AND NOT EXISTS (SELECT 1 FROM queue WHERE queue.object_id = objects.id)
          AND NOT EXISTS (
              SELECT 1 FROM sent
              WHERE sent.object_id = objects.id AND sent.created >= ?
          )
    """
    return query, [*types, before]


def _forget_delivered(
    conn: sqlite3.Connection, types: Sequence[str], before: float
) -> int:
    if not types:
        return 0
    return conn.execute(*forget_delivered_query(types, before)).rowcount


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


#: The due rows past those skipped, with no limit: the skipped ones are
#: counted out as they are read.
DUE_QUERY_ALL = f"""
    SELECT {_QUEUE_COLUMNS} FROM queue WHERE next_attempt <= ?
    ORDER BY next_attempt, object_id, domain
"""


def _due_deliveries(
    conn: sqlite3.Connection, now: float, limit: int, skip: frozenset[tuple[str, str]]
) -> list[QueuedDelivery]:
    if not skip:
        params = (now, min(limit, _MAX_SQLITE_INT))
        return [_delivery(row) for row in conn.execute(DUE_QUERY, params)]
    # The rows skipped are only stepped over, never decoded: a service
    # holding many rows pays little to read past them.
    found: list[QueuedDelivery] = []
    if limit <= 0:
        return found
    for row in conn.execute(DUE_QUERY_ALL, (now,)):
        if (row[0], row[1]) not in skip:
            found.append(_delivery(row))
            if len(found) >= limit:
                break
    return found


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


def _finish_deliveries(
    conn: sqlite3.Connection, keys: Sequence[tuple[str, str]]
) -> list[bool]:
    with transaction(conn):
        return [_finish_delivery(conn, object_id, domain) for object_id, domain in keys]


def _queued_objects(
    conn: sqlite3.Connection, object_ids: Sequence[str]
) -> list[FMTPObject | None]:
    return [_get_object(conn, object_id) for object_id in object_ids]


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


class SQLQueue(SQLiteEngine):
    """
    L{fmtp.interfaces.IDeliveryStore}'s outbound methods, over the engine.
    """

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
        return self.run_query(_was_sent, object_id, domain, digest)

    def forget_sent(self, before: float) -> Deferred[int]:
        return self.run_interaction(_forget_before, "sent", before)

    def find_send(self, sender: str, key: str) -> Deferred[SendRecord | None]:
        return self.run_query(_find_send, sender, key)

    def finish_send(self, sender: str, key: str, results: str) -> Deferred[None]:
        return self.run_interaction(_finish_send, sender, key, results)

    def forget_send_keys(self, before: float) -> Deferred[int]:
        return self.run_interaction(_forget_before, "send_keys", before)

    def forget_delivered(self, types: Collection[str], before: float) -> Deferred[int]:
        return self.run_interaction(_forget_delivered, sorted(types), before)

    def due_deliveries(
        self, now: float, limit: int, skip: Collection[tuple[str, str]] = frozenset()
    ) -> Deferred[list[QueuedDelivery]]:
        try:
            check_counts(limit=limit)
        except ValueError as e:
            return fail(e)
        return self.run_query(_due_deliveries, now, limit, frozenset(skip))

    def next_due_time(self) -> Deferred[float | None]:
        return self.run_query(_next_due_time)

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

    def finish_deliveries(
        self, keys: Sequence[tuple[str, str]]
    ) -> Deferred[list[bool]]:
        return self.run_interaction(_finish_deliveries, list(keys))

    def queued_objects(
        self, object_ids: Sequence[str]
    ) -> Deferred[list[FMTPObject | None]]:
        return self.run_query(_queued_objects, list(object_ids))

    def make_due(self, now: float, domain: str | None = None) -> Deferred[int]:
        return self.run_interaction(_make_due, now, domain)

    def queued_for(self, domain: str) -> Deferred[list[QueuedDelivery]]:
        return self.run_query(_queued_for, domain)
