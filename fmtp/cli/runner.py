"""
Running a command's asynchronous part on the global reactor, with Ctrl-C
ending it cleanly.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.python.failure import Failure

from fmtp.cli.status import EXIT_OK


def run_on_reactor(main: Callable[[object], Awaitable[int | None]]) -> int:
    """
    Run C{main(reactor)} on the global reactor until it finishes.

    Not L{twisted.internet.task.react}: a signal that stops the reactor
    would make it exit 0, as if the command had succeeded.  Here SIGINT
    and SIGTERM stop the reactor and give status 128 + the signal, as a
    shell reports for a command a signal ended.

    @return: the exit status C{main} returned, or the signal's.
    @raise Exception: what C{main} raised.
    """
    from twisted.internet import reactor

    outcome: list[object] = []
    signals: list[int] = []

    def stop() -> None:
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    def on_signal(number: int, frame: object) -> None:
        signals.append(number)
        reactor.callFromThread(stop)

    previous = {
        number: signal.signal(number, on_signal)
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        finished = Deferred.fromCoroutine(main(reactor))
        finished.addBoth(outcome.append)
        finished.addBoth(lambda _: reactor.callWhenRunning(stop))
        reactor.run(installSignalHandlers=False)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if signals:
        return 128 + signals[0]
    (result,) = outcome
    if isinstance(result, Failure):
        result.raiseException()
    return EXIT_OK if result is None else int(result)
