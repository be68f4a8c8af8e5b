"""
Reading frames: L{FrameParser} for a stream, L{parse_datagram} for a
datagram, one frame on its own.
"""

from __future__ import annotations

import functools

from fmtp.wire.frame import (
    DEFAULT_LIMITS,
    UNSOLICITED_TAG,
    Frame,
    FrameError,
    Limits,
)
from fmtp.wire.grammar import (
    _canonical,
    _headerError,
    _headerSection,
    _parseCommand,
    _salvageTag,
    _verbs,
)

# The parser's states: what the next bytes of the stream are.
_COMMAND = 0  # a command line (blank lines before it are skipped)
_HEADERS = 1  # a header line or the blank line that ends the headers
_BODY = 2  # body bytes

# How far ahead the fast path looks for the end of a header section.  A
# small window keeps a failed search cheap (a peer cannot make the parser
# scan max_header_bytes for every frame); larger sections take the
# line-by-line path.
_FAST_WINDOW = 4096


@functools.lru_cache(maxsize=16)
def _sizes_of(limits: Limits) -> tuple[int, int, int, int]:
    """
    The limits L{FrameParser.feed} reads, as one tuple shared by every
    parser of a server (one each would cost every idle stream 72 bytes).
    """
    return (
        limits.max_line,
        limits.max_headers,
        limits.max_header_bytes,
        limits.max_body,
    )


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
        self._sizes = _sizes_of(limits)
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
