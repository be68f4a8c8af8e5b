"""
The chat protocol from Python (doc/protocol.md section 10): a typed call
for each command, and the pushes as events.

    client = await Client.connect(reactor, "tcp:mail.poe.net:7072")
    await client.login("edgar@poe.net", password)
    chat = Chat(client)
    await chat.create("lounge@poe.net", name="The lounge", public=True)
    await chat.enter("lounge@poe.net")
    await chat.say("lounge@poe.net", "Once upon a midnight dreary")
    async for event in chat.events():
        print(event)

L{Chat} wraps a logged-in L{Client} connected to the chat port (7072 by
default), as L{fmtp.client.presence.Presence} wraps one on the presence
port.  Refusals raise L{ReplyError} as every L{Client} call does: C{550}
for a room that does not exist (or that the user may not know of),
C{554} for what the room's rules refuse, C{501} for a bad header,
C{552} for a line too long, C{429} over a rate.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fmtp.client.api import Client
from fmtp.client.protocol import ProtocolError
from fmtp.errors import FMTPError
from fmtp.objects import is_ascii_digits
from fmtp.protocols.chat.lines import entries_of, entry_of_frame
from fmtp.store.rooms import HistoryEntry
from fmtp.wire import Frame

#: The pushes of the chat protocol (doc/protocol.md 10.7): 256 a line of
#: a room's history, 257 a member's change, 258 an invitation, 259 a room
#: this session no longer receives.
CHAT_PUSH_CODES = frozenset({256, 257, 258, 259})


@dataclass(frozen=True, slots=True)
class RoomSettings:
    """
    A room's configuration, as CREATE and CONFIG answer it (never its
    password: only whether it has one).
    """

    room: str
    name: str
    topic: str
    public: bool
    members_only: bool
    moderated: bool
    max_members: int
    password_protected: bool


@dataclass(frozen=True, slots=True)
class Standing:
    """
    How C{address} stands in C{room}: the reply to JOIN and ROLE.
    """

    room: str
    address: str
    role: str
    voice: bool


@dataclass(frozen=True, slots=True)
class Member:
    """
    One line of WHO.
    """

    address: str
    role: str
    voice: bool


@dataclass(frozen=True, slots=True)
class RoomListing:
    """
    One public room of LIST: its address and display name.
    """

    room: str
    name: str


@dataclass(frozen=True, slots=True)
class RoomPage:
    """
    A page of LIST; C{next_start} is where the next begins, if any.
    """

    rooms: list[RoomListing]
    next_start: int | None


@dataclass(frozen=True, slots=True)
class Posted:
    """
    The reply to SAY, TOPIC (setting it) and RETRACT: the new entry's
    place in the history, its object's id, and its digest.
    """

    seq: int
    id: str
    digest: str


@dataclass(frozen=True, slots=True)
class RoomLine:
    """
    C{256}: entry C{entry} of C{room}'s history, pushed live or paged by
    HISTORY.
    """

    room: str
    entry: HistoryEntry

    @property
    def seq(self) -> int:
        return self.entry.seq

    @property
    def kind(self) -> str:
        """
        C{message}, C{room-topic}, C{retraction}, or C{retracted} for a
        line that lost its object.
        """
        if self.entry.obj is None:
            return "retracted"
        return self.entry.obj.type

    @property
    def sender(self) -> str:
        """
        Who posted it (empty once retracted).
        """
        if self.entry.obj is None:
            return ""
        return self.entry.obj.properties.get("From", "")

    @property
    def text(self) -> str:
        """
        What it says: a message's body, a topic entry's topic.
        """
        obj = self.entry.obj
        if obj is None:
            return ""
        if obj.type == "room-topic":
            return obj.properties.get("Topic", "")
        return obj.body.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """
    A page of HISTORY: its entries oldest first, the number of the
    room's last entry, and where the next page begins, if any.
    """

    room: str
    lines: list[RoomLine]
    head: int
    next_since: int | None


@dataclass(frozen=True, slots=True)
class MemberChanged:
    """
    C{257}: C{address} now stands as C{role} (C{none} once gone) in
    C{room}, by the act of C{by} (L{None}: their own), for C{reason}.
    """

    room: str
    address: str
    role: str
    voice: bool
    by: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Invited:
    """
    C{258}: C{inviter} invites the user into C{room}.
    """

    room: str
    inviter: str


@dataclass(frozen=True, slots=True)
class RoomClosed:
    """
    C{259}: this session receives nothing more of C{room}, because of
    C{reason} (C{kicked}, C{banned}, C{left}, C{destroyed}).
    """

    room: str
    reason: str


ChatEvent = RoomLine | MemberChanged | Invited | RoomClosed


def _header(frame: Frame, name: str) -> str:
    try:
        return frame.headers[name]
    except KeyError:
        raise ProtocolError(f"{frame.code} {frame.argument}: no {name}") from None


def _number(frame: Frame, name: str) -> int:
    value = _header(frame, name)
    if not is_ascii_digits(value) or len(value) > 18:
        raise ProtocolError(f"{frame.code} {frame.argument}: {name}: {value[:20]!r}")
    return int(value)


def _optional_number(frame: Frame, name: str) -> int | None:
    return _number(frame, name) if name in frame.headers else None


def _flag(frame: Frame, name: str) -> bool:
    return _header(frame, name).lower() == "yes"


def _lines(body: bytes) -> list[str]:
    # CRLF and LF only: other Unicode breaks are no line ends here.
    text = body.decode("utf-8", "replace").replace("\r\n", "\n")
    return [line for line in text.split("\n") if line]


def parse_settings(frame: Frame) -> RoomSettings:
    """
    The configuration a CREATE or CONFIG reply carries.

    @raise ProtocolError: for a reply without it.
    """
    return RoomSettings(
        _header(frame, "Room"),
        frame.headers.get("Name", ""),
        frame.headers.get("Topic", ""),
        _flag(frame, "Public"),
        _flag(frame, "Members-Only"),
        _flag(frame, "Moderated"),
        _number(frame, "Max-Members"),
        _flag(frame, "Password-Protected"),
    )


def parse_members(body: bytes) -> list[Member]:
    """
    The lines of a WHO reply: C{ADDRESS SP ROLE SP VOICE}.

    @raise ProtocolError: for a line that is not one.
    """
    members = []
    for line in _lines(body):
        parts = line.split(" ")
        if len(parts) != 3 or parts[2] not in ("voice", "-"):
            raise ProtocolError(f"bad WHO line: {line[:80]!r}")
        members.append(Member(parts[0], parts[1], parts[2] == "voice"))
    return members


def parse_rooms(body: bytes) -> list[RoomListing]:
    """
    The lines of a LIST reply: C{ROOM SP NAME}, the name maybe empty.
    """
    listed = []
    for line in _lines(body):
        room, _, name = line.partition(" ")
        listed.append(RoomListing(room, name))
    return listed


def parse_line(frame: Frame) -> RoomLine:
    """
    The entry a C{256} frame carries, pushed or paged.

    @raise ProtocolError: for one that is not an entry.
    """
    try:
        room, entry = entry_of_frame(frame)
    except (ValueError, FMTPError) as e:
        raise ProtocolError(f"bad room line: {e}") from None
    return RoomLine(room, entry)


def parse_history(frame: Frame) -> HistoryPage:
    """
    The page a HISTORY reply carries: its body is the entries' frames.

    @raise ProtocolError: for a body that is not such frames.
    """
    try:
        lines = [RoomLine(room, entry) for room, entry in entries_of(frame.body)]
    except (ValueError, FMTPError) as e:
        raise ProtocolError(f"bad HISTORY body: {e}") from None
    return HistoryPage(
        _header(frame, "Room"),
        lines,
        _number(frame, "Head"),
        _optional_number(frame, "Next-Since"),
    )


def parse_event(frame: Frame) -> ChatEvent | None:
    """
    The event a pushed frame carries, or L{None} for a push that is not
    one of chat.

    @raise ProtocolError: for a chat push without its headers.
    """
    if frame.code == 256:
        return parse_line(frame)
    if frame.code == 257:
        return MemberChanged(
            _header(frame, "Room"),
            _header(frame, "Address"),
            _header(frame, "Role"),
            _flag(frame, "Voice"),
            frame.headers.get("By"),
            frame.headers.get("Reason"),
        )
    if frame.code == 258:
        return Invited(_header(frame, "Room"), _header(frame, "From"))
    if frame.code == 259:
        return RoomClosed(_header(frame, "Room"), _header(frame, "Reason"))
    return None


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def config_headers(
    *,
    name: str | None = None,
    topic: str | None = None,
    public: bool | None = None,
    members_only: bool | None = None,
    moderated: bool | None = None,
    max_members: int | None = None,
    password: str | None = None,
    clear_password: bool = False,
) -> dict[str, str]:
    """
    The headers of CREATE or CONFIG that set what is given (L{None}
    leaves a setting as it is).
    """
    headers: dict[str, str] = {}
    for header, value in (
        ("Name", name),
        ("Topic", topic),
        ("Password", password),
    ):
        if value is not None:
            headers[header] = value
    for header, flag in (
        ("Public", public),
        ("Members-Only", members_only),
        ("Moderated", moderated),
    ):
        if flag is not None:
            headers[header] = _yes_no(flag)
    if max_members is not None:
        headers["Max-Members"] = str(max_members)
    if clear_password:
        headers["Clear-Password"] = "yes"
    return headers


def line_time(line: RoomLine) -> str:
    """
    When a line was appended, as local hours and minutes.
    """
    return time.strftime("%H:%M", time.localtime(line.entry.appended))


class Chat:
    """
    The chat commands, on a L{Client} logged in to a chat port.

    Wrapping the client queues the chat pushes with its messages (in
    C{client.protocol.pushes}), where L{next_event} reads them.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        protocol = client.protocol
        protocol.push_codes = protocol.push_codes | CHAT_PUSH_CODES

    # Rooms

    async def create(self, room: str, **config: object) -> RoomSettings:
        """
        Create C{room}, of which the user becomes the owner; C{config}
        takes the keywords of L{config_headers}.

        @raise ReplyError: 554 for a room that exists (or was destroyed
            lately) or the address of a user.
        """
        headers = config_headers(**config)  # type: ignore[arg-type]
        return parse_settings(await self.client.call("CREATE", room, headers))

    async def config(self, room: str, **changes: object) -> RoomSettings:
        """
        Change C{room}'s configuration (owners), or, with no change, read
        it (members).
        """
        headers = config_headers(**changes)  # type: ignore[arg-type]
        return parse_settings(await self.client.call("CONFIG", room, headers))

    async def destroy(self, room: str) -> None:
        """
        Destroy C{room} with its members and history (owners).
        """
        await self.client.call("DESTROY", room)

    async def list(self, start: int = 0, limit: int = 50) -> RoomPage:
        """
        A page of the public rooms.
        """
        headers = {"Start": str(start), "Limit": str(limit)}
        answer = await self.client.call("LIST", headers=headers)
        return RoomPage(
            parse_rooms(answer.body), _optional_number(answer, "Next-Start")
        )

    async def my_rooms(self) -> list[str]:
        """
        The rooms the user is a member of.
        """
        return _lines((await self.client.call("MYROOMS")).body)

    # Membership

    async def join(self, room: str, password: str | None = None) -> Standing:
        """
        Become a member of C{room} (joining again changes nothing).

        @raise ReplyError: 554 if banned, not invited into a members-only
            room, without the right password, or the room is full.
        """
        headers = {} if password is None else {"Password": password}
        answer = await self.client.call("JOIN", room, headers)
        return Standing(
            _header(answer, "Room"),
            self.client.address or "",
            _header(answer, "Role"),
            _flag(answer, "Voice"),
        )

    async def leave(self, room: str) -> None:
        """
        Stop being a member of C{room}.

        @raise ReplyError: 554 for its only owner.
        """
        await self.client.call("LEAVE", room)

    async def decline(self, room: str) -> bool:
        """
        Turn down an invitation into C{room}.

        @return: whether you were invited.
        """
        return _flag(await self.client.call("DECLINE", room), "Changed")

    async def _member(
        self, verb: str, room: str, address: str, reason: str | None = None
    ) -> Frame:
        headers = {"Address": address}
        if reason is not None:
            headers["Reason"] = reason
        return await self.client.call(verb, room, headers)

    async def invite(self, room: str, address: str) -> bool:
        """
        Invite C{address} into C{room} (moderators).

        @return: whether that changed anything (not invited already).
        """
        return _flag(await self._member("INVITE", room, address), "Changed")

    async def kick(self, room: str, address: str, reason: str | None = None) -> None:
        """
        Remove the member C{address} from C{room}; they may join again.
        """
        await self._member("KICK", room, address, reason)

    async def ban(self, room: str, address: str, reason: str | None = None) -> None:
        """
        Remove C{address} from C{room} if a member, and keep them out.
        """
        await self._member("BAN", room, address, reason)

    async def unban(self, room: str, address: str) -> bool:
        """
        Lift C{address}'s ban from C{room}.

        @return: whether they were banned.
        """
        return _flag(await self._member("UNBAN", room, address), "Changed")

    async def role(
        self,
        room: str,
        address: str,
        role: str | None = None,
        voice: bool | None = None,
    ) -> Standing:
        """
        Give C{address} C{role} (C{owner}, C{moderator}, C{member})
        and/or C{voice}.
        """
        headers = {"Address": address}
        if role is not None:
            headers["Role"] = role
        if voice is not None:
            headers["Voice"] = _yes_no(voice)
        answer = await self.client.call("ROLE", room, headers)
        return Standing(
            _header(answer, "Room"),
            _header(answer, "Address"),
            _header(answer, "Role"),
            _flag(answer, "Voice"),
        )

    async def who(self, room: str, role: str | None = None) -> list[Member]:
        """
        The members of C{room} and their roles, or, with C{role}
        C{banned} or C{invited}, those lists (moderators).
        """
        headers = {} if role is None else {"Role": role}
        return parse_members((await self.client.call("WHO", room, headers)).body)

    # Lines

    async def say(self, room: str, text: str, format: str | None = None) -> Posted:
        """
        Post C{text} as C{room}'s next line.

        @raise ReplyError: 552 for a line over the server's limit, 554
            without voice in a moderated room, 429 over a rate.
        """
        headers = {} if format is None else {"Format": format}
        answer = await self.client.call("SAY", room, headers, text.encode("utf-8"))
        return self._posted(answer)

    @staticmethod
    def _posted(answer: Frame) -> Posted:
        return Posted(
            _number(answer, "Seq"), _header(answer, "Id"), _header(answer, "Digest")
        )

    async def topic(self, room: str) -> str:
        """
        C{room}'s topic.
        """
        return (await self.client.call("TOPIC", room)).headers.get("Topic", "")

    async def set_topic(self, room: str, topic: str) -> Posted:
        """
        Set C{room}'s topic (moderators): an entry of the history.
        """
        return self._posted(await self.client.call("TOPIC", room, {"Topic": topic}))

    async def retract(self, room: str, seq: int) -> Posted:
        """
        Retract line C{seq} (its poster, or a moderator).
        """
        return self._posted(await self.client.call("RETRACT", room, {"Seq": str(seq)}))

    async def history(
        self, room: str, since: int = 0, limit: int | None = None
    ) -> HistoryPage:
        """
        A page of C{room}'s history: the entries after C{since}.
        """
        headers = {"Since": str(since)}
        if limit is not None:
            headers["Limit"] = str(limit)
        return parse_history(await self.client.call("HISTORY", room, headers))

    async def enter(self, room: str, since: int | None = None) -> int:
        """
        Receive C{room}'s entries live (as L{RoomLine} events), after
        those after C{since}, if given.

        @return: the last entry the catch-up sent.
        """
        headers = {} if since is None else {"Since": str(since)}
        return _number(await self.client.call("ENTER", room, headers), "Seq")

    async def exit(self, room: str) -> None:
        """
        Stop receiving C{room}'s entries.
        """
        await self.client.call("EXIT", room)

    # Pushes

    async def next_event(self) -> ChatEvent | None:
        """
        The next chat event pushed to this session, or L{None} once the
        connection has closed.
        """
        return await self.client.next_push(parse_event)

    async def events(self) -> AsyncIterator[ChatEvent]:
        """
        The chat events pushed to this session, as they arrive, until the
        connection closes.
        """
        while (event := await self.next_event()) is not None:
            yield event
