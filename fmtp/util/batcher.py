"""
Many small store calls made one: the items asked for in one turn of the
reactor, or while the previous call runs, go to the store together.

Settling a pipelined burst of federation deliveries asks the store for
one row's object, then removes one row, per reply; each a trip to the
store's thread and back, and, for a write, a savepoint of a group commit.
A L{Batcher} gathers them as a group commit gathers writes: an item
submitted while no call runs goes at once, alone (an idle server adds no
wait); while a call runs, every item submitted waits for the next call,
and they all go in it.  At most one call runs at a time, so nothing waits
longer than one call; under load the calls grow with the load.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

__all__ = ["Batcher"]

K = TypeVar("K")
V = TypeVar("V")

#: One call for many items: a L{Deferred} (or a value) of one result per
#: item, in order.
BatchCall = Callable[[list[K]], "Deferred[Sequence[V]] | Sequence[V]"]


class Batcher(Generic[K, V]):
    """
    Gathers items into calls of C{call(items)}, at most C{limit} items and
    one call at a time.

    @ivar calls: how many calls it made, for tests and benchmarks.
    """

    def __init__(self, call: BatchCall[K, V], limit: int = 500) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._call = call
        self._limit = limit
        self._waiting: list[tuple[K, Deferred[V]]] = []
        self._running = False
        self.calls = 0

    def submit(self, item: K) -> Deferred[V]:
        """
        Have C{item} in a call soon.

        @return: a L{Deferred} that fires with its result once its call
            has returned (for a store write: once it is durable), or fails
            as the whole call did.
        """
        waiter: Deferred[V] = Deferred()
        self._waiting.append((item, waiter))
        if not self._running:
            self._flush()
        return waiter

    def _flush(self) -> None:
        batch = self._waiting[: self._limit]
        del self._waiting[: self._limit]
        self._running = True
        self.calls += 1
        d = maybeDeferred(self._call, [item for item, _ in batch])
        d.addBoth(self._done, batch)

    def _done(
        self,
        outcome: Sequence[V] | Failure,
        batch: list[tuple[K, Deferred[V]]],
    ) -> None:
        self._running = False
        if not isinstance(outcome, Failure) and len(outcome) != len(batch):
            outcome = Failure(
                ValueError(f"{len(outcome)} results for {len(batch)} items")
            )
        # The next call is started before the waiters run, so that what
        # they submit goes in the one after.
        if self._waiting:
            self._flush()
        for i, (_, waiter) in enumerate(batch):
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome[i])
