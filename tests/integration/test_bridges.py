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
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.internet.threads import deferToThread

from fmtp.accounts import hash_password
from fmtp.auth.router import datagram_mac, sign_frame, unsigned_bytes
from fmtp.objects import user_object
from fmtp.protocols.presence.bridgeresync import signed_resync
from fmtp.protocols.presence.bridges import signed_publish
from fmtp.store.bridges import Bridge
from fmtp.wire import UNSOLICITED_TAG, Frame, FrameParser, parse_datagram, reply
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
        #: The notifications received (doc/protocol.md 9.8), as sent.
        self.notifications: list[bytes] = []

    def datagramReceived(self, data: bytes, addr) -> None:
        frame = parse_datagram(data)
        if frame.tag == UNSOLICITED_TAG:
            self.notifications.append(data)
            return
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


class RawStream(Protocol):
    """
    A TCP connection that sends bytes exactly as given (a bridge's signed
    RESYNC) and keeps the frames it receives.
    """

    def __init__(self) -> None:
        self.parser = FrameParser()
        self.frames: list[Frame] = []
        self.closed = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.frames.extend(self.parser.feed(data))

    def connectionLost(self, reason=None) -> None:
        self.closed.callback(None)


async def raw_stream(server: RunningServer) -> RawStream:
    port = int(server.presence_tcp.rsplit(":", 1)[1])
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    stream = await within(connectProtocol(endpoint, RawStream()))
    await eventually(lambda: stream.frames or None, timeout=5.0)  # the greeting
    stream.frames.clear()
    return stream


async def resync(stream: RawStream, data: bytes) -> Frame:
    stream.transport.write(data)
    await eventually(lambda: stream.frames or None, timeout=5.0)
    return stream.frames.pop(0)


def checked_notification(data: bytes) -> Frame:
    """
    A notification, once its MAC is checked as a bridge checks it.
    """
    frame = parse_datagram(data)
    assert frame.headers.pop("Mac") == datagram_mac(SECRET, unsigned_bytes(data))
    return frame


async def bridge_and_two_users(server, subscriber: str, target: str):
    """
    The bridge poe-isp for every user of poe.net, Edgar and Annabel,
    C{subscriber} seeing C{target}; Annabel's presence session.
    """
    await server.services.store.add_bridge(Bridge("poe-isp", "*@poe.net", SECRET, 0.0))
    await server.add_account(ANNABEL, PASSWORD)
    await server.add_account(EDGAR, PASSWORD)
    await subscribed(server, subscriber, target)
    return await presence_session(server, ANNABEL)


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


@pytest_twisted.ensureDeferred
async def test_a_bridge_is_notified_and_resyncs_over_tcp(server) -> None:
    """
    Edgar, whom the bridge publishes, sees Annabel, who is logged in over
    TCP: her change reaches the bridge's UDP socket as a signed
    notification, and a RESYNC over TCP gives the bridge Edgar's list
    and where the notifications stand; the same RESYNC again is refused.
    """
    annabel = await bridge_and_two_users(server, EDGAR, ANNABEL)
    bridge = BridgeClient(server.presence_udp_port)
    port = reactor.listenUDP(0, bridge, interface="127.0.0.1")
    streams = []
    try:
        assert (await ask(annabel, "STATUS", "online")).code == 200
        answer = await bridge.publish(f"{EDGAR} online")
        assert answer.headers == {"Applied": "1"}, answer
        assert (await ask(annabel, "STATUS", "busy", {"Note": "writing"})).code == 200

        def told_busy():
            frames = [checked_notification(d) for d in bridge.notifications]
            return [f for f in frames if f.headers.get("Status") == "busy"] or None

        [busy] = await eventually(told_busy, timeout=10.0)
        assert (busy.verb, busy.tag) == ("252", "*")
        assert busy.headers["Bridge"] == "poe-isp"
        assert busy.headers["To"] == EDGAR
        assert (busy.headers["From"], busy.headers["Note"]) == (ANNABEL, "writing")
        last = max(
            int(checked_notification(d).headers["Seq"]) for d in bridge.notifications
        )

        bridge.seq += 1
        request = signed_resync("poe-isp", SECRET, bridge.seq, "r1")
        streams.append(await raw_stream(server))
        state = await resync(streams[0], request)
        assert state.code == 200, state
        assert state.headers["Notify-Seq"] == str(last)
        assert state.headers["Users"] == "1"
        assert state.body.decode().splitlines() == [
            f"{EDGAR} {ANNABEL} to busy writing"
        ]
        # Captured and sent again, on another connection: refused.
        streams.append(await raw_stream(server))
        assert (await resync(streams[1], request)).code == 503
        bad = signed_resync("poe-isp", "00" * 32, bridge.seq + 1, "r2")
        assert (await resync(streams[1], bad)).code == 535
    finally:
        for stream in streams:
            stream.transport.loseConnection()
            await within(stream.closed)
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
    annabel = await bridge_and_two_users(server, ANNABEL, EDGAR)
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


