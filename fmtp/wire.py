"""
The one frame codec of fmtp, for every protocol and transport.

A frame is UTF-8 text in the style of SMTP and HTTP headers: a command line
(C{VERB TAG [ARGUMENT]}, or C{CODE TAG [TEXT]} for a reply), C{Name: value}
header lines, a blank line, then a body of exactly C{Length} bytes.  The
grammar and the limits are normative in doc/protocol.md; this module is
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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fmtp.objects import canonical_name, is_valid_name

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


# The parser's states: what the next bytes of the stream are.
_COMMAND = 0  # a command line (blank lines before it are skipped)
_HEADERS = 1  # a header line or the blank line that ends the headers
_BODY = 2  # body bytes

# A whole valid command line, once decoded: verb or code, tag, then the
# argument (stripped later).  Fields may be separated by runs of spaces or
# tabs, for people typing into nc; a CR anywhere makes the line invalid.
_commandLine = re.compile(
    r"([A-Za-z0-9-]{1,32})[ \t]+([A-Za-z0-9._:-]{1,32}|\*)(?:[ \t]+([^\r]*))?"
).fullmatch
_validVerb = re.compile(r"[A-Za-z0-9-]{1,32}").fullmatch
_validTag = re.compile(r"[A-Za-z0-9._:-]{1,32}|\*").fullmatch
_validBytesTag = re.compile(rb"[A-Za-z0-9._:-]{1,32}|\*").fullmatch
_fieldSeparator = re.compile(r"[ \t]+")
_validVerbAndTag = re.compile(
    r"[A-Za-z0-9-]{1,32} (?:[A-Za-z0-9._:-]{1,32}|\*)"
).fullmatch

# Header names seen so far and their canonical spelling.  Peers use a few
# dozen names, and canonical_name is slow next to a dict lookup; the cache
# is capped so that a peer inventing names cannot grow it without bound.
_canonicalNames: dict[str, str] = {}
_CACHE_SIZE = 4096


def _canonical(name: str) -> str | None:
    """
    The canonical spelling of a header name, or L{None} if it is not a
    valid name.
    """
    canonical = _canonicalNames.get(name)
    if canonical is None:
        # is_valid_name's pattern ends in "$", which also matches before a
        # final newline: refuse that here, or serialize could be made to
        # write a line break inside a header name.
        if name.endswith("\n") or not is_valid_name(name):
            return None
        canonical = canonical_name(name)
        if len(_canonicalNames) < _CACHE_SIZE:
            _canonicalNames[name] = canonical
    return canonical


def _show(text: str, limit: int = 40) -> str:
    """
    Quote a piece of peer input for an error message: a repr (so control
    characters and line breaks are escaped), cut to a readable length.
    """
    if len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def _salvageTag(line: bytes, complete: bool) -> str:
    """
    Find the tag of a command line that could not be parsed, so that the
    error reply can still be matched to its request.

    @param line: the command line, or the start of one.
    @param complete: whether C{line} is the whole line; if not, a second
        field is only trusted as the tag when something follows it.
    """
    fields = line.split(None, 2)
    if len(fields) >= (2 if complete else 3) and _validBytesTag(fields[1]):
        return fields[1].decode("ascii")
    return UNSOLICITED_TAG


# Verbs and codes seen so far, as written on the wire, and as Frame.verb
# holds them.  Capped like _canonicalNames.
_verbs: dict[str, str] = {}


def _parseCommand(
    line: bytes,
) -> tuple[str, str, str, FrameError | None] | None:
    """
    Parse a command line that the fast path in L{FrameParser.feed} did not
    take: odd spacing, an odd tag, a verb not seen before, or an error.

    @param line: the command line without its line ending.
    @return: L{None} for a line of only spaces and tabs (skipped like a
        blank line), else the verb, tag, argument and the error, if any.
    """
    try:
        text = line.decode()
    except UnicodeDecodeError:
        tag = _salvageTag(line, True)
        return "", tag, "", FrameError(500, "command line is not valid UTF-8", tag)
    match = _commandLine(text)
    if match is None:
        if not text.strip(" \t"):
            return None
        error = _commandError(text)
        return "", error.tag, "", error
    verb, tag, argument = match.groups()
    argument = (argument or "").strip(" \t")
    if not verb.isdigit():
        canonical = verb.upper()
    elif len(verb) == 3 and verb[0] in "2345":
        canonical = verb
    else:
        message = f"bad reply code {verb}: three digits, 200 to 599"
        return "", tag, "", FrameError(500, message, tag)
    if len(_verbs) < _CACHE_SIZE:
        _verbs[verb] = canonical
    return canonical, tag, argument, None


def _commandError(text: str) -> FrameError:
    """
    Say what is wrong with a decoded command line that did not match the
    grammar.
    """
    fields = _fieldSeparator.split(text.lstrip(" \t"), 2)
    tag = UNSOLICITED_TAG
    if len(fields) >= 2 and _validTag(fields[1]):
        tag = fields[1]
    verb = fields[0]
    if "\r" in text:
        message = "carriage return inside the command line"
    elif text[0] in " \t":
        message = "command line starts with a space or tab"
    elif not _validVerb(verb):
        message = f"bad verb {_show(verb)}: 1 to 32 letters, digits or dashes"
    elif len(fields) < 2 or not fields[1]:
        message = f"missing tag after {verb}: a command line is VERB TAG [ARGUMENT]"
    elif tag == UNSOLICITED_TAG and fields[1] != UNSOLICITED_TAG:
        message = (
            f"bad tag {_show(fields[1])}: 1 to 32 letters, digits or . _ : -, or *"
        )
    else:
        message = "malformed command line"
    return FrameError(500, message, tag)


def _headerError(line: bytes, tag: str) -> FrameError:
    """
    Say what is wrong with a header line that the fast path refused.

    A line that was meant as C{Length} but is unreadable makes the error
    fatal: the body's end is unknown, so nothing after it can be trusted.
    """
    name = line.partition(b":")[0]
    fatal = name.strip(b" \t").lower() == b"length"
    if line[:1] in (b" ", b"\t"):
        message = (
            "header line starts with a space or tab (folded lines are not allowed)"
        )
    elif b"\r" in line:
        message = "carriage return inside a header line"
    elif b":" not in line:
        message = "header line without a colon"
    else:
        try:
            text = line.decode()
        except UnicodeDecodeError:
            message = "header is not valid UTF-8"
        else:
            name = text.partition(":")[0]
            canonical = _canonical(name)
            if canonical is None:
                message = (
                    f"bad header name {_show(name)}: a letter, then letters, "
                    "digits or dashes"
                )
            else:
                message = "malformed header line"
    return FrameError(501, message, tag, fatal)


# How far ahead the fast path looks for the end of a header section.  A
# small window keeps a failed search cheap (a peer cannot make the parser
# scan max_header_bytes for every frame); larger sections take the
# line-by-line path.
_FAST_WINDOW = 4096


def _headerSection(
    text: str, maxHeaders: int, maxBody: int
) -> tuple[dict[str, str], int] | None:
    """
    Parse a header section that is known to fit the line and section
    limits: the header lines joined by CRLF, without the blank line.

    @return: the headers and the body length, or L{None} if anything is
        unusual (any error, a name not seen before, a bare CR or LF): the
        caller then parses the section line by line, which knows every
        error.
    """
    lines = text.split("\r\n")
    count = len(lines)
    if (
        count > maxHeaders
        or text.count("\n") != count - 1
        or text.count("\r") != count - 1
    ):
        return None
    headers: dict[str, str] = {}
    get = _canonicalNames.get
    for line in lines:
        name, colon, value = line.partition(":")
        canonical = get(name)
        if canonical is None or not colon:
            return None
        headers[canonical] = value.strip(" \t")
    if len(headers) != count:
        # The same name twice.
        return None
    length = headers.pop("Length", None)
    if length is None:
        return headers, 0
    if not length.isdigit() or not length.isascii() or len(length) > 18:
        return None
    size = int(length)
    if size > maxBody:
        return None
    return headers, size


class FrameParser:
    """
    Incremental parser for a stream: feed it bytes as they arrive and it
    returns the frames (and errors) completed so far.

    The parser keeps at most one unfinished line (shorter than
    C{max_line}) or one unfinished body (smaller than C{max_body}), plus
    the headers of the frame being read.  Its work is linear in the bytes
    received however they are split: it remembers how far it has searched
    and never rescans a buffer from the start.

    Most frames are read by a fast path that decodes a frame's whole head
    at once; anything unusual (a bare LF, an error, a name or verb not seen
    before) goes through a line-by-line path that gives the same result
    and knows every error.

    After an error that is not fatal the parser skips the rest of the bad
    frame (its header lines, then its body if it had a valid C{Length}) and
    carries on with the next one, so one bad request costs one error
    reply.  Limits still apply to the skipped bytes.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._sizes = (
            limits.max_line,
            limits.max_headers,
            limits.max_header_bytes,
            limits.max_body,
        )
        # The fast path handles a head (command line and headers) that fits
        # in this many bytes, which keeps it within every limit.
        self._window = min(_FAST_WINDOW, limits.max_line, limits.max_header_bytes)
        #: The largest body this parser buffers now: a frame with a larger
        #: one (up to max_body) is answered 530 and its body skipped, not
        #: kept.  A server lowers it until its peer has logged in, so that
        #: anonymous connections cannot make it hold megabytes each.
        self.body_limit = limits.max_body
        self._dead = False
        # Parse one frame only and record where it ended (parse_datagram).
        self._single = False
        self._consumed = 0
        # An unfinished line (never holding a LF), shorter than max_line.
        self._partial = bytearray()
        # Received bytes not parsed yet because feed's limit was reached,
        # from _heldAt on; they start at a frame boundary.
        self._held = b""
        self._heldAt = 0
        self._state = _COMMAND
        # The frame being read, while _state is not _COMMAND.
        self._verb = ""
        self._tag = UNSOLICITED_TAG
        self._argument = ""
        self._headers: dict[str, str] = {}
        self._length: int | None = None
        self._headerCount = 0
        self._headerBytes = 0
        self._error: FrameError | None = None
        # Body bytes still to come, and those already received.
        self._need = 0
        self._body = bytearray()

    @property
    def pending(self) -> bool:
        """
        Whether part of a frame is buffered: a stream idle in this state is
        stuck mid-frame (say, a C{Length} that lies) and should time out.
        """
        return self._state != _COMMAND or bool(self._partial)

    @property
    def held(self) -> int:
        """
        How many received bytes wait, unparsed, because the last L{feed}
        reached its C{limit}: the caller holds them back, not the peer.
        """
        return len(self._held) - self._heldAt

    @property
    def buffered(self) -> int:
        """
        How many received bytes are kept: for frames not yet complete
        (excluding the decoded headers), at most C{max_line} plus
        L{body_limit} whatever was fed, and those L{held}.
        """
        return len(self._partial) + len(self._body) + self.held

    def _unbuffered(self, tag: str) -> FrameError:
        """
        The error for a body larger than L{body_limit}: not fatal, since
        its end is known; it is skipped unread.
        """
        return FrameError(
            530,
            f"log in before sending a body larger than {self.body_limit} bytes",
            tag,
        )

    def _fatal(
        self, out: list[Frame | FrameError], code: int, message: str, tag: str
    ) -> list[Frame | FrameError]:
        """
        Give up on the stream: forget everything buffered, and return what
        was parsed so far followed by the error.
        """
        self._dead = True
        self._partial = bytearray()
        self._held, self._heldAt = b"", 0
        self._body = bytearray()
        self._headers = {}
        self._state = _COMMAND
        out.append(FrameError(code, message, tag, True))
        return out

    def feed(self, data: bytes, limit: int = -1) -> list[Frame | FrameError]:
        """
        Add received bytes; return every frame completed by them, in order,
        with a L{FrameError} in place of each invalid one.  After a fatal
        error the parser returns nothing more.

        @param limit: if not negative, return at most this many items and
            keep the bytes after them unparsed (L{held}) for a later call,
            which may feed C{b""}: so that a peer that pipelines thousands
            of requests in one read costs the server no more work, and no
            more memory in parsed frames, than the requests it can run.
        """
        if self._dead:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        pos = 0
        if self._held:
            if not limit:
                self._held = self._held[self._heldAt :] + data
                self._heldAt = 0
                return []
            # Held bytes start at a frame boundary: nothing is partial.
            held, pos = self._held, self._heldAt
            self._held, self._heldAt = b"", 0
            if data:
                data, pos = held[pos:] + data, 0
            else:
                data = held
        elif not limit:
            if data:
                self._held, self._heldAt = data, 0
            return []
        # How many more items may be returned; negative for any number.
        left = limit
        maxLine, maxHeaders, maxHeaderBytes, maxBody = self._sizes
        state = self._state
        partial = self._partial
        if partial:
            # Only a line can be unfinished.  Complete it from data without
            # ever holding more than max_line bytes of it.
            room = maxLine - len(partial)
            if data.find(b"\n", 0, room) < 0:
                if len(data) >= room:
                    if state == _COMMAND:
                        tag = _salvageTag(bytes(partial) + data[:room], False)
                    else:
                        tag = self._tag
                    return self._fatal(
                        [], 552, f"line longer than {maxLine} bytes", tag
                    )
                partial += data
                return []
            buf = bytes(partial) + data
            partial.clear()
        else:
            buf = data

        single = self._single
        window = self._window
        out: list[Frame | FrameError] = []
        append = out.append
        body = self._body
        need = 0
        if state != _COMMAND:
            verb = self._verb
            tag = self._tag
            argument = self._argument
            headers = self._headers
            length = self._length
            headerCount = self._headerCount
            headerBytes = self._headerBytes
            error = self._error
            need = self._need

        # The fast path's memory of its search for a blank line: where it
        # found one, and up to where there is none.
        blankAt = -1
        clearTo = 0
        end = len(buf)
        while pos < end:
            if state == _BODY:
                available = end - pos
                if available < need:
                    if error is None:
                        body += buf[pos:]
                    need -= available
                    pos = end
                    break
                stop = pos + need
                if error is not None:
                    append(error)
                elif body:
                    body += buf[pos:stop]
                    append(Frame(verb, tag, argument, headers, bytes(body)))
                    body.clear()
                else:
                    append(Frame(verb, tag, argument, headers, buf[pos:stop]))
                pos = stop
                state = _COMMAND
                left -= 1
                if not left:
                    break
                continue

            if state == _COMMAND:
                # The fast path, for a CRLF frame whose whole head is in
                # the buffer: find the blank line within a short window,
                # decode the head once and split it.  Anything unusual is
                # left to the line-by-line path below, which knows every
                # error.  The search remembers what it found (and where
                # there is nothing to find) so that no byte is searched
                # twice, whatever the line endings.
                limit = pos + window + 2
                if blankAt < pos:
                    blankAt = buf.find(
                        b"\r\n\r\n", clearTo if clearTo > pos else pos, limit
                    )
                    clearTo = blankAt if blankAt >= 0 else limit - 3
                if pos < blankAt <= limit - 4:
                    try:
                        head = buf[pos:blankAt].decode()
                        command, _, section = head.partition("\r\n")
                        verb, _, rest = command.partition(" ")
                        tag, _, argument = rest.partition(" ")
                        verb = _verbs[verb]
                        if (
                            len(tag) > 32
                            or not tag.isalnum()
                            or not tag.isascii()
                            or "\r" in argument
                            or "\n" in argument
                        ):
                            raise ValueError()
                        if section:
                            parsed = _headerSection(section, maxHeaders, maxBody)
                            if parsed is None:
                                raise ValueError()
                            headers, length = parsed
                        else:
                            headers = {}
                            length = 0
                    except (ValueError, KeyError):
                        # Also UnicodeDecodeError; KeyError is a verb not
                        # seen before.
                        pass
                    else:
                        if argument:
                            argument = argument.strip(" \t")
                        pos = blankAt + 4
                        if length:
                            state = _BODY
                            need = length
                            error = None
                            if length > self.body_limit:
                                error = self._unbuffered(tag)
                            continue
                        append(Frame(verb, tag, argument, headers))
                        left -= 1
                        if not left:
                            break
                        continue

            lf = buf.find(b"\n", pos, pos + maxLine)
            if lf < 0:
                if end - pos >= maxLine:
                    if state == _COMMAND:
                        tag = _salvageTag(buf[pos : pos + maxLine], False)
                    return self._fatal(
                        out, 552, f"line longer than {maxLine} bytes", tag
                    )
                break
            stop = lf + 1
            if lf > pos and buf[lf - 1] == 13:
                lineEnd = lf - 1
            else:
                lineEnd = lf

            if state == _COMMAND:
                if lineEnd == pos:
                    # A keep-alive, or someone pressing Enter in nc.
                    pos = stop
                    continue
                # The fast path: single spaces, a known verb, a plain tag.
                try:
                    text = buf[pos:lineEnd].decode()
                    verb, _, rest = text.partition(" ")
                    tag, _, argument = rest.partition(" ")
                    verb = _verbs.get(verb)
                    if (
                        verb is None
                        or len(tag) > 32
                        or not tag.isalnum()
                        or not tag.isascii()
                        or "\r" in argument
                    ):
                        raise ValueError()
                except ValueError:
                    # Also catches UnicodeDecodeError.
                    command = _parseCommand(buf[pos:lineEnd])
                    if command is None:
                        pos = stop
                        continue
                    verb, tag, argument, error = command
                else:
                    error = None
                    if argument:
                        argument = argument.strip(" \t")
                headers = {}
                length = None
                headerCount = 0
                headerBytes = stop - pos
                if headerBytes > maxHeaderBytes:
                    return self._fatal(
                        out,
                        552,
                        f"header section longer than {maxHeaderBytes} bytes",
                        tag,
                    )
                state = _HEADERS
                pos = stop
                continue

            # _HEADERS
            if lineEnd == pos:
                pos = stop
                if length:
                    state = _BODY
                    need = length
                    if length > self.body_limit and error is None:
                        error = self._unbuffered(tag)
                    continue
                state = _COMMAND
                if error is None:
                    append(Frame(verb, tag, argument, headers))
                else:
                    append(error)
                left -= 1
                if not left:
                    break
                continue
            headerCount += 1
            headerBytes += stop - pos
            if headerCount > maxHeaders:
                return self._fatal(
                    out, 552, f"more than {maxHeaders} header lines", tag
                )
            if headerBytes > maxHeaderBytes:
                return self._fatal(
                    out, 552, f"header section longer than {maxHeaderBytes} bytes", tag
                )
            first = buf[pos]
            try:
                if first == 32 or first == 9:
                    raise ValueError()
                name, colon, value = buf[pos:lineEnd].decode().partition(":")
                canonical = _canonical(name)
                if not colon or canonical is None:
                    raise ValueError()
            except ValueError:
                # Also catches UnicodeDecodeError.
                problem = _headerError(buf[pos:lineEnd], tag)
                if problem.fatal:
                    return self._fatal(out, problem.code, problem.message, tag)
                if error is None:
                    error = problem
                pos = stop
                continue
            if canonical == "Length":
                if length is not None:
                    return self._fatal(out, 501, "duplicate header: Length", tag)
                value = value.strip(" \t")
                if not (value.isdigit() and value.isascii()):
                    return self._fatal(out, 501, "Length must be digits", tag)
                value = value.lstrip("0")
                # Compare lengths first: int() refuses very long numbers.
                if len(value) > len(str(maxBody)) or int(value or "0") > maxBody:
                    return self._fatal(
                        out, 552, f"Length is larger than {maxBody} bytes", tag
                    )
                length = int(value or "0")
            elif canonical in headers:
                if error is None:
                    error = FrameError(501, f"duplicate header: {canonical}", tag)
            elif "\r" in value:
                if error is None:
                    error = FrameError(501, "carriage return inside a header line", tag)
            else:
                headers[canonical] = value.strip(" \t")
            pos = stop

        if single:
            self._consumed = pos
        elif pos < end:
            if left:
                partial += buf[pos:]
            else:
                self._held, self._heldAt = buf, pos
        self._state = state
        if state != _COMMAND:
            self._verb = verb
            self._tag = tag
            self._argument = argument
            self._headers = headers
            self._error = error
            self._need = need
            if state == _HEADERS:
                self._length = length
                self._headerCount = headerCount
                self._headerBytes = headerBytes
        return out


