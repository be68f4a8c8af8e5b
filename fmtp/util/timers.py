"""
The delayed calls one owner makes on a clock, kept so that they are
cancelled together when the owner stops.

A service that schedules work (grace periods, coalesced announcements, a
LoopingCall) hands this to what it builds in place of the reactor: when
the server stops, L{Timers.cancel_all} leaves nothing of it to run
against a store that is about to close.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer


@implementer(IReactorTime)
class Timers:
    """
    An L{IReactorTime} over C{clock} that remembers the calls it
    schedules until they run or are cancelled.  Once L{cancel_all} was
    called, a call scheduled later is cancelled at once (never runs).
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._calls: set[IDelayedCall] = set()
        self.stopped = False

    def seconds(self) -> float:
        return self._clock.seconds()

    def callLater(
        self, delay: float, function: Callable[..., Any], *args: Any, **kw: Any
    ) -> IDelayedCall:
        def run() -> None:
            self._calls.discard(call)
            function(*args, **kw)

        call = self._clock.callLater(delay, run)
        if self.stopped:
            call.cancel()
        else:
            self._calls.add(call)
        return call

    def getDelayedCalls(self) -> list[IDelayedCall]:
        """
        The calls scheduled here that are still to run.
        """
        return [call for call in self._calls if call.active()]

    def cancel_all(self) -> None:
        """
        Cancel every call still to run, and any scheduled from now on.
        """
        self.stopped = True
        calls, self._calls = self._calls, set()
        for call in calls:
            if call.active():
                call.cancel()
