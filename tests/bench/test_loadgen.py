"""
The presence rows' pieces that need no server: the line that names a
server's presence port, and L{bench.loadgen.FanOut}'s count of a change
reaching every subscriber, over socket pairs.
"""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import pytest

from bench.loadgen import CHANGE_MARK, FanOut, WorkloadError
from bench.serverprocess import serving


def test_serving_names_each_protocols_port() -> None:
    log = (
        "Serving the object protocol on tcp:0:interface=127.0.0.1 (127.0.0.1:4001)\n"
        "Serving the presence protocol on tcp:0:interface=127.0.0.1 (127.0.0.1:4002)\n"
    )
    assert serving("tcp", "127.0.0.1").search(log).group(1) == "4001"
    assert serving("tcp", "127.0.0.1", "presence").search(log).group(1) == "4002"
    assert serving("udp", "127.0.0.1", "presence").search(log) is None


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
