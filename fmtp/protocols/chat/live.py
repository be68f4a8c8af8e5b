"""
The sessions that entered each room, and the catch-up that takes a
session from a point of the history to the live lines with no gap and no
duplicate (the "wormhole": register first, replay, then go live).

A session is registered before its catch-up reads the history, so every
entry appended after that read is published to it; while it catches up
those are held, and when it goes live the held ones after the last entry
replayed are delivered and the rest dropped.  Every later entry with a
number above that point is delivered once: each entry is published once.

It is registered before its member's standing is even read, so that a
kick or a ban that lands while the ENTER is under way, whatever the order
in which the store answers, finds it and closes it (L{LiveRooms.is_open}
then tells the catch-up to stop); and until it goes live it is told
nothing, not even of members' changes, since it may turn out not to be a
member at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fmtp.auth.router import Event
from fmtp.interfaces import IRouter, ISession
from fmtp.protocols.chat.events import ROOM_CLOSED, ROOM_LINE, RoomClosed, RoomLine


@dataclass(slots=True)
class _Entered:
    """
    One session in one room: the entries held while it catches up (L{None}
    once live), and the last entry its catch-up replayed.
    """

    held: list[Event] | None = field(default_factory=list)
    caught_up_to: int = 0
    #: Exited (or closed): its catch-up sends nothing more.
    closed: bool = False
    #: Its user was found a member: a close is worth telling it.
    admitted: bool = False


class LiveRooms:
    """
    Which sessions receive which rooms' lines, through the router.

    A room line costs one delivery per session that entered the room, and
    nothing for members who did not (they read HISTORY when they come).
    """

    def __init__(self, router: IRouter) -> None:
        self._router = router
        self._rooms: dict[str, dict[ISession, _Entered]] = {}
        self._of_session: dict[ISession, set[str]] = {}

    def enter(self, room: str, session: ISession) -> object:
        """
        Start holding C{room}'s lines for C{session}, which catches up
        next (L{go_live}); entering again starts over.

        @return: what names this entering to L{go_live}.
        """
        entered = _Entered()
        self._rooms.setdefault(room, {})[session] = entered
        self._of_session.setdefault(session, set()).add(room)
        return entered

    def go_live(
        self, room: str, session: ISession, entering: object, caught_up_to: int
    ) -> None:
        """
        C{session} was sent every entry up to C{caught_up_to}: deliver
        the held entries after it, and the later ones as they come.
        Nothing happens if the session exited, or entered again since
        C{entering} (that later catch-up goes live itself).
        """
        entered = self._rooms.get(room, {}).get(session)
        if entered is None or entered is not entering or entered.held is None:
            return
        held, entered.held = entered.held, None
        entered.caught_up_to = caught_up_to
        for event in held:
            self._deliver(room, session, entered, event)

    def is_open(self, room: str, session: ISession, entering: object) -> bool:
        """
        Whether the entering L{enter} gave is still wanted: not exited nor
        closed since, and the session still in the room (entering again
        does not close the earlier one, whose catch-up goes on as asked,
        but closing the later one ends both).
        """
        assert isinstance(entering, _Entered)
        return not entering.closed and session in self._rooms.get(room, {})

    def admit(self, entering: object) -> None:
        """
        The user of the session that is C{entering} was found a member of
        the room: if it is closed from now on, it is told.
        """
        assert isinstance(entering, _Entered)
        entering.admitted = True

    def exit(
        self, room: str, session: ISession, entering: object | None = None
    ) -> bool:
        """
        C{session} no longer receives C{room}'s lines (if given
        C{entering}, only if that is still how it entered).

        @return: whether it had entered.
        """
        sessions = self._rooms.get(room)
        if sessions is None or session not in sessions:
            return False
        if entering is not None and sessions[session] is not entering:
            return False
        sessions.pop(session).closed = True
        if not sessions:
            del self._rooms[room]
        rooms = self._of_session.get(session)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._of_session[session]
        return True

    def exit_all(self, session: ISession) -> None:
        """
        C{session} ended: it leaves every room it entered.
        """
        for room in list(self._of_session.get(session, ())):
            self.exit(room, session)

    def entered(self, room: str) -> list[ISession]:
        return list(self._rooms.get(room, ()))

    def close(self, room: str, address: str | None, why: str) -> None:
        """
        Stop the sessions of C{address} (or of everyone, for L{None}) that
        entered C{room}, telling each with a C{room-closed} event; except
        a session whose user was not yet found a member (L{admit}): it
        may be an outsider guessing a private room's address.
        """
        event = Event(ROOM_CLOSED, RoomClosed(room, why))
        for session, entered in list(self._rooms.get(room, {}).items()):
            if address is None or session.address == address:
                self.exit(room, session)
                if entered.admitted:
                    self._router.deliver_to(session, event)

    def publish(self, event: Event) -> int:
        """
        Deliver a C{room-line} event to the sessions that entered its
        room, or hold it for those catching up.

        @return: how many sessions it reached (held ones included).
        """
        line: RoomLine = event.payload  # type: ignore[assignment]
        return self.announce(line.room, event)

    def announce(
        self, room: str, event: Event, addresses: frozenset[str] | None = None
    ) -> int:
        """
        Deliver an event (an entry, or a member's change) to the sessions
        that entered C{room} (only those of C{addresses}, if given: the
        members a room of another domain named), or hold it for those
        catching up.

        @return: how many sessions it reached (held ones included).
        """
        sessions = self._rooms.get(room)
        if not sessions:
            return 0
        if addresses is not None:
            sessions = {s: e for s, e in sessions.items() if s.address in addresses}
        for session, entered in list(sessions.items()):
            if entered.held is not None:
                entered.held.append(event)
            else:
                self._deliver(room, session, entered, event)
        return len(sessions)

    def _deliver(
        self, room: str, session: ISession, entered: _Entered, event: Event
    ) -> None:
        if event.kind == ROOM_LINE:
            # Each line once, in order: one pushed again (a room of
            # another domain whose push was retried) or overtaken is
            # dropped, and a client fills a gap it sees with HISTORY.
            seq = event.payload.entry.seq
            if seq <= entered.caught_up_to:
                return
            entered.caught_up_to = seq
        if not self._router.deliver_to(session, event) and event.kind == ROOM_LINE:
            # Its login ended without telling us: forget it.
            self.exit(room, session)
