"""
What DNS said, kept by TTL.

L{LookupCache} keeps what was learned for its TTL, refreshes hot entries
before they expire, shares a lookup among every caller waiting for it, and
serves a stale answer while DNS is down (RFC 8767) rather than stop
federation with every domain at once.

All time comes from an injected L{IReactorTime}, so tests drive the cache
with a L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from fmtp.errors import FMTPError
from fmtp.util.singleflight import SingleFlight
from fmtp.util.ttlcache import TTLCache

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "FAILURE_RECHECK",
    "LookupCache",
    "MAX_NEGATIVE_TTL",
    "MAX_TTL",
    "MIN_TTL",
    "NegativeAnswer",
    "REFRESH_FRACTION",
    "STALE_FOR",
    "error_text",
]

#: Bounds on how long an answer is kept.  The floor stops a zone with
#: C{TTL 0} from turning every message into a DNS query; the ceiling makes
#: a key withdrawal (or a revocation) reach us within a day whatever TTL
#: the zone asked for.
MIN_TTL = 60.0
MAX_TTL = 86400.0

#: Negative answers are kept at most 3 hours, as RFC 2308 section 5
#: advises: a domain that just published its first key should not wait a
#: day to be believed.
MAX_NEGATIVE_TTL = 3 * 3600.0

#: How long past its expiry an answer may still be served while DNS fails
#: (RFC 8767 suggests one to three days).
STALE_FOR = 86400.0

#: After a failed refresh of an expired entry, serve it stale without
#: asking DNS again for this long (RFC 8767's "failure recheck timer"), so
#: that while DNS is down callers get the stale answer at once instead of
#: each waiting for a timeout first.
FAILURE_RECHECK = 30.0

#: An entry used in the last tenth of its life is refreshed in the
#: background, so a domain in steady use never sees a cache miss.
REFRESH_FRACTION = 0.1

#: Default bound on the number of entries of each cache.
DEFAULT_CACHE_SIZE = 10_000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class NegativeAnswer(Exception):
    """
    What a lookup given to L{LookupCache} raises for a permanent answer
    that should be remembered: the error to give callers, and for how long.
    """

    def __init__(self, error: FMTPError, ttl: float) -> None:
        super().__init__(error.message)
        self.error = error
        self.ttl = ttl


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V | None
    error: FMTPError | None
    stored: float
    expires: float
    refresh_at: float
    recheck_at: float = 0.0

    def result(self) -> Deferred[V]:
        if self.error is not None:
            # A fresh exception each time: a Failure keeps a traceback,
            # and callers should not share one.
            return fail(type(self.error)(self.error.message))
        return succeed(self.value)  # type: ignore[arg-type]


class LookupCache(Generic[K, V]):
    """
    A bounded cache of DNS-derived answers, by TTL.

      - An answer is kept for its TTL, clamped to [C{min_ttl}, C{max_ttl}].
      - Used in the last L{REFRESH_FRACTION} of its life, it is looked up
        again in the background, and the caller gets the cached answer at
        once: a domain in steady use never waits for DNS.
      - Callers asking for a key whose lookup is in flight wait for that
        one lookup (no thundering herd on a cold or expired key).
      - A permanent answer (the lookup raises L{NegativeAnswer}) is cached for
        its own TTL, clamped to [C{min_ttl}, C{max_negative_ttl}].
      - A temporary failure leaves any answer in place, and one that
        expired less than C{stale_for} ago is served rather than the
        failure (RFC 8767): a DNS outage should not stop federation with
        every domain we already know.  Negative answers are not served
        stale: a stale "no key" would bounce a message for good, while the
        temporary failure only delays it.
      - At most C{max_entries} keys are kept; the least recently used go.

    The entries live in a L{TTLCache} for as long as they may be served
    (stale included), and lookups are shared through a L{SingleFlight}.

    @param lookup: given a key, returns a L{Deferred} that fires with
        C{(value, ttl)}, or fails with L{NegativeAnswer} for a cacheable
        permanent answer, or with the temporary error to give callers.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        lookup: Callable[[K], Deferred[tuple[V, float]]],
        name: str = "DNS",
        max_entries: int = DEFAULT_CACHE_SIZE,
        min_ttl: float = MIN_TTL,
        max_ttl: float = MAX_TTL,
        max_negative_ttl: float = MAX_NEGATIVE_TTL,
        stale_for: float = STALE_FOR,
        refresh_fraction: float = REFRESH_FRACTION,
        failure_recheck: float = FAILURE_RECHECK,
    ) -> None:
        self._clock = clock
        self._lookup = lookup
        self._name = name
        self._min_ttl = min_ttl
        self._max_ttl = max_ttl
        self._max_negative_ttl = max_negative_ttl
        self._stale_for = stale_for
        self._refresh_fraction = refresh_fraction
        self._failure_recheck = failure_recheck
        self._entries: TTLCache[K, _Entry[V]] = TTLCache(clock, max_entries)
        self._lookups: SingleFlight[K, _Entry[V]] = SingleFlight()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def in_flight(self) -> int:
        """
        How many lookups are running (for tests and metrics).
        """
        return len(self._lookups)

    def get(self, key: K) -> Deferred[V]:
        """
        The answer for C{key}, from the cache or from a lookup.
        """
        now = self._clock.seconds()
        entry = self._entries.get(key)
        if entry is not None:
            if now < entry.expires:
                if now >= entry.refresh_at and key not in self._lookups:
                    self._log.debug(
                        "Refreshing {cache} entry {key!r} in the background",
                        cache=self._name,
                        key=key,
                    )
                    self._lookups.start(key, lambda: self._look_up(key))
                return entry.result()
            if entry.error is None and now < entry.recheck_at:
                # Expired but not by more than stale_for (the cache would
                # have dropped it), and DNS failed a moment ago.
                return succeed(entry.value)  # type: ignore[arg-type]
        d = self._lookups.run(key, lambda: self._look_up(key))
        # Each caller gets the value, or a fresh error, from the entry.
        return d.addCallback(_Entry.result)

    def forget(self, key: K) -> None:
        """
        Drop what is known of C{key}, so the next use looks it up again.
        """
        self._entries.pop(key)

    def _look_up(self, key: K) -> Deferred[_Entry[V]]:
        return maybeDeferred(self._lookup, key).addBoth(self._finished, key)

    def _store(
        self, key: K, value: V | None, error: FMTPError | None, ttl: float
    ) -> _Entry[V]:
        now = self._clock.seconds()
        maximum = self._max_ttl if error is None else self._max_negative_ttl
        ttl = min(max(float(ttl), self._min_ttl), maximum)
        entry = _Entry(
            value, error, now, now + ttl, now + ttl * (1 - self._refresh_fraction)
        )
        # An answer may be served stale once expired; a negative one not.
        self._entries.set(key, entry, ttl + (self._stale_for if error is None else 0))
        return entry

    def _finished(
        self, result: tuple[V, float] | Failure, key: K
    ) -> _Entry[V] | Failure:
        """
        Keep what a lookup found, and say what its waiters get: an entry,
        or the failure.
        """
        now = self._clock.seconds()
        if not isinstance(result, Failure):
            value, ttl = result
            return self._store(key, value, None, ttl)
        if result.check(NegativeAnswer):
            negative = result.value
            return self._store(key, None, negative.error, negative.ttl)
        old = self._entries.peek(key)
        if old is not None and old.error is None:
            if now >= old.expires:
                self._log.warn(
                    "Serving stale {cache} entry {key!r} (expired {ago:.0f} s "
                    "ago) because the lookup failed: {error}",
                    cache=self._name,
                    key=key,
                    ago=now - old.expires,
                    error=error_text(result),
                )
                old.recheck_at = now + self._failure_recheck
            else:
                # Try again a little later, not at every use meanwhile.
                old.refresh_at = min(old.expires, now + self._failure_recheck)
                self._log.info(
                    "Background refresh of {cache} entry {key!r} failed, "
                    "keeping it: {error}",
                    cache=self._name,
                    key=key,
                    error=error_text(result),
                )
            return old
        if not self._lookups.waiting(key):
            self._log.info(
                "Background refresh of {cache} entry {key!r} failed: {error}",
                cache=self._name,
                key=key,
                error=error_text(result),
            )
        return result


def error_text(failure: Failure | BaseException) -> str:
    """
    What went wrong, for a log line or an error message: an
    L{FMTPError}'s own message, else the exception's type and text.
    """
    value = failure.value if isinstance(failure, Failure) else failure
    if isinstance(value, FMTPError):
        return value.message
    return f"{type(value).__name__}: {value}"
