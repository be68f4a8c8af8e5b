"""
Outbound server links (L{fmtp.federation.pool} and the modules it
builds on), remote users (L{fmtp.federation.userdir}) and the countersign, on
real loopback sockets.

The peers here are small servers written in this file from
L{fmtp.protocols.framing}'s pieces, so that each test can make a peer
misbehave in exactly one way (refuse or mis-sign its HELLO, drop the
connection mid-delivery, offer or withhold STARTTLS, present the wrong
certificate).  Routes come from a fake C{routes_for} with the contract of
L{fmtp.dns.routes.RouteResolver}.  One test also talks to the real object
protocol, so that the client side is checked against the server side.
"""

from __future__ import annotations

from collections import namedtuple
from functools import partial

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    ensureDeferred,
    fail,
    succeed,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent

from fmtp.delivery import RecipientResult
from fmtp.errors import FMTPError
from fmtp.federation.countersign import Countersigner, CountersignUnavailable
from fmtp.federation.failures import DeliveryFailed, LinkError, LinkLost
from fmtp.federation.hello import HelloVerifier, make_hello
from fmtp.federation.link import LinkProtocol
from fmtp.federation.pool import LinkPool
from fmtp.federation.targets import ParentRoute, parse_route
from fmtp.federation.userdir import RemoteUsers
from fmtp.framing.handler import CommandGroup, HandlerCollection
from fmtp.framing.session import Session, SessionCommands
from fmtp.framing.stream import FrameStreamFactory, FrameStreamProtocol
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.keys.static import StaticKeyVerifier
from fmtp.objects import FMTPObject, new_object_id, user_object
from fmtp.wire import Frame, reply
from tests.helpers import (
    HeldPort,
    add_account,
    make_services,
    object_protocol,
    within,
)
from tests.tlscerts import make_ca

EDGAR = "edgar@poe.net"
LOST = "lost@lenore.org"

#: The shape of L{fmtp.dns.routes.Route}: what routes_for promises.
Route = namedtuple("Route", "host port address")


class FakeNoRoute(FMTPError):
    """
    Stands for L{fmtp.dns.routes.NoRoute}: permanent.
    """

    code = 554


class FakeLookupFailed(FMTPError):
    """
    Stands for L{fmtp.dns.routes.RouteLookupFailed}: temporary.
    """

    code = 451


class FakeRoutes:
    """
    C{routes_for} and C{resolve_host} from tables, counting lookups.
    """

    def __init__(self) -> None:
        self.routes: dict[str, list[Route]] = {}
        self.errors: dict[str, FMTPError] = {}
        self.hosts: dict[str, list[str]] = {}
        self.lookups: list[str] = []

    def routes_for(self, domain: str) -> Deferred:
        self.lookups.append(domain)
        if domain in self.errors:
            return fail(self.errors[domain])
        if domain not in self.routes:
            return fail(FakeNoRoute(f"no route to {domain}"))
        return succeed(list(self.routes[domain]))

    def resolve_host(self, host: str) -> Deferred:
        if host not in self.hosts:
            return fail(FakeNoRoute(f"{host} has no address"))
        return succeed(list(self.hosts[host]))


