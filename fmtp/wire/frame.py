"""
What the codec reads and writes: L{Frame}, its L{Limits}, the reply codes'
texts, and L{FrameError}, what a frame that breaks the grammar or a limit
becomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The tag of frames nobody asked for: the greeting, and errors about input
#: whose own tag could not be read.
UNSOLICITED_TAG = "*"

#: Largest datagram sent or accepted: below the IPv6 minimum MTU less
#: headers, so no datagram is fragmented (as QUIC and DNS do).
MAX_DATAGRAM = 1200

#: The default text of each reply code (doc/protocol.md, Reply codes).
REPLY_TEXT: dict[int, str] = {
    200: "ok",
    201: "stored",
    220: "ready",
    221: "closing",
    230: "logged in",
    250: "message for you",
    251: "messages not pushed, FETCH them",
    252: "presence",
    253: "subscription request",
    254: "subscription",
    305: "answer too large for a datagram, use TCP",
    420: "timed out waiting for the rest of the frame",
    421: "service not available, closing",
    429: "too many requests, slow down",
    432: "cookie required",
    451: "local error, try again later",
    500: "malformed command line",
    501: "malformed headers",
    502: "unknown command",
    503: "bad sequence of commands",
    530: "log in first",
    535: "authentication failed",
    550: "no such object",
    552: "too large",
    553: "bad address or id",
    554: "forbidden",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """
    Hard limits on what one frame may hold.  A frame that breaks one gets an
    error reply, never a crash or unbounded buffering.
    """

    #: Longest command or header line, in bytes, counting its line ending.
    max_line: int = 8192
    #: Most header lines in one frame.
    max_headers: int = 64
    #: Most bytes in the command line and header lines of one frame.
    max_header_bytes: int = 65536
    #: Largest body, in bytes.
    max_body: int = 1 << 20
    #: Largest body a server keeps from a stream before its peer has logged
    #: in or said HELLO; a larger one is skipped and refused.
    max_anonymous_body: int = 1 << 16


DEFAULT_LIMITS = Limits()


@dataclass(slots=True)
class Frame:
    """
    One request or reply.

    C{verb} is the upper-case command of a request (C{GET}) or the
    three-digit code of a reply (C{"200"}).  C{headers} maps canonical names
    (L{fmtp.objects.canonical_name}) to values and never holds C{Length}:
    the body's length is framing, added by L{serialize}.
    """

    verb: str
    tag: str
    argument: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def is_reply(self) -> bool:
        return self.verb.isdigit()

    @property
    def code(self) -> int:
        """
        The reply code; only meaningful when L{is_reply}.
        """
        return int(self.verb)


def request(
    verb: str,
    tag: str,
    argument: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> Frame:
    """
    Build a request frame.
    """
    return Frame(verb.upper(), tag, argument, dict(headers or {}), body)


def reply(
    code: int,
    tag: str,
    text: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> Frame:
    """
    Build a reply frame; C{text} defaults to the code's L{REPLY_TEXT}.
    """
    if text is None:
        text = REPLY_TEXT.get(code, "")
    return Frame(str(code), tag, text, dict(headers or {}), body)


class FrameError(Exception):
    """
    Input that is not a valid frame.

    @ivar code: the reply code to answer with (500, 501, 552...).
    @ivar message: the reply text: what was wrong, for a human.
    @ivar tag: the tag of the broken frame if it could be read, else
        L{UNSOLICITED_TAG}.
    @ivar fatal: C{True} if the frame boundary was lost, so the stream must
        be closed after the reply.
    """

    def __init__(
        self, code: int, message: str, tag: str = UNSOLICITED_TAG, fatal: bool = False
    ) -> None:
        super().__init__(code, message, tag, fatal)
        self.code = code
        self.message = message
        self.tag = tag
        self.fatal = fatal

    def to_reply(self) -> Frame:
        return reply(self.code, self.tag, self.message)
