"""
Unit tests of L{fmtp.federation.housekeeping}: the store's short-lived records are
forgotten on the injected clock, and a failing sweep does not stop the
next.
"""

from __future__ import annotations

from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.delivery import QueuedDelivery, SendKey
from fmtp.errors import StoreUnavailable
from fmtp.federation.housekeeping import (
    DELIVERED_LIFETIME,
    SEND_KEY_LIFETIME,
    SENT_RECORD_LIFETIME,
    Housekeeping,
)
from fmtp.objects import FMTPObject
from fmtp.store.memory import MemoryStore

T0 = 1_800_000_000.0


def message(n: int) -> FMTPObject:
    return FMTPObject(f"{n}.n{n}.edgar@poe.net", "message", {"To": "a@lenore.org"})


class HousekeepingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = MemoryStore()
        self.obj = message(1)
        delivery = QueuedDelivery.new(self.obj.id, "lenore.org", ["a@lenore.org"], T0)
        self.store.enqueue(
            self.obj, [delivery], send_key=SendKey("edgar@poe.net", "k", "d", T0)
        )
        self.service = Housekeeping(self.store, self.clock)

    def sent(self) -> bool:
        return self.successResultOf(
            self.store.was_sent(self.obj.id, "lenore.org", self.obj.digest())
        )

    def key(self):
        return self.successResultOf(self.store.find_send("edgar@poe.net", "k"))

    def test_records_are_kept_while_useful(self) -> None:
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.clock.advance(SEND_KEY_LIFETIME - 1)
        self.assertIsNotNone(self.key())
        self.assertTrue(self.sent())

    def test_keys_then_sent_records_are_forgotten(self) -> None:
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.clock.advance(SEND_KEY_LIFETIME + self.service.interval)
        self.assertIsNone(self.key())
        self.assertTrue(self.sent())
        self.clock.advance(SENT_RECORD_LIFETIME)
        self.assertFalse(self.sent())
        # The message itself, and its queued delivery, are not touched.
        self.assertEqual(
            self.successResultOf(self.store.get_object(self.obj.id)), self.obj
        )
        self.assertEqual(
            len(self.successResultOf(self.store.queued_for("lenore.org"))), 1
        )

    def test_a_failing_sweep_is_logged_and_retried(self) -> None:
        forget = self.store.forget_send_keys
        self.store.forget_send_keys = lambda before: fail(StoreUnavailable())
        self.clock.advance(SEND_KEY_LIFETIME + 1)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailable)), 1)
        self.assertIsNotNone(self.key())
        self.store.forget_send_keys = forget
        self.clock.advance(self.service.interval)
        self.assertIsNone(self.key())

    def test_stop_ends_the_sweeps(self) -> None:
        self.service.startService()
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ProtocolObjectTests(SynchronousTestCase):
    """
    The objects protocols send other domains go an hour after they were
    queued, once delivered; a user's message stays.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = MemoryStore()
        self.types: set[str] = set()
        self.service = Housekeeping(
            self.store, self.clock, protocol_types=lambda: self.types
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def send(self, obj: FMTPObject) -> FMTPObject:
        delivery = QueuedDelivery.new(
            obj.id, "lenore.org", ["a@lenore.org"], self.clock.seconds()
        )
        self.successResultOf(self.store.enqueue(obj, [delivery]))
        return obj

    def held(self, obj: FMTPObject) -> bool:
        return self.successResultOf(self.store.has_object(obj.id))

    def test_delivered_pushes_are_forgotten_after_an_hour(self) -> None:
        # Read at each sweep: protocols register their types after the
        # service is built.
        self.types.add("room-push")
        props = {"From": "lobby@poe.net", "To": "a@lenore.org"}
        push = self.send(FMTPObject("1.n1.lobby@poe.net", "room-push", props))
        waiting = self.send(FMTPObject("2.n2.lobby@poe.net", "room-push", props))
        mail = self.send(message(3))
        for obj in (push, mail):
            self.successResultOf(self.store.finish_delivery(obj.id, "lenore.org"))

        self.clock.advance(self.service.interval)
        self.assertTrue(self.held(push))
        self.clock.advance(DELIVERED_LIFETIME)
        self.assertFalse(self.held(push))
        self.assertTrue(self.held(waiting))
        self.assertTrue(self.held(mail))

    def test_no_protocol_types_forget_nothing(self) -> None:
        mail = self.send(message(1))
        self.successResultOf(self.store.finish_delivery(mail.id, "lenore.org"))
        self.clock.advance(DELIVERED_LIFETIME + self.service.interval)
        self.assertTrue(self.held(mail))


class SlowStore(MemoryStore):
    """
    A store whose clean-up is still running when the server stops.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: list = []

    def forget_sent(self, before: float):
        from twisted.internet.defer import Deferred

        d = Deferred()
        self.pending.append(d)
        return d


class StopTests(SynchronousTestCase):
    def test_stop_waits_for_the_sweep_under_way(self) -> None:
        """
        The store is closed after its services stop: a sweep under way
        must end first, or it would meet a closed store.
        """
        store = SlowStore()
        service = Housekeeping(store, Clock())
        service.startService()
        stopped = service.stopService()
        self.assertNoResult(stopped)
        store.pending.pop().callback(0)
        self.successResultOf(stopped)
