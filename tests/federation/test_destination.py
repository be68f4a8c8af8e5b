"""
Tests for L{fmtp.federation.destination}: one domain's transmission loop,
driven by scripted attempts and a L{Clock}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.delivery import QueuedDelivery
from fmtp.federation.destination import DestinationQueue, row_key
from fmtp.federation.settle import DomainSuspended


def rows(count: int) -> list[QueuedDelivery]:
    return [
        QueuedDelivery.new(f"{n}.n.edgar@poe.net", "lenore.org", ["lost@lenore.org"], n)
        for n in range(count)
    ]


class DestinationQueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.attempts: list[tuple[QueuedDelivery, Deferred[None]]] = []
        self.put_off: list[QueuedDelivery] = []
        self.settled: list[tuple[str, bool]] = []
        self.answer_at_once = False

    def attempt(self, row: QueuedDelivery) -> Deferred[None]:
        if self.answer_at_once:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self.attempts.append((row, d))
        return d

    def make(self, window: int = 4) -> DestinationQueue:
        async def put_off(row: QueuedDelivery, why: DomainSuspended) -> None:
            self.put_off.append(row)

        return DestinationQueue(
            "lenore.org",
            self.attempt,
            put_off,
            self.clock,
            window,
            0.5,
            lambda loop, row, ok: self.settled.append((row.object_id, ok)),
        )

    def test_a_row_is_held_once(self) -> None:
        loop = self.make()
        [row] = rows(1)
        loop.add(row)
        loop.add(row)
        self.assertEqual((len(loop), len(self.attempts)), (1, 1))
        self.assertIn(row_key(row), loop)
        self.attempts.pop()[1].callback(None)
        self.assertTrue(loop.idle)
        self.assertEqual(self.settled, [(row.object_id, True)])
        self.assertEqual(self.attempts, [])  # sent once, not twice

    def test_repr(self) -> None:
        """
        The loop names its domain and what it holds, for an operator
        inspecting a running queue.
        """
        loop = self.make(window=1)
        for row in rows(3):
            loop.add(row)
        self.assertEqual(loop.domain, "lenore.org")
        self.assertEqual(
            repr(loop), "<DestinationQueue lenore.org pending=2 in_flight=1>"
        )

    def test_long_queue_settled_at_once_does_not_nest(self) -> None:
        """
        Thousands of rows piled up while the first opens the link, whose
        attempts then answer at once, go through a loop, not nested calls
        that would exhaust the stack.
        """
        loop = self.make(window=32)
        queued = rows(5000)
        for row in queued:
            loop.add(row)
        self.assertEqual((len(self.attempts), loop.pending), (1, 4999))
        self.answer_at_once = True
        self.attempts.pop()[1].callback(None)
        self.assertTrue(loop.idle)
        self.assertEqual(
            sorted(self.settled), sorted((row.object_id, True) for row in queued)
        )

    def test_failure_to_settle_is_reported(self) -> None:
        loop = self.make()
        [row] = rows(1)
        loop.add(row)
        self.attempts.pop()[1].errback(RuntimeError("store down"))
        self.assertEqual(self.settled, [(row.object_id, False)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(loop.idle)

    def test_rest_after_failure(self) -> None:
        """
        Rows handed over while the domain rests are put off; after the
        rest, the next goes alone.
        """
        loop = self.make()
        first, second, third = rows(3)
        loop.add(first)
        self.attempts.pop()[1].errback(DomainSuspended(421, "refused"))
        self.assertTrue(loop.resting)
        loop.add(second)
        self.assertEqual(self.put_off, [second])
        self.clock.advance(0.5)
        self.assertFalse(loop.resting)
        loop.add(third)
        self.assertEqual([r for r, _ in self.attempts], [third])

    def test_first_row_after_the_peer_is_back_goes_alone(self) -> None:
        """
        When the domain's server connects to us after its domain failed,
        the next row goes alone, opening the link, as after a rest.
        """
        loop = self.make()
        first, second, third = rows(3)
        loop.add(first)
        self.attempts.pop()[1].errback(DomainSuspended(421, "refused"))
        loop.resume()
        loop.add(second)
        loop.add(third)
        self.assertEqual([r for r, _ in self.attempts], [second])
        self.attempts.pop()[1].callback(None)
        self.assertEqual([r for r, _ in self.attempts], [third])

    def test_stop_waits_for_every_row_in_flight(self) -> None:
        """
        Stopping ends only once the last row in flight is settled, not the
        first of them.
        """
        loop = self.make()
        first, second, third = rows(3)
        loop.add(first)
        self.attempts.pop()[1].callback(None)
        loop.add(second)
        loop.add(third)
        self.assertEqual(loop.in_flight, 2)
        stopped = loop.stop()
        self.attempts.pop(0)[1].callback(None)
        self.assertNoResult(stopped)
        self.attempts.pop(0)[1].callback(None)
        self.assertIsNone(self.successResultOf(stopped))

    def test_stop(self) -> None:
        """
        Stopping drops the rows not sent (they stay due in the store) and
        waits for those in flight.
        """
        loop = self.make()
        for row in rows(3):
            loop.add(row)
        stopped = loop.stop()
        self.assertNoResult(stopped)
        self.assertEqual(len(loop), 1)
        loop.add(rows(5)[4])
        self.assertEqual((len(loop), len(self.attempts)), (1, 1))
        self.attempts.pop()[1].callback(None)
        self.assertIsNone(self.successResultOf(stopped))
        self.assertIsNone(self.successResultOf(loop.stop()))
