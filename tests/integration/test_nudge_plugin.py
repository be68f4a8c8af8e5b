"""
The proof that the shared platform serves a protocol that is not fmtp's
own: the example plugin in C{plugins/fmtp-nudge}, loaded from its own
directory, outside the C{fmtp} package, and built only on the shared
services.  Two servers of different domains on loopback find each other
through a real DNS server (the set-up of C{tests/test_federation}); their
users log in to the nudge protocol through the shared session commands,
a nudge reaches the user's nudge sessions and not their object-protocol
sessions, and a nudge to another domain travels as a verb the plugin
registered, over a verified link, checked against the sending server's
proven domain.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.client import FrameClientProtocol, connect
from fmtp.errors import Forbidden
from fmtp.federation.hello import Peer, make_hello
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.protocols.object.plugin import ObjectProtocolPlugin
from fmtp.wire import request
from tests.helpers import StreamHarness, add_account, make_services, within
from tests.integration.test_federation import EDGAR, LOST, PASSWORD, Network, Server

ANNABEL = "annabel@poe.net"
EXAMPLE = (
    Path(__file__).resolve().parents[2]
    / "plugins"
    / "fmtp-nudge"
    / "fmtp"
    / "plugins"
    / "fmtp_nudge.py"
)


def load_nudge():
    """
    The example's module, imported from its own file: it is not part of
    fmtp, as a hobbyist's plugin is not.
    """
    spec = importlib.util.spec_from_file_location("fmtp_nudge_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nudge = load_nudge()


class NudgeCommandsTests(SynchronousTestCase):
    """
    The nudge commands of one server over StringTransports, with no
    network: who is pushed what, and what a peer server may say.
    """

    def setUp(self) -> None:
        self.services = make_services(Clock(), domain="poe.net")
        for user in (EDGAR, ANNABEL):
            add_account(self.services.store, user, PASSWORD)
        # Built once per server, as the plugin builds it for its listeners.
        self.handler = nudge.nudgeProtocol.handler(self.services)

    def logged_in(self, address: str) -> StreamHarness:
        conn = StreamHarness(self.services, handler=self.handler)
        self.assertEqual(conn.login(address, PASSWORD).code, 230)
        return conn

    def test_nudge_is_pushed_to_nudge_sessions_only(self) -> None:
        edgar = self.logged_in(EDGAR)
        annabel = self.logged_in(ANNABEL)
        objects = StreamHarness(self.services)  # the object protocol
        self.assertEqual(objects.login(ANNABEL, PASSWORD).code, 230)

        answer = edgar.ask("NUDGE", "2", ANNABEL, {"Text": "Nevermore"})
        self.assertEqual((answer.code, answer.tag), (200, "2"))
        [pushed] = annabel.frames()
        self.assertEqual(
            (pushed.code, pushed.tag, pushed.argument), (250, "*", "nudge")
        )
        self.assertEqual(pushed.headers, {"From": EDGAR, "Text": "Nevermore"})
        self.assertEqual(objects.frames(), [])

    def test_login_first(self) -> None:
        anonymous = StreamHarness(self.services, handler=self.handler)
        self.assertEqual(anonymous.ask("NUDGE", "1", ANNABEL).code, 530)

    def test_a_server_nudges_for_its_own_users_only(self) -> None:
        """
        The handler registered on the server links is given the domain
        the peer's HELLO proved, and refuses a sender of another.
        """
        annabel = self.logged_in(ANNABEL)
        evil = Peer("evil.test", verified=True, nonce="n" * 16)
        links = self.services.links
        forged = request("NUDGE", "1", ANNABEL, {"From": EDGAR})
        self.failureResultOf(links.dispatch("NUDGE", evil, forged), Forbidden)
        self.assertEqual(annabel.frames(), [])
        honest = request("NUDGE", "2", ANNABEL, {"From": "mallory@evil.test"})
        self.assertEqual(
            self.successResultOf(links.dispatch("NUDGE", evil, honest)).code, 200
        )
        [pushed] = annabel.frames()
        self.assertEqual(pushed.headers["From"], "mallory@evil.test")


@pytest.fixture
def network(tmp_path):
    net = Network(tmp_path)
    yield net
    pytest_twisted.blockon(Deferred.fromCoroutine(net.stop()))


async def start(network: Network, domain: str, address: str) -> Server:
    return await network.start(
        domain,
        address,
        plugins={
            "object": ObjectProtocolPlugin(),
            "nudge": nudge.NudgeProtocolPlugin(),
        },
        listen={"nudge": [f"tcp:0:interface={address}"]},
    )


async def nudge_session(server: Server, address: str, user: str) -> FrameClientProtocol:
    client = await connect(reactor, f"tcp:{address}:{server.ports['nudge', 'tcp']}")
    server.clients.append(client)
    answer = await client.request(
        "LOGIN", headers={"Address": user, "Password": PASSWORD}
    )
    assert answer.code == 230, answer
    return client


@pytest_twisted.ensureDeferred
async def test_nudges_across_domains(network: Network) -> None:
    poe = await start(network, "poe.net", "127.0.0.2")
    lenore = await start(network, "lenore.org", "127.0.0.3")
    for user in (EDGAR, ANNABEL):
        await poe.add_account(user)
    await lenore.add_account(LOST)

    edgar = await nudge_session(poe, "127.0.0.2", EDGAR)
    annabel = await nudge_session(poe, "127.0.0.2", ANNABEL)
    lost = await nudge_session(lenore, "127.0.0.3", LOST)
    lost_objects = await lenore.login(LOST)

    capa = await edgar.request("CAPA")
    assert capa.headers["Protocol"] == "nudge"
    assert capa.headers["Commands"] == "CAPA LOGIN LOGOUT NUDGE QUIT"

    # To another domain, over a verified link, as the verb the plugin
    # registered there.
    sent = await edgar.request("NUDGE", LOST, {"Text": "Nevermore"})
    assert sent.code == 200, sent
    pushed = await within(lost.pushes.get())
    assert (pushed.argument, pushed.headers["From"], pushed.headers["Text"]) == (
        "nudge",
        EDGAR,
        "Nevermore",
    )
    link = poe.services.links.pool.link_for("lenore.org")
    assert link is not None and link.peer.verified

    # Locally, through the router.
    assert (await annabel.request("NUDGE", EDGAR)).code == 200
    assert (await within(edgar.pushes.get())).headers["From"] == ANNABEL

    # Nudges are the nudge protocol's own kind of event: lost's object
    # protocol session was sent none (a reply it asked for comes after
    # anything pushed before it).
    assert (await lost_objects.request("CAPA")).code == 200
    assert lost_objects.pushes.pending == []

    # Login first.
    anonymous = await connect(reactor, f"tcp:127.0.0.2:{poe.ports['nudge', 'tcp']}")
    poe.clients.append(anonymous)
    assert (await anonymous.request("NUDGE", LOST)).code == 530


@pytest_twisted.ensureDeferred
async def test_a_server_nudges_for_its_own_users_only(network: Network) -> None:
    """
    An honest HELLO as evil.test does not let it nudge as a poe.net user:
    the handler is given the domain the HELLO proved.
    """
    lenore = await start(network, "lenore.org", "127.0.0.3")
    await network.start("evil.test", "127.0.0.7")
    evil: DomainSigner = network.signer("evil.test", "evil.test")
    await lenore.add_account(LOST)
    lost = await nudge_session(lenore, "127.0.0.3", LOST)

    peer = await connect(reactor, lenore.endpoint)
    lenore.clients.append(peer)
    before = await peer.request("NUDGE", LOST, {"From": EDGAR})
    assert before.code == 530, before
    hello = make_hello(evil, "lenore.org", reactor.seconds())
    assert (await peer.request("HELLO", headers=hello)).code == 200
    forged = await peer.request("NUDGE", LOST, {"From": EDGAR, "Text": "x"})
    assert forged.code == 554, forged
    honest = await peer.request("NUDGE", LOST, {"From": "mallory@evil.test"})
    assert honest.code == 200, honest
    pushed = await within(lost.pushes.get())
    assert pushed.headers["From"] == "mallory@evil.test"
    # A key nobody published proves nothing.
    stranger = DomainSigner(generate_private_key(), "evil.test")
    other = await connect(reactor, lenore.endpoint)
    lenore.clients.append(other)
    refused = await other.request(
        "HELLO", headers=make_hello(stranger, "lenore.org", reactor.seconds())
    )
    assert refused.code == 554
