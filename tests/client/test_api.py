"""
The client library (L{fmtp.client.Client}) against a real server on
loopback sockets and an SQLite file: every typed call, pushes, errors
with their codes, timeouts against a peer that never answers, STARTTLS
with a certificate made at test time, and the blocking wrapper from a
script that runs no reactor.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import optionsForClientTLS

from fmtp.attachments import Attachment, split
from fmtp.client import Client, ConnectionLost, ReplyError, ReplyTimeout
from fmtp.server import build_server
from tests.helpers import bound_ports
from tests.integration.test_server import RunningServer
from tests.integration.test_twistd import Processes, wait_for_exit
from tests.tlscerts import make_ca

EDGAR = "edgar@poe.net"
ANNABEL = "annabel@poe.net"
PASSWORD = "nevermore-quoth"


@pytest.fixture
def server(tmp_path):
    running = pytest_twisted.blockon(ensureDeferred(RunningServer(tmp_path).start()))
    for address in (EDGAR, ANNABEL):
        pytest_twisted.blockon(ensureDeferred(running.add_account(address, PASSWORD)))
    clients: list[Client] = []

    async def client(address: str | None = None, **kwargs) -> Client:
        connected = await Client.connect(reactor, running.tcp, **kwargs)
        clients.append(connected)
        if address is not None:
            await connected.login(address, PASSWORD)
        return connected

    running.client = client
    yield running
    for connected in clients:
        pytest_twisted.blockon(connected.close())
    pytest_twisted.blockon(running.stop())


@pytest_twisted.ensureDeferred
async def test_objects(server) -> None:
    edgar = await server.client(EDGAR)
    assert edgar.address == EDGAR
    capa = await edgar.capa()
    assert capa["Domain"] == "poe.net" and "SEND" in capa["Commands"].split()

    post_id, digest = await edgar.put(
        "post", {"Public": "yes", "Title": "The Raven"}, b"Once upon a midnight"
    )
    post = await edgar.get(post_id)
    assert (post.body, post.properties["Title"], post.digest()) == (
        b"Once upon a midnight",
        "The Raven",
        digest,
    )
    page = await edgar.list(object_type="post")
    assert [item.id for item in page.items] == [post_id] and page.next_start is None
    assert await edgar.delete(post_id) == "deleted"
    with pytest.raises(ReplyError) as refused:
        await edgar.get(post_id)
    assert (refused.value.code, refused.value.temporary) == (550, False)


@pytest_twisted.ensureDeferred
async def test_messages_pushes_and_inbox(server) -> None:
    edgar, annabel = await server.client(EDGAR), await server.client(ANNABEL)
    pushed: list = []
    done = annabel.on_message(pushed.append)

    sent = await edgar.send(
        [ANNABEL],
        b"Quoth the raven",
        subject="Nevermore",
        attachments=[Attachment("raven.png", "image/png", b"\x89PNG\r\n\x1a\n")],
    )
    assert [(r.address, r.code) for r in sent.results] == [(ANNABEL, 201)]
    entries = [entry async for entry in annabel.inbox()]
    assert [(e.id, e.sender) for e in entries] == [(sent.id, EDGAR)]
    message = await annabel.get(sent.id)
    text, files = split(message.properties, message.body)
    assert (text, files[0].name, files[0].data) == (
        b"Quoth the raven",
        "raven.png",
        b"\x89PNG\r\n\x1a\n",
    )
    assert [m.id for m in pushed] == [sent.id]

    reply = await annabel.send([EDGAR], b"Tell me", parent=message)
    answer = await edgar.get(reply.id)
    assert answer.properties["Parent-Digest"] == message.digest()
    assert answer.properties["Top"] == sent.id

    # The same key again is the same message, sent once.
    again = await edgar.send(
        [ANNABEL],
        b"Quoth the raven",
        subject="Nevermore",
        attachments=[Attachment("raven.png", "image/png", b"\x89PNG\r\n\x1a\n")],
        key=sent.key,
    )
    assert again.id == sent.id
    assert len((await annabel.fetch()).entries) == 1

    await annabel.close()
    await done


@pytest_twisted.ensureDeferred
async def test_held_approve_refuse(server) -> None:
    edgar, annabel = await server.client(EDGAR), await server.client(ANNABEL)
    await annabel.put("user", {"Policy": "confirm"}, object_id=ANNABEL)
    await edgar.send([ANNABEL], b"first")
    assert await annabel.held() == [EDGAR]
    assert await annabel.approve(EDGAR) == 1
    assert await annabel.refuse(EDGAR) == 0
    assert len((await annabel.fetch()).entries) == 1


@pytest_twisted.ensureDeferred
async def test_async_iterator_ends_with_the_connection(server) -> None:
    edgar, annabel = await server.client(EDGAR), await server.client(ANNABEL)
    await edgar.send([ANNABEL], b"one")
    seen = []

    async def read() -> None:
        async for message in annabel.messages():
            seen.append(message.body)
            await annabel.close()

    await Deferred.fromCoroutine(read())
    assert seen == [b"one"]
    with pytest.raises(ConnectionLost):
        await annabel.capa()


@pytest_twisted.ensureDeferred
async def test_login_refused_with_its_code(server) -> None:
    client = await server.client()
    with pytest.raises(ReplyError) as refused:
        await client.login(EDGAR, "wrong password")
    assert refused.value.code == 535
    assert client.address is None


class Silent(Protocol):
    """
    A peer that accepts connections and then says nothing at all, or only
    its greeting.
    """

    greet = False

    def connectionMade(self) -> None:
        if self.greet:
            self.transport.write(b"220 * silent.example fmtp/1 object ready\r\n\r\n")


@pytest.mark.parametrize("greet", [False, True])
@pytest_twisted.ensureDeferred
async def test_timeouts_against_a_silent_peer(greet) -> None:
    factory = Factory.forProtocol(type("Peer", (Silent,), {"greet": greet}))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    endpoint = f"tcp:127.0.0.1:{port.getHost().port}"
    try:
        if not greet:
            with pytest.raises(ReplyTimeout):
                await Client.connect(reactor, endpoint, timeout=0.3)
        else:
            client = await Client.connect(reactor, endpoint, timeout=0.3)
            with pytest.raises(ReplyTimeout):
                await client.capa()
            await client.close()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_connection_refused(tmp_path) -> None:
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    number = port.getHost().port
    await port.stopListening()
    with pytest.raises((ConnectionLost, ReplyTimeout)):
        await Client.connect(reactor, f"tcp:127.0.0.1:{number}", timeout=2)


@pytest_twisted.ensureDeferred
async def test_starttls(tmp_path) -> None:
    from fmtp.server import load_tls_context

    ca = make_ca(tmp_path / "ca")
    cert = ca.issue("localhost")
    root, services = build_server(
        reactor,
        domain="poe.net",
        store_url=f"sqlite:{tmp_path / 'fmtp.sqlite'}",
        key_file=str(tmp_path / "domain.key"),
        listeners={
            "object": ["tcp:0:interface=127.0.0.1"],
            "presence": ["tcp:0:interface=127.0.0.1"],
            "chat": ["none"],
        },
        tls_context=load_tls_context(str(cert.key_path), str(cert.cert_path)),
    )
    root.startService()
    try:
        ports = await bound_ports(root)
        options = optionsForClientTLS("localhost", trustRoot=ca.trust_root())
        client = await Client.connect(
            reactor, f"tcp:127.0.0.1:{ports['object', 'tcp']}", starttls=options
        )
        assert (await client.capa())["Domain"] == "poe.net"
        await client.close()
    finally:
        await root.stopService()


BLOCKING_SCRIPT = textwrap.dedent(
    """
    import sys
    from fmtp.client import BlockingClient

    endpoint, password = sys.argv[1], sys.argv[2]
    with BlockingClient.connect(endpoint, timeout=10) as edgar:
        edgar.login("edgar@poe.net", password)
        sent = edgar.send(["annabel@poe.net"], b"from a script")
    with BlockingClient.connect(endpoint, timeout=10) as annabel:
        annabel.login("annabel@poe.net", password)
        [entry] = annabel.inbox()
        assert entry.id == sent.id
        print("ok", annabel.get(entry.id).body.decode())
    """
)


@pytest_twisted.ensureDeferred
async def test_blocking_client_from_a_script(server, tmp_path) -> None:
    """
    A script with no reactor of its own: the blocking wrapper runs one in
    a thread.
    """
    processes = Processes()
    output = tmp_path / "script.out"
    try:
        process = processes.start(
            [sys.executable, "-c", BLOCKING_SCRIPT, server.tcp, PASSWORD],
            tmp_path,
            output,
        )
        assert await wait_for_exit(process, 30) == 0, output.read_text()
    finally:
        processes.kill_all()
    assert output.read_text().strip() == "ok from a script"
