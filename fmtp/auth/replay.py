"""
Anti-replay windows (RFC 4303 section 3.4.3) for the requests a peer
numbers itself and signs with a shared secret: an ISP bridge's PUBLISH
and RESYNC (L{fmtp.protocols.presence.bridges}), a light chat client's
datagrams (L{fmtp.protocols.chat.datagrams}).
"""

from __future__ import annotations

import enum

from fmtp.errors import FMTPError

#: Sequence numbers a window remembers behind its highest, by default.
WINDOW = 1024


class SeqRefused(FMTPError):
    """
    A C{Seq} used before with other bytes, or older than the window.
    """

    code = 503


class Seen(enum.Enum):
    NEW = "new"
    USED = "used"
    TOO_OLD = "too old"


class ReplayWindow:
    """
    The anti-replay window of one sender: the highest number accepted, and
    a bitmap of which of the L{size} before it were.
    """

    def __init__(self, size: int = WINDOW) -> None:
        self.size = size
        self.highest = -1
        self._bits = 0

    def check(self, seq: int) -> Seen:
        if seq > self.highest:
            return Seen.NEW
        behind = self.highest - seq
        if behind >= self.size:
            return Seen.TOO_OLD
        return Seen.USED if self._bits >> behind & 1 else Seen.NEW

    def accept(self, seq: int) -> None:
        if seq > self.highest:
            shift = seq - self.highest
            # A jump past the window forgets all behind it (and never
            # shifts by a 64-bit count).
            kept = self._bits << shift if shift < self.size else 0
            self._bits = (kept | 1) & ((1 << self.size) - 1)
            self.highest = seq
        else:
            self._bits |= 1 << (self.highest - seq)
