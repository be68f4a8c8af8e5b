"""
The presence rows' pieces that need no server: the line that names a
server's presence port, and L{bench.loadgen.FanOut}'s count of a change
reaching every subscriber, over socket pairs.
"""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest

from bench.loadgen import (
    CHANGE_MARK,
    MAX_DATAGRAM,
    UPDATE_MARK,
    BridgedBurst,
    FanOut,
    WorkloadError,
    bridged_updates,
    publish_datagrams,
)
from bench.serverprocess import serving
from fmtp.auth.router import datagram_mac, unsigned_bytes
from fmtp.protocols.presence.bridges import signed_publish
from fmtp.wire import parse_datagram

BRIDGE = ("bench-isp", "ab" * 32)
USERS = [f"pub{i}@localhost" for i in range(1000)]


def test_serving_names_each_protocols_port() -> None:
    log = (
        "Serving the object protocol on tcp:0:interface=127.0.0.1 (127.0.0.1:4001)\n"
        "Serving the presence protocol on tcp:0:interface=127.0.0.1 (127.0.0.1:4002)\n"
    )
    assert serving("udp", "127.0.0.1", "presence").search(log) is None
    log += (
        "Serving the presence protocol on udp:0:interface=127.0.0.1 (127.0.0.1:4003)\n"
    )
    assert serving("udp", "127.0.0.1", "presence").search(log).group(1) == "4003"
    assert serving("tcp", "127.0.0.1").search(log).group(1) == "4001"
    assert serving("tcp", "127.0.0.1", "presence").search(log).group(1) == "4002"


class NoReactor:
    """
    What L{FanOut} asks of the reactor: to stop reading its sockets.
    """

    def removeReader(self, transport) -> None:
        pass


@pytest.fixture
def pairs():
    """
    Two subscribers and a changer, each a socket pair: FanOut's end and
    the server's.
    """
    made = [socket.socketpair() for _ in range(3)]
    yield made
    for ours, theirs in made:
        ours.close()
        theirs.close()


def fan_out(pairs) -> FanOut:
    connections = [
        SimpleNamespace(transport=SimpleNamespace(socket=ours)) for ours, _ in pairs
    ]
    return FanOut(NoReactor(), connections[:2], connections[2:])


def push(number: int) -> bytes:
    return b"252 * presence\r\nStatus: away\r\n" + CHANGE_MARK + b"%d\r\n\r\n" % number


def test_a_change_is_done_when_every_subscriber_has_it(pairs) -> None:
    fan = fan_out(pairs)
    (_, first), (_, second), (_, server) = pairs
    first.sendall(push(0))
    second.sendall(push(0)[:20])
    second.sendall(push(0)[20:])
    fan.change(b"STATUS c0 away\r\n\r\n", time.perf_counter() + 5)
    assert server.recv(100) == b"STATUS c0 away\r\n\r\n"
    assert len(fan.latencies_ms) == len(fan.client_ms) == 1
    fan.close()


def test_a_change_pushed_twice_is_an_error(pairs) -> None:
    fan = fan_out(pairs)
    (_, first), (_, second), _ = pairs
    first.sendall(push(0) + push(0))
    with pytest.raises(WorkloadError, match="pushed twice"):
        fan.change(b"x", time.perf_counter() + 5)
    fan.close()


def test_a_change_missing_is_an_error_at_the_deadline(pairs) -> None:
    fan = fan_out(pairs)
    (_, first), _, _ = pairs
    first.sendall(push(0))
    with pytest.raises(WorkloadError, match="1 subscribers still waiting"):
        fan.change(b"x", time.perf_counter() + 0.2)
    fan.close()


def test_bridged_updates_end_each_user_on_its_last_line() -> None:
    updates = bridged_updates(["u0@localhost", "u1@localhost"], 5)
    assert [line for _, line in updates][-2:] == [
        "u1@localhost busy bridged-3",
        "u0@localhost online bridged-4",
    ]


def test_publish_datagrams_fill_each_datagram_and_sign_it() -> None:
    lines = [line for _, line in bridged_updates(USERS, 200)]
    datagrams = publish_datagrams(BRIDGE, 7, "cookie", lines)
    assert sum(count for _, count in datagrams) == 200
    for n, (data, count) in enumerate(datagrams):
        frame = parse_datagram(data)
        assert len(data) <= MAX_DATAGRAM
        assert frame.headers["Seq"] == str(7 + n) and frame.tag == str(n)
        assert frame.body.decode().count("\r\n") == count
        assert frame.headers["Mac"] == datagram_mac(BRIDGE[1], unsigned_bytes(data))
    # Each but the last is full: one more line would not fit.
    first = datagrams[0][1]
    assert first > 10
    bigger = signed_publish(*BRIDGE, 7, lines[: first + 1], "0", "cookie", 3600)
    assert len(bigger) > MAX_DATAGRAM


def test_a_bridged_burst_resends_and_waits_for_each_final_push() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)
    ours, theirs = socket.socketpair()
    watcher = SimpleNamespace(transport=SimpleNamespace(socket=ours))
    final = b"Note: bridged-1\r\n"
    burst = BridgedBurst(NoReactor(), client, server.getsockname(), [(watcher, final)])
    datagrams = [(b"PUBLISH 0\r\n\r\n", 2)]
    theirs.sendall(b"252 * presence\r\n" + UPDATE_MARK + b"0\r\n\r\n")
    theirs.sendall(b"252 * presence\r\n" + UPDATE_MARK[:3])
    theirs.sendall(UPDATE_MARK[3:] + b"1\r\n\r\n")
    server.settimeout(5)
    received: list[bytes] = []

    def lose_the_first_then_answer() -> None:
        received.append(server.recvfrom(100)[0])
        data, address = server.recvfrom(100)
        received.append(data)
        server.sendto(b"200 0 ok\r\nApplied: 2\r\n\r\n", address)

    answering = threading.Thread(target=lose_the_first_then_answer)
    answering.start()
    try:
        outcome = burst.run(datagrams, 1, 0.2, time.perf_counter() + 5)
        answering.join()
        assert received == [b"PUBLISH 0\r\n\r\n"] * 2
        assert outcome["applied"] == 2 and outcome["pushes"] == 2
        assert outcome["resent"] >= 1
    finally:
        burst.close()
        for sock in (server, client, ours, theirs):
            sock.close()
