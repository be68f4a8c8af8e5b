"""
Throughput of the fmtp frame codec (fmtp.wire), on one core.

Run as C{python bench/bench_codec.py}.  For each kind of frame it prints
how many frames per second L{FrameParser} parses when they arrive many to
a chunk (64 KiB chunks, what one socket read gives Twisted) and when they
arrive one per C{feed} call, how many per second L{serialize} writes, and,
as a yardstick, how many lines per second Twisted's own L{LineReceiver}
and L{LineOnlyReceiver} split from the same bytes.

Each figure is the best of several short runs, which is the most stable
measure on a shared machine.  Nothing is asserted: it prints figures.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.protocols.basic import LineOnlyReceiver, LineReceiver  # noqa: E402

from fmtp.wire import Frame, FrameParser, request, serialize  # noqa: E402

#: The size of the chunks of the batched runs, in bytes (rounded down to
#: whole frames).
CHUNK = 65536
#: How many times each measurement is repeated; the best run counts.
REPEAT = 5
#: About how long one run of one measurement should take, in seconds.
RUN_SECONDS = 0.12

FRAMES: list[tuple[str, Frame]] = [
    ("GET, no headers", request("GET", "17", "1700000000000.ab12cd.edgar@poe.net")),
    (
        "PUT, 3 headers, 20-byte body",
        request(
            "PUT",
            "18",
            "",
            {
                "Id": "1700000000000.ab12cd.edgar@poe.net",
                "Type": "message",
                "To": "allan@poe.net",
            },
            b"Once upon a midnigh",
        ),
    ),
    (
        "PUT, 3 headers, 1 KiB body",
        request(
            "PUT",
            "19",
            "",
            {
                "Id": "1700000000000.ab12cd.edgar@poe.net",
                "Type": "message",
                "To": "allan@poe.net",
            },
            bytes(range(256)) * 4,
        ),
    ),
]


class CountingLineReceiver(LineReceiver):
    """
    A line receiver that only counts lines.
    """

    delimiter = b"\r\n"
    MAX_LENGTH = 1 << 20

    def __init__(self) -> None:
        self.lines = 0

    def lineReceived(self, line: bytes) -> None:
        self.lines += 1


class CountingLineOnlyReceiver(LineOnlyReceiver):
    """
    The same on L{LineOnlyReceiver}, which splits each chunk once (it
    cannot switch to raw mode).
    """

    delimiter = b"\r\n"
    MAX_LENGTH = 1 << 20

    def __init__(self) -> None:
        self.lines = 0

    def lineReceived(self, line: bytes) -> None:
        self.lines += 1


def best(run: Callable[[], int]) -> float:
    """
    Call C{run} (which does some work and returns how many items it
    handled) L{REPEAT} times; return the best rate, in items per second.
    """
    rates = []
    for _ in range(REPEAT):
        gc.collect()
        start = time.perf_counter()
        count = run()
        rates.append(count / (time.perf_counter() - start))
    return max(rates)


def rounds(chunkBytes: int) -> int:
    """
    How many chunks to feed so that one run takes about L{RUN_SECONDS},
    guessing a throughput of 20 MB/s.
    """
    return max(1, int(20_000_000 * RUN_SECONDS) // chunkBytes)


def parseBatched(chunk: bytes, frames: int, count: int) -> Callable[[], int]:
    def run() -> int:
        feed = FrameParser().feed
        for _ in range(count):
            feed(chunk)
        return count * frames

    return run


def parseOneByOne(frame: bytes, count: int) -> Callable[[], int]:
    def run() -> int:
        feed = FrameParser().feed
        for _ in range(count):
            feed(frame)
        return count

    return run


def serializeMany(frame: Frame, count: int) -> Callable[[], int]:
    def run() -> int:
        for _ in range(count):
            serialize(frame)
        return count

    return run


def linesFed(receiverClass: type, data: bytes, count: int) -> Callable[[], int]:
    def run() -> int:
        receiver = receiverClass()
        receiver.makeConnection(StringTransport())
        for _ in range(count):
            receiver.dataReceived(data)
        return receiver.lines

    return run


def main() -> None:
    print(
        f"Python {sys.version.split()[0]}; best of {REPEAT} runs; "
        f"batched runs feed {CHUNK // 1024} KiB chunks"
    )
    started = time.perf_counter()
    for name, frame in FRAMES:
        wire = serialize(frame)
        frames = max(1, CHUNK // len(wire))
        chunk = wire * frames
        batches = rounds(len(chunk))
        single = batches * frames
        lines = wire.count(b"\r\n")
        print(
            f"\n{name}: {len(wire)} bytes, {lines} CRLFs (lines), "
            f"{frames} frames a chunk"
        )
        for label, run, unit in [
            ("parse, many frames a chunk", parseBatched(chunk, frames, batches), "f"),
            ("parse, one frame per feed", parseOneByOne(wire, single), "f"),
            ("serialize", serializeMany(frame, single), "f"),
            (
                "LineReceiver, chunks",
                linesFed(CountingLineReceiver, chunk, batches),
                "l",
            ),
            (
                "LineReceiver, one frame per call",
                linesFed(CountingLineReceiver, wire, single),
                "l",
            ),
            (
                "LineOnlyReceiver, chunks",
                linesFed(CountingLineOnlyReceiver, chunk, batches),
                "l",
            ),
        ]:
            rate = best(run)
            if unit == "f":
                figure = f"frames/s  ({rate * len(wire) / 1e6:6.1f} MB/s)"
            else:
                figure = "lines/s"
            print(f"  {label:34} {rate:12,.0f} {figure}")
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
