"""
A logged-in L{fmtp.client.Client} for a command, with every way it can
fail turned into one line and an exit status.

    async with connected(reactor, options, password) as client:
        sent = await client.send(...)

What the library raises becomes: L{ReplyTimeout} and L{ConnectionLost}
L{Unreachable} (status 3), L{ReplyError} L{Refused} (status 1, with the
server's code and text), a reply that is not what the protocol says
(L{ProtocolError}) L{Refused} too.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError, ConnectionRefusedError
from twisted.internet.task import LoopingCall

from fmtp.cli.config import ClientOptions
from fmtp.cli.status import Refused, Unreachable
from fmtp.client import (
    Client,
    ClientError,
    ConnectionLost,
    ProtocolError,
    ReplyError,
    ReplyTimeout,
)
from fmtp.objects import is_ascii_digits

#: Seconds between two CAPAs that keep a watching connection from being
#: closed as idle (servers close after 10 minutes by default).
KEEPALIVE = 240.0


def connect_reason(error: BaseException | None) -> str:
    """
    Why a connection could not be made, in words: C{Connection refused
    (is the server running?)}, C{No route to host}...
    """
    if isinstance(error, ConnectError):
        reason = (error.osError and os.strerror(error.osError)) or str(error)
        if isinstance(error, ConnectionRefusedError):
            return f"{reason} (is the server running?)"
        return reason
    if isinstance(error, ProtocolError):
        return f"it does not speak fmtp: {error}"
    return str(error)


async def open_client(
    reactor: Any, options: ClientOptions, server: str | None = None
) -> Client:
    """
    Connect to the server the options name, or to C{server} (another
    protocol's port, as C{--presence-server}).

    @raise Unreachable: if it cannot be reached or does not greet in
        time.
    """
    server, timeout = server or options["server"], options["timeout"]
    try:
        return await Client.connect(reactor, server, timeout=timeout)
    except ReplyTimeout:
        raise Unreachable(f"no answer from {server} within {timeout:g} s") from None
    except ConnectionLost as e:
        # The library's message names the endpoint; the original error
        # (its context) says why more plainly.
        raise Unreachable(
            f"cannot connect to {server}: {connect_reason(e.__context__ or e)}"
        ) from None


@contextmanager
def client_errors(
    client: Client | None, options: ClientOptions, server: str | None = None
) -> Iterator[None]:
    """
    Turn what the client library raises inside the block into one line
    and an exit status, naming C{server} (by default the options').
    """
    server, timeout = server or options["server"], options["timeout"]
    try:
        yield
    except ReplyTimeout:
        raise Unreachable(f"no answer from {server} within {timeout:g} s") from None
    except ConnectionLost:
        said = ""
        if client is not None and client.protocol.unsolicited:
            last = client.protocol.unsolicited[-1]
            said = f": {last.verb} {last.argument}".rstrip()
        raise Unreachable(f"{server} closed the connection{said}") from None
    except ReplyError as e:
        raise Refused(refusal(e, options, server)) from None
    except ProtocolError as e:
        raise Refused(f"{server} sent a bad reply: {e}") from None


def refusal(
    error: ReplyError, options: ClientOptions, server: str | None = None
) -> str:
    """
    One line for a refusal: the server's code and text, said plainly for
    the refusals a user meets most.
    """
    if error.verb == "LOGIN":
        if error.code == 535:
            return f"login refused for {options['user']}: wrong address or password"
        if error.code == 429:
            wait = error.frame.headers.get("Retry-After", "a while")
            return f"login refused: too many failures; try again in {wait} seconds"
    server = server or options["server"]
    return f"{server} refused {error.verb}: {error.code} {error.text}"


@asynccontextmanager
async def connected(
    reactor: Any,
    options: ClientOptions,
    password: str | None,
    server: str | None = None,
) -> AsyncIterator[Client]:
    """
    A client connected to the server the options name (or C{server}),
    logged in if a password is given, and closed at the end of the block.
    """
    client = await open_client(reactor, options, server)
    try:
        with client_errors(client, options, server):
            if password is not None:
                await client.login(options["user"], password)
            yield client
    finally:
        client.close()


async def message_id(client: Client, reference: str) -> str:
    """
    The id of the message a command names: an id as it is, or a number
    from the SEQ column of C{fmtp inbox}, looked up in the inbox.  No id
    is all digits (it ends in an address), so the two never mix.

    @raise Refused: if the inbox holds no message of that number.
    """
    if not is_ascii_digits(reference):
        return reference
    seq = int(reference)
    page = await client.fetch(max(seq - 1, 0), 1)
    if page.entries and page.entries[0].seq == seq:
        return page.entries[0].id
    raise Refused(f"no message {seq} in your inbox (fmtp inbox lists them)")


async def _capa_or_close(client: Client) -> None:
    try:
        await client.capa()
    except ClientError:
        # A server that does not answer is as good as gone.
        client.close()


def keep_alive(reactor: Any, client: Client) -> LoopingCall:
    """
    Send a C{CAPA} every L{KEEPALIVE} seconds, so that a connection that
    only waits for pushes is not closed as idle; close it if the server
    does not answer.  The caller stops the returned loop.
    """
    loop = LoopingCall(lambda: Deferred.fromCoroutine(_capa_or_close(client)))
    loop.clock = reactor
    loop.start(KEEPALIVE, now=False)
    return loop
