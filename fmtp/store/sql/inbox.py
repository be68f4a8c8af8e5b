"""
The SQL of inbound delivery (L{fmtp.interfaces.IDeliveryStore}): the
inboxes of local users, the entries held for the confirm policy, and the
senders each user approved.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from twisted.internet.defer import Deferred, fail

from fmtp.delivery import StoredObject, sender_of
from fmtp.objects import FMTPObject
from fmtp.store.checks import check_counts
from fmtp.store.sql.engine import _MAX_SQLITE_INT, SQLiteEngine, transaction
from fmtp.store.sql.objects import _object_row, _seal_object


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


class SQLInbox(SQLiteEngine):
    """
    L{fmtp.interfaces.IDeliveryStore}'s inbound methods, over the engine.
    """

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
