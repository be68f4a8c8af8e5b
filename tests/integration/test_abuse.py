"""
One client must not take the server from everyone else: the attacks of
issue 6, item 5, each over real loopback sockets against a server built by
L{fmtp.server.build_server} with its SQLite store.  Waits are count- or
event-based, each with a deadline; no assertion depends on how fast the
machine is.
"""

from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher

from fmtp.client import FrameClientProtocol, connect
from fmtp.connlimit import ConnectionLimits, parse_networks
from fmtp.framing.stream import FrameStreamProtocol
from fmtp.wire import Frame, request, serialize
from tests.integration.test_server import EDGAR, PASSWORD, RunningServer
from tests.tlscerts import make_ca

LOST = "lost@poe.net"
#: Seconds any one wait in these tests may take before it fails.
DEADLINE = 30.0


def within(d: Deferred, seconds: float = DEADLINE) -> Deferred:
    return d.addTimeout(seconds, reactor)


async def until(condition, what: str, seconds: float = DEADLINE) -> None:
    """
    Poll C{condition} until it holds; fail after C{seconds}.
    """
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await deferLater(reactor, 0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def close(*connections: FrameClientProtocol) -> None:
    for connection in connections:
        connection.transport.loseConnection()
        await within(connection.closed)


async def start(tmp_path, **options) -> RunningServer:
    server = await RunningServer(tmp_path, **options).start()
    await server.add_account(EDGAR, PASSWORD)
    await server.add_account(LOST, PASSWORD)
    return server


def server_side(server: RunningServer, address: str) -> FrameStreamProtocol:
    """
    The server's protocol for the stream logged in as C{address}.
    """
    [stream] = [
        s
        for s in server.services.connections.streams()
        if s.session is not None and s.session.address == address
    ]
    return stream


@pytest_twisted.ensureDeferred
async def test_one_read_of_pipelined_requests_runs_at_most_the_cap(tmp_path) -> None:
    """
    2,700 pipelined GETs (66 KB, about one read): never more than 32 of
    them in progress at once, and every one answered.
    """
    server = await start(tmp_path)
    store = server.services.store
    run_interaction = store.run_interaction
    running = most = 0

    def counting(*args):
        # Every call of the SQLite store goes through here.
        nonlocal running, most
        running += 1
        most = max(most, running)

        def done(result):
            nonlocal running
            running -= 1
            return result

        return run_interaction(*args).addBoth(done)

    store.run_interaction = counting
    client = await connect(reactor, server.tcp)
    try:
        answers = await within(
            gatherResults([client.request("GET", EDGAR) for _ in range(2700)])
        )
        assert {a.code for a in answers} == {200}
        assert 1 <= most <= FrameStreamProtocol.max_in_flight, most
    finally:
        await close(client)
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_pushes_to_a_session_that_never_reads_are_dropped(tmp_path) -> None:
    """
    lost logs in and stops reading; edgar SENDs him 40 messages of 256
    KiB.  The server stops writing to lost once its buffer is full and
    drops the pushes (they wait in lost's inbox): it holds nothing for him.
    When lost reads again he gets what was written, then a 251 saying how
    many were dropped.
    """
    server = await start(tmp_path)
    edgar = await server.login()
    lost = await server.login(LOST, PASSWORD)
    stream = server_side(server, LOST)
    # Keep the kernel's share small, so the server's own buffering shows.
    stream.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    lost.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    lost.transport.pauseProducing()
    count = 40
    try:
        for i in range(count):
            sent = await within(
                edgar.request("SEND", headers={"To": LOST}, body=b"%d" % i * 65536)
            )
            assert sent.code == 201, sent
        assert stream.dropped_pushes > count // 2
        assert stream.queued_bytes == 0
        assert stream.transport.producerPaused
        lost.transport.resumeProducing()
        await until(lambda: lost.unsolicited, "the 251 notice")
        [notice] = lost.unsolicited
        assert (notice.code, notice.tag) == (251, "*")
        received = len(lost.pushes.pending)
        assert int(notice.headers["Dropped"]) == count - received
        assert stream.dropped_pushes == count - received
        fetched = await lost.request("FETCH", headers={"Limit": "100"})
        assert fetched.headers["Count"] == str(count)
    finally:
        await close(edgar, lost)
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_a_client_that_never_reads_is_disconnected(tmp_path) -> None:
    """
    A client that asks for large replies and reads none of them is
    closed once it has read nothing for the stall timeout (0.2 s here).
    """
    server = await start(tmp_path, stall_timeout=0.2)
    lost = await server.login(LOST, PASSWORD)
    big = await within(
        lost.request("PUT", headers={"Type": "note"}, body=b"x" * 512 * 1024)
    )
    stream = server_side(server, LOST)
    stream.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    lost.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    lost.transport.pauseProducing()
    try:
        for _ in range(4):
            lost.request("GET", big.headers["Id"]).addErrback(lambda _: None)
        await until(lambda: not server.services.connections, "the server to close it")
    finally:
        lost.transport.resumeProducing()
        await within(lost.closed)
        await server.stop()


async def open_from(server: RunningServer, host: str) -> FrameClientProtocol:
    """
    A raw connection from source address C{host}, not waiting for the
    greeting.
    """
    port = int(server.tcp.rpartition(":")[2])
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(host, 0))
    return await connectProtocol(endpoint, FrameClientProtocol())


