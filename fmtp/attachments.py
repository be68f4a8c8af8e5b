"""
Attachments: files carried in a message's body, described by its headers.

A message with attachments counts them in C{Attachments} and describes
each in a numbered header, in the order their bytes follow the text in
the body (doc/protocol.md 4.5)::

    Attachments: 2
    Attachment-1: 34567 image/png photo.png
    Attachment-2: 1200 text/csv accounts.csv

The body is the text, then each attachment's bytes: the text is what
comes before them.  Nothing is encoded (no base64: the body is
binary-safe), and the table is covered by the digest and the signature
like every other header, so a relay cannot swap one file for another.

Names come from senders, so they are never trusted as paths: L{safe_name}
is what a client may write to disk.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fmtp.errors import InvalidObject
from fmtp.objects import is_ascii_digits

#: Most attachments one message may carry.
MAX_ATTACHMENTS = 32
#: Longest attachment name, in characters.
MAX_NAME = 255
COUNT_HEADER = "Attachments"
DEFAULT_TYPE = "application/octet-stream"

_TOKEN = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}"
_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}")


def _header(n: int) -> str:
    return f"Attachment-{n}"


@dataclass(frozen=True, slots=True)
class Attachment:
    """
    One file in a message: its name (as the sender gave it, see
    L{safe_name}), its media type, and its bytes.
    """

    name: str
    type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


def check_name(name: str) -> str:
    """
    A name fit to travel in a header: one line, no control characters,
    not empty, at most L{MAX_NAME} characters, without surrounding space.

    @raise InvalidObject: saying what is wrong.
    """
    name = unicodedata.normalize("NFC", name).strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidObject(f"an attachment name has 1 to {MAX_NAME} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidObject("an attachment name may not hold control characters")
    return name


def check_type(media_type: str) -> str:
    """
    @raise InvalidObject: if C{media_type} is not C{type/subtype}.
    """
    media_type = media_type.strip().lower()
    if not _TYPE.fullmatch(media_type):
        raise InvalidObject(f"bad attachment type {media_type!r}: use type/subtype")
    return media_type


def attach(
    text: bytes, attachments: Sequence[Attachment]
) -> tuple[dict[str, str], bytes]:
    """
    The headers and body of a message carrying C{text} and
    C{attachments}.

    @raise InvalidObject: for too many attachments, or a bad name or type.
    """
    if len(attachments) > MAX_ATTACHMENTS:
        raise InvalidObject(f"at most {MAX_ATTACHMENTS} attachments")
    if not attachments:
        return {}, bytes(text)
    headers = {COUNT_HEADER: str(len(attachments))}
    for n, item in enumerate(attachments, 1):
        name, media_type = check_name(item.name), check_type(item.type)
        headers[_header(n)] = f"{item.size} {media_type} {name}"
    return headers, bytes(text) + b"".join(bytes(a.data) for a in attachments)


def _table(
    properties: Mapping[str, str], body_length: int
) -> list[tuple[int, str, str]]:
    """
    The attachment table of a message: C{(size, type, name)} in order.

    @raise InvalidObject: if it is malformed or does not fit the body.
    """
    count = properties.get(COUNT_HEADER)
    if count is None:
        if any(name.startswith("Attachment-") for name in properties):
            raise InvalidObject("Attachment-N headers without Attachments")
        return []
    if not is_ascii_digits(count) or not 1 <= int(count) <= MAX_ATTACHMENTS:
        raise InvalidObject(f"Attachments must be 1 to {MAX_ATTACHMENTS}")
    table = []
    for n in range(1, int(count) + 1):
        line = properties.get(_header(n))
        if line is None:
            raise InvalidObject(f"Attachments: {count}, but no {_header(n)}")
        size, _, rest = line.partition(" ")
        media_type, _, name = rest.partition(" ")
        if not is_ascii_digits(size) or len(size) > 12:
            raise InvalidObject(f"{_header(n)}: the size must be a whole number")
        table.append((int(size), check_type(media_type), check_name(name)))
    extra = [
        name
        for name in properties
        if name.startswith("Attachment-")
        and name not in map(_header, range(1, int(count) + 1))
    ]
    if extra:
        raise InvalidObject(f"{extra[0]} is beyond Attachments: {count}")
    if sum(size for size, _, _ in table) > body_length:
        raise InvalidObject("the attachments are larger than the body")
    return table


def check(properties: Mapping[str, str], body_length: int) -> None:
    """
    Refuse a message whose attachment table is malformed or does not fit
    its body, so that what a server accepts every client can read.

    @raise InvalidObject: saying what is wrong.
    """
    _table(properties, body_length)


def split(properties: Mapping[str, str], body: bytes) -> tuple[bytes, list[Attachment]]:
    """
    The text and the attachments of a message.

    @raise InvalidObject: if its attachment table is malformed.
    """
    table = _table(properties, len(body))
    end = len(body)
    found: list[Attachment] = []
    for size, media_type, name in reversed(table):
        found.append(Attachment(name, media_type, bytes(body[end - size : end])))
        end -= size
    found.reverse()
    return bytes(body[:end]), found


def safe_name(name: str, n: int) -> str:
    """
    A file name that is safe to create in a directory the user chose,
    whatever the sender wrote: the last path component only, no leading
    dots (no hidden files, no C{..}), no characters file systems refuse;
    C{attachment-N} if nothing is left.
    """
    base = re.split(r"[/\\]", name)[-1]
    base = "".join(c for c in base if c not in '<>:"|?*' and ord(c) >= 32)
    base = base.strip().lstrip(".").strip()
    return base[:MAX_NAME] or f"attachment-{n}"
