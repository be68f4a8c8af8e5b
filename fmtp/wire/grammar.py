"""
The grammar of command and header lines, as the parser's slow path reads
them: the patterns, the caches of the verbs and header names seen so far,
and the words of each error.  L{FrameParser}'s fast path and L{serialize}
share the caches.
"""

from __future__ import annotations

import re

from fmtp.objects import canonical_name, is_valid_name
from fmtp.wire.frame import UNSOLICITED_TAG, FrameError

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
