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
