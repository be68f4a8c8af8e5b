"""
Every fmtp stream sets C{TCP_NODELAY}, read back from the real sockets
with C{getsockopt}: the server's accepted streams, the client library's
connections and server links, over plain TCP, an C{ssl:} listener and
STARTTLS.  The stream protocols write each frame in one C{write}, so
this sends no more packets than frames.
"""

from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.ssl import optionsForClientTLS
from twisted.protocols.tls import TLSMemoryBIOProtocol

from fmtp.client import FrameClientProtocol, connect
from fmtp.federation.link import LinkProtocol
from tests.integration.test_abuse import close, until, within
from tests.integration.test_server import RunningServer
from tests.tlscerts import make_ca


def no_delay(transport) -> bool:
    """
    Whether the socket under C{transport} (under its TLS layer, if any)
    has C{TCP_NODELAY} set, as the kernel says.
    """
    if isinstance(transport, TLSMemoryBIOProtocol):
        transport = transport.transport
    # Not getHandle(): after STARTTLS it is the TLS connection.
    return bool(transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


async def server_streams(server: RunningServer, count: int) -> list:
    connections = server.services.connections
    await until(lambda: len(connections) == count, f"{count} server streams")
    return connections.streams()


@pytest_twisted.ensureDeferred
async def test_plain_tcp_streams_and_links_set_no_delay(tmp_path) -> None:
    server = await RunningServer(tmp_path).start()
    client = await connect(reactor, server.tcp, timeout=10)
    port = int(server.tcp.rpartition(":")[2])
    link = await connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port), LinkProtocol()
    )
    try:
        await within(link.greeting)
        assert no_delay(client.transport)
        assert no_delay(link.transport)
        streams = await server_streams(server, 2)
        assert [no_delay(s.transport) for s in streams] == [True, True]
    finally:
        await close(client, link)
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_tls_listener_and_starttls_streams_set_no_delay(tmp_path) -> None:
    ca = make_ca(tmp_path / "ca")
    certificate = ca.issue("127.0.0.1")
    listener = (
        f"ssl:0:interface=127.0.0.1:privateKey={certificate.key_path}"
        f":certKey={certificate.cert_path}"
    )
    server = await RunningServer(
        tmp_path, listeners=[listener], tls_context=certificate.options()
    ).start()
    port = int(server.tcp.rpartition(":")[2])
    options = optionsForClientTLS("127.0.0.1", trustRoot=ca.trust_root())
    endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", port))
    tls_client = await connectProtocol(endpoint, FrameClientProtocol())
    try:
        assert (await within(tls_client.greeting)).code == 220
        assert (await within(tls_client.request("CAPA"))).code == 200
        assert isinstance(tls_client.transport, TLSMemoryBIOProtocol)
        assert no_delay(tls_client.transport)
        [stream] = await server_streams(server, 1)
        assert isinstance(stream.transport, TLSMemoryBIOProtocol)
        assert no_delay(stream.transport)
    finally:
        await close(tls_client)
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_starttls_streams_keep_no_delay(tmp_path) -> None:
    ca = make_ca(tmp_path / "ca")
    certificate = ca.issue("127.0.0.1")
    server = await RunningServer(tmp_path, tls_context=certificate.options()).start()
    client = await connect(reactor, server.tcp, timeout=10)
    try:
        answer = await within(
            client.start_tls(optionsForClientTLS("127.0.0.1", ca.trust_root()))
        )
        assert answer.code == 220
        await within(client.tls_ready)
        assert (await within(client.request("CAPA"))).code == 200
        assert no_delay(client.transport)
        [stream] = await server_streams(server, 1)
        assert no_delay(stream.transport)
    finally:
        await close(client)
        await server.stop()
