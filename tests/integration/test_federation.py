"""
Federation end to end: servers of different domains on their own loopback
addresses, finding each other through a real DNS server on 127.0.0.1
(Twisted Names serving their zones), proving themselves with keys
published there, and delivering their users' messages.

The first test is the FMTP draft's example conversation between poe.net
and lenore.org, run for real.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import formatEvent, globalLogPublisher

from fmtp.accounts import hash_password
from fmtp.client import FrameClientProtocol, connect
from fmtp.dns.keyverifier import DNSKeyVerifier
from fmtp.federation.hello import make_hello
from fmtp.federation.node import FederationSettings
from fmtp.keys.keyfile import write_private_key
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.objects import FMTPObject, user_object
from fmtp.server import ServerService, build_server
from fmtp.wire import Frame
from tests.dnsserver import fmtp_zone, key_txt, start_dns_server, zone_text
from tests.helpers import HeldPort, bound_ports, eventually, within

EDGAR = "edgar@poe.net"
LOST = "lost@lenore.org"
PASSWORD = "nevermore-quoth"

#: Retry quickly: the tests bring servers down and up within seconds.
FAST = FederationSettings(retry_schedule=(0.3,), connect_timeout=2.0)


class Server:
    """
    One fmtp server of the test network.
    """

    def __init__(self, root: ServerService, services, signer: DomainSigner) -> None:
        self.root = root
        self.services = services
        self.signer = signer
        self.domain = services.domain
        self.clients: list[FrameClientProtocol] = []

    @property
    def queue(self):
        return next(s for s in self.root if s.name == "queue" or hasattr(s, "kick"))

    async def add_account(self, address: str) -> None:
        store = self.services.store
        await store.add_account(address, hash_password(PASSWORD, n=2**10))
        await store.put_object(user_object(address))

    async def login(self, address: str) -> FrameClientProtocol:
        client = await within(connect(reactor, self.endpoint))
        self.clients.append(client)
        answer = await within(
            client.request("LOGIN", headers={"Address": address, "Password": PASSWORD})
        )
        assert answer.code == 230, answer
        return client

    async def stop(self) -> None:
        for client in self.clients:
            client.transport.loseConnection()
            await within(client.closed)
        self.clients = []
        await self.root.stopService()


class Network:
    """
    A DNS server and the fmtp servers whose zones it serves.

    @ivar default_port: what 7070 is on the internet: the port of a server
        found through its MX records or its own address.  Every server of
        the network is told it (L{FederationSettings.default_port}), so the
        MX and A routes are exercised without binding a fixed port; it is
        held on every address for the test's life, so that a server
        reached through MX can stop and start again on it while no other
        process can take it, and where nothing listens it refuses.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.dns = start_dns_server({})
        self.servers: list[Server] = []
        self.keys: dict[str, DomainSigner] = {}
        self.default_port = HeldPort("0.0.0.0", shared=True)
        self.held: list[HeldPort] = [self.default_port]

    def dead_port(self, address: str) -> int:
        """
        A port of C{address} where connections are refused, held for the
        test's life.
        """
        held = HeldPort(address)
        self.held.append(held)
        return held.port

    def signer(self, name: str, domain: str) -> DomainSigner:
        if name not in self.keys:
            key = generate_private_key()
            write_private_key(self.tmp_path / f"{name}.key", key)
            self.keys[name] = DomainSigner(key, domain)
        return self.keys[name]

    async def start(
        self,
        domain: str,
        address: str,
        mx: bool = False,
        publish_key: bool = True,
        extra: tuple[str, ...] = (),
        settings: FederationSettings = FAST,
        publish: bool = True,
        name: str | None = None,
        hosts: str | None = None,
        tls_context=None,
        plugins=None,
        listen: dict[str, list[str]] | None = None,
        plugin_options: dict[str, object] | None = None,
    ) -> Server:
        """
        Start (or restart, on the same data) the server of C{domain} on
        C{address}, and publish its zone.

        @param mx: publish an MX record rather than an SRV record, and
            listen on the network's L{default_port}, where MX leads;
            otherwise listen on port 0 and publish that port in SRV.
        @param name: names the server's key and data, if not its domain
            (a spoofer also claims to be poe.net).
        @param hosts: the text of a hosts file for it.
        @param plugins: the protocol plugins it serves, if not the
            built-in ones.
        @param listen: listeners of other protocols than the object one
            (C{{"nudge": ["tcp:0:interface=..."]}}), whose bound ports are
            in the server's C{ports}.
        """
        name = name or domain
        signer = self.signer(name, domain)
        hosts_file = None
        if hosts is not None:
            hosts_file = self.tmp_path / f"{name}.hosts"
            hosts_file.write_text(hosts)
        port = self.default_port.port if mx else 0
        root, services = build_server(
            reactor,
            domain=domain,
            store_url=f"sqlite:{self.tmp_path / name / 'fmtp.sqlite'}",
            key_file=str(self.tmp_path / f"{name}.key"),
            listeners={
                "object": [f"tcp:{port}:interface={address}"],
                "presence": [f"tcp:0:interface={address}"],
                "chat": [f"tcp:0:interface={address}"],
                **(listen or {}),
            },
            nameservers=[self.dns.nameserver],
            federation=replace(settings, default_port=self.default_port.port),
            hosts_file=str(hosts_file) if hosts_file else None,
            tls_context=tls_context,
            plugins=plugins,
            plugin_options=plugin_options,
        )
        root.startService()
        ports = await bound_ports(root)
        server = Server(root, services, signer)
        server.ports = ports
        server.port = ports["object", "tcp"]
        server.endpoint = f"tcp:{address}:{server.port}"
        server.address = address
        if publish:
            keys = [signer.public_key()] if publish_key else []
            zone = fmtp_zone(
                domain,
                address,
                server.port,
                keys,
                host="mail",
                srv=not mx,
                mx=mx,
                extra=extra,
            )
            self.dns.set_zone(domain, zone)
        self.servers.append(server)
        return server

    async def stop(self) -> None:
        for server in self.servers:
            if server.root.running:
                await server.stop()
        await self.dns.stop()
        for held in self.held:
            held.close()