class PeerCommands(CommandGroup):
    """
    A peer server's side of the link, with switches to misbehave.

    @ivar hello_mode: C{"ok"}, C{"bad-signature"} (signed by a key its
        domain does not publish), C{"unsigned"}, or a reply code to refuse
        with.
    @ivar on_deliver: C{"ok"}, C{"close"} (drop the connection instead of
        answering), C{"silent"} (never answer) or a reply code to refuse the
        whole message with.
    @ivar on_confirm: C{"ok"}, or a reply code to answer every CONFIRM with.
    """

    def __init__(
        self, services, protocol: HandlerCollection, server: PeerServer
    ) -> None:
        super().__init__(services, protocol)
        self.verifier = HelloVerifier(services.keys, server.clock, services.domain)
        self.clock = server.clock
        self.server = server
        self.commands = dict(
            HELLO=self.hello, DELIVER=self.deliver, GET=self.get, CONFIRM=self.confirm
        )
        self.hello_mode: str | int = "ok"
        self.on_deliver: str | int = "ok"
        self.on_confirm: str | int = "ok"
        self.delivered: list[tuple[list[str], FMTPObject, str]] = []
        self.objects: dict[str, FMTPObject] = {}
        self.sent: dict[str, str] = {}
        self.gets = 0
        self.hellos = 0
        self.confirms = 0

    async def hello(self, frame: Frame, client: Session) -> Frame:
        self.hellos += 1
        if isinstance(self.hello_mode, int):
            return reply(self.hello_mode, frame.tag, "not today")
        peer = await self.verifier.verify(frame.headers)
        client.peer_domain = peer.domain
        now = self.clock.seconds()
        signer = self.services.signer
        if self.hello_mode == "bad-signature":
            signer = DomainSigner(generate_private_key(), self.services.domain)
        answer = make_hello(signer, peer.domain, now, in_reply_to=peer.nonce)
        if self.hello_mode == "unsigned":
            del answer["Signature"]
        return reply(200, frame.tag, "hello", headers=answer)

    async def deliver(self, frame: Frame, client: Session) -> Frame:
        if client.peer_domain is None:
            return reply(530, frame.tag, "HELLO first")
        if self.on_deliver == "close":
            for protocol in self.server.protocols:
                protocol.transport.loseConnection()
            await Deferred()
        if self.on_deliver == "silent":
            await Deferred()
        if isinstance(self.on_deliver, int):
            return reply(self.on_deliver, frame.tag, "refused whole")
        recipients = frame.argument.split()
        obj = FMTPObject.from_headers(frame.headers, frame.body)
        self.delivered.append((recipients, obj, client.peer_domain))
        lines = [f"{r} 201 delivered" for r in recipients if "nobody" not in r]
        lines.append("garbage line")
        body = "".join(f"{line}\r\n" for line in lines).encode()
        return reply(200, frame.tag, "per-recipient results", body=body)

    async def get(self, frame: Frame, client: Session) -> Frame:
        self.gets += 1
        obj = self.objects.get(frame.argument)
        if obj is None:
            return reply(550, frame.tag)
        headers = obj.to_headers()
        headers["Digest"] = obj.digest()
        return reply(200, frame.tag, headers=headers, body=obj.body)

    async def confirm(self, frame: Frame, client: Session) -> Frame:
        self.confirms += 1
        if isinstance(self.on_confirm, int):
            return reply(self.on_confirm, frame.tag, "not now")
        if self.sent.get(frame.argument) == frame.headers.get("Digest"):
            return reply(200, frame.tag, "yes")
        return reply(550, frame.tag, "not sent from here")


class TrackedProtocol(FrameStreamProtocol):
    def connectionMade(self) -> None:
        self.lost: Deferred = Deferred()
        self.factory.server.protocols.append(self)
        self.factory.server.connections += 1
        super().connectionMade()

    def connectionLost(self, reason=None) -> None:
        super().connectionLost(reason)
        self.factory.server.protocols.remove(self)
        self.lost.callback(None)


class TrackedFactory(FrameStreamFactory):
    protocol = TrackedProtocol

    def __init__(self, handler, server: PeerServer) -> None:
        super().__init__(handler)
        self.server = server

    def buildProtocol(self, addr) -> TrackedProtocol:
        protocol = TrackedProtocol(self.handler)
        protocol.factory = self
        return protocol


class PeerServer:
    """
    A peer listening on a loopback port, counting the connections it got.
    """

    def __init__(
        self, domain, keys, signer=None, tls=None, handler=None, clock=reactor
    ) -> None:
        services = make_services(
            reactor, domain=domain, keys=keys, signer=signer, tls_context=tls
        )
        self.services = services
        self.clock = clock
        self.protocols: list[TrackedProtocol] = []
        self.connections = 0
        if handler is None:
            handler = HandlerCollection(
                "object",
                services,
                [SessionCommands, partial(PeerCommands, server=self)],
            )
            self.handler = handler.groups[1]
        self.port = reactor.listenTCP(
            0, TrackedFactory(handler, self), interface="127.0.0.1"
        )
        self.port_number = self.port.getHost().port

    def route(self, host: str = "127.0.0.1") -> Route:
        return Route(host, self.port_number, "127.0.0.1")

    async def stop(self) -> None:
        await self.port.stopListening()
        for protocol in list(self.protocols):
            protocol.transport.abortConnection()
            await within(protocol.lost)


