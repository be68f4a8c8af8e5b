"""
Frames in, replies out: the stream and datagram protocols every fmtp
protocol is built from.

These classes parse, frame, time out, apply back-pressure and enforce the
datagram rules; what a request means is up to a L{CommandHandler}, a plain
class that never sees a transport.  Every bad input is answered with a
reply code and logged here, in one place.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    ISSLTransport,
)
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from fmtp.attachments import MAX_ATTACHMENTS
from fmtp.cookies import SourceCookies
from fmtp.errors import FMTPError, InvalidObject
from fmtp.fairness import current_principal
from fmtp.keys.records import format_key_record
from fmtp.objects import is_ascii_digits
from fmtp.ratelimit import LogLimiter, SourceRateLimiter, suppressed_note
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

    @property
    def principal(self) -> tuple[str, str]:
        """
        Whom this client's requests count against when the server shares
        itself out (L{fmtp.fairness}): its user, else the domain its peer
        server proved, else its host.  A claimed but unproven domain is
        not one: anyone may claim many.
        """
        if self.address is not None:
            return ("user", self.address)
        if self.peer_domain is not None and self.peer_verified:
            return ("domain", self.peer_domain)
        return ("host", self.host)


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


async def answer_request(
    handler: CommandHandler, frame: Frame, client: Client
) -> Frame:
    """
    Answer one request on behalf of C{client}'s principal.

    Run it with C{Deferred.fromCoroutine}, which gives it a context of its
    own: the principal set here is seen by everything the request calls
    (the store's fair scheduler), and by nothing else.
    """
    current_principal.set(client.principal)
    return await handler.handle(frame, client)


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


@implementer(IHandshakeListener)
class FrameStreamProtocol(Protocol, TimeoutMixin):
    """
    One stream connection: parses frames, runs requests concurrently
    (pipelining), writes each reply as it completes with its request's tag.

    What one client can make the server hold or do is bounded, so that it
    cannot take the server from everyone else:

      - At most L{max_in_flight} requests run at once.  The parser is asked
        for no more frames than that: what a read brings beyond them stays
        unparsed, and reading stops until half of them are answered, so
        that at most about one read more is ever held.
      - A frame must arrive whole within C{frame_timeout} of its first byte
        (counted while the server reads); an idle stream is closed after
        C{idle_timeout}.
      - The protocol is a push producer for its transport, which tells it
        when the client stops reading what it is sent.  It then reads no
        more requests, drops pushed messages (the client can FETCH them;
        it is told how many with a 251 once it catches up), keeps the
        replies of the requests in progress for when it reads again, and
        closes the stream if it reads nothing for C{stall_timeout}.
      - Streams are admitted within the server's limits
        (L{fmtp.connlimit.Connections}); at shutdown each finishes the
        requests in progress, answers any other with 421, and closes.
      - Log lines about refused requests are rate-limited per source.
    """

    _log = Logger()
    max_in_flight = 32

    def __init__(self, handler: CommandHandler) -> None:
        self.handler = handler
        self.services = services = handler.services
        self.callLater = services.reactor.callLater
        self._parser = FrameParser(services.limits)
        self._in_flight = 0
        # The in-flight cap was reached: reading waits until half are done.
        self._throttled = False
        # Whether the transport is reading (we pause it for the reasons in
        # _update_reading), and whether _read_frames is running.
        self._reading = True
        self._parsing = False
        # Whether the frame timer runs for the frame being received.
        self._frame_started = False
        self._tls = False
        # A TLS handshake is under way: TLS holds what is written until it
        # is done (and pauses us meanwhile), so reading must go on.
        self._handshaking = False
        # The transport paused us: the client is not reading.  Replies
        # wait in the outbox meanwhile.
        self._write_blocked = False
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self._stall: IDelayedCall | None = None
        self._abort_call: IDelayedCall | None = None
        self._shutting_down = False
        self._closed = False
        #: Pushed messages dropped because the client was not reading.
        self.dropped_pushes = 0
        self._unreported_drops = 0
        self.client: Client | None = None

    # The connection

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        host = getattr(peer, "host", str(peer))
        self.client = Client(host=host, push=self.push)
        refusal = self.services.connections.admit(self, host)
        if refusal is not None:
            self.client.closing = True
            self._closed = True
            self.transport.write(serialize(reply(421, UNSOLICITED_TAG, refusal)))
            self.transport.loseConnection()
            return
        self._tls = self._handshaking = ISSLTransport.providedBy(self.transport)
        self.transport.registerProducer(self, True)
        self.send(reply(220, UNSOLICITED_TAG, self.handler.greeting()))
        self.setTimeout(self.services.idle_timeout)

    def connectionLost(self, reason: Failure = None) -> None:
        self._closed = True
        self.setTimeout(None)
        self._cancel_stall()
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._outbox.clear()
        self._outbox_bytes = 0
        self.services.connections.release(self)
        if self.client is not None:
            self.client.closing = True
            self.handler.connection_lost(self.client)

    def _close(self) -> None:
        """
        Close once what was written is sent, or after C{stall_timeout} if
        the client does not take it.
        """
        self.client.closing = True
        if self._closed:
            return
        self._closed = True
        self.setTimeout(None)
        self._cancel_stall()
        if self._outbox:
            self.transport.writeSequence(list(self._outbox))
            self._outbox.clear()
            self._outbox_bytes = 0
        self._write_blocked = False
        # A transport whose paused producer is still registered resumes it
        # when its buffer drains instead of closing.
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        self._abort_call = self.callLater(self.services.stall_timeout, self.abort)

    def abort(self) -> None:
        """
        Close at once, dropping whatever is still unsent.
        """
        if self.client is not None:
            self.client.closing = True
        self._closed = True
        self.setTimeout(None)
        self.transport.abortConnection()

    def shut_down(self) -> None:
        """
        The server is stopping: finish the requests in progress, answer
        any other with C{421}, then close.
        """
        if self.client is None or self.client.closing or self._shutting_down:
            return
        self._shutting_down = True
        # Requests read from now on are answered 421, not run: keep
        # reading them, whatever is in progress.
        self._throttled = False
        if self._parser.held and not self._parsing:
            self._read_frames()
        else:
            self._update_reading()
        if self._in_flight == 0 and not self.client.closing:
            self.send(reply(421, UNSOLICITED_TAG, "shutting down"))
            self._close()

    def timeoutConnection(self) -> None:
        if self._reading and self._parser.pending:
            self.send(reply(420, UNSOLICITED_TAG))
        else:
            self.send(reply(421, UNSOLICITED_TAG, "idle too long, closing"))
        self._close()

    # Writing

    def send(self, frame: Frame, verb: str = "") -> None:
        """
        Write a reply (or the greeting); a refusal is logged.
        """
        if frame.code >= 400:
            self._note(
                "{verb} {tag}: {code} {text}",
                verb=verb or "-",
                tag=frame.tag,
                code=frame.verb,
                text=frame.argument,
            )
        self._write(serialize(frame))

    def push(self, frame: Frame) -> None:
        """
        Write an unsolicited frame (a message for the logged-in user), or
        drop it if the client is not reading what it is sent.
        """
        if (
            self._write_blocked
            or self._outbox
            or self._shutting_down
            or self.client.closing
        ):
            self.dropped_pushes += 1
            self._unreported_drops += 1
            return
        self._write(serialize(frame))

    def _write(self, data: bytes) -> None:
        if self._write_blocked or self._outbox:
            self._outbox.append(data)
            self._outbox_bytes += len(data)
        else:
            self.transport.write(data)

    @property
    def queued_bytes(self) -> int:
        """
        Bytes of replies waiting for the client to read what it was sent.
        """
        return self._outbox_bytes

    @property
    def buffered_bytes(self) -> int:
        """
        Bytes this stream holds for its client: received and not yet
        handled, and replies not yet handed to the transport.
        """
        return self._parser.buffered + self._outbox_bytes

    def _note(self, message: str, **fields) -> None:
        """
        Log a line about this client, unless its source has had its share.
        """
        suppressed = self.services.error_log_limiter.allow(self.client.host)
        if suppressed is not None:
            self._log.info(
                "{peer} " + message + "{suppressed}",
                peer=self.client.host,
                suppressed=suppressed_note(suppressed),
                **fields,
            )

    # IPushProducer, for the transport: it pauses us when its buffer is full.

    def pauseProducing(self) -> None:
        """
        The client is not reading what it is sent: read no more requests,
        queue replies and drop pushes until it does.
        """
        self._write_blocked = True
        if self._stall is None:
            self._stall = self.callLater(self.services.stall_timeout, self._stalled)
        self._update_reading()

    def resumeProducing(self) -> None:
        """
        The client took everything written: write what waited, then read
        again.
        """
        self._write_blocked = False
        self._cancel_stall()
        outbox = self._outbox
        while outbox and not self._write_blocked:
            data = outbox.popleft()
            self._outbox_bytes -= len(data)
            self.transport.write(data)
        if self._write_blocked or self.client.closing:
            return
        if self._unreported_drops and not self._shutting_down:
            count, self._unreported_drops = self._unreported_drops, 0
            self.send(
                reply(
                    251,
                    UNSOLICITED_TAG,
                    f"{count} messages were not pushed: FETCH them",
                    headers={"Dropped": str(count)},
                )
            )
        if self._parser.held and not self._parsing:
            self._read_frames()
        else:
            self._update_reading()
            self._update_timer(False)

    def handshakeCompleted(self) -> None:
        """
        TLS is up: from now on a paused write means a client not reading.
        """
        self._handshaking = False
        self._update_reading()

    def stopProducing(self) -> None:
        """
        The connection is gone; L{connectionLost} cleans up.
        """

    def _cancel_stall(self) -> None:
        if self._stall is not None:
            if self._stall.active():
                self._stall.cancel()
            self._stall = None

    def _stalled(self) -> None:
        self._stall = None
        self._note(
            "read nothing for {seconds:g} s ({queued} bytes waiting, {dropped} "
            "pushes dropped); closing",
            seconds=self.services.stall_timeout,
            queued=self._outbox_bytes,
            dropped=self.dropped_pushes,
        )
        self.abort()

    # Reading

    def dataReceived(self, data: bytes) -> None:
        if self.client.closing:
            return
        self._read_frames(data)

    def _body_limit(self) -> int:
        """
        The largest body to keep: until its peer has logged in or said
        HELLO (no command needs a body before), a stream may not make the
        server hold more than a small one, however many streams it opens.
        """
        limits = self.services.limits
        client = self.client
        if client.address is None and client.peer_domain is None:
            return min(limits.max_anonymous_body, limits.max_body)
        return limits.max_body

    def _room(self) -> int:
        """
        How many more frames to parse now: a negative number for all.
        """
        if self._write_blocked:
            return 0
        if self._shutting_down:
            # Each is only answered 421.
            return -1
        return max(0, self.max_in_flight - self._in_flight)

    def _read_frames(self, data: bytes = b"") -> None:
        """
        Parse and handle as many frames as there is room for; leave the
        rest of C{data} held in the parser.
        """
        parser = self._parser
        parser.body_limit = self._body_limit()
        produced = False
        self._parsing = True
        try:
            while True:
                items = parser.feed(data, self._room())
                data = b""
                for item in items:
                    produced = True
                    if self._handle(item):
                        return
                if not parser.held or not self._room():
                    break
        finally:
            self._parsing = False
        self._update_reading()
        self._update_timer(produced)

    def _handle(self, item: Frame | FrameError) -> bool:
        """
        Answer or run one parsed item.

        @return: whether to stop reading this stream's input (it closes,
            or the rest came in clear before TLS).
        """
        if isinstance(item, FrameError):
            self.send(item.to_reply())
            if item.fatal:
                self._close()
        elif item.is_reply:
            self.send(reply(500, item.tag, "expected a request, not a reply"))
        elif self._shutting_down:
            self.send(reply(421, item.tag, "shutting down"), item.verb)
        elif item.verb == "STARTTLS":
            if self._start_tls(item):
                # Whatever came with the command was sent in clear and
                # must not be taken as sent under TLS.
                return True
        else:
            self._dispatch(item)
        return self.client.closing

    def _update_reading(self) -> None:
        """
        Pause or resume the transport's reading, as the reasons not to
        read come and go.
        """
        wanted = not (
            self._throttled
            or self._parser.held
            or (self._write_blocked and not self._handshaking)
            or self.client.closing
        )
        if wanted != self._reading:
            self._reading = wanted
            if wanted:
                self.transport.resumeProducing()
            else:
                self.transport.pauseProducing()

    def _update_timer(self, new_frame: bool) -> None:
        """
        Time a frame from its first byte (as read), else idleness.

        @param new_frame: whether frames were completed since the timer
            was last set, so a frame still pending is a new one.
        """
        if self.client.closing:
            return
        if self._reading and self._parser.pending:
            if new_frame or not self._frame_started:
                self._frame_started = True
                self.setTimeout(self.services.frame_timeout)
        else:
            self._frame_started = False
            idle = self.services.idle_timeout
            if self.timeOut == idle:
                self.resetTimeout()
            else:
                self.setTimeout(idle)

    def _start_tls(self, frame: Frame) -> bool:
        """
        Switch this stream to TLS, with the server's certificate.

        @return: whether the switch happened.
        """
        context = self.services.tls_context
        if context is None:
            self.send(reply(502, frame.tag, "STARTTLS is not offered here"), "STARTTLS")
        elif self._tls:
            self.send(reply(503, frame.tag, "already using TLS"), "STARTTLS")
        elif self._in_flight:
            self.send(reply(503, frame.tag, "requests still in progress"), "STARTTLS")
        else:
            self.send(reply(220, frame.tag, "go ahead with TLS"))
            self._tls = self._handshaking = True
            self.transport.startTLS(context)
            # A new parser: whatever the old one held came in clear.
            self._parser = FrameParser(self.services.limits)
            self._update_reading()
            self._update_timer(False)
            return True
        return False

    # Requests

    def _dispatch(self, frame: Frame) -> None:
        self._in_flight += 1
        if self._in_flight >= self.max_in_flight:
            self._throttled = True
        d = Deferred.fromCoroutine(answer_request(self.handler, frame, self.client))
        d.addErrback(error_reply, frame.tag, self._log, self.client.host)
        d.addCallback(self._answered, frame.verb)

    def _answered(self, answer: Frame, verb: str) -> None:
        self._in_flight -= 1
        self.send(answer, verb)
        if self.client.closing:
            if self._in_flight == 0:
                self._close()
            return
        if self._shutting_down:
            if self._in_flight == 0:
                self.send(reply(421, UNSOLICITED_TAG, "shutting down"))
                self._close()
            return
        if self._throttled and self._in_flight < self.max_in_flight // 2:
            self._throttled = False
        if self._parsing:
            # The loop that dispatched this request carries on.
            return
        if self._parser.held:
            self._read_frames()
        else:
            self._update_reading()
            self._update_timer(False)


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
        self._log_limiter = LogLimiter(clock, rate=0.1, burst=1)

    def _note(self, host: str, message: str, **kw) -> None:
        suppressed = self._log_limiter.allow(host)
        if suppressed is not None:
            self._log.info(
                "datagram from {host}: " + message + "{suppressed}",
                host=host,
                suppressed=suppressed_note(suppressed),
                **kw,
            )

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
        d = Deferred.fromCoroutine(answer_request(self.handler, frame, client))
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