def message_of(frame: Frame) -> FMTPObject:
    headers = {k: v for k, v in frame.headers.items() if k != "Digest"}
    return FMTPObject.from_headers(headers, frame.body)


@pytest_twisted.ensureDeferred
async def test_poe_writes_to_lenore(network) -> None:
    """
    The FMTP draft's example conversation: poe.net looks lenore.org up
    (its MX, mail.lenore.org), checks its key, handshakes, learns lost's
    route, finds nothing listening there, falls back to the domain's
    server, and lost receives edgar's message, verified, over lost's
    existing session.
    """
    poe = await network.start("poe.net", "127.0.0.2")
    lenore = await network.start(
        "lenore.org",
        "127.0.0.3",
        mx=True,
        extra=("lost IN A 127.0.0.3",),
    )
    home = network.dead_port("127.0.0.3")
    await poe.add_account(EDGAR)
    await lenore.add_account(LOST)
    edgar = await poe.login(EDGAR)
    lost = await lenore.login(LOST)
    routed = await lost.request(
        "PUT",
        headers={"Id": LOST, "Type": "user", "Route": f"tcp://lost.lenore.org:{home}"},
    )
    assert routed.code == 201, routed

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        sent = await edgar.request(
            "SEND",
            headers={"To": LOST, "Subject": "Nevermore"},
            body=b"Quoth the raven",
        )
        assert sent.code == 201, sent
        pushed = await within(lost.pushes.get())
    finally:
        globalLogPublisher.removeObserver(events.append)
    said = [formatEvent(event) for event in events]
    # poe.net found lenore.org's server through its MX (on the network's
    # default port) and handshook...
    mx_route = f"mail.lenore.org:{network.default_port.port}"
    assert lenore.port == network.default_port.port
    assert any(f"Linked to lenore.org via dns {mx_route}" in s for s in said)
    # ...tried lost's own route, where nothing listens, and fell back.
    assert any(
        f"Route lost.lenore.org:{home} of lenore.org unreachable" in s for s in said
    )

    message = message_of(pushed)
    assert (message.id, message.body) == (sent.headers["Id"], b"Quoth the raven")
    assert message.properties["From"] == EDGAR
    # lost's side checks the message against poe.net's key in DNS.
    keys = DNSKeyVerifier(network.dns.resolver(), reactor)
    verified_by = await keys.verify_object(message)
    assert verified_by.fingerprint == poe.signer.fingerprint

    fetched = await lost.request("FETCH")
    assert sent.headers["Id"] in fetched.body.decode()
    assert await poe.services.store.queued_for("lenore.org") == []


