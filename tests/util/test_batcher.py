"""
Tests for L{fmtp.util.batcher}: items submitted while a call runs go
together in the next, one call at a time.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from fmtp.util.batcher import Batcher


class Calls:
    """
    A batch call whose Deferreds the test fires.
    """

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.pending: list[Deferred[list[int]]] = []

    def __call__(self, items: list[int]) -> Deferred[list[int]]:
        self.batches.append(items)
        d: Deferred[list[int]] = Deferred()
        self.pending.append(d)
        return d

    def answer(self) -> None:
        """
        Fire the oldest call with each item doubled.
        """
        self.pending.pop(0).callback(
            [2 * i for i in self.batches[-1 - len(self.pending)]]
        )


class BatcherTests(SynchronousTestCase):
    def test_idle_goes_at_once(self) -> None:
        """
        An item submitted while no call runs goes at once, alone.
        """
        batcher = Batcher(lambda items: succeed([i * 10 for i in items]))
        self.assertEqual(self.successResultOf(batcher.submit(1)), 10)
        self.assertEqual(self.successResultOf(batcher.submit(2)), 20)
        self.assertEqual(batcher.calls, 2)

    def test_items_wait_for_the_running_call(self) -> None:
        """
        Items submitted while a call runs wait, and all go in the next
        call, which starts as soon as the first returns; each waiter gets
        its own result only when its own call has returned.
        """
        calls = Calls()
        batcher = Batcher(calls)
        first = batcher.submit(1)
        rest = [batcher.submit(i) for i in (2, 3, 4)]
        self.assertEqual(calls.batches, [[1]])
        for d in rest:
            self.assertNoResult(d)
        calls.answer()
        self.assertEqual(self.successResultOf(first), 2)
        self.assertEqual(calls.batches, [[1], [2, 3, 4]])
        for d in rest:
            self.assertNoResult(d)
        calls.answer()
        self.assertEqual([self.successResultOf(d) for d in rest], [4, 6, 8])
        self.assertEqual(batcher.calls, 2)

    def test_limit(self) -> None:
        """
        A call takes at most C{limit} items; the others go in the next.
        """
        calls = Calls()
        batcher = Batcher(calls, limit=2)
        batcher.submit(1)
        waiting = [batcher.submit(i) for i in (2, 3, 4)]
        calls.answer()
        self.assertEqual(calls.batches, [[1], [2, 3]])
        calls.answer()
        self.assertEqual(calls.batches, [[1], [2, 3], [4]])
        calls.answer()
        self.assertEqual([self.successResultOf(d) for d in waiting], [4, 6, 8])

    def test_failure_fails_its_batch_only(self) -> None:
        """
        A call that fails fails every item in it, and no other: the next
        call runs.
        """
        outcomes = [fail(OSError("disk")), succeed([7])]
        batches = []

        def call(items: list[int]) -> Deferred[list[int]]:
            batches.append(items)
            return outcomes.pop(0)

        batcher = Batcher(call)
        self.failureResultOf(batcher.submit(1), OSError)
        self.assertEqual(self.successResultOf(batcher.submit(2)), 7)
        self.assertEqual(batches, [[1], [2]])

    def test_wrong_count_fails(self) -> None:
        """
        A call that answers for the wrong number of items fails them all
        rather than give a waiter another's result.
        """
        batcher = Batcher(lambda items: succeed([]))
        self.failureResultOf(batcher.submit(1), ValueError)

    def test_bad_limit(self) -> None:
        self.assertRaises(ValueError, Batcher, lambda items: succeed(items), 0)
