"""
Work shared by every caller who asks for the same thing while it runs.

When a hundred deliveries to lenore.org start at once, they should cause
one DNS lookup of its key and one connection attempt, not a hundred (the
"thundering herd" on a cold cache).  L{SingleFlight} runs the work once
per key at a time and hands its result to every caller who asked
meanwhile, as Go's C{singleflight} package does.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: What a piece of work may return: a Deferred, a coroutine, or a value.
Work = Callable[[], "Deferred[V] | Coroutine[Any, Any, V] | V"]


@dataclass(eq=False, slots=True)
class _Flight(Generic[V]):
    waiters: list[Deferred[V]] = field(default_factory=list)
    work: Deferred[V] | None = None

    def leave(self, waiter: Deferred[V]) -> None:
        # A waiter's canceller: that caller stops waiting, the work goes on
        # for the others.
        if waiter in self.waiters:
            self.waiters.remove(waiter)


class SingleFlight(Generic[K, V]):
    """
    At most one piece of work in flight per key; callers asking for a key
    whose work is running wait for that one.

    Each caller gets a L{Deferred} of its own, so a caller that gives up
    (cancels it: a timeout) only stops waiting, and the work goes on for
    the others.  The work itself is cancelled only by L{cancel_all}, when
    its owner shuts down.

    What the work ends with, value or failure, goes to every caller
    waiting then, and is then forgotten: the next call for the key starts
    the work again (keeping results is a cache's job, as
    L{fmtp.dns.cache.LookupCache} does on top of this).  A failure with nobody
    waiting (work L{start}ed in the background) is dropped: such work
    should log what it needs to.
    """

    def __init__(self) -> None:
        self._flights: dict[K, _Flight[V]] = {}

    def __len__(self) -> int:
        """
        How many pieces of work are running.
        """
        return len(self._flights)

    def __contains__(self, key: object) -> bool:
        """
        Whether the work for C{key} is running.
        """
        return key in self._flights

    def waiting(self, key: K) -> int:
        """
        How many callers wait for the work for C{key} (0 if none runs, or
        it runs in the background only).
        """
        flight = self._flights.get(key)
        return 0 if flight is None else len(flight.waiters)

    def run(self, key: K, work: Work[V]) -> Deferred[V]:
        """
        The result of the work for C{key}: the one running, or C{work()}
        started now.

        @param work: called with no arguments, only if no work for C{key}
            runs; may return a L{Deferred}, a coroutine or a plain value,
            and may raise.
        @return: a L{Deferred} for this caller only.
        """
        flight = self._flights.get(key)
        new = flight is None
        if flight is None:
            flight = self._flights[key] = _Flight()
        waiter: Deferred[V] = Deferred(flight.leave)
        # Registered before the work starts: it may end at once.
        flight.waiters.append(waiter)
        if new:
            self._launch(key, flight, work)
        return waiter

    def start(self, key: K, work: Work[V]) -> None:
        """
        Start C{work()} for C{key} in the background, unless work for it
        already runs; callers may then join it with L{run}.
        """
        if key not in self._flights:
            flight: _Flight[V] = _Flight()
            self._flights[key] = flight
            self._launch(key, flight, work)

    def cancel_all(self) -> None:
        """
        Cancel every piece of work running; its waiters fail as it does
        (with L{twisted.internet.defer.CancelledError}, usually).
        """
        for flight in list(self._flights.values()):
            if flight.work is not None:
                flight.work.cancel()

    def _launch(self, key: K, flight: _Flight[V], work: Work[V]) -> None:
        flight.work = maybeDeferred(work)
        flight.work.addBoth(self._landed, key, flight)

    def _landed(self, result: V | Failure, key: K, flight: _Flight[V]) -> None:
        # Forgotten before the waiters hear: one that asks again starts
        # the work anew rather than joining work that has ended.
        if self._flights.get(key) is flight:
            del self._flights[key]
        waiters, flight.waiters = flight.waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)
