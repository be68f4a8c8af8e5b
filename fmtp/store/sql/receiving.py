"""
The SQL of a message a peer delivers (L{fmtp.interfaces.IDeliveryStore}'s
C{receive_message}): the check that no other object holds its id, the
policy reads of its local recipients and their inbox entries, in one
transaction and so in one trip to the store's thread, where it is one
write of a group commit (as a SEND is, L{fmtp.store.sql.sending}).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail

from fmtp.delivery import Filing
from fmtp.errors import ObjectSealed
from fmtp.objects import FMTPObject
from fmtp.store.sql.engine import SQLiteEngine, transaction
from fmtp.store.sql.objects import _object_row
from fmtp.store.sql.sending import Chooser, _file_for


def _receive_message(
    conn: sqlite3.Connection,
    obj: FMTPObject,
    object_row: tuple[Any, ...],
    local: Sequence[str],
    choose: Chooser,
) -> list[Filing]:
    object_id, digest = object_row[0], object_row[4]
    with transaction(conn):
        found = conn.execute(
            "SELECT digest FROM objects WHERE id = ?", (object_id,)
        ).fetchone()
        if found is not None and found[0] != digest:
            raise ObjectSealed(f"{object_id} is already held with other content")
        return _file_for(conn, obj, local, choose, inbound_row=object_row)


class SQLReceiving(SQLiteEngine):
    """
    L{fmtp.interfaces.IDeliveryStore}'s C{receive_message}, over the engine.
    """

    def receive_message(
        self, obj: FMTPObject, local: Sequence[str], choose: Chooser
    ) -> Deferred[list[Filing]]:
        try:
            object_row = _object_row(obj)
        except Exception as e:
            return fail(e)
        return self.run_interaction(
            _receive_message, obj, object_row, list(local), choose
        )
