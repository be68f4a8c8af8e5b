"""
Tests for L{fmtp.util.singleflight}: work shared by concurrent callers.
"""

from __future__ import annotations

import gc

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from fmtp.util.singleflight import SingleFlight


class Work:
    """
    Work the test ends by hand, counting how often it was started.
    """

    def __init__(self) -> None:
        self.started: list[Deferred] = []

    def __call__(self) -> Deferred:
        d: Deferred = Deferred()
        self.started.append(d)
        return d


class SingleFlightTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.flights: SingleFlight[str, str] = SingleFlight()
        self.work = Work()

    def test_shared(self) -> None:
        """
        Callers asking while the work runs share it, and each gets the
        result.
        """
        waiting = [self.flights.run("a", self.work) for _ in range(3)]
        self.assertEqual(len(self.work.started), 1)
        self.assertIn("a", self.flights)
        self.assertEqual(self.flights.waiting("a"), 3)
        self.work.started[0].callback("A")
        self.assertEqual([self.successResultOf(d) for d in waiting], ["A"] * 3)
        self.assertEqual(len(self.flights), 0)
        self.assertEqual(self.flights.waiting("a"), 0)

    def test_keys_apart(self) -> None:
        self.flights.run("a", self.work)
        self.flights.run("b", self.work)
        self.assertEqual(len(self.work.started), 2)
        self.assertEqual(len(self.flights), 2)

    def test_failure_to_all(self) -> None:
        waiting = [self.flights.run("a", self.work) for _ in range(2)]
        self.work.started[0].errback(ValueError("no"))
        for d in waiting:
            self.failureResultOf(d, ValueError)

    def test_again_after_the_end(self) -> None:
        """
        A result is not kept: the next call starts the work again.
        """
        self.flights.run("a", self.work)
        self.work.started[0].callback("A")
        self.flights.run("a", self.work)
        self.assertEqual(len(self.work.started), 2)

    def test_caller_gives_up(self) -> None:
        """
        A caller that cancels stops waiting; the work goes on for the
        others.
        """
        first = self.flights.run("a", self.work)
        second = self.flights.run("a", self.work)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertEqual(self.flights.waiting("a"), 1)
        self.assertNoResult(self.work.started[0])
        self.work.started[0].callback("A")
        self.assertEqual(self.successResultOf(second), "A")

    def test_ends_at_once(self) -> None:
        """
        Work that ends before it returns (a value, a fired Deferred, an
        exception) still reaches its caller, and leaves nothing in flight.
        """
        self.assertEqual(self.successResultOf(self.flights.run("a", lambda: "A")), "A")
        d = self.flights.run("b", lambda: succeed("B"))
        self.assertEqual(self.successResultOf(d), "B")

        def broken() -> str:
            raise RuntimeError("bug")

        self.failureResultOf(self.flights.run("c", broken), RuntimeError)
        self.assertEqual(len(self.flights), 0)

    def test_coroutine(self) -> None:
        async def work() -> str:
            return await self.work()

        d = self.flights.run("a", work)
        self.flights.run("a", work)
        self.assertEqual(len(self.work.started), 1)
        self.work.started[0].callback("A")
        self.assertEqual(self.successResultOf(d), "A")

    def test_background(self) -> None:
        """
        Work started in the background can be joined, and is not started
        twice.
        """
        self.flights.start("a", self.work)
        self.flights.start("a", self.work)
        self.assertEqual(self.flights.waiting("a"), 0)
        joined = self.flights.run("a", self.work)
        self.assertEqual(len(self.work.started), 1)
        self.work.started[0].callback("A")
        self.assertEqual(self.successResultOf(joined), "A")

    def test_background_failure_is_not_unhandled(self) -> None:
        """
        Background work that fails with nobody waiting leaves no unhandled
        error behind: the work logs what it needs to.
        """
        self.flights.start("a", self.work)
        self.work.started.pop().errback(ValueError("no"))
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(ValueError), [])
        self.assertEqual(len(self.flights), 0)

    def test_waiter_asks_again(self) -> None:
        """
        A waiter that asks again when it hears starts new work, rather
        than joining the work that just ended.
        """
        again: list[Deferred] = []
        d = self.flights.run("a", self.work)
        d.addCallback(lambda _: again.append(self.flights.run("a", self.work)))
        self.work.started[0].callback("A")
        self.assertEqual(len(self.work.started), 2)
        self.assertNoResult(again[0])

    def test_cancel_all(self) -> None:
        waiting = [self.flights.run(key, self.work) for key in "ab"]
        self.flights.cancel_all()
        for d in waiting:
            self.failureResultOf(d, CancelledError)
        self.assertEqual(len(self.flights), 0)
