"""
Tests for L{fmtp.util.timers}: the calls an owner made, cancelled
together.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from fmtp.util.timers import Timers


def test_cancel_all_cancels_what_is_still_to_run() -> None:
    clock = Clock()
    timers = Timers(clock)
    assert verifyObject(IReactorTime, timers)
    ran = []
    timers.callLater(1, ran.append, "early")
    late = timers.callLater(5, ran.append, "late")
    clock.advance(1)
    assert ran == ["early"]
    assert timers.getDelayedCalls() == [late]
    timers.cancel_all()
    assert clock.getDelayedCalls() == []
    # Asked for once stopped: never runs.
    after = timers.callLater(0, ran.append, "after")
    assert not after.active()
    clock.advance(10)
    assert ran == ["early"]
    assert timers.seconds() == clock.seconds()
