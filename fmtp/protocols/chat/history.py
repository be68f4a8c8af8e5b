"""
A room's lines: posted, retracted, paged, and followed live.

Every line is a message object signed by this domain, C{From} its poster
and C{To} the room, whose C{Parent-Digest} is the digest of the entry
before it, so the history is one chain a member verifies end to end
(L{fmtp.store.rooms.verify_chain}).  A line is linked to the one before
it as soon as that one is signed, not once it is stored, so the lines of
a busy room reach the store back to back, are committed together, and are
pushed together (one write to each member's socket for several lines).
The store refuses an append that does not follow its head (another
process of the same domain got there first, or one before it failed): the
line is then linked to the store's head, signed again and appended again,
one at a time (a lock per room).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

from twisted.internet.defer import DeferredLock

from fmtp.auth.router import Event
from fmtp.errors import Forbidden, InvalidObject, NotFound, StoreUnavailable
from fmtp.fairness import current_principal
from fmtp.interfaces import ISession
from fmtp.objects import FMTPObject, new_object_id
from fmtp.protocols.chat.events import ROOM_LINE, RoomLine
from fmtp.protocols.chat.lines import (
    LINE_TYPE,
    POSTER_SIGNATURE,
    RETRACTION_TYPE,
    TOPIC_TYPE,
    ConfigChange,
)
from fmtp.protocols.chat.rules import check_moderator, check_retract, check_speak
from fmtp.store.rooms import HistoryConflict, HistoryEntry
from fmtp.util.singleflight import SingleFlight

#: Appends a line may lose to others before it gives up (451).
MAX_RELINKS = 10
#: Entries one page of an ENTER's catch-up reads.
CATCH_UP_PAGE = 200


class MessageTooLarge(InvalidObject):
    code = 552


@asynccontextmanager
async def room_turn(locks: dict[str, DeferredLock], room: str) -> AsyncIterator[None]:
    """
    Wait for C{room}'s turn among the callers sharing C{locks} (one lock
    per room, forgotten when nobody holds or waits for it): a read, then
    a write that depends on it, with no other in between.
    """
    lock = locks.setdefault(room, DeferredLock())
    await lock.acquire()
    try:
        yield
    finally:
        lock.release()
        if not lock.locked and not lock.waiting:
            locks.pop(room, None)


class RoomHistory:
    """
    The lines of L{fmtp.protocols.chat.service.ChatService}'s rooms: a
    part of it kept apart for size, which uses the service's C{store},
    C{signer}, C{clock}, C{settings}, C{router}, C{live} and its
    C{membership}, C{change_config}, C{check_rate} and C{refuse}.
    """

    def __init__(self) -> None:
        #: The rooms' other domains (L{fmtp.protocols.chat.federation}),
        #: or L{None} on a server that links to none.
        self.federation = None
        self._heads: dict[str, tuple[int, str]] = {}
        self._head_reads: SingleFlight[str, None] = SingleFlight()
        self._appending: dict[str, DeferredLock] = {}

    def forget_head(self, room: str) -> None:
        self._heads.pop(room, None)

    async def say(
        self,
        user: str,
        room: str,
        body: bytes,
        fmt: str | None,
        posted: FMTPObject | None = None,
    ) -> HistoryEntry:
        """
        @param posted: the line as signed by the server of C{user}, a user
            of another domain (L{fmtp.protocols.chat.lines.posted_line}),
            its signature checked: the entry keeps its id and signature.
        """
        found, member = await self.membership(user, room)
        try:
            check_speak(member, found.config.moderated)
        except Forbidden as e:
            raise self.refuse(user, f"a line in {room}", e) from None
        if not body:
            raise InvalidObject("SAY needs a body: the line to say")
        if len(body) > self.settings.max_body:
            raise MessageTooLarge(f"a line is at most {self.settings.max_body} bytes")
        self.check_rate(member, room)
        properties = {"Format": fmt} if fmt else {}
        if posted is None:
            return await self._append(room, user, LINE_TYPE, properties, body)
        properties[POSTER_SIGNATURE] = posted.properties["Signature"]
        return await self._append(
            room, user, LINE_TYPE, properties, body, object_id=posted.id
        )

    async def topic(self, user: str, room: str, topic: str) -> HistoryEntry:
        _, member = await self.membership(user, room)
        check_moderator(member)
        await self.change_config(room, ConfigChange(topic=topic))
        return await self._append(room, user, TOPIC_TYPE, {"Topic": topic}, b"")

    async def retract(self, user: str, room: str, seq: int) -> HistoryEntry:
        _, member = await self.membership(user, room)
        page = await self.store.history(room, seq - 1, 1) if seq >= 1 else []
        entry = page[0] if page else None
        if entry is None or entry.obj is None or entry.retracts is not None:
            raise NotFound(f"no line {seq} to retract in this room")
        try:
            check_retract(member, entry.obj.properties.get("From", ""))
        except Forbidden as e:
            raise self.refuse(
                user, f"a retraction of line {seq} in {room}", e
            ) from None
        return await self._append(
            room, user, RETRACTION_TYPE, {"Retracts": str(seq)}, b"", retracts=seq
        )

    async def history(
        self, user: str, room: str, since: int, limit: int
    ) -> tuple[list[HistoryEntry], int]:
        """
        @return: the entries after C{since}, at most C{limit}, and the
            number of the room's last entry.
        """
        await self.membership(user, room)
        head, _ = await self.store.head(room)
        return await self.store.history(room, since, limit), head

    async def enter(self, session: ISession, room: str, since: int | None) -> int:
        """
        Send C{session} the entries after C{since} (none without), then
        the room's lines live, with no gap and no duplicate.

        @return: the last entry the catch-up sent (or the head).
        """

        async def start(entering: object) -> int:
            await self.membership(session.address, room)
            self._check_open(room, session, entering)
            self.live.admit(entering)
            head, _ = await self.store.head(room)
            return head

        return await self.catch_up(
            session,
            room,
            since,
            start,
            lambda after: self.store.history(room, after, CATCH_UP_PAGE),
        )

    async def catch_up(
        self,
        session: ISession,
        room: str,
        since: int | None,
        start: Callable[[object], Awaitable[int]],
        page: Callable[[int], Awaitable[list[HistoryEntry]]],
    ) -> int:
        """
        The wormhole of L{live}, wherever the history is read: register
        C{session}, C{start(entering)} (which proves the user a member,
        admits the entering and gives the room's last entry), send the
        pages after C{since} (C{page(after)}), then go live.  A room of
        another domain reads its home's HISTORY here too
        (L{fmtp.protocols.chat.remote}).

        @return: the last entry the catch-up sent (or the head).
        """
        # Registered first: a kick or ban from now on closes it, whatever
        # the membership read saw.
        entering = self.live.enter(room, session)
        try:
            head = await start(entering)
            self._check_open(room, session, entering)
            if since is None:
                since = head
            if since > head:
                raise InvalidObject(f"Since is after the room's last entry ({head})")
            if head - since > self.settings.enter_backlog:
                raise Forbidden(
                    f"more than {self.settings.enter_backlog} entries to catch up: "
                    "page through HISTORY, then ENTER with Since"
                )
            while since < head:
                entries = [e for e in await page(since) if e.seq > since]
                self._check_open(room, session, entering)
                if not entries:
                    break
                for entry in entries:
                    self.router.deliver_to(
                        session, Event(ROOM_LINE, RoomLine(room, entry))
                    )
                since = entries[-1].seq
        except BaseException:
            self.live.exit(room, session, entering)
            raise
        self.live.go_live(room, session, entering, since)
        return since

    def exit(self, session: ISession, room: str) -> bool:
        return self.live.exit(room, session)

    def _check_open(self, room: str, session: ISession, entering: object) -> None:
        """
        @raise Forbidden: if the session's ENTER was closed (it was
            kicked or banned, left, the room went, or it exited) while the
            catch-up waited for the store: it sends nothing more.
        """
        if not self.live.is_open(room, session, entering):
            raise Forbidden("the room was closed to this session while entering")

    async def _append(
        self,
        room: str,
        user: str,
        kind: str,
        properties: dict[str, str],
        body: bytes,
        retracts: int | None = None,
        object_id: str | None = None,
    ) -> HistoryEntry:
        """
        Sign and append a line, linked to the room's head, and publish it
        to the sessions that entered the room and to the other domains
        that have members in it.
        """
        now = self.clock.seconds()
        line = partial(
            self._signed,
            object_id or new_object_id(user, now),
            room,
            user,
            kind,
            properties,
            body,
            now,
        )
        while (head := self._heads.get(room)) is None:
            await self._head_reads.run(room, partial(self._read_head, room))
        # From here to the store's call nothing waits: the next line links
        # to this one before this one is stored, so the room's lines go to
        # the store one after another without waiting for each other, and
        # are published together when their group commit returns (one
        # write to each member's socket for several lines).  The store
        # refuses one that does not follow its head: it, and those linked
        # to it, are linked again below, one at a time.
        signed = line(head)
        digest = signed.digest()
        self._heads[room] = (head[0] + 1, digest)
        try:
            entry = await self._stored(room, signed, digest, head, now, retracts)
        except HistoryConflict:
            self._heads.pop(room, None)
            async with room_turn(self._appending, room):
                entry = await self._relinked(room, line, now, retracts)
        except BaseException:
            # Not stored: the next line links to the store's head again.
            self._heads.pop(room, None)
            raise
        self.live.publish(Event(ROOM_LINE, RoomLine(room, entry)))
        if self.federation is not None:
            self.federation.appended(room, entry)
        return entry

    async def _read_head(self, room: str) -> None:
        """
        Hold C{room}'s head as the store has it, unless a line was linked
        meanwhile.  Read once for all who wait for it
        (L{fmtp.util.singleflight}), each woken in turn, not from inside
        the one before: a lock handed from waiter to waiter would nest a
        stack frame per line said meanwhile.
        """
        head = await self.store.head(room)
        self._heads.setdefault(room, head)

    def _signed(
        self,
        object_id: str,
        room: str,
        user: str,
        kind: str,
        properties: dict[str, str],
        body: bytes,
        now: float,
        head: tuple[int, str],
    ) -> FMTPObject:
        """
        The line, linked to C{head} and signed by this domain.
        """
        props = {"From": user, "To": room, **properties}
        if head[1]:
            props["Parent-Digest"] = head[1]
        return self.signer.sign_object(FMTPObject(object_id, kind, props, body), now)

    async def _stored(
        self,
        room: str,
        signed: FMTPObject,
        digest: str,
        head: tuple[int, str],
        now: float,
        retracts: int | None,
    ) -> HistoryEntry:
        """
        Append C{signed}, linked to C{head}, to the room's history, in the
        store's turn of the room, not of its poster: the store takes each
        principal's calls in the order made but interleaves principals
        (L{fmtp.fairness}), and the lines of a room, linked to each other
        before they are stored, must reach it in the order they were
        linked.  The call is made before this first waits.

        @raise HistoryConflict: if C{head} is not the store's.
        """
        token = current_principal.set(("room", room))
        try:
            if retracts is None:
                stored = self.store.append(room, signed, now)
            else:
                stored = self.store.retract(room, retracts, signed, now)
        finally:
            current_principal.reset(token)
        seq = await stored
        if seq is None:
            # A fresh id never is; a line of another domain's user replayed
            # by its server is.
            raise Forbidden(f"{signed.id} is in the room's history already")
        return HistoryEntry(seq, digest, head[1], signed, now, retracts=retracts)

    async def _relinked(
        self,
        room: str,
        line: Callable[[tuple[int, str]], FMTPObject],
        now: float,
        retracts: int | None,
    ) -> HistoryEntry:
        """
        Link the line (C{line(head)} signs it so) to the store's head and
        append it, again while another appender gets there first, at most
        L{MAX_RELINKS} times.
        """
        head = self._heads.get(room) or await self.store.head(room)
        for _ in range(MAX_RELINKS):
            signed = line(head)
            digest = signed.digest()
            try:
                entry = await self._stored(room, signed, digest, head, now, retracts)
            except HistoryConflict as e:
                head = e.head
                continue
            self._heads[room] = (entry.seq, digest)
            return entry
        self._heads.pop(room, None)
        raise StoreUnavailable("the room is too busy, try again")
