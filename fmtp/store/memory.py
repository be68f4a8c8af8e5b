"""
A store that keeps everything in process memory.

It exists for tests and for trying fmtp out (C{--store memory:}): nothing
survives a restart.  It follows the same contract as the SQLite store,
checked by the same conformance suites (C{tests/store_conformance.py},
C{tests/delivery_conformance.py}), so code tested against it behaves the
same against a durable store.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from fmtp.delivery import (
    QueuedDelivery,
    SendKey,
    SendRecord,
    StoredObject,
    sender_of,
)
from fmtp.errors import AccountExists, ObjectSealed, SendKeyUsed, StoreUnavailable
from fmtp.interfaces import IAccountStore, IDeliveryStore, IObjectStore
from fmtp.objects import FMTPObject, ObjectSummary, owner_of
from fmtp.store.checks import check_counts, check_deliveries, check_page


def copy_object(obj: FMTPObject) -> FMTPObject:
    """
    A copy of C{obj} that shares no mutable state with it.

    The body is converted with L{bytes} as well, so a caller that passed a
    L{bytearray} or L{memoryview} cannot change the stored body afterwards.
    """
    return FMTPObject(obj.id, obj.type, dict(obj.properties), bytes(obj.body))


class _Stored:
    """
    An object as the memory store holds it, with what listings need
    computed once at put time, and whether it is sealed (sent or filed)
    and removed by its owner.
    """

    __slots__ = ("obj", "owner", "public", "summary", "sealed", "removed")

    def __init__(self, obj: FMTPObject) -> None:
        self.obj = obj
        self.owner = owner_of(obj.id)
        self.public = obj.public
        self.summary = obj.summary()
        self.sealed = False
        self.removed = False


def check_sealable(stored: _Stored | None, obj: FMTPObject, replace: bool) -> None:
    """
    Refuse to store C{obj} over C{stored} where that would change a
    sealed object: replacing it at all (C{replace}, a PUT), or with other
    content (queueing or filing a copy of it).

    @raise ObjectSealed: naming the id.
    """
    if stored is None or not stored.sealed:
        return
    if replace:
        raise ObjectSealed(f"{obj.id} was sent and cannot be changed")
    if stored.summary.digest != obj.digest():
        raise ObjectSealed(f"{obj.id} is already held with other content")


@dataclass(slots=True)
class _InboxEntry:
    """
    One inbox entry as the memory store holds it; its recipient and
    sequence number are the keys it is filed under.
    """

    object_id: str
    sender: str
    held: bool
    removed: bool = False


@implementer(IObjectStore, IAccountStore, IDeliveryStore)
class MemoryStore:
    """
    L{IObjectStore}, L{IAccountStore} and L{IDeliveryStore} in dicts.

    Every method returns an already-fired L{Deferred}, which is allowed by
    the interfaces and keeps tests that use this store deterministic.

    Objects are copied on the way in and on the way out, so neither the
    caller that stored an object nor one that fetched it can change what
    the store holds, just as with a store that serializes to disk.

    Listing order is the insertion order of a L{dict}: replacing the value
    of an existing key keeps its place, and deleting then re-adding a key
    moves it to the end, exactly as "first stored" means in the SQLite
    store.

    Each call runs to completion before it returns, and checks everything
    that can fail before it changes anything, so the writes that the SQLite
    store makes in one transaction are atomic here too.

    The store needs no L{open} (there is nothing to prepare) but honours
    L{close}: afterwards every call fails with L{StoreUnavailable}, so a
    test catches code that keeps using a store the server has shut down.
    L{open} after L{close} makes it usable again with its data intact.
    """

    def __init__(self) -> None:
        self._objects: dict[str, _Stored] = {}
        self._accounts: dict[str, str] = {}
        # Delivery: the queue by (object id, domain); each recipient's
        # inbox by sequence number, in ascending order because numbers only
        # grow; and the approved (recipient, sender) pairs.
        self._queue: dict[tuple[str, str], QueuedDelivery] = {}
        self._inboxes: dict[str, dict[int, _InboxEntry]] = {}
        self._inbox_seqs: dict[tuple[str, str], int] = {}
        self._last_seq = 0
        self._approved: set[tuple[str, str]] = set()
        # (object id, domain) -> (digest, when queued): what was sent.
        self._sent: dict[tuple[str, str], tuple[str, float]] = {}
        # (sender, key) -> (SendKey, object id, results).
        self._send_keys: dict[tuple[str, str], list[Any]] = {}
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<MemoryStore {state}, {len(self._objects)} objects>"

    def _call(self, func: Any, *args: Any) -> Deferred[Any]:
        """
        Run C{func} now and wrap its result or exception in a fired
        L{Deferred}, failing with L{StoreUnavailable} once closed.
        """
        if self._closed:
            return fail(StoreUnavailable("store is closed"))
        try:
            result = func(*args)
        except Exception as e:
            return fail(e)
        return succeed(result)

    # Lifecycle

    def open(self) -> Deferred[None]:
        self._closed = False
        return succeed(None)

    def close(self) -> Deferred[None]:
        self._closed = True
        return succeed(None)

    # IObjectStore

    def put_object(self, obj: FMTPObject) -> Deferred[None]:
        return self._call(self._put, obj)

    def _put(self, obj: FMTPObject) -> None:
        stored = _Stored(copy_object(obj))
        check_sealable(self._objects.get(obj.id), obj, replace=True)
        self._objects[obj.id] = stored

    def get_object(self, object_id: str) -> Deferred[FMTPObject | None]:
        return self._call(self._get, object_id)

    def _get(self, object_id: str) -> FMTPObject | None:
        stored = self._objects.get(object_id)
        return None if stored is None else copy_object(stored.obj)

    def delete_object(self, object_id: str) -> Deferred[bool]:
        return self._call(self._delete, object_id)

    def _delete(self, object_id: str) -> bool:
        stored = self._objects.get(object_id)
        if stored is None or stored.removed:
            return False
        if stored.sealed:
            # Sent: it stays for its recipients and the queue.
            stored.removed = True
            return True
        del self._objects[object_id]
        for key in [key for key in self._queue if key[0] == object_id]:
            del self._queue[key]
        return True

    def list_objects(
        self,
        start: int,
        limit: int,
        type: str | None = None,
        owner: str | None = None,
        public_only: bool = True,
    ) -> Deferred[list[ObjectSummary]]:
        return self._call(self._list, start, limit, type, owner, public_only)

    def _list(
        self,
        start: int,
        limit: int,
        type: str | None,
        owner: str | None,
        public_only: bool,
    ) -> list[ObjectSummary]:
        check_page(start, limit)
        matching = (
            stored.summary
            for stored in self._objects.values()
            if not stored.removed
            and (type is None or stored.obj.type == type)
            and (owner is None or stored.owner == owner)
            and (not public_only or stored.public)
        )
        # islice takes at most sys.maxsize; no list is longer anyway.
        start = min(start, sys.maxsize)
        return list(islice(matching, start, min(start + limit, sys.maxsize)))

    # IAccountStore

    def add_account(self, address: str, password_hash: str) -> Deferred[None]:
        return self._call(self._add_account, address, password_hash)

    def _add_account(self, address: str, password_hash: str) -> None:
        if address in self._accounts:
            raise AccountExists(f"account {address} exists")
        self._accounts[address] = password_hash

    def set_password_hash(self, address: str, password_hash: str) -> Deferred[bool]:
        return self._call(self._set_password_hash, address, password_hash)

    def _set_password_hash(self, address: str, password_hash: str) -> bool:
        if address not in self._accounts:
            return False
        self._accounts[address] = password_hash
        return True

    def get_password_hash(self, address: str) -> Deferred[str | None]:
        return self._call(self._accounts.get, address)

    def list_accounts(self) -> Deferred[list[str]]:
        return self._call(sorted, self._accounts)

    def delete_account(self, address: str) -> Deferred[bool]:
        return self._call(self._delete_account, address)

    def _delete_account(self, address: str) -> bool:
        if self._accounts.pop(address, None) is None:
            return False
        for object_id, stored in list(self._objects.items()):
            if stored.owner == address:
                self._delete(object_id)
        for entry in self._inboxes.get(address, {}).values():
            entry.removed = True
        self._approved = {pair for pair in self._approved if pair[0] != address}
        return True

    # IDeliveryStore: the outbound queue

    def enqueue(
        self,
        obj: FMTPObject,
        deliveries: list[QueuedDelivery],
        send_key: SendKey | None = None,
    ) -> Deferred[None]:
        return self._call(self._enqueue, obj, deliveries, send_key)

    def _enqueue(
        self,
        obj: FMTPObject,
        deliveries: list[QueuedDelivery],
        send_key: SendKey | None,
    ) -> None:
        stored = _Stored(copy_object(obj))
        check_deliveries(obj, deliveries)
        existing = self._objects.get(obj.id)
        check_sealable(existing, obj, replace=False)
        if send_key is not None and (send_key.sender, send_key.key) in self._send_keys:
            raise SendKeyUsed()
        if existing is None or not existing.sealed:
            stored.sealed = True
            self._objects[obj.id] = stored
        digest = stored.summary.digest
        for delivery in deliveries:
            key = (delivery.object_id, delivery.domain)
            self._queue.setdefault(key, delivery)
            self._sent.setdefault(key, (digest, delivery.created))
        if send_key is not None:
            self._send_keys[send_key.sender, send_key.key] = [send_key, obj.id, None]

    def was_sent(self, object_id: str, domain: str, digest: str) -> Deferred[bool]:
        return self._call(self._was_sent, object_id, domain, digest)

    def _was_sent(self, object_id: str, domain: str, digest: str) -> bool:
        record = self._sent.get((object_id, domain))
        return record is not None and record[0] == digest

    def forget_sent(self, before: float) -> Deferred[int]:
        return self._call(self._forget_sent, before)

    def _forget_sent(self, before: float) -> int:
        old = [key for key, (_, created) in self._sent.items() if created < before]
        for key in old:
            del self._sent[key]
        return len(old)

    def find_send(self, sender: str, key: str) -> Deferred[SendRecord | None]:
        return self._call(self._find_send, sender, key)

    def _find_send(self, sender: str, key: str) -> SendRecord | None:
        found = self._send_keys.get((sender, key))
        if found is None:
            return None
        send_key, object_id, results = found
        return SendRecord(object_id, send_key.request_digest, results)

    def finish_send(self, sender: str, key: str, results: str) -> Deferred[None]:
        return self._call(self._finish_send, sender, key, results)

    def _finish_send(self, sender: str, key: str, results: str) -> None:
        found = self._send_keys.get((sender, key))
        if found is not None:
            found[2] = results

    def forget_send_keys(self, before: float) -> Deferred[int]:
        return self._call(self._forget_send_keys, before)

    def _forget_send_keys(self, before: float) -> int:
        old = [k for k, found in self._send_keys.items() if found[0].created < before]
        for key in old:
            del self._send_keys[key]
        return len(old)

    def due_deliveries(self, now: float, limit: int) -> Deferred[list[QueuedDelivery]]:
        return self._call(self._due, now, limit)

    def _due(self, now: float, limit: int) -> list[QueuedDelivery]:
        check_counts(limit=limit)
        due = [d for d in self._queue.values() if d.next_attempt <= now]
        due.sort(key=lambda d: (d.next_attempt, d.object_id, d.domain))
        return due[:limit]

    def next_due_time(self) -> Deferred[float | None]:
        return self._call(self._next_due_time)

    def _next_due_time(self) -> float | None:
        return min((d.next_attempt for d in self._queue.values()), default=None)

    def reschedule(
        self,
        object_id: str,
        domain: str,
        next_attempt: float,
        error: str,
        recipients: Sequence[str] | None = None,
    ) -> Deferred[bool]:
        return self._call(
            self._reschedule, object_id, domain, next_attempt, error, recipients
        )

    def _reschedule(
        self,
        object_id: str,
        domain: str,
        next_attempt: float,
        error: str,
        recipients: Sequence[str] | None,
    ) -> bool:
        key = (object_id, domain)
        delivery = self._queue.get(key)
        if delivery is None:
            return False
        self._queue[key] = replace(
            delivery,
            attempts=delivery.attempts + 1,
            next_attempt=next_attempt,
            last_error=error,
            recipients=delivery.recipients if recipients is None else tuple(recipients),
        )
        return True

    def finish_delivery(self, object_id: str, domain: str) -> Deferred[bool]:
        return self._call(self._finish_delivery, object_id, domain)

    def _finish_delivery(self, object_id: str, domain: str) -> bool:
        return self._queue.pop((object_id, domain), None) is not None

    def make_due(self, now: float, domain: str | None = None) -> Deferred[int]:
        return self._call(self._make_due, now, domain)

    def _make_due(self, now: float, domain: str | None) -> int:
        later = [
            key
            for key, delivery in self._queue.items()
            if delivery.next_attempt > now and domain in (None, delivery.domain)
        ]
        for key in later:
            self._queue[key] = replace(self._queue[key], next_attempt=now)
        return len(later)

    def queued_for(self, domain: str) -> Deferred[list[QueuedDelivery]]:
        return self._call(self._queued_for, domain)

    def _queued_for(self, domain: str) -> list[QueuedDelivery]:
        queued = [d for d in self._queue.values() if d.domain == domain]
        queued.sort(key=lambda d: (d.created, d.object_id))
        return queued

    # IDeliveryStore: inboxes

    def deliver_local(
        self, recipient: str, obj: FMTPObject, held: bool
    ) -> Deferred[int | None]:
        return self._call(self._deliver_local, recipient, obj, held)

    def _deliver_local(self, recipient: str, obj: FMTPObject, held: bool) -> int | None:
        stored = _Stored(copy_object(obj))
        sender = sender_of(obj)
        if (recipient, obj.id) in self._inbox_seqs:
            return None
        existing = self._objects.get(obj.id)
        if existing is not None and existing.summary.digest != stored.summary.digest:
            raise ObjectSealed(f"{obj.id} is already held with other content")
        if existing is None:
            self._objects[obj.id] = existing = stored
        existing.sealed = True
        self._last_seq += 1
        seq = self._last_seq
        self._inbox_seqs[recipient, obj.id] = seq
        entry = _InboxEntry(obj.id, sender, bool(held))
        self._inboxes.setdefault(recipient, {})[seq] = entry
        return seq

    def _visible(self, recipient: str, held: bool) -> Iterator[tuple[int, _InboxEntry]]:
        """
        A recipient's entries with the given held flag, not removed, whose
        object is still stored, in ascending sequence order.
        """
        for seq, entry in self._inboxes.get(recipient, {}).items():
            if (
                entry.held == held
                and not entry.removed
                and entry.object_id in self._objects
            ):
                yield seq, entry

    def read_object(
        self, object_id: str, reader: str | None
    ) -> Deferred[StoredObject | None]:
        return self._call(self._read_object, object_id, reader)

    def _read_object(self, object_id: str, reader: str | None) -> StoredObject | None:
        stored = self._objects.get(object_id)
        if stored is None:
            return None
        entry = None
        seq = self._inbox_seqs.get((reader, object_id)) if reader else None
        if seq is not None:
            entry = self._inboxes[reader].get(seq)
        filed = entry is not None and not entry.held and not entry.removed
        return StoredObject(copy_object(stored.obj), stored.removed, filed)

    def remove_from_inbox(self, recipient: str, object_id: str) -> Deferred[bool]:
        return self._call(self._remove_from_inbox, recipient, object_id)

    def _remove_from_inbox(self, recipient: str, object_id: str) -> bool:
        seq = self._inbox_seqs.get((recipient, object_id))
        entry = None if seq is None else self._inboxes[recipient].get(seq)
        if entry is None or entry.removed:
            return False
        entry.removed = True
        return True

    def inbox(
        self, recipient: str, since: int, limit: int
    ) -> Deferred[list[tuple[int, FMTPObject]]]:
        return self._call(self._inbox, recipient, since, limit)

    def _inbox(
        self, recipient: str, since: int, limit: int
    ) -> list[tuple[int, FMTPObject]]:
        check_counts(since=since, limit=limit)
        entries = (
            (seq, entry)
            for seq, entry in self._visible(recipient, False)
            if seq > since
        )
        return [
            (seq, copy_object(self._objects[entry.object_id].obj))
            for seq, entry in islice(entries, min(limit, sys.maxsize))
        ]

    def held_senders(self, recipient: str) -> Deferred[list[str]]:
        return self._call(self._held_senders, recipient)

    def _held_senders(self, recipient: str) -> list[str]:
        # A dict keeps each sender once, at its first held entry.
        senders = {entry.sender: None for _, entry in self._visible(recipient, True)}
        return list(senders)

    def release_held(self, recipient: str, sender: str) -> Deferred[int]:
        return self._call(self._release_held, recipient, sender)

    def _release_held(self, recipient: str, sender: str) -> int:
        count = self._count_held(recipient, sender)
        entries = self._inboxes.get(recipient, {})
        for seq, entry in sorted(entries.items()):
            if entry.held and not entry.removed and entry.sender == sender:
                # A new sequence number, so a device that read past the old
                # one still finds the message with its usual "since".
                del entries[seq]
                entry.held = False
                self._last_seq += 1
                entries[self._last_seq] = entry
                self._inbox_seqs[recipient, entry.object_id] = self._last_seq
        return count

    def drop_held(self, recipient: str, sender: str) -> Deferred[int]:
        return self._call(self._drop_held, recipient, sender)

    def _drop_held(self, recipient: str, sender: str) -> int:
        count = self._count_held(recipient, sender)
        entries = self._inboxes.get(recipient, {})
        for entry in entries.values():
            if entry.held and entry.sender == sender:
                # Kept, removed, so that a replay is not held again.
                entry.removed = True
        return count

    def _count_held(self, recipient: str, sender: str) -> int:
        """
        How many held entries from C{sender} are visible: what
        L{release_held} and L{drop_held} report, though they act on the
        invisible ones (whose object was deleted) too.
        """
        return sum(1 for _, e in self._visible(recipient, True) if e.sender == sender)

    def has_object(self, object_id: str) -> Deferred[bool]:
        return self._call(self._objects.__contains__, object_id)

    # IDeliveryStore: approved senders

    def approve_sender(self, recipient: str, sender: str) -> Deferred[None]:
        return self._call(self._approved.add, (recipient, sender))

    def is_approved(self, recipient: str, sender: str) -> Deferred[bool]:
        return self._call(self._approved.__contains__, (recipient, sender))
