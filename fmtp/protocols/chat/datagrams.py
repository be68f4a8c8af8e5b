"""
The chat protocol's light clients (doc/protocol.md 10.10): a session
logged in over TCP posts lines (C{SAY}) and receives a room's new lines
(C{LISTEN}) in datagrams.

A datagram names its session by the session's public id
(L{fmtp.auth.router.session_id}), never by its key; proves it holds the
key with a C{Mac} (L{fmtp.auth.router.datagram_mac}) over the datagram
without that line; and numbers itself with C{Seq}, the client's own
counter, checked against a small anti-replay window per session
(L{fmtp.auth.replay}).  A datagram received again byte for byte gets the
answer it got the first time and is not run again, so a client may
resend a C{SAY} whose answer was lost without posting it twice.  Only
sessions of the chat protocol are accepted: a key handed out by another
protocol proves nothing here, and a chat session's end is what ends its
listening.

A C{SAY} in a datagram runs the very command a stream's runs, for the
session the datagram proved.  A C{LISTEN} registers a sink of its own
(a router session of the same user, which takes room lines and closes)
in the rooms' L{LiveRooms}, exactly as an C{ENTER} registers a stream's
session: publishing, kicks, bans, leaving and destroying reach it
unchanged.  Its sink sends each line, signed with the session's key, to
the source of the session's last fresh C{LISTEN}: an address that echoed
a cookie (it receives there) and proved the key, never one from a
payload; at most L{MAX_LISTENED} rooms a session, each for
L{LISTEN_LIFETIME} seconds unless listened to again, at most
L{PUSH_RATE} lines a second.  A line dropped, lost or too large for a
datagram leaves a gap in the room's C{Seq}, which the client fills with
C{HISTORY} over TCP.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from fmtp.auth.replay import ReplayWindow, Seen, SeqRefused
from fmtp.auth.router import Event, sign_frame, unsigned_bytes
from fmtp.errors import FMTPError, Forbidden, InvalidObject
from fmtp.framing.handler import Command, Renderer, int_header, required_header
from fmtp.framing.session import Session
from fmtp.interfaces import IRouter, ISession
from fmtp.protocols.chat.events import ROOM_CLOSED, ROOM_LINE, RoomClosed
from fmtp.protocols.chat.lines import parse_room
from fmtp.protocols.chat.live import LiveRooms
from fmtp.protocols.chat.service import ChatService
from fmtp.ratelimit import LogLimiter, SourceRateLimiter
from fmtp.wire import MAX_DATAGRAM, UNSOLICITED_TAG, Frame, reply

#: Seconds a LISTEN lasts unless the client sends it again.
LISTEN_LIFETIME = 60.0
#: The most rooms one session listens to at once.
MAX_LISTENED = 8
#: Lines a second pushed to one session's address (bursts of twice as
#: many); beyond it they are dropped, and the client sees the gap.
PUSH_RATE = 50
#: Numbers a session's window remembers behind its highest, and how many
#: of the latest answers it keeps for datagrams received again.
SEQ_WINDOW = 64
KEPT_ANSWERS = 16
#: The headers by which a datagram proves its session.
SIGNED_HEADERS = ("Session-Id", "Seq", "Mac")


class SessionRefused(FMTPError):
    """
    Unknown session id, a session of another protocol, or a bad MAC: one
    answer for all, so that ids cannot be probed.
    """

    code = 535
    default_message = "session authentication failed"


class StillAnswering(FMTPError):
    """
    A datagram received again while its first copy is being answered.
    """

    code = 451


@dataclass(eq=False)
class DatagramState:
    """
    What the server remembers of one session's datagrams: its window, the
    latest answers (by C{Seq}, with the datagram's digest; L{None} while
    being answered), and its listening, if any.
    """

    window: ReplayWindow = field(default_factory=lambda: ReplayWindow(SEQ_WINDOW))
    answers: dict[int, tuple[bytes, Frame | None]] = field(default_factory=dict)
    listener: RoomListener | None = None

    def answered(self, seq: int, digest: bytes, answer: Frame | None) -> None:
        self.answers[seq] = (digest, answer)
        while len(self.answers) > KEPT_ANSWERS:
            del self.answers[min(self.answers)]


class RoomListener:
    """
    The sink of the router session through which a session's listened
    rooms reach its client's address: each room line a datagram signed
    with the session's key, and C{259} when a room is closed to it.

    @ivar login: the session that listens (its key signs the pushes).
    @ivar sink_session: the router session registered in the rooms'
        L{LiveRooms}, of the same user, taking room lines and closes.
    @ivar send: sends a datagram to the source of the last fresh LISTEN.
    @ivar rooms: the rooms listened to, with the call that ends each.
    @ivar last_seq: the last entry of each room meant for the client,
        sent or not.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        live: LiveRooms,
        login: ISession,
        send: Callable[[bytes], bool],
        renderers: Mapping[str, Renderer],
        log_limiter: LogLimiter,
    ) -> None:
        self._clock = clock
        self._live = live
        self._renderers = renderers
        self._log_limiter = log_limiter
        self._rate = SourceRateLimiter(clock, PUSH_RATE, 2 * PUSH_RATE, max_sources=1)
        self.login = login
        self.send = send
        self.sink_session: ISession | None = None
        self.rooms: dict[str, IDelayedCall] = {}
        self.last_seq: dict[str, int] = {}
        self.dropped = 0

    def __call__(self, event: Event) -> None:
        if event.kind == ROOM_LINE:
            self._line(event)
        elif event.kind == ROOM_CLOSED:
            closed: RoomClosed = event.payload  # type: ignore[assignment]
            self.forget(closed.room)
            self._send(self._renderers[ROOM_CLOSED](event))

    def _line(self, event: Event) -> None:
        room, seq = event.payload.room, event.payload.entry.seq
        self.last_seq[room] = max(seq, self.last_seq.get(room, 0))
        if not self._rate.allow(None):
            self.dropped += 1
            self._note(
                "room lines over {rate} a second, dropped ({dropped} so far)",
                rate=PUSH_RATE,
                dropped=self.dropped,
            )
            return
        data = sign_frame(self._renderers[ROOM_LINE](event), self.login.key)
        if len(data) > MAX_DATAGRAM:
            notice = reply(
                305,
                UNSOLICITED_TAG,
                "room line too large for a datagram: read it with HISTORY",
                {"Room": room, "Seq": str(seq)},
            )
            data = sign_frame(notice, self.login.key)
        if not self.send(data):
            self.dropped += 1
            self._note("room line {seq} not sent: the listener stopped", seq=seq)

    def _send(self, frame: Frame) -> None:
        self.send(sign_frame(frame, self.login.key))

    def listen(self, room: str) -> bool:
        """
        Listen to C{room} for L{LISTEN_LIFETIME} seconds from now.

        @return: whether it was listened to already (now refreshed).
        """
        call = self.rooms.get(room)
        if call is not None:
            call.reset(LISTEN_LIFETIME)
            return True
        self.rooms[room] = self._clock.callLater(LISTEN_LIFETIME, self._expire, room)
        return False

    def _expire(self, room: str) -> None:
        del self.rooms[room]
        self._stop(room)
        expired = Event(ROOM_CLOSED, RoomClosed(room, "expired"))
        self._send(self._renderers[ROOM_CLOSED](expired))

    def forget(self, room: str) -> bool:
        """
        Stop listening to C{room}.

        @return: whether it was listened to.
        """
        call = self.rooms.pop(room, None)
        if call is None:
            return False
        call.cancel()
        self._stop(room)
        return True

    def _stop(self, room: str) -> None:
        self.last_seq.pop(room, None)
        if self.sink_session is not None:
            self._live.exit(room, self.sink_session)

    def close(self) -> None:
        """
        The session ended: stop listening to every room.
        """
        for room in list(self.rooms):
            self.forget(room)

    def _note(self, message: str, **kw) -> None:
        self._log_limiter.emit(
            self._log,
            self.login.id,
            "Chat: datagrams to {address} ({session}): " + message,
            level="warn",
            address=self.login.address,
            session=self.login.id,
            **kw,
        )


