"""
A sweep of the store run on schedule, one at a time, that a stopping
server waits for.

The federation's housekeeping and the presence service each forget, every
so often, what the store keeps only for a while.  Both need the same
three things: a L{LoopingCall} on the injected clock, a sweep started by
hand (tests, or a caller who wants it now) that is the same as a
scheduled one, and a stop that lets a sweep under way finish, so the
store is not closed under it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall


class PeriodicSweep:
    """
    Runs C{sweep()} every C{interval} seconds of C{clock} while started.

    @param sweep: a coroutine function that never raises: it logs its own
        failures, since the next sweep tries again and nothing depends on
        one being prompt.
    """

    def __init__(
        self,
        clock: IReactorTime,
        interval: float,
        sweep: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        self._clock = clock
        self.interval = interval
        self._sweep = sweep
        self._loop: LoopingCall | None = None
        self._running: Deferred[None] | None = None

    def start(self) -> None:
        """
        Sweep now, then every C{interval} seconds.
        """
        self._loop = LoopingCall(self.run)
        self._loop.clock = self._clock
        self._loop.start(self.interval, now=True)

    def run(self) -> Deferred[None]:
        """
        Sweep once, now; the Deferred fires when it is done.
        """
        d = self._running = Deferred.fromCoroutine(self._sweep())

        def finished(result: object) -> object:
            if self._running is d:
                self._running = None
            return result

        return d.addBoth(finished)

    def stop(self) -> Deferred[None] | None:
        """
        Sweep no more.

        @return: L{None}, or a L{Deferred} that fires once the sweep under
            way is done.
        """
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        if self._running is None:
            return None
        done: Deferred[None] = Deferred()
        self._running.addBoth(lambda result: (done.callback(None), result)[1])
        return done
