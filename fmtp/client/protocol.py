"""
Frames between a client and a server, over streams and datagrams.

Used by the C{fmtp} command, by the tests and by the benchmarks: one client
for all of them, so what they exercise is what a user runs.
"""

from __future__ import annotations

import itertools

from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredQueue, TimeoutError
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from fmtp.util.nodelay import set_no_delay
from fmtp.wire import (
    DEFAULT_LIMITS,
    UNSOLICITED_TAG,
    Frame,
    FrameError,
    FrameParser,
    Limits,
    parse_datagram,
    request,
    serialize,
)

#: The unsolicited frames queued in L{FrameClientProtocol.pushes} unless
#: told otherwise: messages (250).  A presence client adds the presence
#: events (L{fmtp.client.presence.PRESENCE_PUSH_CODES}).
MESSAGE_PUSH_CODES = frozenset({250})

#: A request without a cookie is padded to this size, so that a server may
#: answer it with a cookie without sending more than it received.
MIN_UNVERIFIED_DATAGRAM = 128


class ProtocolError(Exception):
    """
    The server sent something that is not a frame, or closed mid-request.
    """


@implementer(IHandshakeListener)
class FrameClientProtocol(Protocol):
    """
    A pipelining client: each request gets a fresh tag, and the Deferred it
    returned fires with the reply carrying that tag, whatever the order.

    @ivar greeting: a Deferred that fires with the server's 220 greeting.
    @ivar pushes: what the server pushes to a logged-in session (frames
        tagged C{*} with a code of L{push_codes}), in arrival order.
    @ivar push_codes: the codes of the frames queued in L{pushes}; other
        unsolicited frames are kept in L{unsolicited}.
    @ivar unsolicited: the last L{max_unsolicited} frames that answer no
        request of this client (a server says why it closes this way);
        bounded, since a connection may live for days.
    @ivar tls_ready: after a successful L{start_tls}, a Deferred that fires
        once the TLS handshake is done.
    """

    max_unsolicited = 16

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._parser = FrameParser(limits)
        self._tags = itertools.count(1)
        self._pending: dict[str, Deferred] = {}
        self.greeting: Deferred = Deferred()
        self.unsolicited: list[Frame] = []
        self.pushes: DeferredQueue = DeferredQueue()
        self.push_codes: frozenset[int] = MESSAGE_PUSH_CODES
        self.closed: Deferred = Deferred()
        self._tls_tag: str | None = None
        self._tls_options = None
        self.tls_ready: Deferred | None = None

    def connectionMade(self) -> None:
        # Server links are this protocol too (LinkProtocol).
        set_no_delay(self.transport)

    def request(
        self,
        verb: str,
        argument: str = "",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Deferred:
        """
        Send a request; the Deferred fires with its reply L{Frame}, or
        fails with L{ConnectionDone} if the connection ends first.
        """
        return self._send(verb, argument, headers, body)[1]

    def _send(
        self, verb: str, argument: str = "", headers=None, body: bytes = b""
    ) -> tuple[str, Deferred]:
        tag = str(next(self._tags))
        # Cancelling (a timeout) forgets the tag, so a late reply is
        # remembered as unsolicited rather than fired into a dead Deferred.
        d = Deferred(lambda _: self._pending.pop(tag, None))
        self._pending[tag] = d
        self.transport.write(serialize(request(verb, tag, argument, headers, body)))
        return tag, d

    def start_tls(self, options) -> Deferred:
        """
        Send C{STARTTLS}; on its C{220}, start TLS with C{options} before
        reading another byte, and wait on L{tls_ready} for the handshake.

        @return: a Deferred firing with the reply.
        """
        self._tls_options = options
        self._tls_tag, d = self._send("STARTTLS")
        return d

    def dataReceived(self, data: bytes) -> None:
        for item in self._parser.feed(data):
            if isinstance(item, FrameError):
                self.transport.loseConnection()
                self._fail_all(ProtocolError(f"bad frame from server: {item.message}"))
                return
            if (
                self._tls_tag is not None
                and item.is_reply
                and item.tag == self._tls_tag
            ):
                self._tls_tag = None
                if item.code == 220:
                    # Whatever followed the 220 came in clear, where anyone
                    # could have injected it: drop it (RFC 3207).
                    self._parser = FrameParser(self._limits)
                    self.tls_ready = Deferred()
                    self.transport.startTLS(self._tls_options)
                    self.frame_received(item)
                    return
            self.frame_received(item)

    def frame_received(self, item: Frame) -> None:
        """
        Route one frame from the server: the greeting, a push, the reply to
        a request, or something to remember.  Subclasses may extend this.
        """
        if not item.is_reply:
            # Servers send no requests; keep it for inspection only.
            self._remember(item)
            return
        if item.tag == UNSOLICITED_TAG:
            if not self.greeting.called and item.code == 220:
                self.greeting.callback(item)
            elif item.code in self.push_codes:
                self.pushes.put(item)
            else:
                self._remember(item)
            return
        d = self._pending.pop(item.tag, None)
        if d is None:
            self._remember(item)
        else:
            d.callback(item)

    def _remember(self, item: Frame) -> None:
        self.unsolicited.append(item)
        del self.unsolicited[: -self.max_unsolicited]

    def handshakeCompleted(self) -> None:
        if self.tls_ready is not None and not self.tls_ready.called:
            self.tls_ready.callback(None)

    def _fail_all(self, reason: Exception) -> None:
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(Failure(reason))
        if not self.greeting.called:
            self.greeting.errback(Failure(reason))

    def connectionLost(self, reason: Failure = None) -> None:
        if self.tls_ready is not None and not self.tls_ready.called:
            self.tls_ready.errback(reason)
        self._fail_all(ConnectionDone("connection closed before the reply"))
        self.closed.callback(None)


async def connect(
    reactor,
    description: str,
    limits: Limits = DEFAULT_LIMITS,
    timeout: float | None = None,
):
    """
    Connect to a stream endpoint (C{tcp:HOST:PORT}, C{tls:HOST:PORT}...)
    and wait for the server's greeting.

    @param timeout: seconds to wait for the connection, and then as many
        for the greeting; L{None} waits as long as the endpoint does.
    @return: the connected L{FrameClientProtocol}.
    @raise twisted.internet.defer.TimeoutError: if either wait is too long
        (the connection is then closed).
    """
    endpoint = endpoints.clientFromString(reactor, description)
    connecting = endpoints.connectProtocol(endpoint, FrameClientProtocol(limits))
    if timeout is not None:
        connecting.addTimeout(timeout, reactor, onTimeoutCancel=_timed_out)
    protocol = await connecting
    greeting = protocol.greeting
    if timeout is not None:
        greeting.addTimeout(timeout, reactor, onTimeoutCancel=_timed_out)
    try:
        await greeting
    except BaseException:
        protocol.transport.abortConnection()
        raise
    return protocol


def _timed_out(result: object, timeout: float) -> object:
    """
    What a wait cut short by C{addTimeout} fails with: L{TimeoutError},
    whatever the cancelled operation failed with (an endpoint's connection
    attempt fails with its own C{ConnectingCancelledError}).
    """
    if isinstance(result, Failure):
        raise TimeoutError(f"no answer within {timeout:g} s")
    return result


class DatagramClient(DatagramProtocol):
    """
    Sends requests to one server over UDP, fetching and echoing its cookie
    and retrying lost datagrams.
    """

    def __init__(
        self, reactor, host: str, port: int, timeout: float = 1.0, attempts: int = 3
    ) -> None:
        self._reactor = reactor
        self.server = (host, port)
        self.cookie: str | None = None
        self._timeout = timeout
        self._attempts = attempts
        self._tags = itertools.count(1)
        self._pending: dict[str, Deferred] = {}

    def datagramReceived(self, data: bytes, addr) -> None:
        if addr[:2] != self.server:
            return
        try:
            frame = parse_datagram(data)
        except FrameError:
            return
        self.frame_received(frame, data)

    def frame_received(self, frame: Frame, data: bytes) -> None:
        """
        A frame came from the server in C{data}: the reply to the request
        of its tag, if one waits (a subclass takes pushes here).
        """
        d = self._pending.pop(frame.tag, None)
        if d is not None:
            d.callback(frame)

    def encode(self, frame: Frame) -> bytes:
        """
        The datagram that carries C{frame}: padded when it has no cookie
        (a subclass signs it here, L{fmtp.client.lightchat}).
        """
        data = serialize(frame)
        if "Cookie" not in frame.headers and len(data) < MIN_UNVERIFIED_DATAGRAM:
            pad = MIN_UNVERIFIED_DATAGRAM - len(data) - len("Pad: \r\n")
            frame.headers["Pad"] = "x" * max(pad, 1)
            data = serialize(frame)
        return data

    def send_datagram(self, tag: str, data: bytes) -> Deferred:
        """
        Send C{data}, a request tagged C{tag}, once.

        @return: a Deferred that fires with its reply, or fails with a
            C{TimeoutError} after the timeout.
        """
        d = Deferred()
        self._pending[tag] = d
        self.transport.write(data, self.server)
        d.addTimeout(self._timeout, self._reactor)
        return d

    async def request(
        self,
        verb: str,
        argument: str = "",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Frame:
        """
        Send one request and return its reply, getting a cookie first if
        the server asks for one.  A request whose answer is lost is sent
        again byte for byte (a server that numbers datagrams answers a
        repeat as the first time, without running it again).

        @raise TimeoutError: if no reply comes after every attempt.
        """
        tag = str(next(self._tags))
        data = None
        for _ in range(self._attempts):
            if data is None:
                frame = request(verb, tag, argument, dict(headers or {}), body)
                if self.cookie:
                    frame.headers["Cookie"] = self.cookie
                data = self.encode(frame)
            try:
                answer = await self.send_datagram(tag, data)
            except TimeoutError:
                self._pending.pop(tag, None)
                continue
            if answer.code == 432 and answer.headers.get("Cookie"):
                self.cookie = answer.headers["Cookie"]
                data = None
                continue
            return answer
        raise TimeoutError(f"no answer from {self.server[0]}:{self.server[1]}")