@pytest_twisted.ensureDeferred
async def test_queued_while_lenore_is_down(network) -> None:
    """
    lenore.org is down when edgar sends: the message waits in poe.net's
    queue (acknowledged, so on disk) and arrives once lenore.org is back.
    """
    poe = await network.start("poe.net", "127.0.0.2")
    lenore = await network.start("lenore.org", "127.0.0.3", mx=True)
    await poe.add_account(EDGAR)
    await lenore.add_account(LOST)
    await lenore.stop()

    edgar = await poe.login(EDGAR)
    sent = await edgar.request("SEND", headers={"To": LOST}, body=b"Are you there?")
    assert sent.code == 201, sent
    [queued] = await poe.services.store.queued_for("lenore.org")
    assert queued.object_id == sent.headers["Id"]

    lenore = await network.start("lenore.org", "127.0.0.3", mx=True)
    lost = await lenore.login(LOST)

    async def filed():
        fetched = await lost.request("FETCH")
        return fetched if fetched.headers["Count"] == "1" else None

    fetched = await eventually(filed)
    assert sent.headers["Id"] in fetched.body.decode()

    async def dequeued():
        return not await poe.services.store.queued_for("lenore.org")

    await eventually(dequeued)


@pytest_twisted.ensureDeferred
async def test_keyless_domain_delivers_through_countersign(network) -> None:
    """
    A domain that publishes no key can still deliver: lenore.org calls its
    server back, found through DNS, to confirm each message.
    """
    lenore = await network.start("lenore.org", "127.0.0.3", mx=True)
    keyless = await network.start("keyless.example", "127.0.0.4", publish_key=False)
    await lenore.add_account(LOST)
    await keyless.add_account("nokey@keyless.example")
    lost = await lenore.login(LOST)
    sender = await keyless.login("nokey@keyless.example")
    sent = await sender.request("SEND", headers={"To": LOST}, body=b"trust me")
    assert sent.code == 201
    pushed = await within(lost.pushes.get())
    assert pushed.headers["Id"] == sent.headers["Id"]
    assert pushed.headers["From"] == "nokey@keyless.example"


@pytest_twisted.ensureDeferred
async def test_spoofer_claiming_poe_is_refused(network) -> None:
    """
    A server that claims to be poe.net without poe.net's key is refused at
    HELLO; its message never reaches lost, and its sender gets a bounce.
    """
    await network.start("poe.net", "127.0.0.2")
    lenore = await network.start("lenore.org", "127.0.0.3", mx=True)
    await lenore.add_account(LOST)
    lost = await lenore.login(LOST)
    # The spoofer has a key of its own for poe.net, published nowhere.
    spoofer = await network.start("poe.net", "127.0.0.5", publish=False, name="spoof")
    await spoofer.add_account(EDGAR)
    edgar = await spoofer.login(EDGAR)
    sent = await edgar.request("SEND", headers={"To": LOST}, body=b"Nevermore")
    assert sent.code == 201

    bounce = await within(edgar.pushes.get())
    assert bounce.headers["From"] == "postmaster@poe.net"
    assert bounce.headers["Parent"] == sent.headers["Id"]
    assert b"lost@lenore.org" in bounce.body
    assert (await lost.request("FETCH")).headers["Count"] == "0"


