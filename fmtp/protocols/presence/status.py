"""
What a presence is made of: the values a session sets (status word, note,
priority, resource), checked here once, and the rule that makes one
status of a user out of their sessions' (doc/protocol.md 9.2).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fmtp.errors import InvalidObject

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from fmtp.interfaces import ISession

#: What a subscriber sees of a user who shows nothing.
OFFLINE = "offline"
#: Seen as offline by everyone else; the user still receives everything.
INVISIBLE = "invisible"
#: What a subscriber sees of another domain's user whose domain has not
#: said their presence lately (doc/protocol.md 9.7): never set, only shown.
UNKNOWN = "unknown"
#: The words STATUS may set (C{offline} is logging out).
SETTABLE = frozenset({"online", "away", "busy", INVISIBLE})

MAX_NOTE = 200
#: Unicode categories a note or resource may not hold: controls; the line
#: and paragraph separators a client splitting lines as Unicode does
#: (C{str.splitlines}) would break a BUDDIES line at; and format
#: characters (bidi overrides and isolates, zero-width joiners and
#: spaces), which make what follows them on a line read otherwise than
#: it is, or hide text.
NOT_IN_A_LINE = frozenset({"Cc", "Cf", "Zl", "Zp"})
MIN_PRIORITY, MAX_PRIORITY = -128, 127
_RESOURCE = re.compile(r"[^\s\x00-\x1f\x7f]{1,64}")


def _holds_any(text: str, categories: frozenset[str]) -> bool:
    if text.isascii() and text.isprintable():
        # Printable ASCII holds none of them (the common case, checked in
        # C rather than a character at a time).
        return False
    return any(unicodedata.category(c) in categories for c in text)


_PRIORITY = re.compile(r"[+-]?[0-9]{1,3}")


def parse_status(word: str) -> str:
    """
    @raise InvalidObject: unless C{word} is a settable status.
    """
    status = word.strip().lower()
    if status == OFFLINE:
        raise InvalidObject("offline is not a status to set: LOGOUT or QUIT instead")
    canonical = _CANONICAL.get(status)
    if canonical is None:
        raise InvalidObject(f"unknown status {word!r}: online, away, busy or invisible")
    # The one string of each word, not one per session that set it.
    return canonical


def parse_note(text: str) -> str:
    """
    A note in NFC, one line of at most L{MAX_NOTE} characters.

    @raise InvalidObject: if it is longer or holds control or format
        characters.
    """
    note = unicodedata.normalize("NFC", text)
    if len(note) > MAX_NOTE:
        raise InvalidObject(f"Note is longer than {MAX_NOTE} characters")
    if _holds_any(note, NOT_IN_A_LINE):
        raise InvalidObject(
            "Note must be one line, without control or format characters"
        )
    return note


def parse_priority(text: str) -> int:
    """
    @raise InvalidObject: unless C{text} is a whole number in -128..127.
    """
    if not _PRIORITY.fullmatch(text) or not (MIN_PRIORITY <= int(text) <= MAX_PRIORITY):
        raise InvalidObject(
            f"Priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}"
        )
    return int(text)


def parse_resource(text: str) -> str:
    """
    @raise InvalidObject: unless C{text} is 1 to 64 characters, none of
        them spaces, controls or format characters.
    """
    if not _RESOURCE.fullmatch(text) or _holds_any(text, NOT_IN_A_LINE):
        raise InvalidObject(
            "Resource must be 1 to 64 characters, no spaces, control or "
            "format characters"
        )
    return text


@dataclass(frozen=True, slots=True)
class Shown:
    """
    A presence as someone sees it: a status word and a note.
    """

    status: str = OFFLINE
    note: str = ""


#: What anyone who may not see a user sees, and what nobody online shows.
NOTHING = Shown()
#: What is shown of a remote user nobody can vouch for now.
UNKNOWN_SHOWN = Shown(UNKNOWN)


def buddy_line(contact: str, state: str, seen: Shown) -> str:
    """
    One line of BUDDIES (doc/protocol.md 9.3), and of a bridge's RESYNC
    after its user: C{CONTACT SP STATE SP STATUS [SP NOTE]} and CRLF.
    """
    note = f" {seen.note}" if seen.note else ""
    return f"{contact} {state} {seen.status}{note}\r\n"


_CANONICAL = {word: word for word in SETTABLE}
_SHOWABLE = {word: word for word in SETTABLE - {INVISIBLE}} | {OFFLINE: OFFLINE}
#: The presence of each status word without a note: shared by every
#: session and announcement that shows it, rather than one each.
_PLAIN = {word: Shown(word) for word in SETTABLE} | {OFFLINE: NOTHING}


def parse_shown(status: str, note: str = "") -> Shown:
    """
    A presence as another domain says its user shows it: a settable status
    other than C{invisible} (which shows offline), or C{offline}, and a
    note as STATUS allows.

    @raise InvalidObject: for anything else.
    """
    word = status.strip().lower()
    if word not in _SHOWABLE:
        raise InvalidObject(f"bad Status {status!r}: online, away, busy or offline")
    return shown(_SHOWABLE[word], parse_note(note))


def shown(status: str, note: str = "") -> Shown:
    """
    The presence C{status} with C{note}.
    """
    if not note:
        plain = _PLAIN.get(status)
        if plain is not None:
            return plain
    return Shown(status, note)


@dataclass(eq=False, slots=True)
class SessionPresence:
    """
    The presence one session set with STATUS.

    @ivar order: when it last changed, as a number that only grows, so
        that among sessions of equal priority the latest change decides.
    @ivar login: the router session that receives pushes, or L{None}
        while its connection is lost and its grace period runs.
    @ivar expiry: the end of that grace period, while it runs; or, for
        a bridge's presence, the end of its time to live.
    @ivar bridged: whether an ISP bridge published it (its resource is
        the bridge's name), rather than a session of the user.
    """

    address: str
    resource: str
    status: str
    note: str
    priority: int
    order: int
    login: ISession | None = field(default=None, repr=False)
    expiry: IDelayedCall | None = field(default=None, repr=False)
    bridged: bool = False

    def own(self) -> Shown:
        """
        This session's presence, as its user sees it.
        """
        return shown(self.status, self.note)


def decisive(sessions: list[SessionPresence]) -> SessionPresence | None:
    """
    The session whose presence is the user's: the highest priority, and
    among those the latest changed.
    """
    return max(sessions, key=lambda s: (s.priority, s.order), default=None)


def user_presence(sessions: list[SessionPresence]) -> Shown:
    """
    What a user's approved subscribers see, from their available sessions.
    """
    chosen = decisive(sessions)
    if chosen is None or chosen.status == INVISIBLE:
        return NOTHING
    return shown(chosen.status, chosen.note)
