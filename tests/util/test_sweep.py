"""
L{fmtp.util.sweep.PeriodicSweep}: on schedule, by hand, and a stop that
waits for a sweep under way.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from fmtp.util.sweep import PeriodicSweep


class Sweeps:
    def __init__(self) -> None:
        self.started = 0
        self.waiting: list[Deferred[None]] = []

    async def sweep(self) -> None:
        self.started += 1
        waiting: Deferred[None] = Deferred()
        self.waiting.append(waiting)
        await waiting


def test_at_start_then_every_interval() -> None:
    clock, sweeps = Clock(), Sweeps()
    schedule = PeriodicSweep(clock, 10.0, sweeps.sweep)
    schedule.start()
    assert sweeps.started == 1
    sweeps.waiting.pop().callback(None)
    clock.advance(10)
    assert sweeps.started == 2
    sweeps.waiting.pop().callback(None)
    assert schedule.stop() is None
    clock.advance(100)
    assert sweeps.started == 2


def test_stop_waits_for_the_sweep_under_way() -> None:
    clock, sweeps = Clock(), Sweeps()
    schedule = PeriodicSweep(clock, 10.0, sweeps.sweep)
    schedule.start()
    stopped = schedule.stop()
    assert stopped is not None
    assert not stopped.called
    sweeps.waiting.pop().callback(None)
    assert stopped.called
    assert clock.getDelayedCalls() == []


def test_by_hand_as_on_schedule() -> None:
    clock, sweeps = Clock(), Sweeps()
    schedule = PeriodicSweep(clock, 10.0, sweeps.sweep)
    first = schedule.run()
    assert sweeps.started == 1 and not first.called
    stopped = schedule.stop()
    assert stopped is not None and not stopped.called
    sweeps.waiting.pop().callback(None)
    assert first.called and stopped.called
