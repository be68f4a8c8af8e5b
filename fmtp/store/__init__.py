"""
The stores, and the choice of one from a URL.

A store is named by a URL on the command line (C{twistd fmtp --store ...})
and in C{fmtp adduser}, so that both processes find the same data and so
that adding a backend adds a URL form rather than an option.  Every store
provides L{fmtp.interfaces.IObjectStore} and L{fmtp.interfaces.IAccountStore}
and must be opened (C{open()}) before use and closed (C{close()}) after.

Every store also provides L{fmtp.interfaces.IDeliveryStore}, the outbound
queue and the inboxes federation needs; its value type,
L{QueuedDelivery}, lives in L{fmtp.delivery} and is re-exported here.
And every store provides L{fmtp.interfaces.IPresenceStore} (presence
subscriptions) and L{fmtp.interfaces.IRoomStore} (chat rooms), whose
values and rules are in L{fmtp.store.presence} and L{fmtp.store.rooms}.

Each store is one mixin per feature: L{fmtp.store.sql} over the SQLite
engine (composed as L{SQLiteStore}), L{fmtp.store.memory} over a small
base (L{MemoryStore}).  The argument checks they share are in
L{fmtp.store.checks}.
"""

from __future__ import annotations

import os
from typing import Any

from fmtp.delivery import QueuedDelivery
from fmtp.store.memory import MemoryStore
from fmtp.store.sql.engine import SchemaTooNew
from fmtp.store.sqlite import SQLiteStore

__all__ = [
    "MemoryStore",
    "QueuedDelivery",
    "SQLiteStore",
    "SchemaTooNew",
    "store_from_url",
]

ACCEPTED_FORMS = (
    "memory: (kept in memory, lost on exit), "
    "sqlite:PATH (an SQLite file, e.g. sqlite:fmtp-data/fmtp.db or "
    "sqlite:/var/lib/fmtp/fmtp.db)"
)


def store_from_url(url: str, reactor: Any = None) -> MemoryStore | SQLiteStore:
    """
    Make the store a URL names.  The store is not opened.

    The forms are:

      - C{memory:}: a L{MemoryStore}, for tests and trying fmtp out.
      - C{sqlite:PATH}: an L{SQLiteStore} in the file C{PATH}, absolute or
        relative to the working directory, C{~} expanded.  C{sqlite://...}
        is refused rather than guessed at: in SQLAlchemy's spelling
        C{sqlite:///x} is relative and C{sqlite:////x} absolute, and reading
        either wrongly would silently use a different file.
      - C{postgresql://...}: reserved for a PostgreSQL store, which is not
        built yet; refused with a message that says so, rather than as an
        unknown form, so an operator does not hunt for a typo.

    @param url: the store URL.
    @param reactor: the reactor a store that uses threads delivers results
        on (the global reactor if L{None}).
    @raise ValueError: if the URL is not one of the accepted forms; the
        message names them.
    """
    if url == "memory:":
        return MemoryStore()
    if url.startswith("sqlite:"):
        path = url[len("sqlite:") :]
        if path.startswith("//"):
            raise ValueError(
                f"store URL {url!r}: write sqlite:PATH with the path as is, "
                "e.g. sqlite:/var/lib/fmtp/fmtp.db or sqlite:fmtp-data/fmtp.db"
            )
        if not path or path == ":memory:":
            raise ValueError(
                f"store URL {url!r} names no file; use sqlite:PATH, or memory: "
                "for a store kept in memory"
            )
        return SQLiteStore(os.path.expanduser(path), reactor)
    if url.startswith(("postgresql:", "postgres:")):
        raise ValueError(
            f"store URL {url!r}: PostgreSQL support is not built yet; use "
            + ACCEPTED_FORMS
        )
    raise ValueError(f"unknown store URL {url!r}; use " + ACCEPTED_FORMS)
