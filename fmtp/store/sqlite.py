"""
A store in one SQLite file: every feature's SQL over the SQLite engine.

L{SQLiteStore} is the composition of the feature mixins of
L{fmtp.store.sql} over L{fmtp.store.sql.engine.SQLiteEngine}, which runs
them on its thread; the schema they use is L{SCHEMA_STEPS}.
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
from fmtp.store.sql.accounts import SQLAccounts
from fmtp.store.sql.bridges import SQLBridges
from fmtp.store.sql.inbox import SQLInbox
from fmtp.store.sql.objects import SQLObjects
from fmtp.store.sql.presence import SQLPresence
from fmtp.store.sql.queue import SQLQueue
from fmtp.store.sql.receiving import SQLReceiving
from fmtp.store.sql.rooms import SQLRooms
from fmtp.store.sql.schema import SCHEMA_STEPS
from fmtp.store.sql.sending import SQLSending
from fmtp.store.sql.tokens import SQLTokens


@implementer(
    IBridgeStore,
    IObjectStore,
    IAccountStore,
    IDeliveryStore,
    IPresenceStore,
    IRoomStore,
    ITokenStore,
)
class SQLiteStore(
    SQLObjects,
    SQLAccounts,
    SQLQueue,
    SQLInbox,
    SQLPresence,
    SQLRooms,
    SQLSending,
    SQLReceiving,
    SQLTokens,
    SQLBridges,
):
    """
    L{IObjectStore}, L{IAccountStore}, L{IDeliveryStore},
    L{IPresenceStore}, L{IRoomStore}, L{ITokenStore} and L{IBridgeStore}
    in an SQLite file:
    each feature's methods from its mixin, all run on the one thread of
    L{fmtp.store.sql.engine.SQLiteEngine}, which also says how writes are
    made durable and how errors are reported.

    The writes that take several statements are each one transaction:
    C{enqueue}, C{deliver_local}, C{delete_object}, C{delete_account},
    C{release_held} and C{drop_held}; and every presence and room write
    that reads what its rule decides on (a link, a member count, the head
    of a room's history) before writing.
    """

    schema_steps = SCHEMA_STEPS
