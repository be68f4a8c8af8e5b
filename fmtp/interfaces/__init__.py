"""
Every zope interface of fmtp.

The server is a set of shared services (a store, a key verifier, a signer,
a router of live sessions, the links to other servers) handed to protocol
plugins in one frozen L{fmtp.services.SharedServices}.  Each of those
services is named here so that an implementation can be swapped (a
PostgreSQL store for SQLite, a DNS key verifier for a static file) and so
that tests can check an implementation with
L{zope.interface.verify.verifyObject}.

They are written by area in this package's modules (L{store}, L{presence},
L{rooms}, L{chat}, L{keys}, L{platform}, L{tokens},
L{bridges}) and imported from here, the one place to
import any of them from: C{from fmtp.interfaces import IRouter}.
"""

from __future__ import annotations

from fmtp.interfaces.bridges import IBridgeStore
from fmtp.interfaces.chat import IChatService
from fmtp.interfaces.keys import IDomainSigner, IKeyVerifier
from fmtp.interfaces.platform import (
    IAccount,
    ICommandGroup,
    IDatagramLimiter,
    IProtocolPlugin,
    IRouter,
    IServerLinks,
    ISession,
)
from fmtp.interfaces.presence import IPresenceService, IPresenceStore, IPresenceView
from fmtp.interfaces.rooms import IRoomStore
from fmtp.interfaces.store import IAccountStore, IDeliveryStore, IObjectStore
from fmtp.interfaces.tokens import ITokenStore

__all__ = [
    "IAccount",
    "IAccountStore",
    "IBridgeStore",
    "IChatService",
    "ICommandGroup",
    "IDatagramLimiter",
    "IDeliveryStore",
    "IDomainSigner",
    "IKeyVerifier",
    "IObjectStore",
    "IPresenceService",
    "IPresenceStore",
    "IPresenceView",
    "IProtocolPlugin",
    "IRoomStore",
    "IRouter",
    "IServerLinks",
    "ISession",
    "ITokenStore",
]