class ChatDatagrams:
    """
    The datagram side of the chat commands: the session a datagram proves,
    C{LISTEN} and C{UNLISTEN}, and the rooms each session listens to.

    @param protocol_name: the protocol whose sessions are accepted.
    @param renderers: the frame of each chat event, as pushed to a stream
        (L{fmtp.protocols.chat.commands.ChatCommands.renderers}).
    @param enter: enters a session into a room, of this domain or another
        (by default C{chat.enter}: this domain's only).
    """

    def __init__(
        self,
        clock: IReactorTime,
        router: IRouter,
        chat: ChatService,
        protocol_name: str,
        renderers: Mapping[str, Renderer],
        enter: Callable[[ISession, str, int | None], Awaitable[int]] | None = None,
    ) -> None:
        self._enter = enter or chat.enter
        self._clock = clock
        self._router = router
        router.by_id(protocol_name)
        self._chat = chat
        self._protocol_name = protocol_name
        self._renderers = renderers
        self._states: dict[ISession, DatagramState] = {}
        self._log_limiter = LogLimiter(clock, rate=0.1, burst=1)

    def signed(self, command: Command, datagram_only: bool = False) -> Command:
        """
        C{command}, which in a datagram runs for the session the datagram
        proves (L{answer_signed}); over a stream as it is, or refused with
        C{503} if C{datagram_only}.
        """

        async def run(frame: Frame, session: Session) -> Frame:
            if session.datagram:
                return await self.answer_signed(frame, session, command)
            if datagram_only:
                return reply(503, frame.tag, f"{frame.verb} is sent in a UDP datagram")
            return await command(frame, session)

        return run

    def authenticate(self, frame: Frame, data: bytes) -> ISession:
        """
        The chat session a datagram proves.

        @raise InvalidObject: C{501} if a header of L{SIGNED_HEADERS} is
            missing or malformed.
        @raise SessionRefused: C{535} alike for an unknown id, a session
            of another protocol and a wrong MAC.
        """
        headers = frame.headers
        if not all(headers.get(name) for name in SIGNED_HEADERS):
            raise InvalidObject(
                f"{frame.verb} in a datagram needs Session-Id, Seq and Mac headers"
            )
        login = self._router.verify_datagram(
            headers["Session-Id"], unsigned_bytes(data), headers["Mac"]
        )
        if login is None or login.protocol != self._protocol_name:
            raise SessionRefused()
        return login

    async def answer_signed(
        self, frame: Frame, session: Session, command: Command
    ) -> Frame:
        """
        Run C{command} for the session a datagram proves, once per C{Seq}:
        a datagram received again byte for byte gets the first answer.

        @raise FMTPError: C{501}, C{535} (L{authenticate}); C{503} for a
            C{Seq} older than the window or used with other bytes;
            C{451} for one still being answered.
        """
        data = session.datagram_bytes
        login = self.authenticate(frame, data)
        required_header(frame, "Seq")
        seq = int_header(frame, "Seq", 0)
        state = self._states.get(login)
        if state is None:
            state = self._states[login] = DatagramState()
        digest = hashlib.sha256(data).digest()
        seen = state.window.check(seq)
        if seen is Seen.TOO_OLD:
            raise SeqRefused(f"Seq {seq} is older than the last {SEQ_WINDOW} seen")
        if seen is Seen.USED:
            earlier = state.answers.get(seq)
            if earlier is None or earlier[0] != digest:
                raise SeqRefused(f"Seq {seq} was used already")
            if earlier[1] is None:
                raise StillAnswering(f"Seq {seq} is still being answered")
            return earlier[1]
        state.window.accept(seq)
        state.answered(seq, digest, None)
        session.login, session.address = login, login.address
        try:
            answer = await command(frame, session)
        except FMTPError as e:
            answer = reply(e.code, frame.tag, e.message)
        except BaseException:
            state.answers.pop(seq, None)
            raise
        state.answered(seq, digest, answer)
        return answer

    async def listen(self, frame: Frame, session: Session) -> Frame:
        """
        C{LISTEN tag ROOM}: push the room's new lines to the datagram's
        source (and every listened room's, from now on) for
        L{LISTEN_LIFETIME} seconds; sent again, it keeps them coming.
        """
        login = session.login
        assert login is not None and session.send_to_source is not None
        room = parse_room(frame.argument)
        listener = self._listener(login, session.send_to_source)
        if listener.listen(room):
            return self._listening(frame, room, listener.last_seq.get(room, 0))
        if len(listener.rooms) > MAX_LISTENED:
            listener.forget(room)
            raise self._chat.refuse(
                login.address,
                f"a LISTEN of {room}",
                Forbidden(f"a session listens to at most {MAX_LISTENED} rooms"),
            )
        try:
            head = await self._enter(listener.sink_session, room, None)
        except BaseException:
            listener.forget(room)
            raise
        if room not in listener.rooms:  # pragma: no cover - enter refuses it
            raise Forbidden("the room was closed to this session while listening")
        seq = listener.last_seq[room] = max(head, listener.last_seq.get(room, 0))
        return self._listening(frame, room, seq)

    @staticmethod
    def _listening(frame: Frame, room: str, seq: int) -> Frame:
        headers = {"Room": room, "Seq": str(seq), "Expires": f"{LISTEN_LIFETIME:.0f}"}
        return reply(200, frame.tag, headers=headers)

    async def unlisten(self, frame: Frame, session: Session) -> Frame:
        """
        C{UNLISTEN tag ROOM}: stop pushing the room's lines.
        """
        login = session.login
        assert login is not None
        room = parse_room(frame.argument)
        state = self._states.get(login)
        listener = state.listener if state is not None else None
        if listener is None or not listener.forget(room):
            return reply(503, frame.tag, "you are not listening to that room")
        return reply(200, frame.tag, headers={"Room": room})

    def _listener(self, login: ISession, send: Callable[[bytes], bool]) -> RoomListener:
        """
        The listening of C{login}, whose pushes go where C{send} sends
        from now on: the source of its last fresh LISTEN.
        """
        state = self._states[login]
        listener = state.listener
        if listener is None:
            listener = state.listener = RoomListener(
                self._clock,
                self._chat.live,
                login,
                send,
                self._renderers,
                self._log_limiter,
            )
            listener.sink_session = self._router.open(
                login.address,
                self._protocol_name,
                listener,
                (ROOM_LINE, ROOM_CLOSED),
            )
        listener.send = send
        return listener

    def login_ended(self, login: ISession) -> None:
        """
        A chat session ended (LOGOUT, or its connection closed): its
        datagrams prove nothing more, and its rooms are pushed no more.
        """
        state = self._states.pop(login, None)
        if state is None or state.listener is None:
            return
        listener = state.listener
        listener.close()
        if listener.sink_session is not None:
            self._router.close(listener.sink_session)
