"""
A small cache of the public objects a store read lately, so that a GET of
a hot public object is answered in the reactor thread, with no turn on
the store's thread.

Only what every reader sees alike is cached: an object that is public, not
a user object (whose owner sees more than others) and not removed by its
owner (whom only those who hold it still see).  So a hit is served to
anyone, logged in or not, without asking who they are: no access rule
depends on the reader for such an object (L{fmtp.access.readable}).

It stays true to the store by being told of every change in SQLite
itself, not by the code that writes: a temporary trigger on the store's
connection calls L{PublicObjectCache._changed} on the store's thread for
each row of C{objects} inserted, updated or deleted, by any statement of
any module.  The trigger hands the invalidation to the reactor with
C{callFromThread}, which also delivers every result of the store's
thread, in order: a read done before a write offers its (older) object
before the write's invalidation arrives, a read done after it offers the
new one, and the write's own result (the 2xx of a PUT or DELETE) is
delivered after its invalidation.  So the next GET after a reply to a
write sees the write.

Another process writing the file (C{fmtp users delete} while the server
runs) fires no trigger here.  SQLite's C{PRAGMA data_version} on the
store's connection changes when another connection commits: each read
that offers an object reads it too, and the whole cache is dropped when
it changed.  The cache serves only for L{REVALIDATE_AFTER} seconds after
the last such check, so what another process changes is seen within that
time, and a hot object costs one store read per interval.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime

from fmtp.delivery import StoredObject
from fmtp.objects import USER_TYPE, FMTPObject

#: How many objects the cache holds, at most.
CACHE_SIZE = 1024
#: Seconds a check of C{data_version} vouches for the cache.
REVALIDATE_AFTER = 1.0

_TRIGGERS = [
    f"CREATE TEMP TRIGGER IF NOT EXISTS fmtp_read_cache_{event.lower()} "
    f"AFTER {event} ON main.objects BEGIN "
    f"SELECT fmtp_object_changed({row}.id); END"
    for event, row in (("INSERT", "NEW"), ("UPDATE", "OLD"), ("DELETE", "OLD"))
]


def cacheable(found: StoredObject | None) -> bool:
    """
    Whether a stored object reads the same for every reader: public, not
    a user object, not removed.
    """
    return (
        found is not None
        and not found.removed
        and found.obj.type != USER_TYPE
        and found.obj.public
    )


class CachedObject:
    """
    A public object, and what a reply carrying it needs (its headers with
    its C{Digest}), computed once.
    """

    __slots__ = ("obj", "headers")

    def __init__(self, obj: FMTPObject) -> None:
        self.obj = obj
        headers = obj.to_headers()
        headers["Digest"] = obj.digest()
        self.headers = headers


class PublicObjectCache:
    """
    The public objects a store read lately (see the module's docstring).

    L{get}, L{offer}, L{invalidate} and L{clear} run in the reactor thread;
    L{watch} and L{_changed} on the store's thread.

    @param clock: what dates the last check of C{data_version}.
    @param post: calls a function in the reactor thread, in order with the
        store's results (the reactor's C{callFromThread}).
    """

    def __init__(
        self,
        clock: IReactorTime,
        post: Callable[..., Any],
        size: int = CACHE_SIZE,
        revalidate_after: float = REVALIDATE_AFTER,
    ) -> None:
        self._clock = clock
        self._post = post
        self._size = size
        self._revalidate_after = revalidate_after
        # Reactor thread: id to entry, oldest first.
        self._entries: dict[str, CachedObject] = {}
        self._data_version: int | None = None
        self._checked_at = float("-inf")
        # Store thread: the ids whose change must be told to the reactor
        # (those offered since they last changed), and the connection
        # the triggers are on.
        self._watched: set[str] = set()
        self._hooked: sqlite3.Connection | None = None

    def __len__(self) -> int:
        return len(self._entries)

    # The reactor thread

    def get(self, object_id: str) -> CachedObject | None:
        """
        The cached object of id C{object_id}, or L{None}: not cached, or
        the cache not checked against other processes lately.
        """
        entry = self._entries.get(object_id)
        if entry is None:
            return None
        if self._clock.seconds() - self._checked_at > self._revalidate_after:
            return None
        return entry

    def offer(
        self, object_id: str, found: StoredObject | None, data_version: int
    ) -> None:
        """
        What a read of C{object_id} found, and the C{data_version} it was
        read under (L{watch}).
        """
        if data_version != self._data_version:
            self._entries.clear()
            self._data_version = data_version
        self._checked_at = self._clock.seconds()
        entries = self._entries
        entries.pop(object_id, None)
        if not cacheable(found):
            return
        if len(entries) >= self._size:
            del entries[next(iter(entries))]
        entries[object_id] = CachedObject(found.obj)

    def invalidate(self, object_id: str) -> None:
        """
        The object of id C{object_id} changed: forget it.
        """
        self._entries.pop(object_id, None)

    def clear(self) -> None:
        """
        Forget every object.
        """
        self._entries.clear()

    # The store's thread

    def watch(self, conn: sqlite3.Connection, found: StoredObject | None) -> int:
        """
        On the store's thread, after reading C{found}: if it is cacheable,
        have its changes told to the reactor from now on.

        @return: the connection's C{data_version}, for L{offer}.
        """
        if cacheable(found):
            if self._hooked is not conn:
                conn.create_function(
                    "fmtp_object_changed", 1, self._changed, deterministic=False
                )
                for trigger in _TRIGGERS:
                    conn.execute(trigger)
                self._hooked = conn
                self._watched.clear()
                self._post(self.clear)
            watched = self._watched
            if len(watched) >= 4 * self._size:
                # Those evicted since stay watched: start afresh.
                watched.clear()
                self._post(self.clear)
            watched.add(found.obj.id)
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        return int(version)

    def _changed(self, object_id: str) -> None:
        """
        On the store's thread, from the trigger: a row of C{objects}
        changed.
        """
        if object_id in self._watched:
            self._watched.discard(object_id)
            self._post(self.invalidate, object_id)