@pytest_twisted.ensureDeferred
async def test_connections_are_capped_per_source_and_in_total(tmp_path) -> None:
    """
    Beyond its share a source is told why in one line and closed; others
    still get in, and a trusted source gets in beyond the total.
    """
    limits = ConnectionLimits(
        max_total=5,
        max_per_source=3,
        max_trusted=7,
        trusted=parse_networks(["127.0.0.3"]),
    )
    server = await start(tmp_path, connection_limits=limits)
    opened: list[FrameClientProtocol] = []

    async def admitted(host: str) -> None:
        client = await open_from(server, host)
        opened.append(client)
        greeting = await within(client.greeting)
        assert greeting.code == 220

    async def refused(host: str) -> Frame:
        client = await open_from(server, host)
        await within(client.closed)
        # It was never greeted.
        client.greeting.addErrback(lambda failure: None)
        [line] = client.unsolicited
        return line

    try:
        for _ in range(3):
            await admitted("127.0.0.1")
        line = await refused("127.0.0.1")
        assert (line.code, line.tag) == (421, "*")
        assert line.argument == "too many connections from your address"
        await admitted("127.0.0.2")
        await admitted("127.0.0.2")
        line = await refused("127.0.0.4")
        assert line.argument == "too many connections, try again later"
        for _ in range(2):
            await admitted("127.0.0.3")
        assert (await refused("127.0.0.3")).code == 421
        assert len(server.services.connections) == 7
    finally:
        await close(*opened)
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_a_trickled_request_times_out_from_its_first_byte(tmp_path) -> None:
    """
    One byte every 20 ms keeps a frame coming for ten seconds: the
    server closes it with 420 once the frame timeout (0.3 s here) has
    passed since the first byte, long before.
    """
    server = await start(tmp_path, frame_timeout=0.3)
    client = await connect(reactor, server.tcp)
    data = b"GET 1 " + b"x" * 500
    sent = 0
    try:
        while sent < len(data) and not client.closed.called:
            client.transport.write(data[sent : sent + 1])
            sent += 1
            await deferLater(reactor, 0.02)
        assert client.closed.called, "still open after the whole trickle"
        assert client.unsolicited[-1].code == 420
        assert sent < len(data)
    finally:
        client.transport.loseConnection()
        await within(client.closed)
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_a_flood_of_bad_frames_writes_few_log_lines(tmp_path) -> None:
    """
    60 KB of C{X\\n\\n}: 20,000 error replies, a handful of log lines.
    """
    server = await start(tmp_path)
    logged: list[dict] = []
    globalLogPublisher.addObserver(logged.append)
    client = await connect(reactor, server.tcp)
    try:
        client.transport.write(b"X\n\n" * 20000)
        # Replies to bad frames go out in order, before this one.
        assert (await within(client.request("CAPA"))).code == 200
    finally:
        globalLogPublisher.removeObserver(logged.append)
        await close(client)
        await server.stop()
    lines = [e for e in logged if e.get("code") == "500"]
    assert 10 <= len(lines) < 100, len(lines)


