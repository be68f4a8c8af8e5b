"""
ISP bridges end to end, on real sockets: a server on loopback port 0
with SQLite, a bridge sending signed PUBLISH datagrams over UDP (getting
its cookie first, as any datagram client), and a subscriber over TCP
receiving the pushes of what the bridge published.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import (
    Deferred,
    DeferredSemaphore,
    TimeoutError,
    ensureDeferred,
    gatherResults,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.threads import deferToThread

from fmtp.accounts import hash_password
from fmtp.objects import user_object
from fmtp.protocols.presence.bridges import signed_publish
from fmtp.store.bridges import Bridge
from fmtp.wire import Frame, parse_datagram
from tests.helpers import eventually, within
from tests.integration.test_presence import ANNABEL, ask, presence_session, pushed
from tests.integration.test_server import EDGAR, PASSWORD, RunningServer

SECRET = "a7" * 32
USERS = [f"user{i}@poe.net" for i in range(20)]
STATUSES = ["online", "away", "busy", "offline"]


class BridgeClient(DatagramProtocol):
    """
    A bridge: it numbers its datagrams, signs them, and echoes the
    server's cookie once it has one.
    """

    def __init__(self, port: int) -> None:
        self.server = ("127.0.0.1", port)
        self.cookie: str | None = None
        self.seq = 0
        self._waiting: dict[str, Deferred] = {}

    def datagramReceived(self, data: bytes, addr) -> None:
        frame = parse_datagram(data)
        waiting = self._waiting.pop(frame.tag, None)
        if waiting is not None:
            waiting.callback(frame)

    def _send(self, data: bytes, tag: str) -> Deferred:
        d = self._waiting[tag] = Deferred()
        self.transport.write(data, self.server)
        return d

    async def publish_retrying(self, *lines: str, tries: int = 5) -> Frame:
        """
        Publish C{lines} under the next number, sending the same bytes
        again if no answer comes within a second (a repeat is answered as
        the first time and not applied again), as a bridge over a lossy
        network does.
        """
        assert self.cookie is not None
        self.seq += 1
        tag = str(self.seq)
        data = signed_publish(
            "poe-isp", SECRET, self.seq, list(lines), tag, self.cookie
        )
        for _ in range(tries):
            if self.transport is None:
                raise AssertionError("the bridge stopped before all was sent")
            try:
                return await within(self._send(data, tag), 1.0)
            except TimeoutError:
                self._waiting.pop(tag, None)
        raise AssertionError(f"no answer to Seq {self.seq} in {tries} tries")

    async def publish(self, *lines: str) -> Frame:
        self.seq += 1
        tag = str(self.seq)
        for _ in range(2):
            data = signed_publish(
                "poe-isp", SECRET, self.seq, list(lines), tag, self.cookie
            )
            answer = await within(self._send(data, tag), 5.0)
            if answer.code != 432:
                return answer
            self.cookie = answer.headers["Cookie"]
        raise AssertionError("no cookie accepted")


@pytest.fixture
def server(tmp_path):
    running = RunningServer(
        tmp_path,
        presence_listeners=["tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"],
    )
    pytest_twisted.blockon(ensureDeferred(running.start()))
    yield running
    pytest_twisted.blockon(running.stop())


async def subscribed(server: RunningServer, subscriber: str, target: str) -> None:
    store = server.services.store
    await store.request_subscription(subscriber, target, 0.0, 1000)
    await store.approve_subscription(target, subscriber, 0.0)


@pytest_twisted.ensureDeferred
async def test_a_bridge_publishes_and_a_tcp_subscriber_sees_it(server) -> None:
    store = server.services.store
    await store.add_bridge(Bridge("poe-isp", "*@poe.net", SECRET, 0.0))
    await server.add_account(ANNABEL, PASSWORD)
    for user in [EDGAR, *USERS]:
        await server.add_account(user, PASSWORD)
        await subscribed(server, ANNABEL, user)
    annabel = await presence_session(server, ANNABEL)
    annabel.max_unsolicited = 100_000  # keep every push, to check the last
    bridge = BridgeClient(server.presence_udp_port)
    port = reactor.listenUDP(0, bridge, interface="127.0.0.1")
    try:
        assert (await ask(annabel, "STATUS", "online")).code == 200
        answer = await bridge.publish(f"{EDGAR} away at the shop", "x@lenore.org busy")
        assert (answer.code, answer.headers) == (
            200,
            {"Applied": "1", "Refused": "2=554"},
        )
        await pushed(annabel, 252, From=EDGAR, Status="away", Note="at the shop")

        # Many changes for many users, ten to a datagram, in order: every
        # user ends on its last one, as BUDDIES and the pushes say.
        rng = random.Random(10)
        changes = [(rng.choice(USERS), rng.choice(STATUSES)) for _ in range(200)]
        final = {}
        for start in range(0, len(changes), 10):
            batch = changes[start : start + 10]
            answer = await bridge.publish(*(f"{u} {s}" for u, s in batch))
            assert answer.headers == {"Applied": "10"}, answer
            final.update(batch)
        buddies = (await ask(annabel, "BUDDIES")).body.decode().splitlines()
        shown = {line.split()[0]: line.split()[2] for line in buddies}
        for user in USERS:
            assert shown[user] == final.get(user, "offline"), user

        def last_pushes_match() -> bool:
            last = {}
            for frame in annabel.unsolicited:
                if frame.code == 252:
                    last[frame.headers["From"]] = frame.headers["Status"]
            return all(last.get(u, "offline") == final[u] for u in final)

        await eventually(last_pushes_match, timeout=10.0)
    finally:
        await port.stopListening()
        annabel.transport.loseConnection()
        await within(annabel.closed)


@pytest_twisted.ensureDeferred
async def test_a_bridge_publishes_ten_thousand_changes_for_a_thousand_users(
    server,
) -> None:
    """
    The issue's test: one bridge (its source 127.0.0.1/32, at its own
    rate, for its datagrams would be dropped after 40 at the per-source
    limit) publishes 10,000 changes for 1,000 users, 25 to a datagram, 50
    datagrams in flight, and a TCP subscriber of every user ends with
    each user's last change, as BUDDIES and the pushes say.
    """
    users = [f"member{i}@poe.net" for i in range(1000)]
    store = server.services.store
    await store.add_bridge(
        Bridge("poe-isp", "*@poe.net", SECRET, 0.0, ("127.0.0.1/32",))
    )
    await server.add_account(ANNABEL, PASSWORD)
    password_hash = hash_password(PASSWORD, n=2**10)
    for user in users:
        await store.add_account(user, password_hash)
        await store.put_object(user_object(user))
        await subscribed(server, ANNABEL, user)
    annabel = await presence_session(server, ANNABEL)
    annabel.max_unsolicited = 100_000
    bridge = BridgeClient(server.presence_udp_port)
    port = reactor.listenUDP(0, bridge, interface="127.0.0.1")
    try:
        assert (await ask(annabel, "STATUS", "online")).code == 200
        rng = random.Random(10_000)
        changes = [(rng.choice(users), rng.choice(STATUSES)) for _ in range(10_000)]
        batches = [changes[i : i + 25] for i in range(0, len(changes), 25)]
        first = await bridge.publish(*(f"{u} {s}" for u, s in batches[0]))
        assert first.headers == {"Applied": "25"}, first
        in_flight = DeferredSemaphore(50)

        async def send(batch) -> None:
            answer = await bridge.publish_retrying(*(f"{u} {s}" for u, s in batch))
            assert answer.headers == {"Applied": "25"}, answer

        await within(
            gatherResults(
                [
                    in_flight.run(lambda b=batch: ensureDeferred(send(b)))
                    for batch in batches[1:]
                ],
                consumeErrors=True,
            ),
            30.0,
        )
        final = dict(changes)
        assert len(final) == len(users)
        buddies = (await ask(annabel, "BUDDIES")).body.decode().splitlines()
        shown = {line.split()[0]: line.split()[2] for line in buddies}
        assert {u: shown[u] for u in users} == final

        def last_pushes_match() -> bool:
            last = {}
            for frame in annabel.unsolicited:
                if frame.code == 252:
                    last[frame.headers["From"]] = frame.headers["Status"]
            return all(last.get(u, "offline") == s for u, s in final.items())

        await eventually(last_pushes_match, timeout=10.0)
    finally:
        await port.stopListening()
        annabel.transport.loseConnection()
        await within(annabel.closed)


def example_bridge_module():
    """
    doc/examples/bridge.py, the example an ISP copies, imported by path.
    """
    path = Path(__file__).resolve().parents[2] / "doc" / "examples" / "bridge.py"
    spec = importlib.util.spec_from_file_location("example_bridge", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest_twisted.ensureDeferred
async def test_the_example_bridge_script_publishes(server) -> None:
    """
    The example of doc/admin.md, run as written (in a thread: it uses
    blocking sockets), against a real server.
    """
    example = example_bridge_module()
    await server.services.store.add_bridge(Bridge("poe-isp", "*@poe.net", SECRET, 0.0))
    await server.add_account(ANNABEL, PASSWORD)
    await server.add_account(EDGAR, PASSWORD)
    await subscribed(server, ANNABEL, EDGAR)
    annabel = await presence_session(server, ANNABEL)
    try:
        assert (await ask(annabel, "STATUS", "online")).code == 200
        lines = [f"{EDGAR} busy in a meeting", "nobody@lenore.org online"]
        lines += [f"user{i}@poe.net online {'x' * 100}" for i in range(20)]
        groups = example.batches(lines)
        assert len(groups) > 1

        def run() -> list[dict[str, str]]:
            bridge = example.Bridge(
                "127.0.0.1", server.presence_udp_port, "poe-isp", SECRET + "\n"
            )
            try:
                return [bridge.publish(group) for group in groups]
            finally:
                bridge.close()

        replies = await within(deferToThread(run), 20.0)
        assert replies[0]["Refused"] == "2=554"
        await pushed(annabel, 252, From=EDGAR, Status="busy", Note="in a meeting")
    finally:
        annabel.transport.loseConnection()
        await within(annabel.closed)
