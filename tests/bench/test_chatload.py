"""
The chat rows' pieces that need no server: the accounts and lines of a
job, L{bench.loadgen.RoomBurst}'s count of a burst reaching every member
and L{bench.loadgen.JoinTimer}'s timing of a JOIN, over socket pairs, and
the harness's room sizes.
"""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest
from twisted.python import usage

from bench.__main__ import Options, burst_detail
from bench.loadgen import (
    DROPPED_MARK,
    LINE_MARK,
    MEMBER_MARK,
    JoinTimer,
    RoomBurst,
    WorkloadError,
    line_maker,
    numbered_accounts,
)
from fmtp.wire import Frame, FrameParser


class NoReactor:
    """
    What the pieces ask of the reactor: to stop reading their sockets.
    """

    def removeReader(self, transport) -> None:
        pass


@pytest.fixture
def pairs():
    """
    Socket pairs, made on demand: the load generator's end and the
    server's.
    """
    made: list[tuple[socket.socket, socket.socket]] = []

    def make(count: int) -> list[tuple[socket.socket, socket.socket]]:
        new = [socket.socketpair() for _ in range(count)]
        made.extend(new)
        return new

    yield make
    for ours, theirs in made:
        ours.close()
        theirs.close()


def connection(sock: socket.socket) -> SimpleNamespace:
    return SimpleNamespace(transport=SimpleNamespace(socket=sock))


def push(n: int) -> bytes:
    return b"256 * room line\r\nSeq: %d\r\nLength: 20\r\n\r\n" % n + LINE_MARK + b"\r\n"


def test_numbered_accounts_number_a_template() -> None:
    assert numbered_accounts(["m{}@localhost", 2, "pw"]) == [
        ["m0@localhost", "pw"],
        ["m1@localhost", "pw"],
    ]


def test_a_chat_line_is_a_say_in_the_room_tagged_by_its_number() -> None:
    make = line_maker({"room": "lounge@localhost"})
    frames = FrameParser().feed(make(3) + make(4))
    assert [(f.verb, f.tag, f.argument) for f in frames] == [
        ("SAY", "s3", "lounge@localhost"),
        ("SAY", "s4", "lounge@localhost"),
    ]
    assert all(isinstance(f, Frame) and LINE_MARK in f.body for f in frames)


def test_a_relay_line_is_one_line_of_the_size_of_a_push() -> None:
    line = line_maker({"line_bytes": 570})(0)
    assert len(line) == 570 and line.endswith(b"\r\n")
    assert line.count(LINE_MARK) == 1 and line.count(b"\n") == 1


class Room(threading.Thread):
    """
    A room's server over socket pairs: each line read from the poster is
    pushed to every member (each push in two writes, the mark split) and
    answered C{201}; it notes the most lines ever sent ahead of what the
    members had.
    """

    def __init__(self, poster: socket.socket, members: list[socket.socket]) -> None:
        super().__init__()
        self.poster = poster
        self.members = members
        self.lines = 0
        self.poster.settimeout(5)

    def run(self) -> None:
        buffered = b""
        while True:
            try:
                data = self.poster.recv(65536)
            except TimeoutError:
                return
            if not data:
                return
            buffered += data
            while b"\r\n\r\n" in buffered:
                head, rest = buffered.split(b"\r\n\r\n", 1)
                length = int(head.split(b"Length: ")[1])
                if len(rest) < length:
                    break
                body, buffered = rest[:length], rest[length:]
                frame = head
                assert LINE_MARK in body
                tag = frame.split(b" ", 2)[1]
                for member in self.members:
                    data = push(self.lines)
                    member.sendall(data[:-25])
                    member.sendall(data[-25:])
                self.lines += 1
                self.poster.sendall(b"201 " + tag + b" stored\r\n\r\n")


def test_a_burst_is_done_when_every_member_has_every_line(pairs) -> None:
    made = pairs(3)
    (poster, server), *members = made
    burst = RoomBurst(
        NoReactor(), [connection(poster)], [connection(m) for m, _ in members]
    )
    room = Room(server, [theirs for _, theirs in members])
    room.start()
    try:
        make = line_maker({"room": "lounge@localhost"})
        outcome = burst.run(make, 7, 2, time.perf_counter() + 5)
        burst.wait_for_replies(7, time.perf_counter() + 5)
    finally:
        burst.close()
        server.shutdown(socket.SHUT_RDWR)
        room.join()
    assert room.lines == 7
    assert outcome["deliveries"] == 14 and outcome["members"] == 2
    assert outcome["rate"] == pytest.approx(14 / outcome["seconds"])
    assert outcome["bytes_per_delivery"] == len(push(0))
    assert burst.replies.count == 7


