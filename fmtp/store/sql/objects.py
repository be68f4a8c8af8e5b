"""
The SQL of objects (L{fmtp.interfaces.IObjectStore}): storing, fetching,
removing and listing them, and the sealing that delivery relies on.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from twisted.internet.defer import Deferred, fail

from fmtp.errors import ObjectSealed
from fmtp.objects import FMTPObject, ObjectSummary, owner_of
from fmtp.store.checks import check_page
from fmtp.store.sql.engine import _MAX_SQLITE_INT, SQLiteEngine, transaction


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


class SQLObjects(SQLiteEngine):
    """
    L{fmtp.interfaces.IObjectStore}'s methods, over the engine.
    """

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
