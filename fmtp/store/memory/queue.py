"""
Outbound delivery in memory (L{fmtp.interfaces.IDeliveryStore}): the
queue, the record of what was sent, and the senders' idempotency keys.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred

from fmtp.delivery import QueuedDelivery, SendKey, SendRecord
from fmtp.errors import SendKeyUsed
from fmtp.objects import FMTPObject
from fmtp.store.checks import check_counts, check_deliveries
from fmtp.store.memory.base import MemoryBase
from fmtp.store.memory.objects import _Stored, check_sealable, copy_object


class MemoryQueue(MemoryBase):
    """
    L{fmtp.interfaces.IDeliveryStore}'s outbound methods, over dicts; the
    objects sent are L{fmtp.store.memory.objects.MemoryObjects}'.
    """

    def __init__(self) -> None:
        super().__init__()
        # The queue by (object id, domain).
        self._queue: dict[tuple[str, str], QueuedDelivery] = {}
        # (object id, domain) -> (digest, when queued): what was sent.
        self._sent: dict[tuple[str, str], tuple[str, float]] = {}
        # (sender, key) -> (SendKey, object id, results).
        self._send_keys: dict[tuple[str, str], list[Any]] = {}

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

    def forget_delivered(self, types: Collection[str], before: float) -> Deferred[int]:
        return self._call(self._forget_delivered, frozenset(types), before)

    def _forget_delivered(self, types: frozenset[str], before: float) -> int:
        # As the SQL store reads it: an object sent to any domain at or
        # after before is recent.
        queued = {object_id for object_id, _ in self._queue}
        recent = {
            key[0] for key, (_, created) in self._sent.items() if created >= before
        }
        done = [
            object_id
            for object_id, stored in self._objects.items()
            if stored.obj.type in types
            and stored.sealed
            and object_id not in queued
            and object_id not in recent
        ]
        for object_id in done:
            del self._objects[object_id]
        return len(done)

    def due_deliveries(
        self, now: float, limit: int, skip: Collection[tuple[str, str]] = frozenset()
    ) -> Deferred[list[QueuedDelivery]]:
        return self._call(self._due, now, limit, skip)

    def _due(
        self, now: float, limit: int, skip: Collection[tuple[str, str]]
    ) -> list[QueuedDelivery]:
        check_counts(limit=limit)
        due = [
            d
            for key, d in self._queue.items()
            if d.next_attempt <= now and key not in skip
        ]
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

    def finish_deliveries(
        self, keys: Sequence[tuple[str, str]]
    ) -> Deferred[list[bool]]:
        return self._call(
            lambda: [
                self._finish_delivery(object_id, domain) for object_id, domain in keys
            ]
        )

    def queued_objects(
        self, object_ids: Sequence[str]
    ) -> Deferred[list[FMTPObject | None]]:
        return self._call(lambda: [self._get(object_id) for object_id in object_ids])

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
