"""
The one frame codec of fmtp, for every protocol and transport.

A frame is UTF-8 text in the style of SMTP and HTTP headers: a command line
(C{VERB TAG [ARGUMENT]}, or C{CODE TAG [TEXT]} for a reply), C{Name: value}
header lines, a blank line, then a body of exactly C{Length} bytes.  The
grammar and the limits are normative in doc/protocol.md; this package is
their one implementation.

Every protocol (client, federation, datagram) reads frames through
L{FrameParser} or L{parse_datagram} and writes them with L{serialize}, so
that a frame means the same thing whichever way it travelled, and so that
the rules that keep a server alive under hostile input live in one place:

  - Memory is bounded by L{Limits} whatever a peer sends: an overlong line
    is refused once C{max_line} bytes are seen, never buffered to its end.

  - A bad frame costs its sender one error reply, not the connection, as
    long as the parser still knows where the frame ends (the blank line,
    then C{Length} bytes).  Only when that boundary is lost (a C{Length}
    that is not a number) or a limit is broken is the error fatal.

  - Parsing is linear in the bytes received however they are split into
    chunks, so a peer that trickles bytes one at a time cannot make the
    server rescan its buffer.

The package's modules: L{frame} (the values), L{parser} (reading),
L{writer} (writing), L{grammar} (the line grammar both share).  Import
from here: C{from fmtp.wire import Frame, FrameParser, serialize}.
"""

from __future__ import annotations

from fmtp.wire.frame import (
    DEFAULT_LIMITS,
    MAX_DATAGRAM,
    REPLY_TEXT,
    UNSOLICITED_TAG,
    Frame,
    FrameError,
    Limits,
    reply,
    request,
)
from fmtp.wire.parser import FrameParser, parse_datagram
from fmtp.wire.writer import serialize

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_DATAGRAM",
    "REPLY_TEXT",
    "UNSOLICITED_TAG",
    "Frame",
    "FrameError",
    "FrameParser",
    "Limits",
    "parse_datagram",
    "reply",
    "request",
    "serialize",
]
