"""
An C{nc} session of the documentation, typed into a real connection as
C{nc} sends it, each reply checked against the one the document shows.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence

from tests.docs.blocks import (
    DocumentError,
    Frame,
    header,
    line_pattern,
    match_lines,
    normalize,
    transcript_frames,
)

#: Seconds between two tries to connect to a server still starting.
CONNECT_INTERVAL = 0.05


class FrameReader:
    """
    Frames read from a blocking socket, each within a deadline.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DocumentError("no reply in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise DocumentError("no reply in time") from None
        if not data:
            raise DocumentError("the server closed the connection")
        self.buffer += data

    def line(self, deadline: float) -> str:
        while b"\n" not in self.buffer:
            self._fill(deadline)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def frame(self, deadline: float) -> tuple[list[str], bytes]:
        lines: list[str] = []
        while True:
            line = self.line(deadline)
            if line.strip():
                lines.append(line)
            elif lines:
                break
        length = header(lines, "Length") or "0"
        while len(self.buffer) < int(length):
            self._fill(deadline)
        body, self.buffer = self.buffer[: int(length)], self.buffer[int(length) :]
        return lines, body


def connect(host: str, port: int, deadline: float) -> socket.socket:
    """
    Connect as C{nc} does, again while the server is still starting.
    """
    while True:
        try:
            return socket.create_connection((host, port), timeout=5)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise DocumentError(f"nothing listens on {host}:{port}") from None
            time.sleep(CONNECT_INTERVAL)


def check_frame(shown: Frame, lines: list[str], body: bytes) -> str | None:
    """
    L{None} if a received frame is what the document shows: its command
    line, each header shown (by name, in any order), the body lines shown.
    """
    if not line_pattern(shown.lines[0]).fullmatch(normalize(lines[0])):
        return f"expected {shown.lines[0]!r}, got {lines[0]!r}"
    for line in shown.lines[1:]:
        name, _, value = line.partition(":")
        got = header(lines, name)
        if got is None:
            return f"no {name} header in the reply {lines!r}"
        if not line_pattern(value).fullmatch(normalize(got)):
            return f"expected {line.strip()!r}, got {name}: {got!r}"
    text = body.decode("utf-8", "replace").splitlines()
    return match_lines(shown.body, text)


def run_transcript(
    host: str, port: int, lines: Sequence[str], crlf: bool, timeout: float
) -> None:
    """
    Type the frames of a transcript into a connection as C{nc} (C{nc -C}
    with C{crlf}) sends them, line by line with the Enter key, and check
    each reply the transcript shows.

    @raise DocumentError: saying which reply differs.
    """
    eol = b"\r\n" if crlf else b"\n"
    deadline = time.monotonic() + timeout
    frames = transcript_frames(lines, eol)
    with connect(host, port, deadline) as sock:
        reader = FrameReader(sock)
        if frames and frames[0].sent:
            # A transcript that does not show the greeting starts after it.
            greeting, _ = reader.frame(deadline)
            if not greeting[0].startswith("220 "):
                raise DocumentError(f"expected a greeting, got {greeting[0]!r}")
        for frame in frames:
            if frame.sent:
                typed = [*frame.lines, "", *frame.body]
                sock.sendall(b"".join(line.encode("utf-8") + eol for line in typed))
                continue
            got, body = reader.frame(deadline)
            problem = check_frame(frame, got, body)
            if problem:
                raise DocumentError(f"{problem}\nreceived: {got!r} {body!r}")
