"""
Writing frames: L{serialize}.
"""

from __future__ import annotations

from fmtp.wire.frame import Frame
from fmtp.wire.grammar import (
    _canonical,
    _canonicalNames,
    _validVerb,
    _validVerbAndTag,
)


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
