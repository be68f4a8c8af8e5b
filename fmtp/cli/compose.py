"""
What a user sends, read before the reactor runs: the text (C{--body} or
standard input) and the files to attach, with their names and media
types.
"""

from __future__ import annotations

import mimetypes
import os
import sys
from typing import Any

from twisted.python import usage

from fmtp.attachments import (
    DEFAULT_TYPE,
    MAX_ATTACHMENTS,
    Attachment,
    check_name,
    check_type,
)
from fmtp.cli.output import Progress
from fmtp.cli.status import BadUsage
from fmtp.errors import InvalidObject

#: Read files and standard input in pieces of this size, for progress.
CHUNK = 1 << 20

#: Compressed files are sent as what they are, not as what they contain
#: (mimetypes says C{x.tar.gz} is a tar file, encoded with gzip).
ENCODING_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}


def attachment_spec(spec: str) -> tuple[str, str | None]:
    """
    The path and media type of C{--attach FILE[:TYPE]}: a path that exists
    is taken whole, so a file whose name holds a colon needs no escape.
    """
    path, colon, media_type = spec.rpartition(":")
    if os.path.exists(spec) or not colon or not path or "/" not in media_type:
        return spec, None
    try:
        return path, check_type(media_type)
    except InvalidObject as e:
        raise usage.UsageError(f"--attach {spec}: {e.message}")


def guess_type(path: str) -> str:
    guessed, encoding = mimetypes.guess_type(path, strict=False)
    if encoding is not None:
        return ENCODING_TYPES.get(encoding, DEFAULT_TYPE)
    return guessed or DEFAULT_TYPE


def read_all(stream: Any, what: str, progress_shown: bool) -> bytes:
    """
    Everything from a binary stream, with progress on a terminal.
    """
    progress = Progress(what, progress_shown)
    parts, done = [], 0
    while chunk := stream.read(CHUNK):
        parts.append(chunk)
        done += len(chunk)
        progress.update(done, unit="bytes")
    progress.done()
    return b"".join(parts)


def read_attachments(options: usage.Options) -> list[Attachment]:
    if len(options["attach"]) > MAX_ATTACHMENTS:
        raise BadUsage(f"at most {MAX_ATTACHMENTS} attachments")
    found = []
    for path, media_type in options["attach"]:
        try:
            with open(path, "rb") as f:
                data = read_all(f, f"reading {path}", not options["json"])
            name = check_name(os.path.basename(path))
        except OSError as e:
            raise BadUsage(f"--attach {path}: {e.strerror}")
        except InvalidObject as e:
            raise BadUsage(f"--attach {path}: {e.message}")
        found.append(Attachment(name, media_type or guess_type(path), data))
    return found


def read_text(options: usage.Options) -> bytes:
    """
    The message's text: C{--body}, or standard input (after the password,
    if that came first on it).
    """
    if options["body"] is not None:
        return options["body"].encode("utf-8")
    if sys.stdin.isatty():
        print(
            "Type the message; end it with Ctrl-D on a line of its own.",
            file=sys.stderr,
        )
    return read_all(sys.stdin.buffer, "reading the message", not options["json"])
