"""
This server's rooms with members of other domains (doc/protocol.md
10.9), the home's side, on the shared server links and nothing else.

A user of another domain acts on a room here through their own server,
which asks with the server verb C{ROOM}: the command the user sent, with
C{Action} (its verb) and C{Actor} (the user).  A server speaks only for
its own users, so an C{Actor} of any domain but the one the link proved
is refused; the command is then carried out exactly as a local user's
(the same functions, the same rules, rates and errors), and its reply
is the answer.  A line is the one exception to "exactly": its poster's
server signs it (L{fmtp.protocols.chat.lines.posted_line}), and this
server checks that signature before linking the line into the history,
where it keeps it as C{Poster-Signature}.

What happens in a room goes to each other domain with members in it
once, whatever their number there: a signed object of type C{room-push}
through the outbound queue (durable, retried), naming that domain's
members, which their server hands to those of their sessions that
entered the room (L{fmtp.protocols.chat.remote}).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from fmtp.errors import (
    BadSignature,
    FMTPError,
    Forbidden,
    InvalidObject,
    InvalidObjectId,
    TooManyRequests,
)
from fmtp.federation.hello import Peer
from fmtp.federation.inbound import MAX_CLOCK_SKEW
from fmtp.interfaces import IKeyVerifier, IServerLinks
from fmtp.keys.signing import signature_of
from fmtp.objects import (
    FMTPObject,
    domain_of,
    new_object_id,
    normalize_address,
    parse_object_id,
)
from fmtp.protocols.chat.events import MemberChanged
from fmtp.protocols.chat.lines import (
    POSTER_SIGNATURE,
    entry_frame,
    entry_reply,
    member_headers,
    parse_format,
    parse_room,
    posted_line,
)
from fmtp.ratelimit import LogLimiter, SourceRateLimiter
from fmtp.store.rooms import HistoryEntry
from fmtp.util.singleflight import SingleFlight
from fmtp.wire import Frame, serialize

if TYPE_CHECKING:
    from fmtp.protocols.chat.service import ChatService

#: The server verb by which a server acts for its user on a room here.
ROOM_VERB = "ROOM"
#: The type of what a room's home sends to the domains of its members.
PUSH_TYPE = "room-push"
#: What a push carries (its C{Room-Push}).
LINE_PUSH, MEMBER_PUSH, CLOSED_PUSH, INVITATION_PUSH = (
    "line",
    "member",
    "closed",
    "invitation",
)
#: The commands a user of another domain may send to a room here: those
#: that act on one room.  CREATE is for a server's own users; LIST and
#: MYROOMS name no room; ENTER and EXIT are of the user's own sessions.
REMOTE_COMMANDS = frozenset(
    {
        "CONFIG",
        "DESTROY",
        "JOIN",
        "LEAVE",
        "DECLINE",
        "INVITE",
        "KICK",
        "BAN",
        "UNBAN",
        "ROLE",
        "WHO",
        "SAY",
        "TOPIC",
        "RETRACT",
        "HISTORY",
    }
)
#: The headers of a C{ROOM} request that are the server's, not the
#: user's command's.
ROOM_HEADERS = frozenset({"Action", "Actor", "Id", POSTER_SIGNATURE})
#: The most bytes of addresses one push names (its C{To}): a header line
#: is at most 8192 bytes, so a domain with many members gets several.
MAX_TO = 6000
#: The most entries one push of lines carries, and the most bytes of
#: their frames (at least one entry).
MAX_PUSHED_LINES = 100
MAX_PUSH_BYTES = 256 * 1024
#: Rooms whose members of other domains are remembered at once.
MAX_CACHED_ROOMS = 10000

#: A room command: C{action(user, room, frame)} gives its reply.
RoomAction = Callable[[str, str, Frame], Awaitable[Frame]]
#: HISTORY: C{history(user, room, frame, queued)}, its page smaller by
#: what C{queued()} says the stream holds for its reader.
PagedAction = Callable[[str, str, Frame, Callable[[], int] | None], Awaitable[Frame]]


def chunks(addresses: Iterable[str], most: int = MAX_TO) -> list[list[str]]:
    """
    C{addresses} in groups whose C{To} (addresses joined by spaces) stays
    within C{most} bytes.
    """
    groups: list[list[str]] = []
    size = most + 1
    for address in addresses:
        if size + 1 + len(address) > most:
            groups.append([])
            size = -1
        groups[-1].append(address)
        size += 1 + len(address)
    return groups


class HomeRooms:
    """
    The rooms of this server's domain, for the users of others.

    @param service: the server's rooms.
    @param links: the server links, where this registers C{ROOM}.
    @param keys: finds the keys that check a poster's signature.
    @param actions: the room commands by verb, as local users run them.
    @param history: HISTORY, given what the link holds for the peer.
    """

    _log = Logger()

    def __init__(
        self,
        service: ChatService,
        links: IServerLinks,
        keys: IKeyVerifier,
        actions: Mapping[str, RoomAction],
        history: PagedAction,
    ) -> None:
        settings = service.settings
        self._service = service
        self._links = links
        self._keys = keys
        # A line is checked here first (L{_say}), then posted as a local one;
        # a page of history is sized by what the link holds for the peer.
        self._actions = {
            verb: actions[verb] for verb in REMOTE_COMMANDS - {"SAY", "HISTORY"}
        }
        self._history = history
        self._peers = SourceRateLimiter(
            service.clock, settings.remote_rate, settings.remote_burst
        )
        #: Per peer domain and room, the requests with a Password: a user's
        #: tries are rated (JOIN), but a server may speak for as many users
        #: of its domain as it likes, so its tries at a room are rated
        #: together, as one user's.
        self._password_tries = SourceRateLimiter(
            service.clock, settings.join_rate, settings.join_burst
        )
        self._log_limiter = LogLimiter(service.clock, rate=1.0, burst=10.0)
        #: Per room, its members of other domains by domain.
        self._remote: dict[str, dict[str, list[str]]] = {}
        #: Per room whose lines are being pushed, the entries said since
        #: the push under way was made, each with the count of the room's
        #: changes when it was said (L{_send_lines}).
        self._lines: dict[str, list[tuple[HistoryEntry, int]]] = {}
        #: The reads under way, by room and its count of changes when each
        #: began: a push after a change never shares a read from before it
        #: (a line said after a kick would reach the kicked).
        self._member_reads: SingleFlight[tuple[str, int], dict[str, list[str]]] = (
            SingleFlight()
        )
        #: Per room, how often its remote members changed: a read that
        #: overlapped a change is not remembered.
        self._changes: dict[str, int] = {}
        links.register(ROOM_VERB, self._request)

    # -- requests of other servers --------------------------------------------

    async def _request(self, peer: Peer, frame: Frame) -> Frame:
        """
        C{ROOM tag ROOM}, headers C{Action} and C{Actor} and the command's.

        @raise FMTPError: for a refusal, with its code.
        """
        action = frame.headers.get("Action", "").upper()
        if action not in REMOTE_COMMANDS:
            raise InvalidObject(
                f"Action must be one of {', '.join(sorted(REMOTE_COMMANDS))}"
            )
        actor = normalize_address(frame.headers.get("Actor", ""))
        if domain_of(actor) != peer.domain:
            raise self._refuse(
                peer,
                Forbidden(
                    f"{peer.domain} speaks for its own users only, not for {actor}"
                ),
            )
        room = parse_room(frame.argument, self._service.domain)
        if not self._peers.allow(peer.domain):
            raise self._refuse(
                peer, TooManyRequests(f"too many room requests from {peer.domain}")
            )
        headers = {k: v for k, v in frame.headers.items() if k not in ROOM_HEADERS}
        if "Password" in headers and not self._password_tries.allow(
            (peer.domain, room)
        ):
            raise self._refuse(
                peer,
                TooManyRequests(f"too many password tries from {peer.domain}"),
            )
        command = Frame(action, frame.tag, room, headers, frame.body)
        if action == "SAY":
            return await self._say(actor, room, command, frame.headers)
        if action == "HISTORY":
            return await self._history(actor, room, command, peer.queued)
        return await self._actions[action](actor, room, command)

    def _refuse(self, peer: Peer, error: FMTPError) -> FMTPError:
        self._log_limiter.emit(
            self._log,
            peer.domain,
            "Chat: refused a ROOM request of {domain}: {why}",
            level="warn",
            domain=peer.domain,
            why=error,
        )
        return error

    async def _say(
        self, actor: str, room: str, frame: Frame, signed: Mapping[str, str]
    ) -> Frame:
        """
        A line of a user of another domain, signed by their server: its
        signature checked (of the actor's domain, made now), then posted
        as a local user's, keeping its id and the signature.
        """
        fmt = parse_format(frame.headers)
        object_id = signed.get("Id", "")
        signature = signed.get(POSTER_SIGNATURE)
        if not object_id or signature is None:
            raise InvalidObject(f"a line needs its Id and {POSTER_SIGNATURE}")
        posted = posted_line(object_id, actor, room, fmt, frame.body, signature)
        try:
            made, owner = parse_object_id(posted.id)
            if made is None:
                # A user object's id: a line's is a new one (10.9).
                raise InvalidObject(f"{posted.id} is an address, not a line's id")
            if owner != actor:
                raise BadSignature(f"{posted.id} is not an id of {actor}")
            info = signature_of(posted)
            if abs(info.time - self._service.clock.seconds()) > MAX_CLOCK_SKEW:
                raise BadSignature("the line was not signed now: replayed, or clocks")
            await self._keys.verify_object(posted)
        except (BadSignature, InvalidObject, InvalidObjectId) as e:
            self._service.refuse(actor, f"a line in {room}", e)
            raise
        entry = await self._service.say(actor, room, frame.body, fmt, posted)
        return entry_reply(frame.tag, entry)

    # -- what goes to the members' domains ------------------------------------

    def appended(self, room: str, entry: HistoryEntry) -> None:
        """
        Send a new entry to each domain with members in C{room}.
        """
        if self._remote.get(room) == {}:
            return  # The room has no members elsewhere: nothing to do.
        said = (entry, self._changes.get(room, 0))
        waiting = self._lines.get(room)
        if waiting is not None:
            # A push of the room is being queued: this entry goes with
            # the next one, with every other said meanwhile.
            waiting.append(said)
            return
        self._lines[room] = [said]
        self._spawn(self._send_lines(room))

    async def _send_lines(self, room: str) -> None:
        """
        Push C{room}'s new entries to its members' domains, those said
        while one push is queued together in the next (at most
        L{MAX_PUSHED_LINES} or L{MAX_PUSH_BYTES} a push), as Synapse
        batches the events of one destination: a busy room costs its
        members' domains a queued push per batch, not per line.

        A push goes to the members read for it, and holds only lines
        said before any change of them since that read began: a line
        said after a kick never reaches the kicked member's domain.
        """
        try:
            while entries := self._lines[room]:
                changes = self._changes.get(room, 0)
                remote = await self.remote_members(room)
                frames: list[bytes] = []
                size = 0
                for entry, said_at in entries[:MAX_PUSHED_LINES]:
                    if said_at > changes:
                        break
                    data = serialize(entry_frame(room, entry))
                    if frames and size + len(data) > MAX_PUSH_BYTES:
                        break
                    frames.append(data)
                    size += len(data)
                del entries[: len(frames)]
                if frames and remote:
                    await self._push(room, LINE_PUSH, remote, {}, b"".join(frames))
        finally:
            del self._lines[room]

    def announce(self, room: str, changed: MemberChanged) -> None:
        """
        Send a member's change to each domain with members in C{room}.
        """
        properties = member_headers(changed)
        self._spawn(self._to_members(room, MEMBER_PUSH, properties))

    def closed(self, room: str, addresses: Iterable[str], why: str) -> None:
        """
        Tell the domains of C{addresses} (those of other domains) that
        their sessions no longer receive C{room} (C{why}: kicked,
        banned, left, destroyed).
        """
        self._spawn(
            self._push(room, CLOSED_PUSH, self._by_domain(addresses), {"Reason": why})
        )

    def invited(self, room: str, address: str, inviter: str) -> None:
        """
        Tell C{address}, of another domain, that C{inviter} invites them.
        """
        self._spawn(
            self._push(
                room,
                INVITATION_PUSH,
                self._by_domain([address]),
                {"Inviter": inviter},
            )
        )

    def members_changed(self, room: str, address: str) -> None:
        """
        C{address} joined or left C{room}: if of another domain, the
        room's members there are read afresh for the next push.
        """
        if domain_of(address) != self._service.domain:
            self.forget(room)

    def forget(self, room: str) -> None:
        """
        C{room} is no more: forget its members of other domains.
        """
        self._remote.pop(room, None)
        self._changes[room] = self._changes.get(room, 0) + 1

    async def remote_members(self, room: str) -> dict[str, list[str]]:
        """
        C{room}'s members of other domains, by domain (remembered until
        one of them joins or leaves).
        """
        known = self._remote.get(room)
        if known is not None:
            return known
        changes = self._changes.get(room, 0)
        return await self._member_reads.run(
            (room, changes), lambda: self._read_members(room, changes)
        )

    async def _read_members(self, room: str, changes: int) -> dict[str, list[str]]:
        members = await self._service.store.members(room)
        remote = self._by_domain(member.address for member in members)
        if self._changes.get(room, 0) == changes:
            if len(self._remote) >= MAX_CACHED_ROOMS:
                # The counts of changes stay: one cleared under a read
                # from before a change would let that read be remembered.
                self._remote.clear()
            self._remote[room] = remote
        return remote

    def _by_domain(self, addresses: Iterable[str]) -> dict[str, list[str]]:
        """
        The addresses of other domains than this one, by domain.
        """
        own = self._service.domain
        grouped: dict[str, list[str]] = {}
        for address in addresses:
            domain = domain_of(address)
            if domain != own:
                grouped.setdefault(domain, []).append(address)
        return grouped

    async def _to_members(
        self, room: str, kind: str, properties: dict[str, str]
    ) -> None:
        """
        Queue a push to each domain with members in C{room}.
        """
        await self._push(room, kind, await self.remote_members(room), properties)

    async def _push(
        self,
        room: str,
        kind: str,
        recipients: Mapping[str, list[str]],
        properties: dict[str, str],
        body: bytes = b"",
    ) -> None:
        """
        Queue one push per domain of C{recipients} (more for a domain
        whose addresses do not fit one C{To}), signed by this domain.
        """
        service = self._service
        for domain, addresses in recipients.items():
            for group in chunks(addresses):
                now = service.clock.seconds()
                props = {"From": room, "To": " ".join(group), "Room-Push": kind}
                obj = FMTPObject(
                    new_object_id(room, now), PUSH_TYPE, {**props, **properties}, body
                )
                try:
                    await self._links.enqueue(
                        service.signer.sign_object(obj, now), group
                    )
                except Exception:
                    # Its members read what they missed with HISTORY.
                    self._log.failure(
                        "Chat: could not queue a {kind} of {room} for {domain}",
                        kind=kind,
                        room=room,
                        domain=domain,
                    )

    def _spawn(self, work: Awaitable[None]) -> None:
        d = Deferred.fromCoroutine(work)  # type: ignore[arg-type]
        d.addErrback(
            lambda f: self._log.failure("Chat: a push to other domains failed", f)
        )
