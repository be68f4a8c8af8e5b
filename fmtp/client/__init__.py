"""
The fmtp client library: connect to a server, log in, and make every call
of the object protocol from Python.

L{Client} (L{fmtp.client.api}) is the library: typed calls that return
objects and values (L{fmtp.client.values}) and raise L{ReplyError} with
the server's reply code (L{fmtp.client.errors}).  It runs on Twisted,
returning coroutines to await (or wrap with C{Deferred.fromCoroutine});
L{Presence} (L{fmtp.client.presence}) makes the presence protocol's calls
on a L{Client} logged in to a presence port, L{Chat}
(L{fmtp.client.chat}) the chat protocol's on one logged in to a chat
port, and L{ChatDatagramClient} (L{fmtp.client.lightchat}) its datagrams
for a session logged in over TCP.
L{BlockingClient} (L{fmtp.client.blocking}) wraps it for scripts that do
not run a reactor.  Underneath, L{FrameClientProtocol} and
L{DatagramClient} (L{fmtp.client.protocol}) speak frames, on the same
codec as the server; the server-to-server link and the tests use them
directly.

The C{fmtp} command, the tests and the benchmarks all use this library,
so what they exercise is what a user runs.
"""

from fmtp.client.api import DEFAULT_TIMEOUT, Client
from fmtp.client.blocking import BlockingClient
from fmtp.client.chat import Chat
from fmtp.client.errors import ClientError, ConnectionLost, ReplyError, ReplyTimeout
from fmtp.client.lightchat import ChatDatagramClient
from fmtp.client.presence import Presence
from fmtp.client.protocol import (
    MIN_UNVERIFIED_DATAGRAM,
    DatagramClient,
    FrameClientProtocol,
    ProtocolError,
    connect,
)
from fmtp.client.values import InboxEntry, InboxPage, ObjectPage, SendResult

__all__ = [
    "DEFAULT_TIMEOUT",
    "BlockingClient",
    "Chat",
    "ChatDatagramClient",
    "Client",
    "ClientError",
    "ConnectionLost",
    "InboxEntry",
    "InboxPage",
    "ObjectPage",
    "Presence",
    "ReplyError",
    "ReplyTimeout",
    "SendResult",
    "MIN_UNVERIFIED_DATAGRAM",
    "DatagramClient",
    "FrameClientProtocol",
    "ProtocolError",
    "connect",
]