@pytest_twisted.ensureDeferred
async def test_stop_finishes_requests_and_answers_new_ones_421(tmp_path) -> None:
    """
    At shutdown a request in progress is answered, one read after the
    stop began gets 421, then the stream is closed with a 421; and the
    store is not closed under the request.
    """
    server = await start(tmp_path)
    store = server.services.store
    read_object = store.read_object
    gate: Deferred = Deferred()
    started: list[str] = []

    async def slow_read(object_id, reader):
        started.append(object_id)
        await gate
        return await read_object(object_id, reader)

    store.read_object = lambda *args: Deferred.fromCoroutine(slow_read(*args))
    client = await connect(reactor, server.tcp)
    slow = client.request("GET", EDGAR)
    await until(lambda: started, "the GET to start")
    stopped = server.stop()
    late = await within(client.request("CAPA"))
    assert (late.code, late.argument) == (421, "shutting down")
    gate.callback(None)
    assert (await within(slow)).code == 200
    await within(client.closed)
    assert client.unsolicited[-1].code == 421
    await within(stopped)


@pytest_twisted.ensureDeferred
async def test_tls_listener_is_not_taken_for_a_slow_reader(tmp_path) -> None:
    """
    On an C{ssl:} listener TLS holds the greeting until its handshake is
    done and pauses the server meanwhile: the server must not take that
    for a client that stopped reading, and must go on reading the
    handshake.
    """
    ca = make_ca(tmp_path / "ca")
    certificate = ca.issue("127.0.0.1")
    listener = (
        f"ssl:0:interface=127.0.0.1:privateKey={certificate.key_path}"
        f":certKey={certificate.cert_path}"
    )
    server = await RunningServer(tmp_path, listeners=[listener]).start()
    port = int(server.tcp.rpartition(":")[2])
    endpoint = wrapClientTLS(
        optionsForClientTLS("127.0.0.1", trustRoot=ca.trust_root()),
        TCP4ClientEndpoint(reactor, "127.0.0.1", port),
    )
    client = await connectProtocol(endpoint, FrameClientProtocol())
    try:
        assert (await within(client.greeting, 10)).code == 220
        assert (await within(client.request("CAPA"), 10)).code == 200
    finally:
        await close(client)
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_anonymous_streams_cannot_make_the_server_hold_big_bodies(
    tmp_path,
) -> None:
    """
    Ten connections that have not logged in each send a PUT of 1 MB: the
    server keeps at most a few kilobytes of each while it comes in
    (bodies held by unauthenticated streams were what kept 700 MB
    resident after 600 of them), refuses it with 530, and goes on; a
    logged-in user's 1 MB PUT is stored.
    """
    server = await start(tmp_path)
    put = serialize(
        request("PUT", "big", headers={"Type": "post"}, body=b"x" * 1_000_000)
    )
    clients = [await connect(reactor, server.tcp) for _ in range(10)]
    most = 0

    def watch(stream):
        received = stream.dataReceived

        def measured(data):
            nonlocal most
            received(data)
            most = max(most, stream.buffered_bytes)

        stream.dataReceived = measured

    for stream in server.services.connections.streams():
        watch(stream)
    try:
        for client in clients:
            client.transport.write(put)
        answers = await within(gatherResults([c.request("CAPA") for c in clients]))
        assert {a.code for a in answers} == {200}
        # The refusals came before the CAPA replies, tagged as their PUT.
        refusals = {(c.unsolicited[-1].code, c.unsolicited[-1].tag) for c in clients}
        assert refusals == {(530, "big")}
        assert most < 70_000, most
        edgar = await server.login()
        stored = await within(
            edgar.request("PUT", headers={"Type": "post"}, body=b"x" * 1_000_000)
        )
        assert stored.code == 201
        clients.append(edgar)
    finally:
        await close(*clients)
        await server.stop()
