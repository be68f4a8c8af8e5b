"""
Frames in, replies out: the stream and datagram protocols every fmtp
protocol is built from.

These classes parse, frame, time out, apply back-pressure and enforce the
datagram rules; what a request means is up to a L{CommandHandler}, a plain
class that never sees a transport.  Every bad input is answered with a
reply code and logged here, in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from fmtp.attachments import MAX_ATTACHMENTS
from fmtp.cookies import SourceCookies
from fmtp.errors import FMTPError, InvalidObject
from fmtp.keys import format_key_record
from fmtp.objects import is_ascii_digits
from fmtp.ratelimit import SourceRateLimiter
from fmtp.services import SharedServices
from fmtp.wire import (
    UNSOLICITED_TAG,
    Frame,
    FrameError,
    FrameParser,
    parse_datagram,
    reply,
    serialize,
)

#: Largest datagram sent or accepted: below the IPv6 minimum MTU less
#: headers, so no datagram is fragmented (as QUIC and DNS do).
MAX_DATAGRAM = 1200

PROTOCOL_VERSION = "1"


@dataclass
class Client:
    """
    What a handler knows of whoever sent a request.

    @ivar host: the peer's address as the transport reports it; used only
        to throttle and to reply, never trusted as an identity (a peer
        server's domain is what its HELLO proves, not its address).
    @ivar datagram: whether the request came in a datagram.
    @ivar address: the logged-in address, or L{None}.
    """

    host: str
    datagram: bool = False
    address: str | None = None
    session_key: str | None = None
    failed_logins: int = 0
    logging_in: bool = False
    closing: bool = False
    #: Writes an unsolicited frame to this client's stream (None over UDP).
    push: Callable[[Frame], None] | None = None
    #: The domain a peer server proved (or claimed) with HELLO.
    peer_domain: str | None = None
    peer_verified: bool = False


Command = Callable[[Frame, Client], Awaitable[Frame]]


def int_header(frame: Frame, name: str, default: int) -> int:
    """
    A header holding a whole number, or C{default} when absent.

    @raise InvalidObject: if it holds anything but digits.
    """
    value = frame.headers.get(name)
    if value is None:
        return default
    if not is_ascii_digits(value) or len(value) > 12:
        raise InvalidObject(f"{name} must be a whole number")
    return int(value)


def required_header(frame: Frame, name: str) -> str:
    """
    @raise InvalidObject: naming the header if it is missing or empty.
    """
    value = frame.headers.get(name)
    if not value:
        raise InvalidObject(f"{frame.verb} needs a {name} header")
    return value


def required_argument(frame: Frame, what: str) -> str:
    """
    @raise InvalidObject: saying how the command line should look.
    """
    if not frame.argument:
        raise InvalidObject(f"{frame.verb} needs an argument: {frame.verb} TAG {what}")
    return frame.argument


class CommandHandler:
    """
    A protocol's commands: a table from verb to coroutine, and C{CAPA}.

    Subclasses fill L{commands} in C{__init__} and name the verbs offered
    over datagrams in L{datagram_commands}.
    """

    protocol_name = "?"

    def __init__(self, services: SharedServices) -> None:
        self.services = services
        self.commands: dict[str, Command] = {"CAPA": self.capa}
        self.datagram_commands: frozenset[str] = frozenset({"CAPA"})

    def greeting(self) -> str:
        return (
            f"{self.services.domain} fmtp/{PROTOCOL_VERSION} {self.protocol_name} ready"
        )

    async def handle(self, frame: Frame, client: Client) -> Frame:
        """
        Answer one request.

        @raise FMTPError: for a refusal; the caller turns it into a reply.
        """
        command = self.commands.get(frame.verb)
        if command is None:
            return reply(502, frame.tag, f"unknown command {frame.verb}")
        if client.datagram and frame.verb not in self.datagram_commands:
            return reply(305, frame.tag, f"{frame.verb} is offered over TCP only")
        return await command(frame, client)

    def connection_lost(self, client: Client) -> None:
        """
        A stream closed: its session ends with it.
        """
        if client.session_key is not None:
            self.services.sessions.close(client.session_key)
            client.session_key = None

    async def capa(self, frame: Frame, client: Client) -> Frame:
        """
        Say what this server offers, so a client needs no out-of-band
        configuration.
        """
        verbs = set(self.datagram_commands if client.datagram else self.commands)
        if self.services.tls_context is not None and not client.datagram:
            verbs.add("STARTTLS")
        limits = self.services.limits
        return reply(
            200,
            frame.tag,
            headers={
                "Protocol": self.protocol_name,
                "Version": PROTOCOL_VERSION,
                "Domain": self.services.domain,
                "Commands": " ".join(sorted(verbs)),
                "Max-Line": str(limits.max_line),
                "Max-Headers": str(limits.max_headers),
                "Max-Body": str(MAX_DATAGRAM if client.datagram else limits.max_body),
                "Max-Attachments": str(MAX_ATTACHMENTS),
                # The key this server signs with: a client checks the
                # signatures of its own domain's messages with it when the
                # domain publishes none (the embedded localhost).
                "Domain-Key": format_key_record(self.services.signer.public_key()),
            },
        )


def error_reply(failure: Failure, tag: str, log: Logger, peer: str) -> Frame:
    """
    The reply to a request that failed: its own code for an L{FMTPError},
    451 (temporary) and a logged traceback for anything unexpected, since
    a bug is no reason to tell a client never to retry.
    """
    if failure.check(FMTPError):
        return reply(failure.value.code, tag, failure.value.message)
    log.failure("Unexpected error answering {peer}", failure, peer=peer)
    return reply(451, tag)


class FrameStreamProtocol(Protocol, TimeoutMixin):
    """
    One stream connection: parses frames, runs requests concurrently
    (pipelining), writes each reply as it completes with its request's tag.

    At most L{max_in_flight} requests run at once; beyond that the
    transport is paused, so a client cannot make the server buffer without
    bound.
    """

    _log = Logger()
    max_in_flight = 32

    def __init__(self, handler: CommandHandler) -> None:
        self.handler = handler
        services = handler.services
        self.callLater = services.reactor.callLater
        self._parser = FrameParser(services.limits)
        self._in_flight = 0
        self._paused = False
        self._tls = False
        self.client: Client | None = None

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.client = Client(host=getattr(peer, "host", str(peer)), push=self.send)
        self._tls = ISSLTransport.providedBy(self.transport)
        self.send(reply(220, UNSOLICITED_TAG, self.handler.greeting()))
        self.setTimeout(self.handler.services.idle_timeout)

    def send(self, frame: Frame, verb: str = "") -> None:
        if frame.code >= 400:
            self._log.info(
                "{peer} {verb} {tag}: {code} {text}",
                peer=self.client.host,
                verb=verb or "-",
                tag=frame.tag,
                code=frame.verb,
                text=frame.argument,
            )
        self.transport.write(serialize(frame))

    def dataReceived(self, data: bytes) -> None:
        if self.client.closing:
            return
        for item in self._parser.feed(data):
            if isinstance(item, FrameError):
                self.send(item.to_reply())
                if item.fatal:
                    self._close()
                    return
            elif item.is_reply:
                self.send(reply(500, item.tag, "expected a request, not a reply"))
            elif item.verb == "STARTTLS":
                if self._start_tls(item):
                    # Whatever came with the command was sent in clear and
                    # must not be taken as sent under TLS.
                    return
            else:
                self._dispatch(item)
            if self.client.closing:
                return
        services = self.handler.services
        wanted = (
            services.frame_timeout if self._parser.pending else services.idle_timeout
        )
        if wanted == self.timeOut:
            self.resetTimeout()
        else:
            self.setTimeout(wanted)

    def _start_tls(self, frame: Frame) -> bool:
        """
        Switch this stream to TLS, with the server's certificate.

        @return: whether the switch happened.
        """
        context = self.handler.services.tls_context
        if context is None:
            self.send(reply(502, frame.tag, "STARTTLS is not offered here"), "STARTTLS")
        elif self._tls:
            self.send(reply(503, frame.tag, "already using TLS"), "STARTTLS")
        elif self._in_flight:
            self.send(reply(503, frame.tag, "requests still in progress"), "STARTTLS")
        else:
            self.send(reply(220, frame.tag, "go ahead with TLS"))
            self.transport.startTLS(context)
            self._tls = True
            self._parser = FrameParser(self.handler.services.limits)
            return True
        return False

    def _dispatch(self, frame: Frame) -> None:
        self._in_flight += 1
        if self._in_flight >= self.max_in_flight and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        d = Deferred.fromCoroutine(self.handler.handle(frame, self.client))
        d.addErrback(error_reply, frame.tag, self._log, self.client.host)
        d.addCallback(self._answered, frame.verb)

    def _answered(self, answer: Frame, verb: str) -> None:
        self._in_flight -= 1
        self.send(answer, verb)
        if self.client.closing:
            if self._in_flight == 0:
                self._close()
        elif self._paused and self._in_flight < self.max_in_flight // 2:
            self._paused = False
            self.transport.resumeProducing()

    def _close(self) -> None:
        self.client.closing = True
        self.setTimeout(None)
        self.transport.loseConnection()

    def timeoutConnection(self) -> None:
        if self._parser.pending:
            self.send(reply(420, UNSOLICITED_TAG))
        else:
            self.send(reply(421, UNSOLICITED_TAG, "idle too long, closing"))
        self._close()

    def connectionLost(self, reason: Failure = None) -> None:
        self.setTimeout(None)
        if self.client is not None:
            self.client.closing = True
            self.handler.connection_lost(self.client)


class FrameStreamFactory(Factory):
    """
    Builds a L{FrameStreamProtocol} around one shared handler.
    """

    def __init__(self, handler: CommandHandler) -> None:
        self.handler = handler

    def buildProtocol(self, addr) -> FrameStreamProtocol:
        protocol = FrameStreamProtocol(self.handler)
        protocol.factory = self
        return protocol


class FrameDatagramProtocol(DatagramProtocol):
    """
    One datagram listener, under the rules that keep a server from being
    used to amplify or reflect traffic (doc/protocol.md, Datagrams):

      - every source is rate-limited, and a source over its rate is
        dropped without a reply;
      - no reply to a source that has not echoed a cookie is larger than
        its request; the first reply it can get is a small cookie;
      - no datagram larger than L{MAX_DATAGRAM} is sent: a larger answer
        becomes a 305 "use TCP";
      - replies go only to the datagram's source, and replies are never
        answered, so two servers cannot be set to ping-pong.
    """

    _log = Logger()

    def __init__(
        self,
        handler: CommandHandler,
        limiter: SourceRateLimiter | None = None,
        cookies: SourceCookies | None = None,
    ) -> None:
        self.handler = handler
        clock = handler.services.reactor
        self.limiter = limiter or SourceRateLimiter(clock)
        self.cookies = cookies or SourceCookies(clock)
        # One log line per source per ten seconds about dropped datagrams,
        # so a flood cannot fill the disk with logs either.
        self._log_limiter = SourceRateLimiter(clock, rate=0.1, burst=1)

    def _note(self, host: str, message: str, **kw) -> None:
        if self._log_limiter.allow(host):
            self._log.info("datagram from {host}: " + message, host=host, **kw)

    def datagramReceived(self, data: bytes, addr) -> None:
        host = addr[0]
        if not self.limiter.allow(host):
            self._note(host, "over its rate limit, dropped")
            return
        if len(data) > MAX_DATAGRAM:
            self._answer(
                reply(
                    552, UNSOLICITED_TAG, f"datagram larger than {MAX_DATAGRAM} bytes"
                ),
                data,
                addr,
                verified=False,
            )
            return
        try:
            frame = parse_datagram(data, self.handler.services.limits)
        except FrameError as e:
            self._answer(e.to_reply(), data, addr, verified=False)
            return
        if frame.is_reply:
            self._note(host, "a reply, not a request; not answered")
            return
        verified = self.cookies.is_valid(host, frame.headers.get("Cookie"))
        if not verified:
            cookie = self.cookies.cookie_for(host)
            self._answer(
                reply(432, frame.tag, headers={"Cookie": cookie}), data, addr, False
            )
            return
        client = Client(host=host, datagram=True)
        d = Deferred.fromCoroutine(self.handler.handle(frame, client))
        d.addErrback(error_reply, frame.tag, self._log, host)
        d.addCallback(self._answer, data, addr, True)

    def _answer(self, answer: Frame, request: bytes, addr, verified: bool) -> None:
        host = addr[0]
        if answer.code >= 400 and answer.code != 432:
            self._note(host, "{code} {text}", code=answer.verb, text=answer.argument)
        encoded = serialize(answer)
        if len(encoded) > MAX_DATAGRAM:
            encoded = serialize(reply(305, answer.tag))
        if not verified and len(encoded) > len(request):
            self._note(
                host,
                "reply of {size} bytes exceeds the {request}-byte request of an "
                "unverified source; dropped (clients pad first requests)",
                size=len(encoded),
                request=len(request),
            )
            return
        if self.transport is not None:
            self.transport.write(encoded, addr)