@pytest_twisted.ensureDeferred
async def test_delivery_through_the_parent(network) -> None:
    """
    lenore.org is reachable only from poe.net's parent: DNS sends poe.net
    to an address where nothing listens, so poe.net hands the message to
    its parent, which relays it (its hosts file knows the way) and
    lenore.org files it on poe.net's signature.
    """
    lenore = await network.start("lenore.org", "127.0.0.3", publish=False)
    network.dns.set_zone(
        "lenore.org",
        fmtp_zone(
            "lenore.org",
            "127.0.0.9",
            network.dead_port("127.0.0.9"),
            [network.signer("lenore.org", "lenore.org").public_key()],
        ),
    )
    relay = await network.start(
        "relay.example",
        "127.0.0.6",
        settings=replace(FAST, relay_for=frozenset({"poe.net"})),
        hosts=f"route lenore.org 127.0.0.3:{lenore.port}\n",
    )
    poe = await network.start(
        "poe.net",
        "127.0.0.2",
        settings=replace(FAST, parent=("127.0.0.6", relay.port)),
    )
    await poe.add_account(EDGAR)
    await lenore.add_account(LOST)
    lost = await lenore.login(LOST)
    edgar = await poe.login(EDGAR)

    sent = await edgar.request("SEND", headers={"To": LOST}, body=b"by way of relay")
    assert sent.code == 201, sent
    pushed = await within(lost.pushes.get())
    assert (pushed.headers["Id"], pushed.body) == (
        sent.headers["Id"],
        b"by way of relay",
    )
    assert pushed.headers["Signature"].startswith("v=1; d=poe.net;")

    # The draft's parent lookup: poe.net cannot reach lenore.org to fetch
    # lost's user object, so its parent looks it up, and keeps it cached.
    profile = await poe.services.links.lookup(LOST, False)
    assert (profile.id, profile.type) == (LOST, "user")
    assert await relay.services.links.lookup(LOST, True) is not None


@pytest_twisted.ensureDeferred
async def test_tls_required_between_servers(network) -> None:
    """
    With --s2s-tls require, poe.net upgrades its link with STARTTLS and
    checks lenore.org's certificate (made at test time by a test CA)
    against the name of its route, mail.lenore.org.
    """
    from fmtp.federation.tls import load_trust_root
    from fmtp.server import load_tls_context
    from tests.tlscerts import make_ca

    ca = make_ca(network.tmp_path / "ca")
    cert = ca.issue("mail.lenore.org")
    lenore = await network.start(
        "lenore.org",
        "127.0.0.3",
        mx=True,
        tls_context=load_tls_context(str(cert.key_path), str(cert.cert_path)),
    )
    poe = await network.start(
        "poe.net",
        "127.0.0.2",
        settings=replace(
            FAST, tls_policy="require", tls_trust_root=load_trust_root(ca.cert_path)
        ),
    )
    await poe.add_account(EDGAR)
    await lenore.add_account(LOST)
    lost = await lenore.login(LOST)
    capa = await lost.request("CAPA")
    assert "STARTTLS" in capa.headers["Commands"].split()

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        edgar = await poe.login(EDGAR)
        sent = await edgar.request("SEND", headers={"To": LOST}, body=b"sealed")
        assert sent.code == 201
        pushed = await within(lost.pushes.get())
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert pushed.body == b"sealed"
    said = [formatEvent(event) for event in events]
    assert any("Linked to lenore.org" in s and "TLS: verified" in s for s in said), said


async def hello_over(server: Server, hello: dict[str, str]) -> Frame:
    """
    Say C{hello} to C{server} on a new connection, as a raw client would
    (no link pool, no answer checked), and return the reply.
    """
    client = await within(connect(reactor, server.endpoint))
    try:
        return await within(client.request("HELLO", headers=hello))
    finally:
        client.transport.loseConnection()
        await within(client.closed)


@pytest_twisted.ensureDeferred
async def test_recorded_hello_is_refused(network) -> None:
    """
    A HELLO recorded off the wire and played again on a new connection is
    refused for as long as its time is inside the 300 s window: here it
    was signed 250 s ago, so a server that forgot nonces sooner would take
    it.  And a HELLO whose nonce is not 16 to 64 base64url characters is
    refused, even when its signature (which covers that nonce) is good.
    """
    lenore = await network.start("lenore.org", "127.0.0.3")
    poe = network.signer("poe.net", "poe.net")
    network.dns.set_zone("poe.net", zone_text("poe.net", [key_txt(poe.public_key())]))

    recorded = make_hello(poe, "lenore.org", reactor.seconds() - 250)
    first = await hello_over(lenore, recorded)
    assert (first.code, first.headers["Domain"]) == (200, "lenore.org")
    again = await hello_over(lenore, recorded)
    assert again.code == 554 and "replayed" in again.argument, again

    for nonce in ("short", "not base64url at all!", "é" * 24):
        bad = make_hello(poe, "lenore.org", reactor.seconds(), nonce=nonce)
        answer = await hello_over(lenore, bad)
        assert answer.code == 554 and "Nonce must be" in answer.argument, answer
    fresh = make_hello(poe, "lenore.org", reactor.seconds())
    assert (await hello_over(lenore, fresh)).code == 200