def parse_datagram(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Frame:
    """
    Parse one datagram as exactly one frame: the body runs to the end of the
    datagram and must be exactly C{Length} bytes.

    @raise FrameError: if it is not exactly one valid frame.
    """
    data = bytes(data)
    parser = FrameParser(limits)
    parser._single = True
    results = parser.feed(data, 1)
    if results:
        first = results[0]
        if isinstance(first, FrameError):
            # A datagram is a frame on its own: nothing is lost with it.
            raise FrameError(first.code, first.message, first.tag, False)
        if parser._consumed != len(data):
            raise FrameError(501, "Length does not match the datagram", first.tag)
        return first
    state = parser._state
    if state == _COMMAND:
        rest = data[parser._consumed :]
        if rest.strip():
            raise FrameError(
                500,
                "datagram has no line ending after the command line",
                _salvageTag(rest, True),
            )
        raise FrameError(500, "empty datagram: expected a frame")
    if parser._error is not None:
        raise FrameError(
            parser._error.code, parser._error.message, parser._error.tag, False
        )
    if state == _HEADERS:
        raise FrameError(
            501, "datagram has no blank line after the headers", parser._tag
        )
    raise FrameError(501, "Length does not match the datagram", parser._tag)


def serialize(frame: Frame) -> bytes:
    """
    Encode a frame: command line, headers, C{Length} when there is a body,
    blank line, body.  Lines end with CRLF.

    Header names are written in their canonical spelling; a C{Length} in
    C{frame.headers} is ignored, since the body decides it.

    @raise ValueError: if a tag, name or value cannot be written (a line
        break in a value, say): a bug in the caller, never peer input.
    """
    verb = frame.verb
    tag = frame.tag
    argument = frame.argument
    body = frame.body
    command = f"{verb} {tag}"
    if _validVerbAndTag(command) is None:
        if not isinstance(verb, str) or _validVerb(verb) is None:
            raise ValueError(f"cannot write verb {verb!r}")
        raise ValueError(f"cannot write tag {tag!r}")
    if verb.isdigit() and (len(verb) != 3 or verb[0] not in "2345"):
        raise ValueError(f"cannot write reply code {verb!r}")
    lines = [f"{command} {argument}" if argument else command]
    renamed = False
    for name, value in frame.headers.items():
        canonical = _canonicalNames.get(name) or _canonical(name)
        if canonical is None:
            raise ValueError(f"cannot write header name {name!r}")
        if canonical == "Length":
            continue
        if canonical != name:
            renamed = True
        lines.append(f"{canonical}: {value}")
    if renamed:
        names = [line.partition(":")[0] for line in lines[1:]]
        if len(set(names)) != len(names):
            raise ValueError("two headers differ only in case")
    if body:
        lines.append(f"Length: {len(body)}")
    lines.append("")
    lines.append("")
    head = "\r\n".join(lines)
    # Each line ends with the one CRLF joined in: any other CR or LF came
    # from an argument or a value.
    breaks = len(lines) - 1
    if head.count("\n") != breaks or head.count("\r") != breaks:
        raise ValueError("a line break inside an argument or header value")
    if body:
        return head.encode() + body
    return head.encode()
