"""
The router events chat sessions take: their kinds, and what each carries
(rendered by L{fmtp.protocols.chat.commands}).
"""

from __future__ import annotations

from dataclasses import dataclass

from fmtp.store.rooms import HistoryEntry

#: An entry of a room's history, for the sessions that entered the room.
ROOM_LINE = "room-line"
#: A member joined, left, was kicked or banned, or changed role.
ROOM_MEMBER = "room-member"
#: The user was invited to a room.
ROOM_INVITATION = "room-invitation"
#: A session's ENTER of a room ended without its EXIT.
ROOM_CLOSED = "room-closed"


@dataclass(frozen=True, slots=True)
class RoomLine:
    """
    The payload of a C{room-line} event: entry C{entry} of C{room}.
    """

    room: str
    entry: HistoryEntry


@dataclass(frozen=True, slots=True)
class MemberChanged:
    """
    The payload of a C{room-member} event: C{address} now stands as
    C{role} (a L{fmtp.store.rooms.Role} value, or C{none} once gone) with
    C{voice}, by the act of C{actor} (L{None}: its own), for C{reason}.
    """

    room: str
    address: str
    role: str
    voice: bool
    actor: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Invitation:
    """
    The payload of a C{room-invitation} event: C{inviter} invites the
    user into C{room}.
    """

    room: str
    inviter: str


@dataclass(frozen=True, slots=True)
class RoomClosed:
    """
    The payload of a C{room-closed} event: the session no longer receives
    C{room}'s lines, because of C{why} (C{kicked}, C{banned}, C{left},
    C{destroyed}).
    """

    room: str
    why: str
