"""
Inbound delivery in memory (L{fmtp.interfaces.IDeliveryStore}): inboxes,
held entries and approved senders.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from twisted.internet.defer import Deferred

from fmtp.delivery import StoredObject, sender_of
from fmtp.errors import ObjectSealed
from fmtp.objects import FMTPObject
from fmtp.store.checks import check_counts
from fmtp.store.memory.base import MemoryBase
from fmtp.store.memory.objects import _Stored, copy_object


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


class MemoryInbox(MemoryBase):
    """
    L{fmtp.interfaces.IDeliveryStore}'s inbound methods, over dicts; the
    objects filed are L{fmtp.store.memory.objects.MemoryObjects}'.
    """

    def __init__(self) -> None:
        super().__init__()
        # Each recipient's inbox by sequence number, in ascending order
        # because numbers only grow; and the approved (recipient, sender)
        # pairs.
        self._inboxes: dict[str, dict[int, _InboxEntry]] = {}
        self._inbox_seqs: dict[tuple[str, str], int] = {}
        self._last_seq = 0
        self._approved: set[tuple[str, str]] = set()

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
