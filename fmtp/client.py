"""
Client side of the fmtp frame protocols, over streams and datagrams.

Used by the C{fmtp} command, by the tests and by the benchmarks: one client
for all of them, so what they exercise is what a user runs.
"""

from __future__ import annotations

import itertools

from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredQueue, TimeoutError
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.python.failure import Failure

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

#: A request without a cookie is padded to this size, so that a server may
#: answer it with a cookie without sending more than it received.
MIN_UNVERIFIED_DATAGRAM = 128


class ProtocolError(Exception):
    """
    The server sent something that is not a frame, or closed mid-request.
    """


class FrameClientProtocol(Protocol):
    """
    A pipelining client: each request gets a fresh tag, and the Deferred it
    returned fires with the reply carrying that tag, whatever the order.

    @ivar greeting: a Deferred that fires with the server's 220 greeting.
    @ivar unsolicited: replies that answer no request of this client: those
        tagged C{*} other than the greeting (a server says why it closes this
        way) and any with an unknown tag; newest last.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._parser = FrameParser(limits)
        self._tags = itertools.count(1)
        self._pending: dict[str, Deferred] = {}
        self.greeting: Deferred = Deferred()
        self.unsolicited: list[Frame] = []
        #: Messages the server pushes to a logged-in session (code 250).
        self.pushes: DeferredQueue = DeferredQueue()
        self.closed: Deferred = Deferred()

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
        tag = str(next(self._tags))
        d = Deferred()
        self._pending[tag] = d
        self.transport.write(serialize(request(verb, tag, argument, headers, body)))
        return d

    def dataReceived(self, data: bytes) -> None:
        for item in self._parser.feed(data):
            if isinstance(item, FrameError):
                self.transport.loseConnection()
                self._fail_all(ProtocolError(f"bad frame from server: {item.message}"))
                return
            if item.tag == UNSOLICITED_TAG:
                if not self.greeting.called and item.code == 220:
                    self.greeting.callback(item)
                elif item.code == 250:
                    self.pushes.put(item)
                else:
                    self.unsolicited.append(item)
                continue
            d = self._pending.pop(item.tag, None)
            if d is None:
                self.unsolicited.append(item)
            else:
                d.callback(item)

    def _fail_all(self, reason: Exception) -> None:
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(Failure(reason))
        if not self.greeting.called:
            self.greeting.errback(Failure(reason))

    def connectionLost(self, reason: Failure = None) -> None:
        self._fail_all(ConnectionDone("connection closed before the reply"))
        self.closed.callback(None)


async def connect(reactor, description: str, limits: Limits = DEFAULT_LIMITS):
    """
    Connect to a stream endpoint (C{tcp:HOST:PORT}, C{tls:HOST:PORT}...)
    and wait for the server's greeting.

    @return: the connected L{FrameClientProtocol}.
    """
    endpoint = endpoints.clientFromString(reactor, description)
    protocol = await endpoints.connectProtocol(endpoint, FrameClientProtocol(limits))
    await protocol.greeting
    return protocol


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
        d = self._pending.pop(frame.tag, None)
        if d is not None:
            d.callback(frame)

    def _send_once(self, frame: Frame) -> Deferred:
        data = serialize(frame)
        if "Cookie" not in frame.headers and len(data) < MIN_UNVERIFIED_DATAGRAM:
            pad = MIN_UNVERIFIED_DATAGRAM - len(data) - len("Pad: \r\n")
            frame.headers["Pad"] = "x" * max(pad, 1)
            data = serialize(frame)
        d = Deferred()
        self._pending[frame.tag] = d
        self.transport.write(data, self.server)
        d.addTimeout(self._timeout, self._reactor)
        return d

    async def request(
        self, verb: str, argument: str = "", headers: dict[str, str] | None = None
    ) -> Frame:
        """
        Send one request and return its reply, getting a cookie first if
        the server asks for one.

        @raise TimeoutError: if no reply comes after every attempt.
        """
        for _ in range(self._attempts):
            tag = str(next(self._tags))
            frame = request(verb, tag, argument, headers)
            if self.cookie:
                frame.headers["Cookie"] = self.cookie
            try:
                answer = await self._send_once(frame)
            except TimeoutError:
                self._pending.pop(tag, None)
                continue
            if answer.code == 432 and answer.headers.get("Cookie"):
                self.cookie = answer.headers["Cookie"]
                continue
            return answer
        raise TimeoutError(f"no answer from {self.server[0]}:{self.server[1]}")
