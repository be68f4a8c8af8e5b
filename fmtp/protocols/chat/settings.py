"""
What an admin may tune of the chat protocol (doc/admin.md, "Chat rooms").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """
    @ivar max_members: the most members a room may take; a room's owner
        may set fewer, never more.
    @ivar say_rate: lines per second one member may post in one room,
        after a burst of C{say_burst} (moderators and owners are exempt).
    @ivar room_rate: lines per second a room takes from its members, after
        a burst of C{room_burst} (moderators and owners are exempt).
    @ivar user_rate: lines per second one user may post in all rooms
        together, whatever their role, after a burst of C{user_burst}:
        anyone may create a room and own it, so without it one user could
        post as fast as the server signs and stores.
    @ivar join_rate: JOINs per second per user, after a burst of
        C{join_burst}; CREATEs, and CONFIGs that set a Password (an scrypt
        hash each), count as joins; a user's INVITEs have a rate of their
        own of the same figures, which BANs of addresses with no standing
        in the room share.
    @ivar max_body: the largest line, in bytes.
    @ivar history_limit: the most entries one HISTORY page holds.
    @ivar history_bytes: the most bytes of entries one HISTORY page holds
        (at least one entry): fewer entries than asked when lines are
        large, so a page stays well under a client's body limit.
    @ivar enter_backlog: the most entries ENTER sends to catch up; a
        client further behind pages through HISTORY first.
    @ivar tombstone_hold: seconds a destroyed room's address stays taken.
    @ivar remote_rate: requests per second another domain's server may
        make on this server's rooms for its users (C{ROOM}), after a burst
        of C{remote_burst}; each user's own rates apply too.
    """

    max_members: int = 1000
    say_rate: float = 1.0
    say_burst: float = 5.0
    room_rate: float = 20.0
    room_burst: float = 50.0
    user_rate: float = 20.0
    user_burst: float = 100.0
    join_rate: float = 10 / 60
    join_burst: float = 10.0
    max_body: int = 4096
    history_limit: int = 200
    history_bytes: int = 512 * 1024
    enter_backlog: int = 1000
    tombstone_hold: float = 30 * 86400.0
    remote_rate: float = 200.0
    remote_burst: float = 400.0


DEFAULT_SETTINGS = ChatSettings()
