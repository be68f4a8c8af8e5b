"""
Announcing a user's presence to their subscribers, coalesced: however
many changes a user makes in a burst, each subscriber's session is pushed
the latest, and at most one announcement per user is under way at a time
(never one queued push per change).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from fmtp.auth.router import Event
from fmtp.protocols.presence.events import PRESENCE, PresenceChanged
from fmtp.protocols.presence.status import NOTHING, Shown

_log = Logger()


def soon(clock: IReactorTime, function, address: str, *args) -> None:
    """
    Run the coroutine C{function(*args)} on the next turn of C{clock}
    (after the reply being written now), on its own: a failure is logged
    with C{address}, whom it was for.
    """

    def run() -> None:
        d = Deferred.fromCoroutine(function(*args))
        d.addErrback(
            lambda failure: _log.failure(
                "Presence: {what} for {address} failed",
                failure,
                what=function.__name__,
                address=address,
            )
        )

    clock.callLater(0, run)


class Announcer:
    """
    Pushes users' presence changes to their subscribers.

    A subscriber the user's policy came to block after approving them is
    told C{offline} once, if they may have seen the user otherwise, and
    nothing more while the user stays online: what a user who went
    offline would show.

    @param presence_of: what a user's subscribers see of them now.
    @param audience: a user's approved subscribers, and those of them the
        user's policy blocks now (from the store).
    @param push: hands an event to an address's available sessions.
    @param remote: C{remote(address, shown, subscribers, blocked)} sends
        the change to the subscribers' other domains, or L{None}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        presence_of: Callable[[str], Shown],
        audience: Callable[[str], Awaitable[tuple[list[str], frozenset[str]]]],
        push: Callable[[str, Event], None],
        remote: Callable[[str, Shown, list[str], frozenset[str]], None] | None = None,
    ) -> None:
        self._remote = remote
        self._clock = clock
        self._presence_of = presence_of
        self._audience = audience
        self._push = push
        # Users whose presence changed since last announced, those being
        # announced, and what each was last announced as.
        self._dirty: set[str] = set()
        self._announcing: set[str] = set()
        self._announced: dict[str, Shown] = {}
        # Of each user announced online, the blocked subscribers told
        # offline since (forgotten when the user goes offline).
        self._hidden: dict[str, frozenset[str]] = {}
        self._flush: IDelayedCall | None = None

    def hide(self, address: str, subscriber: str) -> bool:
        """
        C{subscriber} is blocked by C{address}: note that they are told
        offline now.

        @return: whether they were not yet, while C{address} was announced
            online: then any session of theirs may still show it, and is
            to be told.
        """
        if address not in self._announced:
            return False
        hidden = self._hidden.get(address, frozenset())
        self._hidden[address] = hidden | {subscriber}
        return subscriber not in hidden

    def changed(self, address: str) -> None:
        """
        C{address}'s presence may have changed: announce it on the next
        turn, once, however many changes come before.
        """
        self._dirty.add(address)
        if self._flush is None:
            self._flush = self._clock.callLater(0, self._announce_dirty)

    def _announce_dirty(self) -> None:
        self._flush = None
        ready = self._dirty - self._announcing
        self._dirty -= ready
        for address in ready:
            soon(self._clock, self._announce, address, address)

    async def _announce(self, address: str) -> None:
        """
        Push C{address}'s presence to its subscribers' available sessions
        if it differs from what was announced last.  One announcement per
        user runs at a time; a change meanwhile is announced after it.
        """
        shown = self._presence_of(address)
        before = self._announced.get(address, NOTHING)
        if shown == before:
            return
        self._announcing.add(address)
        try:
            if shown == NOTHING:
                self._announced.pop(address, None)
            else:
                self._announced[address] = shown
            event = Event(PRESENCE, PresenceChanged(address, shown))
            offline = Event(PRESENCE, PresenceChanged(address, NOTHING))
            subscribers, blocked = await self._audience(address)
            told = self._hidden.pop(address, frozenset())
            if self._remote is not None:
                self._remote(address, shown, subscribers, blocked)
            for subscriber in subscribers:
                if subscriber not in blocked:
                    self._push(subscriber, event)
                elif before != NOTHING and subscriber not in told:
                    self._push(subscriber, offline)
            if blocked and address in self._announced:
                self._hidden[address] = blocked
        finally:
            self._announcing.discard(address)
            if address in self._dirty and self._flush is None:
                self._flush = self._clock.callLater(0, self._announce_dirty)
