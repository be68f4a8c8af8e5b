"""
A store that keeps everything in process memory.

It exists for tests and for trying fmtp out (C{--store memory:}): nothing
survives a restart.  It follows the same contract as the SQLite store,
checked by the same conformance suites (C{tests/conformance/}), so code
tested against it behaves the same against a durable store.  As the SQL
store is, it is one mixin per feature (this package's modules) over a
small base.
"""

from __future__ import annotations

from zope.interface import implementer

from fmtp.interfaces import (
    IAccountStore,
    IBridgeStore,
    IDeliveryStore,
    IObjectStore,
    IPresenceStore,
    IRoomStore,
    ITokenStore,
)
from fmtp.store.memory.accounts import MemoryAccounts
from fmtp.store.memory.bridges import MemoryBridges
from fmtp.store.memory.inbox import MemoryInbox
from fmtp.store.memory.objects import MemoryObjects
from fmtp.store.memory.presence import MemoryPresence
from fmtp.store.memory.queue import MemoryQueue
from fmtp.store.memory.receiving import MemoryReceiving
from fmtp.store.memory.rooms import MemoryRooms
from fmtp.store.memory.sending import MemorySending
from fmtp.store.memory.tokens import MemoryTokens

__all__ = ["MemoryStore"]


@implementer(
    IBridgeStore,
    IObjectStore,
    IAccountStore,
    IDeliveryStore,
    IPresenceStore,
    IRoomStore,
    ITokenStore,
)
class MemoryStore(
    MemoryObjects,
    MemoryAccounts,
    MemoryQueue,
    MemoryInbox,
    MemoryPresence,
    MemoryRooms,
    MemorySending,
    MemoryReceiving,
    MemoryTokens,
    MemoryBridges,
):
    """
    L{IObjectStore}, L{IAccountStore}, L{IDeliveryStore},
    L{IPresenceStore}, L{IRoomStore}, L{ITokenStore} and L{IBridgeStore} in dicts.

    Each call runs to completion before it returns, and checks everything
    that can fail before it changes anything, so the writes that the SQLite
    store makes in one transaction are atomic here too.
    """

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<MemoryStore {state}, {len(self._objects)} objects>"