class Env:
    """
    Two domains' keys, fake routes, and everything a test starts, to be
    stopped after it.
    """

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.keys = StaticKeyVerifier({}, reactor)
        self.poe = DomainSigner(generate_private_key(), "poe.net")
        self.lenore = DomainSigner(generate_private_key(), "lenore.org")
        self.relay = DomainSigner(generate_private_key(), "relay.net")
        for signer in (self.poe, self.lenore, self.relay):
            self.keys.add_signer(signer)
        self.routes = FakeRoutes()
        self.servers: list[PeerServer] = []
        self.pools: list[LinkPool] = []
        self.listening: list = []
        self.held: list[HeldPort] = []

    def serve(self, domain="lenore.org", signer=None, **kw) -> PeerServer:
        if signer is None:
            signer = {"lenore.org": self.lenore, "relay.net": self.relay}.get(domain)
        server = PeerServer(domain, self.keys, signer, **kw)
        self.servers.append(server)
        return server

    def pool(self, clock=None, **kw) -> LinkPool:
        verifier = HelloVerifier(
            self.keys, clock if clock is not None else reactor, "poe.net"
        )
        kw.setdefault("connect_timeout", 5.0)
        pool = LinkPool(
            reactor, self.poe, verifier, self.routes.routes_for, clock=clock, **kw
        )
        self.pools.append(pool)
        return pool

    def users(self, pool: LinkPool, clock=None, **kw) -> RemoteUsers:
        return RemoteUsers(pool, clock if clock is not None else reactor, **kw)

    def message(self, to: str = LOST, body: bytes = b"Nevermore") -> FMTPObject:
        now = reactor.seconds()
        obj = FMTPObject(
            new_object_id(EDGAR, now), "message", {"From": EDGAR, "To": to}, body
        )
        return self.poe.sign_object(obj, now)

    def dead_port(self) -> int:
        """
        A loopback port where connections are refused, held for the
        test's life so that nothing else can listen there meanwhile.
        """
        held = HeldPort()
        self.held.append(held)
        return held.port

    async def cleanup(self) -> None:
        for pool in self.pools:
            await pool.close()
        for server in self.servers:
            await server.stop()
        for port in self.listening:
            await port.stopListening()
        for held in self.held:
            held.close()


@pytest.fixture
def env(tmp_path):
    environment = Env(tmp_path)
    yield environment
    pytest_twisted.blockon(ensureDeferred(environment.cleanup()))


async def failure_of(coroutine, kind=LinkError) -> LinkError:
    with pytest.raises(kind) as caught:
        await coroutine
    return caught.value


def test_parse_route() -> None:
    assert parse_route("tcp://lost.lenore.org:8000") == ("lost.lenore.org", 8000)
    assert parse_route("TCP://Lost.Lenore.org") == ("lost.lenore.org", 7070)
    assert parse_route("tcp://[::1]:8000") == ("::1", 8000)
    for bad in ("http://x:1", "tcp://x:99999", "tcp://x:0", "tcp://x/path", "x:1"):
        with pytest.raises(ValueError):
            parse_route(bad)


def test_parent_route_coercion() -> None:
    assert ParentRoute.coerce(("127.0.0.1", 7000)) == ParentRoute("127.0.0.1", 7000)
    assert ParentRoute.coerce(("h", 1, "Relay.NET")).domain == "relay.net"
    assert ParentRoute.coerce("tcp://h:5") == ParentRoute("h", 5)
    assert ParentRoute.coerce(None) is None


class TLSRecordingTransport(StringTransport):
    def startTLS(self, options) -> None:
        self.tls_options = options


def test_clear_bytes_after_starttls_are_discarded() -> None:
    """
    STARTTLS injection (RFC 3207, 5): whatever follows the 220 in the same
    clear-text read is dropped, never taken as the first TLS-protected
    frame.
    """
    protocol = LinkProtocol()
    transport = TLSRecordingTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"220 * lenore.org fmtp/1 object ready\r\n\r\n")
    answers = []
    protocol.start_tls("options").addCallback(answers.append)
    assert transport.value() == b"STARTTLS 1\r\n\r\n"
    hello = protocol.request("HELLO")

    protocol.dataReceived(b"220 1 go ahead\r\n\r\n200 2 hello\r\n\r\n421 * x")

    assert [a.code for a in answers] == [220]
    assert transport.tls_options == "options"
    assert not hello.called and protocol.unsolicited == []
    protocol.dataReceived(b"200 2 hello under TLS\r\n\r\n")
    assert hello.result.argument == "hello under TLS"