@pytest_twisted.ensureDeferred
async def test_peer_back_and_connecting_gets_its_queue_at_once(network) -> None:
    """
    lenore.org was down when edgar wrote, and poe.net backed off for an
    hour.  lenore.org comes back and connects to poe.net (lost writes to
    edgar): once its HELLO is verified, poe.net sends what waits for it at
    once, instead of at the end of the back-off.
    """
    patient = replace(FAST, retry_schedule=(3600.0,))
    poe = await network.start("poe.net", "127.0.0.2", settings=patient)
    lenore = await network.start("lenore.org", "127.0.0.3", mx=True)
    await poe.add_account(EDGAR)
    await lenore.add_account(LOST)
    await lenore.stop()

    edgar = await poe.login(EDGAR)
    sent = await edgar.request("SEND", headers={"To": LOST}, body=b"Are you there?")
    assert sent.code == 201, sent

    async def backed_off():
        rows = await poe.services.store.queued_for("lenore.org")
        return rows and rows[0].attempts == 1

    await eventually(backed_off)
    [row] = await poe.services.store.queued_for("lenore.org")
    assert row.next_attempt > reactor.seconds() + 3000

    lenore = await network.start("lenore.org", "127.0.0.3", mx=True)
    lost = await lenore.login(LOST)
    reply = await lost.request("SEND", headers={"To": EDGAR}, body=b"I am back")
    assert reply.code == 201, reply
    # lost's message reaches edgar over lenore.org's link to poe.net...
    back = await within(edgar.pushes.get())
    assert back.body == b"I am back"
    # ...whose HELLO made poe.net send edgar's at once.
    pushed = await within(lost.pushes.get())
    assert pushed.headers["Id"] == sent.headers["Id"]


@pytest_twisted.ensureDeferred
async def test_many_messages_pipelined_on_one_link(network) -> None:
    """
    Many messages for one domain go as pipelined DELIVERs on one link, and
    the receiver files them concurrently.  lenore.org holds every DELIVER
    after the first until another arrives beside it: a sender that waited
    for each reply before the next would never send that other one.
    """
    poe = await network.start("poe.net", "127.0.0.2")
    lenore = await network.start("lenore.org", "127.0.0.3", mx=True)
    await poe.add_account(EDGAR)
    await lenore.add_account(LOST)
    edgar = await poe.login(EDGAR)
    lost = await lenore.login(LOST)

    receiver = lenore.services.links.receiver
    receive = receiver.receive
    seen = {"calls": 0, "in_flight": 0, "max": 0}
    together: Deferred[None] = Deferred()

    async def observed(obj, recipients, peer_domain):
        seen["calls"] += 1
        seen["in_flight"] += 1
        seen["max"] = max(seen["max"], seen["in_flight"])
        try:
            if seen["max"] >= 2 and not together.called:
                together.callback(None)
            if seen["calls"] > 1:
                await within(Deferred.fromCoroutine(_wait(together)))
            return await receive(obj, recipients, peer_domain)
        finally:
            seen["in_flight"] -= 1

    receiver.receive = observed
    count = 40
    replies = await within(Deferred.fromCoroutine(_send_all(edgar, count)), seconds=60)
    assert all(r.code == 201 for r in replies), replies
    for _ in range(count):
        await within(lost.pushes.get(), seconds=60)
    assert seen["calls"] == count
    assert seen["max"] >= 2
    links = poe.services.links.pool.links()
    assert [link.domain for link in links] == ["lenore.org"]


async def _wait(d: Deferred) -> None:
    if not d.called:
        waiter: Deferred[None] = Deferred()
        d.addCallback(lambda _: waiter.callback(None))
        await waiter


async def _send_all(client: FrameClientProtocol, count: int) -> list[Frame]:
    """
    C{count} SENDs to lost, pipelined on C{client}.
    """
    return await gatherResults(
        [
            client.request("SEND", headers={"To": LOST}, body=b"%d" % n)
            for n in range(count)
        ]
    )
