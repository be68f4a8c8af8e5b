"""
What the commands print: reply frames, tables, JSON for scripts, text
from strangers made safe for a terminal, and progress on a terminal.
"""

from __future__ import annotations

import json
import sys
import time
import unicodedata
from collections.abc import Sequence
from typing import Any, TextIO

from fmtp.errors import InvalidObjectId
from fmtp.objects import parse_object_id
from fmtp.wire import Frame


def print_frame(frame: Frame) -> None:
    """
    A reply as the server sent it: its line, headers, then its body.
    """
    print(f"{frame.verb} {frame.argument}".rstrip())
    for name, value in frame.headers.items():
        print(f"{name}: {value}")
    if frame.body:
        print()
        sys.stdout.flush()
        sys.stdout.buffer.write(frame.body)
        if not frame.body.endswith(b"\n"):
            print()


def print_json(value: Any) -> None:
    """
    One JSON document on standard output, for scripts.
    """
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    print()


#: Characters that reorder the text around them (bidirectional overrides
#: and isolates): a name could show as C{txt.exe} and be C{exe.txt}.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e")
_BIDI_CONTROLS |= frozenset("\u2066\u2067\u2068\u2069")


def printable(text: str, keep_newlines: bool = False) -> str:
    """
    C{text} from someone else (a subject, a body, a file name) made safe
    to print on a terminal: control characters, which could move the
    cursor, retitle the window or fake other output, and bidirectional
    controls are shown escaped (C{\\x1b}), except newlines and tabs when
    C{keep_newlines}.
    """
    kept = "\n\t" if keep_newlines else ""
    return "".join(
        c
        if c in kept or (unicodedata.category(c) != "Cc" and c not in _BIDI_CONTROLS)
        else f"\\x{ord(c):02x}"
        if ord(c) < 256
        else f"\\u{ord(c):04x}"
        for c in text
    )


def table(headings: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """
    Rows in columns under C{headings}, each as wide as its widest cell
    (the last one not padded).
    """
    lines = [list(headings), *[list(row) for row in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headings))]
    return "".join(
        "  ".join(
            cell.ljust(width) for cell, width in zip(line, widths, strict=True)
        ).rstrip()
        + "\n"
        for line in lines
    )


def id_time(object_id: str) -> int | None:
    """
    The millisecond timestamp an object id carries, or L{None} (a user
    object's id, which is an address, or an id that does not parse).
    """
    try:
        return parse_object_id(object_id)[0]
    except InvalidObjectId:
        return None


def local_time(ms: int | None) -> str:
    """
    A millisecond timestamp as local date and time, to the minute.
    """
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def iso_time(ms: int | None) -> str | None:
    """
    A millisecond timestamp in ISO 8601, UTC, for JSON.
    """
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def size_text(size: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


class Progress:
    """
    A progress line on standard error, rewritten in place, shown only on
    a terminal (never in piped output, never with C{--json}), and only
    once an operation has taken a moment, so quick ones stay quiet.
    """

    #: Seconds before the first line, and between two lines.
    delay = 0.5

    def __init__(
        self,
        what: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        clock=time.monotonic,
    ) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._what = what
        self._enabled = enabled and self._stream.isatty()
        self._clock = clock
        self._next = clock() + self.delay
        self._shown = False

    def update(self, done: float, total: float | None = None, unit: str = "") -> None:
        if not self._enabled or self._clock() < self._next:
            return
        self._next = self._clock() + self.delay
        if unit == "bytes":
            count = size_text(done)
            if total:
                count += f" of {size_text(total)}"
        else:
            count = f"{done:g}" + (f" of {total:g}" if total else "") + f" {unit}"
        self._stream.write(f"\r{self._what}: {count.rstrip()}\x1b[K")
        self._stream.flush()
        self._shown = True

    def note(self, text: str) -> None:
        """
        Show C{text} at once, until L{done}: for a wait whose progress
        cannot be measured (a large message on its way to the server).
        """
        if self._enabled:
            self._stream.write(f"\r{self._what}: {text}\x1b[K")
            self._stream.flush()
            self._shown = True

    def done(self) -> None:
        """
        Clear the line, if one was shown.
        """
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False
