"""
C{fmtp chat ROOM}: talk in a room (doc/protocol.md section 10) from a
terminal, through L{fmtp.client.chat.Chat} on the chat port.

It joins the room if the user is not a member, enters it, prints its
recent history, and then reads lines from standard input with
L{twisted.internet.stdio.StandardIO}, on the reactor, while the room's
lines are printed as they come: a typed line is said, C{/topic TEXT},
C{/who}, C{/leave} and C{/quit} are commands (C{/help} lists them).
Everything is written through the same L{StandardIO} transport, since
standard output shares the terminal with standard input, which
L{StandardIO} makes non-blocking.

L{ChatSession} is what happens, without a terminal or a socket: it
takes typed lines and pushed events, acts on the L{Chat}, and writes
text; L{run_chat} wires it to the terminal and the connection.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from twisted.internet import fdesc
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.protocol import Protocol
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python import usage
from twisted.python.failure import Failure

from fmtp.cli.config import ChatClientOptions, login_password, read_password
from fmtp.cli.messaging import parse_recipient
from fmtp.cli.output import printable
from fmtp.cli.rooms import members_text
from fmtp.cli.runner import run_on_reactor
from fmtp.cli.session import connected, keep_alive
from fmtp.cli.status import EXIT_OK, Refused, Unreachable
from fmtp.client import ReplyError
from fmtp.client.chat import (
    Chat,
    ChatEvent,
    Invited,
    MemberChanged,
    RoomClosed,
    RoomLine,
    line_time,
)

#: How many lines of history C{fmtp chat} prints on entry by default.
DEFAULT_RECENT = 20
#: The most it may print (the server's backlog for ENTER is 1000).
MAX_RECENT = 500
#: What L{TerminalInput} queues for a line too long to keep.
TOO_LONG = "\x00too long"
#: Why a chat ended when the connection did.
CONNECTION_CLOSED = "the connection closed"
#: Seconds the end of a chat waits for what is still to be written.
FLUSH_TIMEOUT = 2.0

HELP = (
    "Type a line to say it.  /topic TEXT sets the topic, /topic shows it; "
    "/who lists the members; /leave leaves the room (you stop being a "
    "member) and exits; /quit or Ctrl-D exits, staying a member."
)


class ChatOptions(ChatClientOptions):
    synopsis = "ROOM [--room-password | --room-password-file FILE] [--recent N]"
    longdesc = (
        "Talk in ROOM from the terminal: join it if you are not a member (a "
        "room with a password: --room-password asks it, --room-password-file "
        "reads it), print its recent lines, then say each line you type while "
        "the others' lines appear as they come, one a line: time, who, text.  "
        + HELP
        + "  Ctrl-C exits with status 130."
    )
    examples = (
        "fmtp chat lounge@poe.net",
        "fmtp chat lounge@poe.net --room-password --recent 50",
    )
    optFlags = [["room-password", None, "Ask the room's password, to join it."]]
    optParameters = [
        [
            "room-password-file",
            None,
            None,
            "Read the room's password from this file's first line.",
        ],
        [
            "recent",
            None,
            str(DEFAULT_RECENT),
            f"How many of the room's last lines to print on entry (0 to {MAX_RECENT}).",
        ],
    ]

    def parseArgs(self, room: str) -> None:
        self["room"] = parse_recipient(room)

    def postOptions(self) -> None:
        super().postOptions()
        if self["room-password"] and self["room-password-file"]:
            raise usage.UsageError(
                "give --room-password or --room-password-file, not both"
            )
        recent = self["recent"]
        if not recent.isdigit() or int(recent) > MAX_RECENT:
            raise usage.UsageError(f"--recent must be from 0 to {MAX_RECENT}")
        self["recent"] = int(recent)


def line_text(line: RoomLine) -> str:
    """
    One line for an entry of the history: time, who, what; text from
    others made safe for the terminal, on one line.
    """
    when = line_time(line)
    who = printable(line.sender)
    kind = line.kind
    if kind == "message":
        return f"{when} {who}: {printable(line.text)}"
    if kind == "room-topic":
        return f"{when} -- {who} set the topic: {printable(line.text)}"
    if kind == "retraction":
        retracts = line.entry.retracts
        return f"{when} -- {who} retracted line {retracts}"
    if kind == "retracted":
        return f"{when} -- (line {line.seq}, retracted)"
    return f"{when} -- {who} posted a {printable(kind)}"


def event_text(event: ChatEvent) -> str:
    """
    One line for a pushed event.
    """
    if isinstance(event, RoomLine):
        return line_text(event)
    if isinstance(event, MemberChanged):
        who = printable(event.address)
        by = f" (by {printable(event.by)})" if event.by else ""
        why = f": {printable(event.reason)}" if event.reason else ""
        if event.role == "none":
            if event.by:
                return f"-- {who} was removed{by}{why}"
            return f"-- {who} left"
        if event.role == "banned":
            return f"-- {who} was banned{by}{why}"
        voice = ", with voice" if event.voice else ""
        return f"-- {who} is {printable(event.role)}{voice}{by}{why}"
    if isinstance(event, Invited):
        room = printable(event.room)
        return (
            f"-- {printable(event.inviter)} invites you into {room}: fmtp chat {room}"
        )
    assert isinstance(event, RoomClosed)
    if event.reason == "left":
        return f"-- you left {printable(event.room)}"
    return f"-- you are out of {printable(event.room)}: {printable(event.reason)}"


class ChatSession:
    """
    One user in one room: typed lines in, pushed events in, text out.

    @ivar done: fires with the exit status once the chat ends (C{/quit},
        C{/leave}, the end of input, or the room closing).
    """

    def __init__(self, chat: Chat, room: str, write: Callable[[str], None]) -> None:
        self.chat = chat
        self.room = room
        self.write = write
        self.done: Deferred = Deferred()
        self.closed_reason: str | None = None

    def say(self, text: str) -> None:
        self.write(text + "\n")

    def finish(self, status: int = EXIT_OK) -> None:
        if not self.done.called:
            self.done.callback(status)

    def event(self, event: ChatEvent) -> None:
        """
        A pushed event: printed, if it is of this room (or an
        invitation); the room closing ends the chat.
        """
        if not isinstance(event, Invited) and event.room != self.room:
            return
        self.say(event_text(event))
        if isinstance(event, RoomClosed):
            self.closed_reason = event.reason
            self.finish()

    async def typed(self, line: str) -> None:
        """
        A line typed by the user: said, or a command.  A refusal is
        printed and the chat goes on.
        """
        if line == TOO_LONG:
            self.say("!! that line is too long; it was not said")
            return
        line = line.rstrip("\r\n")
        if not line.strip():
            return
        try:
            if line.startswith("/") and not line.startswith("//"):
                await self.command(line)
            else:
                # C{//text} says C{/text}.
                await self.chat.say(self.room, line.removeprefix("/"))
        except ReplyError as e:
            self.say(f"!! {e.verb} refused: {e.code} {printable(e.text)}")

    async def command(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if word == "/quit":
            self.finish()
        elif word == "/help":
            self.say(f"-- {HELP}")
        elif word == "/leave":
            await self.chat.leave(self.room)
            if self.closed_reason is None:
                # Not told already (259, once entered).
                self.say(f"-- you left {printable(self.room)}")
            self.finish()
        elif word == "/who":
            self.write(members_text(await self.chat.who(self.room)))
        elif word == "/topic" and rest:
            await self.chat.set_topic(self.room, rest)
        elif word == "/topic":
            topic = await self.chat.topic(self.room)
            self.say(f"-- topic: {printable(topic)}" if topic else "-- no topic")
        else:
            self.say(f"!! unknown command {printable(word)}. {HELP}")


class TerminalInput(LineOnlyReceiver):
    """
    The lines typed on standard input, queued (L{None} at its end).
    """

    delimiter = b"\n"
    MAX_LENGTH = 64 * 1024

    def __init__(self, lines: DeferredQueue) -> None:
        self.lines = lines
        self.gone: Deferred = Deferred()

    def lineReceived(self, line: bytes) -> None:
        self.lines.put(line.decode("utf-8", "replace"))

    def lineLengthExceeded(self, line: bytes) -> None:
        # Dropped whole (the server would refuse it: 552), and the chat
        # goes on.
        self._buffer = b""
        self.lines.put(TOO_LONG)

    def connectionLost(self, reason: Failure = None) -> None:
        self.lines.put(None)
        if not self.gone.called:
            self.gone.callback(None)


async def read_typed(session: ChatSession, lines: DeferredQueue) -> None:
    """
    Act on each typed line, one after the other; Ctrl-D ends the chat.
    """
    while not session.done.called:
        line = await lines.get()
        if line is None:
            session.finish()
            return
        await session.typed(line)


async def read_pushed(session: ChatSession) -> None:
    """
    Print each pushed event; the connection closing ends the chat.
    """
    while not session.done.called:
        event = await session.chat.next_event()
        if event is None:
            session.closed_reason = CONNECTION_CLOSED
            session.finish()
            return
        session.event(event)


async def enter_room(chat: Chat, room: str, password: str | None, recent: int) -> None:
    """
    Join C{room} unless a member, then enter it so that its last
    C{recent} lines come first, then the live ones, with no gap.
    """
    if room not in await chat.my_rooms():
        await chat.join(room, password)
    head = (await chat.history(room, 0, 1)).head
    await chat.enter(room, max(head - recent, 0))


async def run_chat(
    reactor: Any,
    options: ChatOptions,
    password: str,
    room_secret: str | None,
    stdio_factory: Callable[[Protocol], Any],
) -> int:
    room = options["room"]
    server = options["chat-server"]
    async with connected(reactor, options, password, server) as client:
        chat = Chat(client)
        lines: DeferredQueue = DeferredQueue()
        terminal = TerminalInput(lines)
        stdio = stdio_factory(terminal)

        def write(text: str) -> None:
            stdio.write(text.encode("utf-8", "replace"))

        session = ChatSession(chat, room, write)
        keepalive = keep_alive(reactor, client)
        try:
            await enter_room(chat, room, room_secret, options["recent"])
            write(f"-- in {printable(room)}; /help for commands, Ctrl-D to exit\n")
            failures: list[Failure] = []

            def ended(result: object) -> None:
                if isinstance(result, Failure):
                    failures.append(result)
                    session.finish()

            for loop in (read_typed(session, lines), read_pushed(session)):
                Deferred.fromCoroutine(loop).addBoth(ended)
            status = await session.done
            if failures:
                failures[0].raiseException()
        finally:
            keepalive.stop()
            stdio.loseConnection()
            terminal.gone.addTimeout(FLUSH_TIMEOUT, reactor)
            try:
                await terminal.gone
            except Exception:
                pass
            _blocking_again()
        if session.closed_reason == CONNECTION_CLOSED:
            raise Unreachable(f"{server} closed the connection")
        if session.closed_reason not in (None, "left"):
            raise Refused(f"you are out of {room}: {session.closed_reason}")
        await client.quit()
    return status


def _blocking_again() -> None:
    """
    Standard input and output blocking again, as L{StandardIO} found
    them, so that what is printed after the chat is not lost.
    """
    for fd in (0, 1):
        try:
            fdesc.setBlocking(fd)
        except OSError:
            pass


def chat_command(options: ChatOptions) -> int:
    password = login_password(options)
    room_secret = None
    if options["room-password"]:
        room_secret = read_password(None)
    elif options["room-password-file"]:
        room_secret = read_password(
            options["room-password-file"], source="--room-password-file"
        )

    def stdio_factory(protocol: Protocol) -> Any:
        from twisted.internet.stdio import StandardIO

        return StandardIO(protocol)

    sys.stdout.flush()
    return run_on_reactor(
        lambda reactor: run_chat(reactor, options, password, room_secret, stdio_factory)
    )
