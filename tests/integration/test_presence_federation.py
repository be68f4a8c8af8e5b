"""
Presence across domains end to end: two servers on their own loopback
addresses, found through a real DNS server (the federation tests'
network), whose users subscribe, approve and see each other's changes;
a domain that goes away turns its users C{unknown}, and shows their true
status once it is back.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest_twisted
from twisted.internet import reactor

from fmtp.client import FrameClientProtocol, connect
from fmtp.protocols.presence.service import PresenceSettings
from fmtp.store.presence import Link
from tests.helpers import eventually, within
from tests.integration.test_federation import (
    EDGAR,
    FAST,
    LOST,
    PASSWORD,
    Server,
)
from tests.integration.test_presence import ask, pushed

#: Short probes and timeout, so a domain going away shows within seconds.
FAST_PRESENCE = {"presence": PresenceSettings(remote_refresh=0.3, remote_timeout=1.0)}


async def start_pair(network) -> tuple[Server, Server]:
    poe = await network.start("poe.net", "127.0.0.2", plugin_options=FAST_PRESENCE)
    lenore = await network.start(
        "lenore.org", "127.0.0.3", mx=True, plugin_options=FAST_PRESENCE
    )
    await poe.add_account(EDGAR)
    await lenore.add_account(LOST)
    return poe, lenore


async def presence_login(server: Server, address: str) -> FrameClientProtocol:
    port = server.ports["presence", "tcp"]
    client = await within(connect(reactor, f"tcp:{server.address}:{port}", timeout=5.0))
    server.clients.append(client)
    answer = await within(
        client.request("LOGIN", headers={"Address": address, "Password": PASSWORD})
    )
    assert answer.code == 230, answer
    return client


async def subscribed_both_ways(poe: Server, lenore: Server):
    edgar = await presence_login(poe, EDGAR)
    lost = await presence_login(lenore, LOST)
    assert (await ask(edgar, "STATUS", "online")).code == 200
    assert (await ask(lost, "STATUS", "busy", {"Note": "nevermore"})).code == 200

    asked = await ask(edgar, "SUBSCRIBE", LOST)
    assert asked.headers == {"Subscription": "pending-out"}, asked
    await pushed(lost, 253, From=EDGAR)
    approved = await ask(lost, "APPROVE", EDGAR)
    assert approved.headers == {"Subscription": "from"}, approved
    await pushed(edgar, 254, From=LOST, Subscription="to")
    await pushed(edgar, 252, From=LOST, Status="busy", Note="nevermore")

    assert (await ask(edgar, "APPROVE", LOST)).code == 200
    asked = await ask(lost, "SUBSCRIBE", EDGAR)
    assert asked.headers["Subscription"] in ("pending-out+in", "from+pending-out")
    await pushed(lost, 254, From=EDGAR, Subscription="both")
    await pushed(lost, 252, From=EDGAR, Status="online")
    # What each was told on the way (unknown, before the first answer).
    edgar.unsolicited.clear()
    lost.unsolicited.clear()
    return edgar, lost


async def back_with_true_status(network, edgar) -> FrameClientProtocol:
    """
    Start lenore.org again: Edgar sees Lost offline (not logged in, and
    said so), then the status she sets.

    @return: Lost's presence session.
    """
    lenore = await network.start(
        "lenore.org", "127.0.0.3", mx=True, plugin_options=FAST_PRESENCE
    )
    await pushed(edgar, 252, From=LOST, Status="offline")
    lost = await presence_login(lenore, LOST)
    await ask(lost, "STATUS", "online")
    await pushed(edgar, 252, From=LOST, Status="online")
    return lost


@pytest_twisted.ensureDeferred
async def test_users_of_two_domains_subscribe_and_see_changes(network) -> None:
    poe, lenore = await start_pair(network)
    edgar, lost = await subscribed_both_ways(poe, lenore)

    started = time.monotonic()
    await ask(lost, "STATUS", "away", {"Note": "in the garden"})
    await pushed(edgar, 252, From=LOST, Status="away", Note="in the garden")
    took = time.monotonic() - started
    # Within a second, as the issue asks; the bound here is looser so
    # a loaded machine does not fail the suite (the figure is printed).
    print(f"a change crossed domains in {took * 1000:.1f} ms")
    assert took < 5.0

    await ask(edgar, "STATUS", "busy")
    await pushed(lost, 252, From=EDGAR, Status="busy")
    buddies = await ask(edgar, "BUDDIES")
    assert buddies.body == f"{LOST} both away in the garden\r\n".encode()

    # Edgar unsubscribes: Lost's server forgets that he sees her.
    assert (await ask(edgar, "UNSUBSCRIBE", LOST)).code == 200

    async def forgotten():
        subscription = await lenore.services.store.subscription(LOST, EDGAR)
        return subscription.inbound is Link.NONE

    await eventually(forgotten)


@pytest_twisted.ensureDeferred
async def test_a_domain_away_shows_unknown_then_its_true_status(network) -> None:
    poe, lenore = await start_pair(network)
    edgar, lost = await subscribed_both_ways(poe, lenore)

    await lenore.stop()
    # Nobody can vouch for Lost now: unknown, never online for ever.
    await pushed(edgar, 252, From=LOST, Status="unknown")
    buddies = await ask(edgar, "BUDDIES")
    assert buddies.body == f"{LOST} both unknown\r\n".encode()

    lost = await back_with_true_status(network, edgar)
    # And Lost's server, restarted, learns Edgar's status again.
    await pushed(lost, 252, From=EDGAR, Status="online")


@pytest_twisted.ensureDeferred
async def test_a_server_speaks_only_for_its_own_users(network) -> None:
    """
    poe.net, a proven peer, sends lenore.org the presence of a user of
    another domain, and of lenore.org's own: both refused, and nothing
    is shown.
    """
    poe, lenore = await start_pair(network)
    links = poe.services.links
    for claimed in ("raven@kingdom.example", LOST):
        answer = await within(
            links.request(
                "lenore.org",
                "PRESENCE",
                headers={"From": claimed, "Status": "online"},
                body=f"{LOST}\r\n".encode(),
            )
        )
        assert answer.code == 554, answer


@pytest_twisted.ensureDeferred
async def test_an_approval_nobody_asked_for_subscribes_nobody(network) -> None:
    """
    A peer's user "approves" a local user who never asked: the local user
    is not made to see them.
    """
    poe, lenore = await start_pair(network)
    presence = poe.services.protocol_handlers["presence"]
    federation = next(
        group.presence.federation
        for group in presence.groups
        if hasattr(group, "presence")
    )
    await federation.send_action(EDGAR, LOST, "approve")

    async def delivered():
        return not await poe.services.store.queued_for("lenore.org")

    await eventually(delivered)
    subscription = await lenore.services.store.subscription(LOST, EDGAR)
    assert subscription.outbound is Link.NONE


@pytest_twisted.ensureDeferred
async def test_users_cannot_send_subscription_objects(network) -> None:
    poe, lenore = await start_pair(network)
    edgar = await poe.login(EDGAR)
    sent = await ask(
        edgar,
        "SEND",
        headers={"To": LOST, "Type": "subscription", "Subscription": "approve"},
    )
    assert sent.code == 501, sent
    assert "made by the server" in sent.argument


@pytest_twisted.ensureDeferred
async def test_a_parent_does_not_answer_for_a_domain_away(network) -> None:
    """
    poe.net has a parent relay. Once lenore.org is away, poe.net's probes
    for it fall back on the parent link, which relays messages only: the
    parent's answer (its own, here empty) must not pass for lenore.org's,
    or Lost would show offline (or whatever the parent says) for ever,
    never unknown.
    """
    relay = await network.start(
        "relay.example",
        "127.0.0.6",
        settings=replace(FAST, relay_for=frozenset({"poe.net"})),
        plugin_options=FAST_PRESENCE,
    )
    poe = await network.start(
        "poe.net",
        "127.0.0.2",
        settings=replace(FAST, parent=("127.0.0.6", relay.port)),
        plugin_options=FAST_PRESENCE,
    )
    lenore = await network.start(
        "lenore.org", "127.0.0.3", mx=True, plugin_options=FAST_PRESENCE
    )
    await poe.add_account(EDGAR)
    await lenore.add_account(LOST)
    edgar, lost = await subscribed_both_ways(poe, lenore)

    await lenore.stop()
    await pushed(edgar, 252, From=LOST, Status="unknown")
    buddies = await ask(edgar, "BUDDIES")
    assert buddies.body == f"{LOST} both unknown\r\n".encode()

    # A message for Lost goes by way of the parent meanwhile, so the pool's
    # link for lenore.org is the parent's.
    mail = await poe.login(EDGAR)
    sent = await ask(
        mail,
        "SEND",
        headers={"To": LOST},
    )
    assert sent.code == 201, sent

    async def through_parent():
        link = poe.services.links.pool.link_for("lenore.org")
        return link is not None and link.domain == "relay.example"

    await eventually(through_parent)
    # Back, while that link is still open: asked on a link of its own,
    # lenore.org says the truth again.
    await back_with_true_status(network, edgar)
