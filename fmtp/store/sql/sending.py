"""
The SQL of a local user's SEND (L{fmtp.interfaces.IDeliveryStore}'s
C{send_message}): the object, its queue rows, its sent records, its
idempotency key, the policy reads of its local recipients and their inbox
entries, in one transaction and so in one trip to the store's thread,
where it is one write of a group commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail

from fmtp.delivery import Filing, QueuedDelivery, SendKey, results_text, sender_of
from fmtp.objects import FMTPObject
from fmtp.store.checks import check_deliveries
from fmtp.store.sql.engine import SQLiteEngine, transaction
from fmtp.store.sql.inbox import _file_entry, _is_approved
from fmtp.store.sql.objects import _get_object, _object_row, _seal_object
from fmtp.store.sql.queue import _enqueue_rows, _finish_send, _queue_row

#: C{choose(address, profile, obj, approved)}: see L{fmtp.delivery.choose_filing}.
Chooser = Callable[[str, FMTPObject | None, FMTPObject, bool], Filing]


def _send_message(
    conn: sqlite3.Connection,
    obj: FMTPObject,
    object_row: tuple[Any, ...],
    queue_rows: list[tuple[Any, ...]],
    send_key: SendKey | None,
    local: Sequence[str],
    choose: Chooser,
) -> list[Filing]:
    with transaction(conn):
        _enqueue_rows(conn, object_row, queue_rows, send_key)
        filings = _file_for(conn, obj, local, choose)
        if send_key is not None:
            results = results_text([filing.result for filing in filings])
            _finish_send(conn, send_key.sender, send_key.key, results)
    return filings


def _file_for(
    conn: sqlite3.Connection,
    obj: FMTPObject,
    local: Sequence[str],
    choose: Chooser,
    inbound_row: tuple[Any, ...] | None = None,
) -> list[Filing]:
    """
    File C{obj} for each address of C{local} as C{choose} says, reading
    each recipient's user object and approval, in the caller's
    transaction.  With C{inbound_row} (an inbound copy's object row), the
    object is stored and sealed along with each new entry, as
    C{deliver_local} does.
    """
    sender = sender_of(obj)
    filings = []
    for address in local:
        profile = _get_object(conn, address)
        approved = profile is not None and _is_approved(conn, address, sender)
        filing = choose(address, profile, obj, approved)
        seq = None
        if filing.file:
            seq = _file_entry(conn, address, obj.id, sender, filing.held)
            if seq is not None and inbound_row is not None:
                _seal_object(conn, inbound_row, replace_draft=False)
        filings.append(filing.followed(seq))
    return filings


class SQLSending(SQLiteEngine):
    """
    L{fmtp.interfaces.IDeliveryStore}'s C{send_message}, over the engine.
    """

    def send_message(
        self,
        obj: FMTPObject,
        deliveries: list[QueuedDelivery],
        send_key: SendKey | None,
        local: Sequence[str],
        choose: Chooser,
    ) -> Deferred[list[Filing]]:
        try:
            object_row = _object_row(obj)
            check_deliveries(obj, deliveries)
            queue_rows = [_queue_row(delivery) for delivery in deliveries]
        except Exception as e:
            return fail(e)
        return self.run_interaction(
            _send_message, obj, object_row, queue_rows, send_key, list(local), choose
        )
