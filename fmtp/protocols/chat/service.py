"""
The rooms this server is the home of (L{IChatService}): creating and
configuring them, membership and moderation under L{rules}, and the
lines members post, kept as one signed, hash-linked history and pushed to
the sessions that entered the room (L{live}).

Time comes from the injected clock, so rates and tombstones are tested
on a L{twisted.internet.task.Clock}; the store is any
L{fmtp.interfaces.IRoomStore}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from twisted.application.service import Service
from twisted.internet import threads
from twisted.internet.defer import Deferred, DeferredLock, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from fmtp.accounts import DEFAULT_SCRYPT_COST, ScryptCost, hash_password, hash_threads
from fmtp.accounts import verify_password as password_matches
from fmtp.auth.router import Event
from fmtp.errors import Forbidden, InvalidObject, TooManyRequests
from fmtp.interfaces import IChatService, IDomainSigner, IRouter, ISession
from fmtp.protocols.chat.events import (
    ROOM_MEMBER,
    MemberChanged,
)
from fmtp.protocols.chat.history import RoomHistory, room_turn
from fmtp.protocols.chat.lines import ConfigChange
from fmtp.protocols.chat.live import LiveRooms
from fmtp.protocols.chat.moderation import RoomModeration
from fmtp.protocols.chat.rules import (
    check_moderator,
    check_owner,
    is_member,
)
from fmtp.protocols.chat.settings import DEFAULT_SETTINGS, ChatSettings
from fmtp.ratelimit import LogLimiter, SourceRateLimiter
from fmtp.store.rooms import (
    Member,
    Role,
    Room,
    RoomConfig,
    RoomNotFound,
)
from fmtp.util.sweep import PeriodicSweep

#: Seconds between two sweeps of the tombstones that no longer hold.
TOMBSTONE_SWEEP = 3600.0


@implementer(IChatService)
class ChatService(RoomHistory, RoomModeration, Service):
    """
    L{IChatService} for the rooms of C{domain}.

    While running it forgets, every L{TOMBSTONE_SWEEP} seconds, the
    tombstones of rooms destroyed long enough ago.

    @param store: provides L{fmtp.interfaces.IRoomStore}, and
        C{get_object} (a room may not take a user's address).
    @param signer: this domain's signer: every line is signed by it.
    @param run_in_thread: runs a blocking call (the hashing of room
        passwords) off the reactor; at most L{hash_threads} at once, so
        that JOINs of passworded rooms cannot fill a shared thread pool.
    @param password_cost: what a room password's hash costs.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        domain: str,
        store,
        router: IRouter,
        signer: IDomainSigner,
        settings: ChatSettings = DEFAULT_SETTINGS,
        run_in_thread: Callable[..., Deferred] = threads.deferToThread,
        password_cost: ScryptCost = DEFAULT_SCRYPT_COST,
    ) -> None:
        self.clock = clock
        self.domain = domain
        self.store = store
        self.router = router
        self.signer = signer
        self.settings = settings
        self._run_in_thread = run_in_thread
        self._password_cost = password_cost
        self.live = LiveRooms(router)
        self._joins = SourceRateLimiter(clock, settings.join_rate, settings.join_burst)
        self._strangers = SourceRateLimiter(
            clock, settings.join_rate, settings.join_burst
        )
        self._hashing = DeferredSemaphore(hash_threads())
        self._configuring: dict[str, DeferredLock] = {}
        #: Per room, the turn of the changes of a member's standing.
        self._standings: dict[str, DeferredLock] = {}
        self._says = SourceRateLimiter(clock, settings.say_rate, settings.say_burst)
        self._room_says = SourceRateLimiter(
            clock, settings.room_rate, settings.room_burst
        )
        self._user_says = SourceRateLimiter(
            clock, settings.user_rate, settings.user_burst
        )
        self._log_limiter = LogLimiter(clock, rate=1.0, burst=10.0)
        self._sweep = PeriodicSweep(clock, TOMBSTONE_SWEEP, self._forget_tombstones)
        RoomHistory.__init__(self)

    # The service's life

    def startService(self) -> None:
        super().startService()
        self._sweep.start()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        return self._sweep.stop()

    async def _forget_tombstones(self) -> None:
        try:
            await self.store.forget_tombstones(self.clock.seconds())
        except Exception:
            self._log.failure("Could not forget the rooms' old tombstones")

    def refuse(self, user: str, what: str, error: Exception) -> Exception:
        """
        Log a refusal (rate-limited per user) and give back its error.
        """
        self._log_limiter.emit(
            self._log,
            user,
            "Chat: refused {user} {what}: {why}",
            user=user,
            what=what,
            why=error,
        )
        return error

    # Standing

    async def standing(self, user: str, room: str) -> tuple[Room, Member | None]:
        """
        The room, and C{user}'s standing in it.

        @raise RoomNotFound: if there is no such room, or it is private
            and C{user} is not a member or invited (the same answer: a
            private room is not revealed to those outside it).
        """
        found = await self.store.get_room(room)
        if found is None:
            raise RoomNotFound()
        member = await self.store.member(room, user)
        if not found.config.public and not is_member(member):
            if member is None or member.role is Role.BANNED:
                raise RoomNotFound()
        return found, member

    async def membership(self, user: str, room: str) -> tuple[Room, Member]:
        """
        The room and C{user}'s membership of it.

        @raise RoomNotFound: as L{standing}.
        @raise Forbidden: if C{user} is not a member of a room they may
            know of.
        """
        found, member = await self.standing(user, room)
        if not is_member(member):
            raise Forbidden("you are not a member of the room: JOIN first")
        assert member is not None
        return found, member

    # Rooms

    async def create(self, user: str, room: str, change: ConfigChange) -> Room:
        if not self._joins.allow(user):
            raise self.refuse(
                user, "a CREATE", TooManyRequests("creating rooms too fast")
            )
        if await self.store.get_object(room) is not None:
            raise Forbidden(f"{room} is taken")
        password_hash = await self._password_hash(change)
        config = self._configured(RoomConfig(), change, password_hash)
        if not config.max_members:
            config = replace(config, max_members=self.settings.max_members)
        now = self.clock.seconds()
        return await self.store.create_room(room, user, config, now)

    async def configure(self, user: str, room: str, change: ConfigChange) -> RoomConfig:
        found, member = await self.membership(user, room)
        if change.is_empty():
            return found.config
        check_owner(member)
        if change.password is not None and not self._joins.allow(user):
            raise self.refuse(
                user,
                f"a Password for {room}",
                TooManyRequests("setting passwords too fast"),
            )
        return await self.change_config(room, change, await self._password_hash(change))

    async def change_config(
        self, room: str, change: ConfigChange, password_hash: str | None = None
    ) -> RoomConfig:
        """
        Apply C{change} (with C{password_hash}, the hash of its password)
        to the room's configuration as it is now: the changes of a room
        take turns, each reading it afresh, so that none undoes another
        made while it waited for the store (a TOPIC clearing the Password
        an owner just set).

        @return: the new configuration.
        """
        async with room_turn(self._configuring, room):
            found = await self.store.get_room(room)
            if found is None:
                raise RoomNotFound()
            config = self._configured(found.config, change, password_hash)
            await self.store.configure_room(room, config)
        return config

    async def _password_hash(self, change: ConfigChange) -> str | None:
        """
        The hash of the password C{change} sets, if any.
        """
        if change.password is None:
            return None
        return await self._hash(
            hash_password, change.password, None, self._password_cost
        )

    def _configured(
        self, config: RoomConfig, change: ConfigChange, password_hash: str | None
    ) -> RoomConfig:
        values = {
            name: getattr(change, name)
            for name in ("name", "topic", "public", "members_only", "moderated")
            if getattr(change, name) is not None
        }
        if change.max_members is not None:
            if change.max_members > self.settings.max_members:
                raise InvalidObject(
                    f"Max-Members is at most {self.settings.max_members} here"
                )
            values["max_members"] = change.max_members or self.settings.max_members
        if change.clear_password:
            values["password_hash"] = None
        elif password_hash is not None:
            values["password_hash"] = password_hash
        return replace(config, **values)

    async def destroy(self, user: str, room: str) -> None:
        _, member = await self.membership(user, room)
        check_owner(member)
        remote = {}
        if self.federation is not None:
            remote = await self.federation.remote_members(room)
        now = self.clock.seconds()
        await self.store.destroy_room(room, now, now + self.settings.tombstone_hold)
        self.forget_head(room)
        self.live.close(room, None, "destroyed")
        if self.federation is not None:
            addresses = [address for group in remote.values() for address in group]
            self.federation.closed(room, addresses, "destroyed")
            self.federation.forget(room)

    async def public_rooms(self, start: int, limit: int) -> list[Room]:
        return await self.store.public_rooms(start, limit)

    async def my_rooms(self, user: str) -> list[str]:
        return await self.store.rooms_of(user)

    def _check_stranger_rate(self, user: str, what: str, doing: str) -> None:
        """
        Refuse an INVITE, or a BAN of an address with no standing in the
        room, over C{user}'s rate: each writes a row about an address
        that never asked (and an invitation tells it), so anyone, in a
        room of their own, could otherwise fill the store or a user's
        screen.

        @raise TooManyRequests: naming what is too fast.
        """
        if not self._strangers.allow(user):
            raise self.refuse(user, what, TooManyRequests(f"{doing} too fast"))

    def _hash(self, f: Callable[..., object], *args: object) -> Deferred:
        """
        Run a password hash in a thread, once one of the few hashes
        allowed at once is done.
        """
        return self._hashing.run(self._run_in_thread, f, *args)

    # Membership

    async def join(self, user: str, room: str, password: str | None) -> Member:
        if not self._joins.allow(user):
            raise self.refuse(
                user, f"a JOIN of {room}", TooManyRequests("joining too fast")
            )
        found = await self.store.get_room(room)
        if found is None:
            raise RoomNotFound()
        member = await self.store.member(room, user)
        if is_member(member):
            assert member is not None
            return member
        encoded = found.config.password_hash
        if encoded is not None:
            matched = password is not None and await self._hash(
                password_matches, password, encoded
            )
            if not matched:
                error = Forbidden("the room needs its password")
                raise self._refuse_join(user, found, member, error)
        try:
            joined = await self.store.join(room, user, self.clock.seconds())
        except Forbidden as e:
            raise self._refuse_join(user, found, member, e) from None
        self._members_changed(room, user)
        # On the next turn: the JOIN is answered before the pushes to a
        # room's thousand entered sessions.
        self.clock.callLater(0, self._announce, room, joined)
        return joined

    def _refuse_join(
        self, user: str, room: Room, member: Member | None, error: Exception
    ) -> Exception:
        """
        Log a refused JOIN with its reason, and give back the error to
        answer: a private room's refusals to an address neither a member
        nor invited read as no such room, so that JOIN does not reveal
        that the room exists (a ban, members-only, a password, full).
        """
        self.refuse(user, f"a JOIN of {room.address}", error)
        if not room.config.public and (member is None or member.role is Role.BANNED):
            return RoomNotFound()
        return error

    async def leave(self, user: str, room: str) -> None:
        async with room_turn(self._standings, room):
            _, member = await self.membership(user, room)
            if member.role is Role.OWNER:
                await self._check_other_owner(
                    room, "you are its only owner: name another or DESTROY it"
                )
            await self.store.leave(room, user)
        self._members_changed(room, user)
        self._close(room, user, "left")
        self._announce(room, None, user)

    async def decline(self, user: str, room: str) -> bool:
        """
        C{user} turns down their invitation into C{room}: they lose the
        standing it gave them (a private room is then hidden from them
        again, and a members-only one closed to them).

        @return: whether they were invited.
        @raise RoomNotFound: as L{standing}.
        """
        _, member = await self.standing(user, room)
        if member is None or member.role is not Role.INVITED:
            return False
        # Only the invitation: a JOIN of the user's may have used it since.
        return await self.store.decline(room, user)

    async def who(self, user: str, room: str, role: Role | None) -> list[Member]:
        _, member = await self.membership(user, room)
        if role is not None:
            check_moderator(member)
        return await self.store.members(room, role)

    def _announce(
        self,
        room: str,
        member: Member | None,
        address: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
        role: str = "none",
    ) -> None:
        """
        Tell the sessions that entered C{room} of one member's change: one
        event, whatever the room's size.
        """
        if member is not None:
            address, role = member.address, member.role.value
        assert address is not None
        voice = member is not None and member.voice
        changed = MemberChanged(room, address, role, voice, actor, reason)
        self.live.announce(room, Event(ROOM_MEMBER, changed))
        if self.federation is not None:
            self.federation.announce(room, changed)

    def _close(self, room: str, address: str, why: str) -> None:
        """
        Stop the sessions of C{address} that entered C{room}, here or, for
        an address of another domain, on its server.
        """
        self._close_all(room, [address], why)

    def _close_all(self, room: str, addresses: list[str], why: str) -> None:
        """
        L{_close} for each of C{addresses}: one push to each other domain.
        """
        for address in addresses:
            self.live.close(room, address, why)
        if self.federation is not None:
            self.federation.closed(room, addresses, why)

    def _members_changed(self, room: str, address: str) -> None:
        if self.federation is not None:
            self.federation.members_changed(room, address)

    # Sessions

    def session_ended(self, session: ISession) -> None:
        """
        A chat session's login ended: it leaves the rooms it entered.
        """
        self.live.exit_all(session)

    def check_rate(self, member: Member, room: str) -> None:
        """
        Refuse a line over its poster's rate in all rooms (whatever their
        role), or over its poster's or its room's rate (moderators and
        owners are exempt from these two).

        @raise TooManyRequests: naming which.
        """
        user = member.address
        if not self._user_says.allow(user):
            raise self.refuse(
                user,
                f"a line in {room}",
                TooManyRequests("you are posting too fast, slow down"),
            )
        if member.role is not Role.MEMBER:
            return
        if not self._says.allow((room, user)):
            raise self.refuse(
                user,
                f"a line in {room}",
                TooManyRequests("you are posting too fast in this room"),
            )
        if not self._room_says.allow(room):
            raise self.refuse(
                user,
                f"a line in {room}",
                TooManyRequests("the room is busy, slow down"),
            )
