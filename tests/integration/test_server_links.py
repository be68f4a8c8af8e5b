"""
The server links as a plugin uses them (L{fmtp.federation.api.ServerLinks}),
end to end: servers of different domains on their own loopback addresses,
found through a real DNS server as in C{tests/test_federation}.  One
server registers its own verb; the other sends it with C{request}, and
volatile updates with C{notify}: coalesced while the link is being made,
and dropped once their lifetime has passed.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from fmtp.federation.hello import Peer
from fmtp.wire import Frame, reply
from tests.helpers import eventually, within
from tests.integration.test_federation import Network, Server


class Listener:
    """
    A handler that records what it is sent.
    """

    def __init__(self, server: Server, verb: str) -> None:
        self.seen: list[tuple[Peer, Frame]] = []
        server.services.links.register(verb, self.handle)

    async def handle(self, peer: Peer, frame: Frame) -> Frame:
        self.seen.append((peer, frame))
        return reply(200, frame.tag, "heard", headers={"Heard": frame.argument})

    def bodies(self) -> list[bytes]:
        return [frame.body for _, frame in self.seen]


@pytest.fixture
def network(tmp_path):
    net = Network(tmp_path)
    yield net
    pytest_twisted.blockon(Deferred.fromCoroutine(net.stop()))


@pytest_twisted.ensureDeferred
async def test_a_registered_verb_answers_another_domain(network) -> None:
    """
    lenore.org registers X-PING; poe.net sends it over a verified link,
    and the handler hears the domain that poe.net's HELLO proved.
    """
    lenore = await network.start("lenore.org", "127.0.0.3", mx=True)
    poe = await network.start("poe.net", "127.0.0.2")
    pings = Listener(lenore, "X-PING")

    links = poe.services.links
    answer = await within(
        links.request("lenore.org", "X-PING", "hello", {"Mood": "grim"}, b"Nevermore")
    )

    assert (answer.code, answer.headers["Heard"]) == (200, "hello")
    [(peer, frame)] = pings.seen
    assert (peer.domain, peer.verified) == ("poe.net", True)
    assert (frame.headers["Mood"], frame.body) == ("grim", b"Nevermore")
    unknown = await within(links.request("lenore.org", "X-NOBODY"))
    assert unknown.code == 502
    assert len(links.pool.links()) == 1, "both requests on one pooled link"


@pytest_twisted.ensureDeferred
async def test_notify_is_coalesced_while_the_link_is_made(network) -> None:
    """
    Three presence updates for one key while poe.net is still finding
    lenore.org: lenore.org hears only the last.
    """
    lenore = await network.start("lenore.org", "127.0.0.3", mx=True)
    poe = await network.start("poe.net", "127.0.0.2")
    presence = Listener(lenore, "X-PRESENCE")
    links = poe.services.links

    assert links.pool.link_for("lenore.org") is None
    for state in (b"online", b"away", b"offline"):
        links.notify("lenore.org", "edgar@poe.net", "X-PRESENCE", "edgar", body=state)

    await eventually(lambda: links.volatile.stats.sent == 1)
    assert presence.bodies() == [b"offline"]
    assert links.volatile.stats.replaced == 2
    assert links.volatile.domains() == []


@pytest_twisted.ensureDeferred
async def test_notify_expires_while_the_domain_is_down(network) -> None:
    """
    An update that cannot reach lenore.org within its lifetime is dropped:
    once lenore.org is back, it hears the next update, never that one.
    """
    lenore = await network.start("lenore.org", "127.0.0.3", mx=True)
    poe = await network.start("poe.net", "127.0.0.2")
    await lenore.stop()
    links = poe.services.links

    links.notify(
        "lenore.org", "edgar@poe.net", "X-PRESENCE", body=b"stale", lifetime=1.0
    )
    await eventually(lambda: links.volatile.stats.expired == 1)
    assert links.volatile.domains() == []

    lenore = await network.start("lenore.org", "127.0.0.3", mx=True)
    presence = Listener(lenore, "X-PRESENCE")
    links.notify("lenore.org", "edgar@poe.net", "X-PRESENCE", body=b"fresh")
    await eventually(lambda: links.volatile.stats.sent == 1)
    assert presence.bodies() == [b"fresh"]
