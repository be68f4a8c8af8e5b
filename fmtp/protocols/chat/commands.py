"""
The chat commands (doc/protocol.md section 10): rooms (CREATE, CONFIG,
DESTROY, LIST, MYROOMS), membership and moderation (JOIN, LEAVE, INVITE,
KICK, BAN, UNBAN, ROLE, WHO), lines (SAY, TOPIC, RETRACT, HISTORY) and
the live room (ENTER, EXIT); SAY, LISTEN and UNLISTEN in datagrams
(L{fmtp.protocols.chat.datagrams}); and the frames pushed for the chat
events.

They only parse frames into calls of the server's L{ChatService} and its
answers into frames; every command acts for the logged-in user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from twisted.internet import threads

from fmtp.accounts import DEFAULT_SCRYPT_COST, ScryptCost
from fmtp.auth.router import Event
from fmtp.errors import Forbidden, InvalidObject, LoginRequired
from fmtp.framing.handler import CommandGroup, HandlerCollection, int_header
from fmtp.framing.session import Session
from fmtp.interfaces import ISession
from fmtp.objects import domain_of, normalize_address
from fmtp.protocols.chat.datagrams import ChatDatagrams
from fmtp.protocols.chat.events import (
    ROOM_CLOSED,
    ROOM_INVITATION,
    ROOM_LINE,
    ROOM_MEMBER,
)
from fmtp.protocols.chat.federation import HomeRooms, RoomAction
from fmtp.protocols.chat.lines import (
    MAX_REASON,
    MAX_TOPIC,
    ConfigChange,
    config_headers,
    entry_frame,
    entry_reply,
    member_headers,
    member_line,
    parse_address,
    parse_config,
    parse_flag,
    parse_format,
    parse_role,
    parse_room,
    parse_text,
)
from fmtp.protocols.chat.remote import RemoteRooms
from fmtp.protocols.chat.service import ChatService
from fmtp.protocols.chat.settings import DEFAULT_SETTINGS, ChatSettings
from fmtp.store.rooms import Member, Role, normalize_ban_address
from fmtp.wire import UNSOLICITED_TAG, Frame, reply, serialize

if TYPE_CHECKING:
    from fmtp.services import SharedServices

#: The most rooms one LIST page shows, and by default.
MAX_LIST, DEFAULT_LIST = 200, 50
#: Entries a HISTORY page holds by default.
DEFAULT_HISTORY = 50


def render_line(event: Event) -> Frame:
    line = event.payload
    return entry_frame(line.room, line.entry)


def render_member(event: Event) -> Frame:
    changed = event.payload
    headers = {"Room": changed.room, **member_headers(changed)}
    return reply(257, UNSOLICITED_TAG, "room member", headers)


def render_invitation(event: Event) -> Frame:
    invitation = event.payload
    headers = {"Room": invitation.room, "From": invitation.inviter}
    return reply(258, UNSOLICITED_TAG, "room invitation", headers)


def render_closed(event: Event) -> Frame:
    closed = event.payload
    headers = {"Room": closed.room, "Reason": closed.why}
    return reply(259, UNSOLICITED_TAG, "room closed", headers)


def standing_headers(room: str, member: Member) -> dict[str, str]:
    """
    C{Room}, and a member's C{Role} and C{Voice}.
    """
    voice = "yes" if member.voice else "no"
    return {"Room": room, "Role": member.role.value, "Voice": voice}


class ChatCommands(CommandGroup):
    """
    The chat commands, over streams; SAY, LISTEN and UNLISTEN over
    datagrams too, signed with the session's key.

    @param settings: the limits of the server's L{ChatService}, which
        this group builds (once per server); by default the server's
        C{plugin_options["chat"]}.
    @param run_in_thread: where room passwords are hashed.
    """

    def __init__(
        self,
        services: SharedServices,
        protocol: HandlerCollection,
        settings: ChatSettings | None = None,
        run_in_thread: Callable | None = None,
        password_cost: ScryptCost = DEFAULT_SCRYPT_COST,
    ) -> None:
        super().__init__(services, protocol)
        if settings is None:
            settings = services.plugin_options.get("chat", DEFAULT_SETTINGS)
        self.chat = ChatService(
            services.reactor,
            services.domain,
            services.store,
            services.router,
            services.signer,
            settings,
            run_in_thread=run_in_thread or threads.deferToThread,
            password_cost=password_cost,
        )
        self.service = self.chat
        #: The commands on one room, as its home runs them for a user of
        #: this domain or, through their server, of another.
        self.room_actions: dict[str, RoomAction] = {
            "CONFIG": self.config,
            "DESTROY": self._room_command(self.chat.destroy),
            "JOIN": self.join,
            "LEAVE": self._room_command(self.chat.leave),
            "DECLINE": self.decline,
            "INVITE": self._member_command(self.chat.invite),
            "KICK": self._member_command(self.chat.kick, reason=True),
            "BAN": self._member_command(self.chat.ban, reason=True, domains=True),
            "UNBAN": self._member_command(self.chat.unban, domains=True),
            "ROLE": self.role,
            "WHO": self.who,
            "SAY": self.say,
            "TOPIC": self.topic,
            "RETRACT": self.retract,
            "HISTORY": self.history,
        }
        self.commands = {
            verb: self._on_room(action) for verb, action in self.room_actions.items()
        }
        self.commands["HISTORY"] = self._on_room(
            self.history, self._history_here, self._history_there
        )
        self.commands.update(
            CREATE=self.create,
            LIST=self.list_rooms,
            MYROOMS=self.my_rooms,
            ENTER=self.enter,
            EXIT=self.exit,
        )
        #: The rooms of other domains, for this server's users, and this
        #: server's rooms for theirs; L{None} without server links.
        self.remote: RemoteRooms | None = None
        links = services.links
        if links is not None and links.pool is not None:
            self.chat.federation = HomeRooms(
                self.chat, links, services.keys, self.room_actions, self.history
            )
            self.remote = RemoteRooms(self.chat, links)
        self.renderers = {
            ROOM_LINE: render_line,
            ROOM_MEMBER: render_member,
            ROOM_INVITATION: render_invitation,
            ROOM_CLOSED: render_closed,
        }
        self.datagrams = ChatDatagrams(
            services.reactor,
            services.router,
            self.chat,
            protocol.protocol_name,
            self.renderers,
            enter=self.enter_room,
        )
        signed = self.datagrams.signed
        self.commands["SAY"] = signed(self.commands["SAY"])
        self.commands["LISTEN"] = signed(self.datagrams.listen, datagram_only=True)
        self.commands["UNLISTEN"] = signed(self.datagrams.unlisten, datagram_only=True)
        self.datagram_commands = frozenset({"SAY", "LISTEN", "UNLISTEN"})

    def _user(self, session: Session) -> str:
        if session.login is None:
            raise LoginRequired()
        return session.login.address

    def _on_room(
        self,
        action: RoomAction,
        here: Callable | None = None,
        there: Callable | None = None,
    ):
        """
        The command that runs C{action} for the logged-in user on a room
        of this domain, or asks the home of a room of another; C{here} and
        C{there} (C{(user, room, frame, session)}) do either instead, for
        a command that looks at the stream.
        """

        async def command(frame: Frame, session: Session) -> Frame:
            user = self._user(session)
            room = parse_room(frame.argument)
            if domain_of(room) != self.services.domain:
                if there is not None:
                    return await there(user, room, frame, session)
                return await self._remote_rooms(room).forward(user, room, frame)
            if here is not None:
                return await here(user, room, frame, session)
            return await action(user, room, frame)

        return command

    def _remote_rooms(self, room: str) -> RemoteRooms:
        """
        @raise Forbidden: for a server that links to no other domain.
        """
        if self.remote is None:
            raise Forbidden(
                f"{room} is a room of another domain, and this server links to "
                "no other domain"
            )
        return self.remote

    def _room_command(self, act: Callable) -> RoomAction:
        async def command(user: str, room: str, frame: Frame) -> Frame:
            await act(user, room)
            return reply(200, frame.tag, headers={"Room": room})

        return command

    def _member_command(
        self, act: Callable, reason: bool = False, domains: bool = False
    ) -> RoomAction:
        """
        A command on one address of C{frame}'s C{Address}, with a
        C{Reason} if C{reason}, or a whole domain's C{*@DOMAIN} too if
        C{domains}.
        """
        normalize = normalize_ban_address if domains else normalize_address

        async def command(user: str, room: str, frame: Frame) -> Frame:
            address = parse_address(frame.headers, normalize)
            args = [user, room, address]
            if reason:
                args.append(
                    parse_text(frame.headers.get("Reason", ""), "Reason", MAX_REASON)
                )
            done = await act(*args)
            headers = {"Room": room, "Address": address}
            if isinstance(done, bool):
                headers["Changed"] = "yes" if done else "no"
            return reply(200, frame.tag, headers=headers)

        return command

    async def create(self, frame: Frame, session: Session) -> Frame:
        user = self._user(session)
        room = parse_room(frame.argument)
        if domain_of(room) != self.services.domain:
            raise Forbidden(
                f"{room} is of another domain: a room is created on its domain's server"
            )
        change = parse_config(frame.headers)
        made = await self.chat.create(user, room, change)
        return reply(
            201, frame.tag, headers={"Room": room, **config_headers(made.config)}
        )

    async def config(self, user: str, room: str, frame: Frame) -> Frame:
        change = parse_config(frame.headers)
        config = await self.chat.configure(user, room, change)
        return reply(200, frame.tag, headers={"Room": room, **config_headers(config)})

    async def list_rooms(self, frame: Frame, session: Session) -> Frame:
        self._user(session)
        start = int_header(frame, "Start", 0)
        limit = int_header(frame, "Limit", DEFAULT_LIST)
        if not 1 <= limit <= MAX_LIST:
            raise InvalidObject(f"Limit must be from 1 to {MAX_LIST}")
        rooms = await self.chat.public_rooms(start, limit + 1)
        headers = {"Start": str(start), "Count": str(min(len(rooms), limit))}
        if len(rooms) > limit:
            headers["Next-Start"] = str(start + limit)
        body = "".join(
            f"{r.address} {r.config.name}".rstrip() + "\r\n" for r in rooms[:limit]
        )
        return reply(200, frame.tag, headers=headers, body=body.encode())

    async def my_rooms(self, frame: Frame, session: Session) -> Frame:
        user = self._user(session)
        rooms = await self.chat.my_rooms(user)
        body = "".join(f"{room}\r\n" for room in rooms).encode()
        return reply(200, frame.tag, headers={"Count": str(len(rooms))}, body=body)

    async def join(self, user: str, room: str, frame: Frame) -> Frame:
        member = await self.chat.join(user, room, frame.headers.get("Password"))
        return reply(200, frame.tag, headers=standing_headers(room, member))

    async def decline(self, user: str, room: str, frame: Frame) -> Frame:
        changed = await self.chat.decline(user, room)
        headers = {"Room": room, "Changed": "yes" if changed else "no"}
        return reply(200, frame.tag, headers=headers)

    async def role(self, user: str, room: str, frame: Frame) -> Frame:
        address = parse_address(frame.headers)
        word = frame.headers.get("Role")
        role = None if word is None else parse_role(word)
        voice = parse_flag(frame.headers, "Voice")
        if role is None and voice is None:
            raise InvalidObject("ROLE changes a Role or a Voice")
        member = await self.chat.set_role(user, room, address, role, voice)
        headers = {"Address": address, **standing_headers(room, member)}
        return reply(200, frame.tag, headers=headers)

    async def who(self, user: str, room: str, frame: Frame) -> Frame:
        word = frame.headers.get("Role")
        role = None
        if word is not None:
            role = {"banned": Role.BANNED, "invited": Role.INVITED}.get(word.lower())
            if role is None:
                raise InvalidObject("WHO lists the members, or Role: banned|invited")
        members = await self.chat.who(user, room, role)
        body = "".join(member_line(m) for m in members).encode()
        return reply(
            200,
            frame.tag,
            headers={"Room": room, "Count": str(len(members))},
            body=body,
        )

    async def say(self, user: str, room: str, frame: Frame) -> Frame:
        fmt = parse_format(frame.headers)
        entry = await self.chat.say(user, room, frame.body, fmt)
        return entry_reply(frame.tag, entry)

    async def topic(self, user: str, room: str, frame: Frame) -> Frame:
        if "Topic" not in frame.headers:
            config = await self.chat.configure(user, room, ConfigChange())
            return reply(200, frame.tag, headers={"Room": room, "Topic": config.topic})
        topic = parse_text(frame.headers["Topic"], "Topic", MAX_TOPIC)
        return entry_reply(frame.tag, await self.chat.topic(user, room, topic))

    async def retract(self, user: str, room: str, frame: Frame) -> Frame:
        seq = int_header(frame, "Seq", 0)
        if seq < 1:
            raise InvalidObject("RETRACT needs Seq: the number of the line")
        return entry_reply(frame.tag, await self.chat.retract(user, room, seq))

    async def _history_here(
        self, user: str, room: str, frame: Frame, session: Session
    ) -> Frame:
        return await self.history(user, room, frame, session.queued)

    async def _history_there(
        self, user: str, room: str, frame: Frame, session: Session
    ) -> Frame:
        """
        HISTORY of a room of another domain: its home sizes the page by
        what it holds for this server, so a page for a client that does
        not read what this server holds for it asks for one entry.
        """
        if session.queued is not None and session.queued():
            frame = replace(frame, headers={**frame.headers, "Limit": "1"})
        return await self._remote_rooms(room).forward(user, room, frame)

    async def history(
        self,
        user: str,
        room: str,
        frame: Frame,
        queued: Callable[[], int] | None = None,
    ) -> Frame:
        """
        A page of the history: at most C{history_bytes} of entries, less
        what the stream already holds for its client (C{queued}), and at
        least one entry; so a client that pipelines HISTORY and reads
        slowly makes the server hold about one page, not one a request.
        """
        since = int_header(frame, "Since", int_header(frame, "Start", 0))
        most = self.chat.settings.history_limit
        limit = int_header(frame, "Limit", min(DEFAULT_HISTORY, most))
        if not 1 <= limit <= most:
            raise InvalidObject(f"Limit must be from 1 to {most}")
        entries, head = await self.chat.history(user, room, since, limit)
        frames: list[bytes] = []
        size, budget = 0, self.chat.settings.history_bytes
        if queued is not None:
            budget -= queued()
        for entry in entries:
            data = serialize(entry_frame(room, entry))
            if frames and size + len(data) > budget:
                break
            frames.append(data)
            size += len(data)
        headers = {"Room": room, "Count": str(len(frames)), "Head": str(head)}
        last = since + len(frames)
        if last < head:
            headers["Next-Since"] = str(last)
        return reply(200, frame.tag, headers=headers, body=b"".join(frames))

    async def enter(self, frame: Frame, session: Session) -> Frame:
        self._user(session)
        room = parse_room(frame.argument)
        since = int_header(frame, "Since", -1)
        sent = await self.enter_room(session.login, room, None if since < 0 else since)
        return reply(200, frame.tag, headers={"Room": room, "Seq": str(sent)})

    async def enter_room(self, session: ISession, room: str, since: int | None) -> int:
        """
        Enter C{session} into C{room}, of this domain or another (ENTER,
        and a light client's LISTEN).
        """
        if domain_of(room) == self.services.domain:
            return await self.chat.enter(session, room, since)
        return await self._remote_rooms(room).enter(session, room, since)

    async def exit(self, frame: Frame, session: Session) -> Frame:
        self._user(session)
        room = parse_room(frame.argument)
        if not self.chat.exit(session.login, room):
            return reply(503, frame.tag, "you did not ENTER that room")
        return reply(200, frame.tag, headers={"Room": room})

    def login_ended(self, session: Session) -> None:
        if session.login is not None:
            self.chat.session_ended(session.login)
            self.datagrams.login_ended(session.login)
