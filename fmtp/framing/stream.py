"""
One stream connection of any fmtp protocol: frames in, replies out, and
what one client may make the server hold or do, bounded.
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    ISSLTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from fmtp.framing.handler import HandlerCollection, answer_request, error_reply
from fmtp.framing.session import Session
from fmtp.util.nodelay import set_no_delay
from fmtp.wire import (
    UNSOLICITED_TAG,
    Frame,
    FrameError,
    FrameParser,
    reply,
    serialize,
)

#: The last pushed frame and its bytes: a push fanned out to many sessions
#: is one frame (L{fmtp.framing.handler.HandlerCollection}), serialized once.
_last_push: list = [None, b""]


def _serialized_push(frame: Frame) -> bytes:
    if _last_push[0] is not frame:
        _last_push[0], _last_push[1] = frame, serialize(frame)
    return _last_push[1]


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

    def __init__(self, handler: HandlerCollection) -> None:
        self.handler = handler
        self.services = services = handler.services
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
        # wait in the outbox meanwhile, made only then: most connections
        # never need one, and an idle session's memory is mostly such
        # empty containers.
        self._write_blocked = False
        self._outbox: deque[bytes] | None = None
        self._outbox_bytes = 0
        self._stall: IDelayedCall | None = None
        self._abort_call: IDelayedCall | None = None
        self._shutting_down = False
        self._closed = False
        #: Pushed messages dropped because the client was not reading.
        self.dropped_pushes = 0
        self._unreported_drops = 0
        self.session: Session | None = None

    def callLater(self, delay: float, f, *args, **kwargs) -> IDelayedCall:
        """
        The server's clock, for L{TimeoutMixin} and this protocol's own
        timers (a method, not a bound method kept by each connection).
        """
        return self.services.reactor.callLater(delay, f, *args, **kwargs)

    # The connection

    def connectionMade(self) -> None:
        set_no_delay(self.transport)
        peer = self.transport.getPeer()
        host = getattr(peer, "host", str(peer))
        self.session = Session(host=host, push=self.push, queued=self._queued)
        refusal = self.services.connections.admit(self, host)
        if refusal is not None:
            self.session.closing = True
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
        self._outbox = None
        self._outbox_bytes = 0
        self.services.connections.release(self)
        if self.session is not None:
            self.session.closing = True
            self.handler.connection_lost(self.session)

    def _close(self) -> None:
        """
        Close once what was written is sent, or after C{stall_timeout} if
        the client does not take it.
        """
        self.session.closing = True
        if self._closed:
            return
        self._closed = True
        self.setTimeout(None)
        self._cancel_stall()
        if self._outbox:
            self.transport.writeSequence(list(self._outbox))
            self._outbox = None
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
        if self.session is not None:
            self.session.closing = True
        self._closed = True
        self.setTimeout(None)
        self.transport.abortConnection()

    def shut_down(self) -> None:
        """
        The server is stopping: finish the requests in progress, answer
        any other with C{421}, then close.
        """
        if self.session is None or self.session.closing or self._shutting_down:
            return
        self._shutting_down = True
        # Requests read from now on are answered 421, not run: keep
        # reading them, whatever is in progress.
        self._throttled = False
        if self._parser.held and not self._parsing:
            self._read_frames()
        else:
            self._update_reading()
        if self._in_flight == 0 and not self.session.closing:
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
            or self.session.closing
        ):
            self.dropped_pushes += 1
            self._unreported_drops += 1
            return
        self._write(_serialized_push(frame))

    def _write(self, data: bytes) -> None:
        if self._write_blocked or self._outbox:
            if self._outbox is None:
                self._outbox = deque()
            self._outbox.append(data)
            self._outbox_bytes += len(data)
        else:
            self.transport.write(data)

    def _queued(self) -> int:
        return self._outbox_bytes

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
        host = self.session.host
        self.services.error_log_limiter.emit(
            self._log, host, "{peer} " + message, peer=host, **fields
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
        if outbox is not None and not outbox:
            self._outbox = None
        if self._write_blocked or self.session.closing:
            return
        if self._unreported_drops and not self._shutting_down:
            count, self._unreported_drops = self._unreported_drops, 0
            self.send(
                reply(
                    251,
                    UNSOLICITED_TAG,
                    f"{count} pushes were dropped while you were not reading",
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
        if self.session.closing:
            return
        self._read_frames(data)

    def _body_limit(self) -> int:
        """
        The largest body to keep: until its peer has logged in or said
        HELLO (no command needs a body before), a stream may not make the
        server hold more than a small one, however many streams it opens.
        """
        limits = self.services.limits
        client = self.session
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
        return self.session.closing

    def _update_reading(self) -> None:
        """
        Pause or resume the transport's reading, as the reasons not to
        read come and go.
        """
        wanted = not (
            self._throttled
            or self._parser.held
            or (self._write_blocked and not self._handshaking)
            or self.session.closing
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
        if self.session.closing:
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
        # One coroutine answers and writes: no callbacks to chain on its
        # Deferred, which runs it in a context of its own (answer_request).
        Deferred.fromCoroutine(self._answer(frame))

    async def _answer(self, frame: Frame) -> None:
        try:
            answer = await answer_request(self.handler, frame, self.session)
        except Exception:
            answer = error_reply(Failure(), frame.tag, self._log, self.session.host)
        self._answered(answer, frame.verb)

    def _answered(self, answer: Frame, verb: str) -> None:
        self._in_flight -= 1
        self.send(answer, verb)
        if self.session.closing:
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

    def __init__(self, handler: HandlerCollection) -> None:
        self.handler = handler

    def buildProtocol(self, addr) -> FrameStreamProtocol:
        protocol = FrameStreamProtocol(self.handler)
        protocol.factory = self
        return protocol