def test_a_burst_sends_no_more_than_its_window_ahead(pairs) -> None:
    (poster, server), (member, _) = pairs(2)
    burst = RoomBurst(NoReactor(), [connection(poster)], [connection(member)])
    with pytest.raises(WorkloadError, match="0 of 10 deliveries after 3 lines sent"):
        burst.run(line_maker({"line_bytes": 40}), 10, 3, time.perf_counter() + 0.2)
    burst.close()
    server.settimeout(1)
    assert server.recv(65536).count(LINE_MARK) == 3


def test_a_burst_missing_a_line_fails_saying_what_was_dropped(pairs) -> None:
    (poster, server), (first, to_first), (second, to_second) = pairs(3)
    members = [connection(first), connection(second)]
    burst = RoomBurst(NoReactor(), [connection(poster)], members)
    to_first.sendall(push(0))
    to_second.sendall(DROPPED_MARK + b"1 pushes were dropped\r\nDropped: 1\r\n\r\n")
    server.sendall(b"201 s0 stored\r\n\r\n")
    with pytest.raises(
        WorkloadError, match="1 of 2 deliveries .* 1 answered 201, 1 pushes dropped"
    ):
        burst.run(line_maker({"line_bytes": 40}), 1, 1, time.perf_counter() + 0.3)
    burst.close()


def test_a_burst_waits_for_every_reply(pairs) -> None:
    (poster, server), (member, _) = pairs(2)
    burst = RoomBurst(NoReactor(), [connection(poster)], [connection(member)])
    server.sendall(b"201 s0 stored\r\n\r\n429 s1 the room is busy\r\n\r\n")
    with pytest.raises(WorkloadError, match="1 of 2 lines answered 201.*429 s1"):
        burst.wait_for_replies(2, time.perf_counter() + 0.3)
    burst.close()


def member_change() -> bytes:
    return MEMBER_MARK + b"\r\nRoom: r@localhost\r\nAddress: j@localhost\r\n\r\n"


def test_a_join_is_timed_to_its_reply_and_to_the_last_members_push(pairs) -> None:
    (joiner, server), (first, to_first), (second, to_second) = pairs(3)
    timer = JoinTimer(
        NoReactor(), [connection(joiner)], [connection(first), connection(second)]
    )
    to_first.sendall(member_change())
    to_second.sendall(member_change()[:5])
    to_second.sendall(member_change()[5:])
    # Another request's reply first: only its own tag's counts.
    server.sendall(b"200 l0 ok\r\n\r\n200 j1 ok\r\nRoom: r@localhost\r\n\r\n")
    replied, pushed = timer.request(
        0, b"JOIN j1 r@localhost\r\n\r\n", "j1", time.perf_counter() + 5
    )
    assert server.recv(100) == b"JOIN j1 r@localhost\r\n\r\n"
    assert replied > 0 and pushed > 0
    timer.close()


def test_a_join_refused_is_an_error(pairs) -> None:
    (joiner, server), (member, to_member) = pairs(2)
    timer = JoinTimer(NoReactor(), [connection(joiner)], [connection(member)])
    server.sendall(b"554 j0 you are banned from the room\r\n\r\n")
    with pytest.raises(WorkloadError, match="554 j0 you are banned"):
        timer.request(0, b"JOIN j0 r@localhost\r\n\r\n", "j0", time.perf_counter() + 5)
    timer.close()


def test_a_join_without_its_push_fails_at_the_deadline(pairs) -> None:
    (joiner, server), (member, _) = pairs(2)
    timer = JoinTimer(NoReactor(), [connection(joiner)], [connection(member)])
    server.sendall(b"200 j0 ok\r\n\r\n")
    with pytest.raises(WorkloadError, match="1 members without the member change"):
        timer.request(
            0, b"JOIN j0 r@localhost\r\n\r\n", "j0", time.perf_counter() + 0.3
        )
    timer.close()


def test_a_member_change_pushed_twice_is_an_error(pairs) -> None:
    (joiner, server), (member, to_member) = pairs(2)
    timer = JoinTimer(NoReactor(), [connection(joiner)], [connection(member)])
    to_member.sendall(member_change() * 2)
    with pytest.raises(WorkloadError, match="pushed twice"):
        timer.request(0, b"JOIN j0 r@localhost\r\n\r\n", "j0", time.perf_counter() + 5)
    timer.close()


def test_room_sizes_are_sorted_and_at_least_two() -> None:
    options = Options()
    options.parseOptions(["--rooms", "1000,100"])
    assert options["room_sizes"] == [100, 1000]
    options = Options()
    options.parseOptions(["--quick"])
    assert options["room_sizes"] == [20, 50]
    for bad in ("1,100", "many", ""):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(["--rooms", bad])


def test_a_burst_row_says_its_size_and_the_clients_share() -> None:
    outcome = {
        "lines": 10,
        "members": 100,
        "bytes_per_delivery": 575.4,
        "client_cpu_seconds": 0.5,
        "seconds": 2.0,
    }
    assert burst_detail(outcome, 4) == (
        "10 lines x 100 members from 4 poster(s); 575 B a push; client CPU 25%"
    )
