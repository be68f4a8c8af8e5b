"""
Wire rules that a change could break silently, each tried over a real
socket the way an attacker would: each test fails if its rule is broken
on purpose.

  - No reply to an unverified datagram source is larger than its request
    (doc/protocol.md, 5), so a server cannot amplify traffic towards a
    forged address.
  - Bytes sent in clear after STARTTLS, in the same segment, are never
    executed (STARTTLS injection; doc/protocol.md, 8.3).
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.ssl import optionsForClientTLS
from zope.interface import implementer

from fmtp.client import FrameClientProtocol
from fmtp.wire import parse_datagram, request, serialize
from tests.integration.test_server import EDGAR, PASSWORD, RunningServer
from tests.tlscerts import make_ca

DEADLINE = 10.0


class Recorder(DatagramProtocol):
    """
    Keeps every datagram received; fires C{last} when one tagged
    C{last_tag} comes.
    """

    def __init__(self, last_tag: str) -> None:
        self.received: list[bytes] = []
        self.last_tag = last_tag
        self.last: Deferred = Deferred()

    def datagramReceived(self, data: bytes, addr) -> None:
        self.received.append(data)
        if parse_datagram(data).tag == self.last_tag and not self.last.called:
            self.last.callback(None)


def capa_of_size(tag: str, size: int) -> bytes:
    """
    A CAPA request without a cookie, padded to exactly C{size} bytes.
    """
    data = serialize(request("CAPA", tag, headers={"Pad": "x"}))
    data = serialize(
        request("CAPA", tag, headers={"Pad": "x" * (size - len(data) + 1)})
    )
    assert len(data) == size
    return data


@pytest_twisted.ensureDeferred
async def test_no_reply_to_an_unverified_source_is_larger_than_its_request(
    tmp_path,
) -> None:
    """
    Requests without a cookie of every size from a little under the
    cookie reply's to twice it: each reply that comes is no larger than
    its request.  A last request, large enough for its cookie, marks the
    end (the source stays under its rate limit of 40 at once).
    """
    server = await RunningServer(tmp_path).start()
    recorder = Recorder("last")
    port = reactor.listenUDP(0, recorder, interface="127.0.0.1")
    target = ("127.0.0.1", server.udp_port)
    sizes = {f"s{size}": size for size in range(30, 66)}
    try:
        for tag, size in sizes.items():
            port.write(capa_of_size(tag, size), target)
        port.write(capa_of_size("last", 200), target)
        await recorder.last.addTimeout(DEADLINE, reactor)
    finally:
        await port.stopListening()
        await server.stop()
    answered = {}
    for data in recorder.received:
        frame = parse_datagram(data)
        assert frame.code == 432, frame
        answered[frame.tag] = len(data)
    for tag, size in answered.items():
        if tag != "last":
            assert size <= sizes[tag], (tag, size)
    # The range straddles the cookie reply's size: some were answered.
    assert len(answered) > 1


@implementer(IHandshakeListener)
class TLSClient(FrameClientProtocol):
    """
    A client told when its TLS handshake is done (L{FrameClientProtocol.tls_ready}).
    """


@pytest_twisted.ensureDeferred
async def test_clear_text_after_starttls_is_not_executed(tmp_path) -> None:
    """
    A man in the middle appends a PUT to the client's STARTTLS, in the
    same segment: the server switches to TLS and discards it.
    """
    ca = make_ca(tmp_path / "ca")
    certificate = ca.issue("127.0.0.1")
    server = await RunningServer(tmp_path, tls_context=certificate.options()).start()
    await server.add_account(EDGAR, PASSWORD)
    endpoint = clientFromString(reactor, server.tcp)
    client = await connectProtocol(endpoint, TLSClient())
    try:
        await client.greeting.addTimeout(DEADLINE, reactor)
        login = {"Address": EDGAR, "Password": PASSWORD}
        assert (await client.request("LOGIN", headers=login)).code == 230
        started = client.start_tls(
            optionsForClientTLS("127.0.0.1", trustRoot=ca.trust_root())
        )
        client.transport.write(
            serialize(
                request("PUT", "injected", headers={"Type": "post", "Public": "yes"})
            )
        )
        assert (await started.addTimeout(DEADLINE, reactor)).code == 220
        await client.tls_ready.addTimeout(DEADLINE, reactor)
        listed = await client.request("LIST", headers={"Owner": EDGAR, "Type": "post"})
        assert listed.code == 200
        assert listed.headers["Count"] == "0", listed.body
        # And the stream still works, under TLS.
        put = await client.request("PUT", headers={"Type": "post"})
        assert put.code == 201
    finally:
        client.transport.loseConnection()
        await client.closed.addTimeout(DEADLINE, reactor)
        await server.stop()
