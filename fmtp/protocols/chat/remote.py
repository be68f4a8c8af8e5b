"""
Rooms of other domains, for this server's users (doc/protocol.md 10.9):
the member's side of L{fmtp.protocols.chat.federation}.

A user names a room of another domain in any command of one room: this
server asks the room's home with C{ROOM}, acting for that user only,
and answers with the home's reply.  A line is signed here first, as this
domain's user's (the home checks it).  An C{ENTER} is this server's: the
session is registered in its live rooms first, catches up with the
home's C{HISTORY}, then goes live, exactly as in a local room (the
wormhole of L{fmtp.protocols.chat.live}); what the home then pushes
(C{room-push} objects through its queue) reaches the sessions that
entered the room of the members the push names, and no others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from fmtp.auth.router import Event
from fmtp.delivery import RecipientResult
from fmtp.errors import FMTPError, Forbidden, InvalidObject, TooManyRequests
from fmtp.interfaces import IServerLinks, ISession
from fmtp.objects import FMTPObject, domain_of, new_object_id, normalize_address
from fmtp.protocols.chat.events import (
    ROOM_INVITATION,
    ROOM_LINE,
    ROOM_MEMBER,
    Invitation,
    MemberChanged,
    RoomLine,
)
from fmtp.protocols.chat.federation import (
    CLOSED_PUSH,
    INVITATION_PUSH,
    LINE_PUSH,
    MEMBER_PUSH,
    PUSH_TYPE,
    ROOM_HEADERS,
    ROOM_VERB,
)
from fmtp.protocols.chat.history import CATCH_UP_PAGE
from fmtp.protocols.chat.lines import (
    POSTER_SIGNATURE,
    entries_of,
    parse_format,
    posted_line,
)
from fmtp.ratelimit import SourceRateLimiter
from fmtp.store.rooms import HistoryEntry, Role
from fmtp.wire import Frame

if TYPE_CHECKING:
    from fmtp.protocols.chat.service import ChatService

#: What a C{closed} push may say, and a member push's C{Role}.
CLOSINGS = frozenset({"kicked", "banned", "left", "destroyed"})
ROLES = frozenset({role.value for role in Role} | {"none"})


class HomeRefused(FMTPError):
    """
    The room's home refused: its code and text, passed on to the user.
    """

    def __init__(self, answer: Frame) -> None:
        super().__init__(answer.argument or "refused by the room's home")
        self.code = answer.code


class RemoteRooms:
    """
    The rooms of other domains, as this server's users reach them.

    @param service: this server's rooms (their live rooms hold the
        sessions that entered rooms of other domains too).
    @param links: the server links: requests to the rooms' homes, and
        where this takes their pushes.
    """

    _log = Logger()

    def __init__(self, service: ChatService, links: IServerLinks) -> None:
        self._service = service
        self._links = links
        settings = service.settings
        #: Each user's requests to rooms of other domains: the homes count
        #: this server's requests together, so one user's burst would
        #: otherwise spend everyone's.
        self._users = SourceRateLimiter(
            service.clock, settings.user_rate, settings.user_burst
        )
        #: Invitations to each user from each domain: a room's home rates
        #: its inviters, but a hostile home would not, and an invitation
        #: reaches every chat session of its user.
        self._invitations = SourceRateLimiter(
            service.clock, settings.join_rate, settings.join_burst
        )
        links.register_object_type(PUSH_TYPE, self._receive)

    async def forward(self, user: str, room: str, frame: Frame) -> Frame:
        """
        Carry C{user}'s command on C{room} to the room's home, and give its
        reply (tagged as the command).

        @raise fmtp.federation.failures.LinkError: if the home cannot be
            reached (451) or has no server (5xx).
        @raise TooManyRequests: past the user's rate (that of their lines
            in all rooms: 20 a second after 100, by default).
        """
        if not self._users.allow(user):
            raise self._service.refuse(
                user,
                f"a {frame.verb} of {room}",
                TooManyRequests("too many requests to rooms of other domains"),
            )
        headers = {k: v for k, v in frame.headers.items() if k not in ROOM_HEADERS}
        headers["Action"] = frame.verb
        headers["Actor"] = user
        if frame.verb == "SAY":
            service = self._service
            now = service.clock.seconds()
            line = posted_line(
                new_object_id(user, now),
                user,
                room,
                parse_format(frame.headers),
                frame.body,
            )
            signed = service.signer.sign_object(line, now)
            headers["Id"] = signed.id
            headers[POSTER_SIGNATURE] = signed.properties["Signature"]
        answer = await self._links.request(
            domain_of(room), ROOM_VERB, room, headers, frame.body
        )
        return Frame(
            answer.verb, frame.tag, answer.argument, answer.headers, answer.body
        )

    async def enter(self, session: ISession, room: str, since: int | None) -> int:
        """
        L{fmtp.protocols.chat.history.RoomHistory.enter} for a room of
        another domain: the catch-up reads the home's HISTORY, as the
        user (so the home decides whether they are a member).
        """
        user = session.address
        # The first page proves the user a member: its entries are the
        # catch-up's first page too.
        first: list[list[HistoryEntry]] = []

        async def start(entering: object) -> int:
            limit = 1 if since is None else CATCH_UP_PAGE
            head, entries = await self._page(user, room, since or 0, limit)
            self._service.live.admit(entering)
            first.append(entries)
            return head

        async def page(after: int) -> list[HistoryEntry]:
            if first:
                return first.pop()
            return (await self._page(user, room, after, CATCH_UP_PAGE))[1]

        return await self._service.catch_up(session, room, since, start, page)

    async def _page(self, user: str, room: str, since: int, limit: int):
        """
        The home's C{Head} and a page of entries after C{since}.

        @raise HomeRefused: for any answer but C{200}.
        """
        ask = Frame("HISTORY", "h", room, {"Since": str(since), "Limit": str(limit)})
        answer = await self.forward(user, room, ask)
        if answer.code != 200:
            raise HomeRefused(answer)
        try:
            head = int(answer.headers["Head"])
            entries = [entry for of, entry in entries_of(answer.body) if of == room]
        except (KeyError, ValueError) as e:
            raise InvalidObject(f"the room's home sent a bad HISTORY: {e}") from None
        return head, entries

    # -- what the homes push --------------------------------------------------

    async def _receive(
        self, obj: FMTPObject, recipients: list[str], origin: str
    ) -> list[RecipientResult]:
        """
        A push of a room's home, its origin proved (it signed it, and is
        the domain of the room it comes from: DELIVER's checks): handed
        to the sessions of the members it names that entered the room.
        """
        room = normalize_address(obj.properties.get("From", ""))
        if domain_of(room) != origin:  # pragma: no cover - DELIVER checks it
            raise Forbidden(f"{origin} is not the home of {room}")
        kind = obj.properties.get("Room-Push", "")
        named = frozenset(recipients)
        live = self._service.live
        results = [
            RecipientResult(address, 250, "room push taken") for address in named
        ]
        if kind == LINE_PUSH:
            entries = self._entries(obj)
            for of, _ in entries:
                if of != room:
                    raise InvalidObject(f"a line of {of} pushed as one of {room}")
            for _, entry in entries:
                live.announce(room, Event(ROOM_LINE, RoomLine(room, entry)), named)
        elif kind == MEMBER_PUSH:
            live.announce(room, Event(ROOM_MEMBER, self._member(obj, room)), named)
        elif kind == CLOSED_PUSH:
            why = obj.properties.get("Reason", "")
            if why not in CLOSINGS:
                raise InvalidObject(f"bad Reason {why[:40]!r}")
            for address in named:
                live.close(room, address, why)
        elif kind == INVITATION_PUSH:
            inviter = normalize_address(obj.properties.get("Inviter", ""))
            event = Event(ROOM_INVITATION, Invitation(room, inviter))
            results = [self._invite(address, origin, event) for address in named]
        else:
            raise InvalidObject(f"bad Room-Push {kind[:40]!r}")
        return results

    def _invite(self, address: str, origin: str, event: Event) -> RecipientResult:
        """
        Tell C{address} of an invitation of a room of C{origin}, unless
        that domain invites them too often (then it is to try later).
        """
        if not self._invitations.allow((origin, address)):
            self._service.refuse(
                address,
                f"an invitation from {origin}",
                TooManyRequests(f"too many invitations from {origin}"),
            )
            return RecipientResult(address, 429, "too many invitations; try later")
        self._service.router.deliver(address, event)
        return RecipientResult(address, 250, "room push taken")

    @staticmethod
    def _entries(obj: FMTPObject):
        try:
            entries = entries_of(obj.body)
        except ValueError as e:
            raise InvalidObject(f"pushed lines are entries' frames: {e}") from None
        if not entries:
            raise InvalidObject("a push of lines holds at least one entry's frame")
        return entries

    @staticmethod
    def _member(obj: FMTPObject, room: str) -> MemberChanged:
        props = obj.properties
        role = props.get("Role", "")
        if role not in ROLES:
            raise InvalidObject(f"bad Role {role[:40]!r}")
        by = props.get("By")
        return MemberChanged(
            room,
            normalize_address(props.get("Address", "")),
            role,
            props.get("Voice") == "yes",
            normalize_address(by) if by is not None else None,
            props.get("Reason") or None,
        )
