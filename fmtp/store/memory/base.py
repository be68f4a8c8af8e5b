"""
The base of the memory store's feature mixins: calls that fire at once,
and the store's lifecycle.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed

from fmtp.errors import StoreUnavailable


class MemoryBase:
    """
    What every feature of L{fmtp.store.memory.MemoryStore} runs on.

    Every method returns an already-fired L{Deferred}, which is allowed by
    the interfaces and keeps tests that use this store deterministic.

    The store needs no L{open} (there is nothing to prepare) but honours
    L{close}: afterwards every call fails with L{StoreUnavailable}, so a
    test catches code that keeps using a store the server has shut down.
    L{open} after L{close} makes it usable again with its data intact.

    Each feature's mixin keeps its own state, made in its C{__init__}
    (which calls the next one's, as cooperative mixins do); a feature may
    read another's where the SQL store joins their tables.
    """

    def __init__(self) -> None:
        self._closed = False

    def _call(self, func: Any, *args: Any) -> Deferred[Any]:
        """
        Run C{func} now and wrap its result or exception in a fired
        L{Deferred}, failing with L{StoreUnavailable} once closed.
        """
        if self._closed:
            return fail(StoreUnavailable("store is closed"))
        try:
            result = func(*args)
        except Exception as e:
            return fail(e)
        return succeed(result)

    # Lifecycle

    def open(self) -> Deferred[None]:
        self._closed = False
        return succeed(None)

    def close(self) -> Deferred[None]:
        self._closed = True
        return succeed(None)
