"""
A bounded mapping whose entries expire, each after its own time to live.

DNS answers last their TTL, a remote user object its C{Ttl} property, a
route that failed its retry period: each is kept only while it may still
be used, and only so many, the least recently used going first, so that
a stream of new names cannot grow the server's memory without bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

from twisted.internet.interfaces import IReactorTime

__all__ = ["TTLCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """
    At most C{max_entries} values, each kept for the time to live it was
    stored with.

    An entry stored at time C{t} for C{ttl} seconds is alive through
    C{t + ttl}, that instant included, and dead after it.  A dead entry is
    never returned and is dropped when met; when the cache is full the
    least recently stored or L{get} entry goes first.  L{peek}, C{in} and
    iteration do not count as uses.

    Time comes from the injected clock, so tests drive it with a
    L{twisted.internet.task.Clock}.
    """

    def __init__(self, clock: IReactorTime, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("a cache must hold at least one entry")
        self._clock = clock
        self._max_entries = max_entries
        #: key -> (deadline, value), least recently used first.
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        """
        How many entries are held (dead ones not met yet included).
        """
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """
        Whether C{key} has a live entry.
        """
        return self._live(key) is not None  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[K]:
        """
        The keys of the live entries, least recently used first.
        """
        now = self._clock.seconds()
        return iter([key for key, (dies, _) in self._entries.items() if now <= dies])

    def get(self, key: K, default: V | None = None) -> V | None:
        """
        The live value of C{key}, now its most recently used, or
        C{default}.
        """
        entry = self._live(key)
        if entry is None:
            return default
        self._entries.move_to_end(key)
        return entry[1]

    def peek(self, key: K, default: V | None = None) -> V | None:
        """
        The live value of C{key}, or C{default}, without counting as a use.
        """
        entry = self._live(key)
        return default if entry is None else entry[1]

    def set(self, key: K, value: V, ttl: float) -> None:
        """
        Keep C{value} for C{key} for C{ttl} seconds from now, as the most
        recently used entry, dropping the least recently used if full.
        """
        self._entries[key] = (self._clock.seconds() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def pop(self, key: K, default: V | None = None) -> V | None:
        """
        Drop C{key}'s entry; its live value, or C{default}.
        """
        entry = self._live(key)
        self._entries.pop(key, None)
        return default if entry is None else entry[1]

    def _live(self, key: K) -> tuple[float, V] | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] < self._clock.seconds():
            del self._entries[key]
            return None
        return entry