async def received(bridge, done, timeout: float = 15.0) -> None:
    """
    Let the example bridge take notifications, a short while at a time
    (its socket is blocking: in a thread), until C{done()} or C{timeout}:
    a loaded machine may take seconds to send one.
    """
    deadline = reactor.seconds() + timeout
    while not done():
        if reactor.seconds() > deadline:
            raise AssertionError("the notification never came")
        await within(deferToThread(bridge.receive, 0.2), 10.0)


@pytest_twisted.ensureDeferred
async def test_the_example_bridge_checks_notifications_and_resyncs(server) -> None:
    """
    doc/examples/bridge.py's Bridge, against a real server (in a thread:
    blocking sockets): it takes Annabel's change as a valid notification,
    refuses a forged one, sees a gap in the Seq and RESYNCs over TCP.
    """
    example = example_bridge_module()
    annabel = await bridge_and_two_users(server, EDGAR, ANNABEL)
    tcp_port = int(server.presence_tcp.rsplit(":", 1)[1])
    bridge = example.Bridge(
        "127.0.0.1", server.presence_udp_port, "poe-isp", SECRET, timeout=5.0
    )
    told: list[tuple[str, dict[str, str]]] = []
    bridge.on_notification = lambda code, headers: told.append((code, headers))
    try:
        assert (await ask(annabel, "STATUS", "online")).code == 200
        state = await within(deferToThread(bridge.resync, tcp_port), 10.0)
        assert state == [] and not bridge.resync_needed
        await within(deferToThread(bridge.publish, [f"{EDGAR} online"]), 10.0)
        assert (await ask(annabel, "STATUS", "away")).code == 200
        await received(bridge, lambda: any(h["Status"] == "away" for _, h in told))
        # Edgar coming online may first be told Annabel's status then
        # (online), as the bridge's address is proven by that PUBLISH.
        said = [(c, h["From"], h["Status"]) for c, h in told]
        assert said[-1] == ("252", ANNABEL, "away")
        assert set(said[:-1]) <= {("252", ANNABEL, "online")}
        assert not bridge.resync_needed
        forged = sign_frame(
            reply(
                252,
                UNSOLICITED_TAG,
                headers={
                    "Bridge": "poe-isp",
                    "Seq": str(bridge.notify_seq + 1),
                    "To": EDGAR,
                    "From": ANNABEL,
                    "Status": "online",
                },
            ),
            "00" * 32,
        )
        assert not bridge.take_notification(forged)
        assert not bridge.take_notification(b"garbage")
        # A notification lost (taken off here): the next shows a gap.
        bridge.notify_seq -= 1
        assert (await ask(annabel, "STATUS", "busy")).code == 200
        await received(bridge, lambda: bridge.resync_needed)
        assert bridge.resync_needed
        state = await within(deferToThread(bridge.resync, tcp_port), 10.0)
        assert state == [f"{EDGAR} {ANNABEL} to busy"]
        assert not bridge.resync_needed
    finally:
        bridge.close()
        annabel.transport.loseConnection()
        await within(annabel.closed)


@pytest_twisted.ensureDeferred
async def test_a_captured_publish_replayed_after_a_restart_is_refused(tmp_path) -> None:
    """
    The anti-replay window lives in memory, so a restart forgets it; but
    every PUBLISH carries its source's cookie under its MAC, and cookies
    are keyed by a secret each run draws anew: a datagram captured before
    a restart and sent again after it is answered 432 and applies nothing.
    """
    listeners = ["tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"]
    first = await RunningServer(tmp_path, presence_listeners=listeners).start()
    await first.services.store.add_bridge(Bridge("poe-isp", "*@poe.net", SECRET, 0.0))
    await first.add_account(EDGAR, PASSWORD)
    bridge = BridgeClient(first.presence_udp_port)
    port = reactor.listenUDP(0, bridge, interface="127.0.0.1")
    try:
        sent: list[bytes] = []
        write = bridge.transport.write
        bridge.transport.write = lambda data, addr: (
            sent.append(data),
            write(data, addr),
        )
        answer = await bridge.publish(f"{EDGAR} online")
        assert answer.headers == {"Applied": "1"}, answer
        captured = sent[-1]
        await first.stop()

        again = await RunningServer(tmp_path, presence_listeners=listeners).start()
        try:
            bridge.server = ("127.0.0.1", again.presence_udp_port)
            replayed = await within(bridge._send(captured, str(bridge.seq)), 5.0)
            assert replayed.code == 432, replayed
            shown = await again.services.presence.shown_to(EDGAR, EDGAR)
            assert shown.status == "offline", shown
        finally:
            await again.stop()
    finally:
        await port.stopListening()
