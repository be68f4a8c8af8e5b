"""
Token buckets per source, for datagram listeners.

Every datagram source is rate-limited (DESIGN, decision 8) so that neither
a flood nor a spoofed source can take more than its share of the server.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from fmtp.interfaces import IDatagramLimiter


@implementer(IDatagramLimiter)
class SourceRateLimiter:
    """
    One token bucket per source key, refilled at C{rate} tokens a second up
    to C{burst}.

    Buckets are kept in least-recently-used order and the table is bounded
    by C{max_sources}: a spoofer cycling through addresses evicts idle
    buckets rather than growing memory.  An evicted source starts with a
    full bucket, which is no worse than a new one.
    """

    def __init__(
        self,
        clock: IReactorTime,
        rate: float = 20.0,
        burst: float = 40.0,
        max_sources: int = 65536,
    ) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = burst
        self._max_sources = max_sources
        self._buckets: OrderedDict[object, tuple[float, float]] = OrderedDict()

    def allow(self, source: object, cost: float = 1.0) -> bool:
        """
        Take C{cost} tokens from C{source}'s bucket if it has them.

        @return: whether the request may be served.
        """
        now = self._clock.seconds()
        tokens, last = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[source] = (tokens, now)
        if len(self._buckets) > self._max_sources:
            self._buckets.popitem(last=False)
        return allowed

    def allow_refusal(self, source: object, size: int, request_size: int) -> bool:
        """
        Always: each refusal answers a datagram its source paid a token
        for, at an ordinary source's rate.
        """
        return True

    def __len__(self) -> int:
        return len(self._buckets)


class LogLimiter:
    """
    Rate-limits the log lines about each source, so that a peer sending
    garbage cannot fill the disk with logs, and counts what it held back
    so that the next line allowed says how much was missed.

    Sources are keyed as the caller likes (a host, or a tuple); the counts
    are kept for at most C{max_sources} sources, least recently logged
    first out, like the buckets.
    """

    def __init__(
        self,
        clock: IReactorTime,
        rate: float,
        burst: float,
        max_sources: int = 65536,
    ) -> None:
        self._buckets = SourceRateLimiter(clock, rate, burst, max_sources)
        self._max_sources = max_sources
        self._suppressed: OrderedDict[object, int] = OrderedDict()

    def allow(self, source: object) -> int | None:
        """
        Whether a line about C{source} may be logged now.

        @return: L{None} if it must not be (it is counted); else how many
            lines about C{source} were held back since the last one
            allowed, for the caller to say so in this one.
        """
        if not self._buckets.allow(source):
            self._suppressed[source] = self._suppressed.pop(source, 0) + 1
            if len(self._suppressed) > self._max_sources:
                self._suppressed.popitem(last=False)
            return None
        return self._suppressed.pop(source, 0)

    def emit(
        self, log: Logger, source: object, format: str, level: str = "info", **fields
    ) -> None:
        """
        Log C{format} (a L{twisted.logger} format, with C{fields}) about
        C{source} at C{level}, unless L{allow} holds it back; the line
        ends with how many lines about C{source} were held back before it.
        """
        suppressed = self.allow(source)
        if suppressed is not None:
            getattr(log, level)(
                format + "{suppressed}",
                suppressed=suppressed_note(suppressed),
                **fields,
            )


def suppressed_note(count: int) -> str:
    """
    The words a log line ends with when lines before it were held back.
    """
    if not count:
        return ""
    return f" ({count} similar line{'s' if count > 1 else ''} suppressed)"