@pytest_twisted.ensureDeferred
async def test_handshake_and_delivery(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool()
    message = env.message(to=f"{LOST} nobody@lenore.org")

    results = await pool.deliver("lenore.org", message, [LOST, "nobody@lenore.org"])

    assert results == [
        RecipientResult(LOST, 201, "delivered"),
        RecipientResult(
            "nobody@lenore.org", 451, "lenore.org gave no result for this recipient"
        ),
    ]
    [(recipients, received, peer)] = lenore.handler.delivered
    assert recipients == [LOST, "nobody@lenore.org"]
    assert received.digest() == message.digest()
    assert received.properties["Signature"] == message.properties["Signature"]
    assert peer == "poe.net"
    link = pool.link_for("lenore.org")
    assert (link.domain, link.peer.verified, link.via, link.tls) == (
        "lenore.org",
        True,
        "dns",
        "none",
    )
    assert link.idle and link.completed == 1


@pytest_twisted.ensureDeferred
async def test_whole_message_refused(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool()
    lenore.handler.on_deliver = 554
    error = await failure_of(
        pool.deliver("lenore.org", env.message(), [LOST]), DeliveryFailed
    )
    assert error.code == 554 and error.permanent
    assert "lenore.org refused" in error.message
    lenore.handler.on_deliver = 451
    error = await failure_of(pool.deliver("lenore.org", env.message(), [LOST]))
    assert error.code == 451 and not error.permanent


@pytest_twisted.ensureDeferred
async def test_links_are_reused(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool()

    await pool.deliver("lenore.org", env.message(), [LOST])
    await pool.deliver("lenore.org", env.message(), [LOST])

    assert lenore.connections == 1
    assert lenore.handler.hellos == 1
    assert env.routes.lookups == ["lenore.org"]
    assert len(lenore.handler.delivered) == 2


@pytest_twisted.ensureDeferred
async def test_concurrent_callers_share_one_attempt(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool()

    first = ensureDeferred(pool.link_to("lenore.org"))
    second = ensureDeferred(pool.link_to("Lenore.ORG"))
    third = ensureDeferred(pool.deliver("lenore.org", env.message(), [LOST]))
    links = [await within(first), await within(second)]
    await within(third)

    assert links[0] is links[1]
    assert lenore.connections == 1
    assert env.routes.lookups == ["lenore.org"]


@pytest_twisted.ensureDeferred
async def test_idle_links_close(env) -> None:
    clock = Clock()
    clock.advance(reactor.seconds())
    lenore = env.serve(clock=clock)
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool(clock=clock, idle_timeout=300.0)

    link = await pool.link_to("lenore.org")
    clock.advance(200)
    await pool.deliver("lenore.org", env.message(), [LOST])
    clock.advance(200)
    assert link.connected, "use restarts the idle timer"
    clock.advance(101)
    assert not link.connected
    assert pool.link_for("lenore.org") is None
    await within(link.when_closed())

    again = await pool.link_to("lenore.org")
    assert again is not link and lenore.connections == 2


@pytest_twisted.ensureDeferred
async def test_lost_links_leave_the_pool(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool()
    link = await pool.link_to("lenore.org")
    closed = link.when_closed()
    for protocol in list(lenore.protocols):
        protocol.transport.loseConnection()
    await within(closed)
    assert pool.link_for("lenore.org") is None and pool.links() == []


@pytest_twisted.ensureDeferred
async def test_unreachable_preferred_route_falls_back_to_domain(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route("mx.lenore.org")]
    dead = env.dead_port()
    env.routes.hosts["lost.lenore.org"] = ["127.0.0.1"]
    pool = env.pool()

    results = await pool.deliver(
        "lenore.org",
        env.message(),
        [LOST],
        route_hint=f"tcp://lost.lenore.org:{dead}",
    )

    assert [r.code for r in results] == [201]
    link = pool.link_for("lenore.org")
    assert link.via == "dns" and link.target.host == "mx.lenore.org"


@pytest_twisted.ensureDeferred
async def test_route_is_tried_even_with_a_domain_link_open(env) -> None:
    """
    The draft's order: a recipient's own route first, the domain's server
    only if it fails, even when a link to the domain is already open (as
    it is after fetching the recipient's user object).  A route that
    failed is not tried again for every message.
    """
    lenore = env.serve()
    home = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    env.routes.hosts["lost.lenore.org"] = ["127.0.0.1"]
    pool = env.pool()
    await pool.link_to("lenore.org")

    await pool.deliver(
        "lenore.org",
        env.message(),
        [LOST],
        route_hint=f"tcp://lost.lenore.org:{home.port_number}",
    )
    assert home.connections == 1
    assert pool.link_for("lenore.org").via == "preferred"

    dead = env.dead_port()
    hint = f"tcp://lost.lenore.org:{dead}"
    for _ in range(3):
        await pool.deliver("lenore.org", env.message(), [LOST], route_hint=hint)
    assert list(pool._failed_routes) == [("lost.lenore.org", dead)]


def refusing_route(env, clock) -> tuple[PeerServer, str]:
    """
    A recipient's route whose server refuses our HELLO (451), counting the
    connections it gets, as the C{Route} property naming it.
    """
    home = env.serve(clock=clock)
    home.handler.hello_mode = 451
    env.routes.hosts["lost.lenore.org"] = ["127.0.0.1"]
    return home, f"tcp://lost.lenore.org:{home.port_number}"


@pytest_twisted.ensureDeferred
async def test_failed_route_rests_ten_minutes_between_deliveries(env) -> None:
    """
    doc/protocol.md 8.1: a route that fails is not tried again for ten
    minutes.  With the domain's server down too, each delivery fails and
    the queue tries again a second later: the route is tried once in all,
    until ten minutes have passed.
    """
    clock = Clock()
    clock.advance(reactor.seconds())
    home, hint = refusing_route(env, clock)
    env.routes.routes["lenore.org"] = [
        Route("mx.lenore.org", env.dead_port(), "127.0.0.1")
    ]
    pool = env.pool(clock=clock)

    for _ in range(2):
        error = await failure_of(
            pool.deliver("lenore.org", env.message(), [LOST], route_hint=hint)
        )
        assert error.code == 451
        assert home.connections == 1
        clock.advance(1)

    clock.advance(pool.route_retry_after)
    await failure_of(pool.deliver("lenore.org", env.message(), [LOST], route_hint=hint))
    assert home.connections == 2


@pytest_twisted.ensureDeferred
async def test_failed_route_rests_whatever_opens_the_link(env) -> None:
    """
    A route that failed, whether tried for a delivery or named to
    L{LinkPool.link_to}, rests when a new link to the domain is opened,
    by a delivery, by link_to, or to fetch a user object.
    """
    clock = Clock()
    clock.advance(reactor.seconds())
    home, hint = refusing_route(env, clock)
    lenore = env.serve(clock=clock)
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool(clock=clock, idle_timeout=100.0)

    async def idle_out() -> None:
        link = pool.link_for("lenore.org")
        clock.advance(101)
        await within(link.when_closed())

    link = await pool.link_to("lenore.org", [hint])
    assert (link.via, home.connections) == ("dns", 1)
    await idle_out()
    await pool.link_to("lenore.org", [hint])
    await idle_out()
    results = await pool.deliver("lenore.org", env.message(), [LOST], route_hint=hint)
    assert [r.code for r in results] == [201]
    await idle_out()
    await env.users(pool, clock).remote_user(LOST)
    assert (home.connections, lenore.connections) == (1, 4)

    clock.advance(pool.route_retry_after)
    await pool.deliver("lenore.org", env.message(), [LOST], route_hint=hint)
    assert home.connections == 2


@pytest_twisted.ensureDeferred
async def test_preferred_route_is_tried_first(env) -> None:
    lenore = env.serve()
    home = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    env.routes.hosts["lost.lenore.org"] = ["127.0.0.1"]
    pool = env.pool()

    await pool.deliver(
        "lenore.org",
        env.message(),
        [LOST],
        route_hint=f"tcp://lost.lenore.org:{home.port_number}",
    )

    assert (home.connections, lenore.connections) == (1, 0)
    assert pool.link_for("lenore.org").via == "preferred"
    assert env.routes.lookups == []


@pytest_twisted.ensureDeferred
async def test_preferred_route_of_another_domain_is_not_trusted(env) -> None:
    lenore = env.serve()
    impostor = env.serve("relay.net")
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool()

    await pool.link_to("lenore.org", [("127.0.0.1", impostor.port_number)])

    assert impostor.handler.hellos == 1
    assert pool.link_for("lenore.org").target.port == lenore.port_number


@pytest_twisted.ensureDeferred
async def test_all_routes_down_falls_back_to_parent(env) -> None:
    relay = env.serve("relay.net")
    dead = env.dead_port()
    env.routes.routes["lenore.org"] = [Route("mx.lenore.org", dead, "127.0.0.1")]
    pool = env.pool(parent=("127.0.0.1", relay.port_number))

    results = await pool.deliver("lenore.org", env.message(), [LOST])

    assert [r.code for r in results] == [201]
    [(recipients, _, peer)] = relay.handler.delivered
    assert recipients == [LOST] and peer == "poe.net"
    link = pool.link_for("lenore.org")
    assert (link.via, link.domain) == ("parent", "relay.net")
    # The draft's order: the parent's cache, then (lenore.org being out of
    # reach) a lookup by the parent; this one knows nothing.
    assert await env.users(pool).remote_user(LOST) is None
    assert relay.handler.gets == 2


@pytest_twisted.ensureDeferred
async def test_no_route_falls_back_to_parent(env) -> None:
    relay = env.serve("relay.net")
    pool = env.pool(parent=("127.0.0.1", relay.port_number, "relay.net"))
    first = await pool.link_to("nowhere.example")
    second = await pool.link_to("elsewhere.example")
    assert first is second and relay.connections == 1


@pytest_twisted.ensureDeferred
async def test_failures_say_permanent_or_temporary(env) -> None:
    pool = env.pool()
    error = await failure_of(pool.link_to("nowhere.example"))
    assert error.code == 554 and "nowhere.example" in error.message

    env.routes.errors["flaky.example"] = FakeLookupFailed("DNS timed out")
    error = await failure_of(pool.link_to("flaky.example"))
    assert error.code == 451 and "DNS timed out" in error.message

    dead = env.dead_port()
    env.routes.routes["lenore.org"] = [Route("mx.lenore.org", dead, "127.0.0.1")]
    error = await failure_of(pool.link_to("lenore.org"))
    assert error.code == 451
    assert "lenore.org" in error.message and f"mx.lenore.org:{dead}" in error.message

    # With the parent down too, still temporary: either may come back.
    relay_dead = env.dead_port()
    pool = env.pool(parent=("127.0.0.1", relay_dead))
    error = await failure_of(pool.link_to("nowhere.example"))
    assert error.code == 451 and "parent" in error.message


@pytest_twisted.ensureDeferred
async def test_tls_required_with_valid_certificate(env) -> None:
    ca = make_ca(env.tmp_path / "ca")
    certificate = ca.issue("mx.lenore.org")
    lenore = env.serve(tls=certificate.options())
    env.routes.routes["lenore.org"] = [lenore.route("mx.lenore.org")]
    pool = env.pool(tls_policy="require", tls_trust_root=str(ca.cert_path))

    results = await pool.deliver("lenore.org", env.message(), [LOST])

    assert [r.code for r in results] == [201]
    link = pool.link_for("lenore.org")
    assert link.tls == "verified"
    subject = link.peer_certificate().getSubject()
    assert subject.commonName == b"mx.lenore.org"


@pytest_twisted.ensureDeferred
async def test_tls_required_with_wrong_name_is_temporary(env) -> None:
    ca = make_ca(env.tmp_path / "ca")
    lenore = env.serve(tls=ca.issue("other.example").options())
    env.routes.routes["lenore.org"] = [lenore.route("mx.lenore.org")]
    pool = env.pool(tls_policy="require", tls_trust_root=ca.trust_root())

    error = await failure_of(pool.link_to("lenore.org"))

    assert error.code == 451 and "TLS with mx.lenore.org" in error.message
    assert lenore.handler.hellos == 0
    assert pool.link_for("lenore.org") is None


@pytest_twisted.ensureDeferred
async def test_tls_required_with_untrusted_ca_is_temporary(env) -> None:
    ca = make_ca(env.tmp_path / "ca")
    other = make_ca(env.tmp_path / "other", "another CA")
    lenore = env.serve(tls=ca.issue("mx.lenore.org").options())
    env.routes.routes["lenore.org"] = [lenore.route("mx.lenore.org")]
    pool = env.pool(tls_policy="require", tls_trust_root=other.trust_root())

    error = await failure_of(pool.link_to("lenore.org"))

    assert error.code == 451 and "TLS" in error.message
    assert lenore.handler.hellos == 0


@pytest_twisted.ensureDeferred
async def test_tls_required_but_not_offered_is_temporary(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool(tls_policy="require")

    error = await failure_of(pool.link_to("lenore.org"))

    assert error.code == 451 and "does not offer STARTTLS" in error.message
    assert lenore.handler.hellos == 0


@pytest_twisted.ensureDeferred
async def test_tls_policy_per_domain(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool(tls_policy="require", tls_policies={"Lenore.org": "off"})
    link = await pool.link_to("lenore.org")
    assert link.tls == "none"


@pytest_twisted.ensureDeferred
async def test_opportunistic_tls(env) -> None:
    clear = env.serve()
    ca = make_ca(env.tmp_path / "ca")
    # Not a name anyone checks: opportunistic TLS does not verify.
    secured = env.serve("relay.net", tls=ca.issue("unrelated.example").options())
    env.routes.routes["lenore.org"] = [clear.route()]
    env.routes.routes["relay.net"] = [secured.route()]
    pool = env.pool()

    assert (await pool.link_to("lenore.org")).tls == "none"
    link = await pool.link_to("relay.net")
    assert link.tls == "unverified"
    results = await link.deliver(env.message(to="x@relay.net"), ["x@relay.net"])
    assert [r.code for r in results] == [201]


@pytest_twisted.ensureDeferred
async def test_bad_hello_signature_is_permanent(env) -> None:
    lenore = env.serve()
    lenore.handler.hello_mode = "bad-signature"
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool()

    error = await failure_of(pool.deliver("lenore.org", env.message(), [LOST]))

    assert error.code == 554 and error.permanent
    assert "did not prove it is lenore.org" in error.message
    assert lenore.handler.delivered == []


@pytest_twisted.ensureDeferred
async def test_hello_refusals_keep_their_code(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool()
    lenore.handler.hello_mode = 554
    error = await failure_of(pool.link_to("lenore.org"))
    assert error.code == 554 and "refused our HELLO" in error.message
    lenore.handler.hello_mode = 451
    error = await failure_of(pool.link_to("lenore.org"))
    assert error.code == 451


@pytest_twisted.ensureDeferred
async def test_peer_closing_mid_delivery_is_temporary(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool()
    lenore.handler.on_deliver = "close"

    error = await failure_of(
        pool.deliver("lenore.org", env.message(), [LOST]), LinkLost
    )

    assert error.code == 451 and "lost during DELIVER" in error.message
    assert pool.link_for("lenore.org") is None


@pytest_twisted.ensureDeferred
async def test_peer_that_never_answers_is_temporary(env) -> None:
    """
    A peer that accepts a DELIVER and never answers holds no delivery for
    ever: after the reply timeout it is temporary, and the link is closed
    so the next try makes a fresh one.
    """
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool(request_timeout=0.3)
    lenore.handler.on_deliver = "silent"

    error = await failure_of(
        pool.deliver("lenore.org", env.message(), [LOST]), LinkLost
    )

    assert error.code == 451 and "did not answer DELIVER" in error.message
    assert pool.link_for("lenore.org") is None


@pytest_twisted.ensureDeferred
async def test_stale_link_is_retried_once(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool()
    await pool.deliver("lenore.org", env.message(), [LOST])
    lenore.handler.on_deliver = "close"

    error = await failure_of(pool.deliver("lenore.org", env.message(), [LOST]))

    assert error.code == 451
    assert lenore.connections == 2, "one retry on a fresh link, then give up"


@pytest_twisted.ensureDeferred
async def test_countersign(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    countersigner = Countersigner(env.pool())
    sent = env.message()
    lenore.handler.sent[sent.id] = sent.digest()

    assert await countersigner.confirm("lenore.org", sent) is True
    unsent = env.message()
    with capturedLogs() as events:
        assert await countersigner("lenore.org", unsent) is False
    assert f"lenore.org does not confirm sending {unsent.id}" in [
        formatEvent(event) for event in events
    ]
    assert await countersigner.confirm("nowhere.example", sent) is False
    assert lenore.connections == 1


@pytest_twisted.ensureDeferred
async def test_countersign_with_the_origin_down_is_temporary(env) -> None:
    """
    An origin that cannot be reached now is no "no": the receiver must
    answer "try later", so the sender's queue retries.
    """
    port = env.dead_port()
    env.routes.routes["down.example"] = [Route("127.0.0.1", port, "127.0.0.1")]
    countersigner = Countersigner(env.pool())
    error = await failure_of(
        countersigner.confirm("down.example", env.message()), CountersignUnavailable
    )
    assert isinstance(error, CountersignUnavailable)
    assert error.code == 451


@pytest_twisted.ensureDeferred
async def test_countersign_answer_codes(env) -> None:
    """
    An origin's 4xx to CONFIRM (400 included) means "ask again later", so
    the receiver answers 451 and the message is retried; any 5xx (500
    included) is no confirmation, and the message is refused.
    """
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    countersigner = Countersigner(env.pool())
    sent = env.message()
    lenore.handler.sent[sent.id] = sent.digest()
    for code in (400, 421, 499):
        lenore.handler.on_confirm = code
        error = await failure_of(
            countersigner.confirm("lenore.org", sent), CountersignUnavailable
        )
        assert error.code == 451
        assert error.message.startswith("cannot ask lenore.org to confirm now (")
    for code in (500, 554):
        lenore.handler.on_confirm = code
        assert await countersigner.confirm("lenore.org", sent) is False


@pytest_twisted.ensureDeferred
async def test_countersign_bug_is_no_confirmation() -> None:
    """
    An unexpected error while asking (a bug below) never counts as a yes.
    """

    class BrokenPool:
        async def confirm_link(self, domain):
            raise RuntimeError("a bug")

    message = FMTPObject(new_object_id(EDGAR, 0), "message", {"From": EDGAR}, b"")
    assert await Countersigner(BrokenPool()).confirm("poe.net", message) is False


@pytest_twisted.ensureDeferred
async def test_countersign_never_asks_the_parent(env) -> None:
    relay = env.serve("relay.net")
    relay.handler.sent = _Everything()
    pool = env.pool(parent=("127.0.0.1", relay.port_number))
    await pool.link_to("lenore.org")  # through the parent: no route

    assert await Countersigner(pool).confirm("lenore.org", env.message()) is False
    assert relay.handler.confirms == 0


class _Everything(dict):
    def get(self, key, default=None):
        return "anything"


@pytest_twisted.ensureDeferred
async def test_domain_without_key_is_for_confirm_only(env) -> None:
    nokey = env.serve(
        "nokey.org", signer=DomainSigner(generate_private_key(), "nokey.org")
    )
    nokey.handler.hello_mode = "unsigned"
    env.routes.routes["nokey.org"] = [nokey.route()]
    pool = env.pool()
    sent = env.message()
    nokey.handler.sent[sent.id] = sent.digest()

    assert await Countersigner(pool).confirm("nokey.org", sent) is True
    error = await failure_of(
        pool.deliver("nokey.org", env.message(to="x@nokey.org"), ["x@nokey.org"])
    )
    assert error.code == 554 and "publishes no key" in error.message
    assert nokey.connections == 1 and nokey.handler.delivered == []


@pytest_twisted.ensureDeferred
async def test_remote_users_are_cached(env) -> None:
    clock = Clock()
    clock.advance(reactor.seconds())
    lenore = env.serve(clock=clock)
    env.routes.routes["lenore.org"] = [lenore.route()]
    profile = user_object(LOST)
    profile.properties["Route"] = "tcp://lost.lenore.org:8000"
    lenore.handler.objects[LOST] = profile
    users = env.users(env.pool(clock=clock), clock, user_ttl=300.0)

    first = await users.remote_user("Lost@Lenore.org")
    assert first == profile and first.properties["Route"].endswith(":8000")
    assert await users.remote_user(LOST) == profile
    assert lenore.handler.gets == 1
    clock.advance(301)
    assert await users.remote_user(LOST) == profile
    assert lenore.handler.gets == 2

    assert await users.remote_user("nobody@lenore.org") is None
    assert await users.remote_user("nobody@lenore.org") is None
    assert lenore.handler.gets == 3


@pytest_twisted.ensureDeferred
async def test_remote_users_are_kept_for_their_ttl(env) -> None:
    clock = Clock()
    clock.advance(reactor.seconds())
    lenore = env.serve(clock=clock)
    env.routes.routes["lenore.org"] = [lenore.route()]
    profile = user_object(LOST)
    profile.properties["Ttl"] = "30"
    lenore.handler.objects[LOST] = profile
    users = env.users(env.pool(clock=clock), clock, user_ttl=300.0)

    await users.remote_user(LOST)
    clock.advance(29)
    assert users.cached_user(LOST) == profile
    clock.advance(2)
    assert users.cached_user(LOST) is None
    await users.remote_user(LOST)
    assert lenore.handler.gets == 2


@pytest_twisted.ensureDeferred
async def test_remote_user_cache_is_bounded(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    users = env.users(env.pool(), max_users=2)
    for name in ("a", "b", "c"):
        await users.remote_user(f"{name}@lenore.org")
    await users.remote_user("c@lenore.org")
    await users.remote_user("a@lenore.org")
    assert lenore.handler.gets == 4


@pytest_twisted.ensureDeferred
async def test_against_the_object_protocol(env) -> None:
    """
    The client side against the real server side of the link.
    """
    services = make_services(
        reactor, domain="lenore.org", keys=env.keys, signer=env.lenore
    )
    add_account(services.store, LOST, "nevermore")
    server = env.serve(handler=object_protocol(services))
    env.routes.routes["lenore.org"] = [server.route()]
    pool = env.pool()
    message = env.message()

    results = await pool.deliver("lenore.org", message, [LOST])
    again = await pool.deliver("lenore.org", message, [LOST])

    assert [(r.address, r.code) for r in results] == [(LOST, 201)]
    assert [r.code for r in again] == [201], "delivery is idempotent"
    users = env.users(pool)
    profile = await users.remote_user(LOST)
    assert profile is not None and profile.properties["Address"] == LOST
    assert await users.remote_user("nobody@lenore.org") is None
    assert server.connections == 1


@pytest_twisted.ensureDeferred
async def test_unsolicited_421_closes_the_link(env) -> None:
    lenore = env.serve()
    env.routes.routes["lenore.org"] = [lenore.route()]
    pool = env.pool()
    link = await pool.link_to("lenore.org")
    [protocol] = lenore.protocols
    protocol.send(reply(421, "*", "idle too long, closing"))
    await within(link.when_closed())
    assert pool.link_for("lenore.org") is None


class Silent(Protocol):
    """
    Accepts a connection and never says a word.
    """

    def connectionMade(self) -> None:
        self.factory.connected.callback(self)

    def connectionLost(self, reason=None) -> None:
        self.factory.lost.callback(None)


async def silent_server(env):
    factory = Factory.forProtocol(Silent)
    factory.connected, factory.lost = Deferred(), Deferred()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    env.listening.append(port)
    return factory, port.getHost().port


@pytest_twisted.ensureDeferred
async def test_handshake_times_out(env) -> None:
    factory, port = await silent_server(env)
    env.routes.routes["lenore.org"] = [Route("mx.lenore.org", port, "127.0.0.1")]
    clock = Clock()
    clock.advance(reactor.seconds())
    pool = env.pool(clock=clock, connect_timeout=5.0)

    attempt = ensureDeferred(pool.link_to("lenore.org"))
    await within(factory.connected)
    clock.advance(5.1)
    error = await failure_of(attempt)

    assert error.code == 451 and "no link within 5 seconds" in error.message
    await within(factory.lost)


@pytest_twisted.ensureDeferred
async def test_close_cancels_attempts(env) -> None:
    factory, port = await silent_server(env)
    env.routes.routes["lenore.org"] = [Route("mx.lenore.org", port, "127.0.0.1")]
    pool = env.pool()

    attempt = ensureDeferred(pool.link_to("lenore.org"))
    await within(factory.connected)
    await pool.close()

    await failure_of(attempt, CancelledError)
    await within(factory.lost)
    error = await failure_of(pool.link_to("lenore.org"))
    assert error.code == 421
