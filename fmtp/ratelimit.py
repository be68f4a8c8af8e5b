"""
Token buckets per source, for datagram listeners.

Every datagram source is rate-limited (DESIGN, decision 8) so that neither
a flood nor a spoofed source can take more than its share of the server.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.internet.interfaces import IReactorTime


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

    def __len__(self) -> int:
        return len(self._buckets)
