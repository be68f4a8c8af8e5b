"""
A peer speaks for its own domain only (DESIGN decision 15), tried as an
attacker would over real sockets: servers on their own loopback addresses
find each other through a real DNS server, as in C{tests/test_federation},
and an attacker speaks the server link by hand.
"""

from __future__ import annotations

from dataclasses import replace

import pytest_twisted
from twisted.internet import reactor

from fmtp.client import FrameClientProtocol, connect
from fmtp.federation.hello import make_hello, new_nonce
from fmtp.keys.signing import DomainSigner
from fmtp.objects import FMTPObject, new_object_id
from tests.integration.test_federation import (
    EDGAR,
    FAST,
    LOST,
    Network,
    Server,
    message_of,
    within,
)

MALLORY = "mallory@keyless.example"


async def raw_peer(
    server: Server, domain: str, signer: DomainSigner | None = None
) -> FrameClientProtocol:
    """
    A server link spoken by hand: connect to C{server} and say HELLO as
    C{domain}, signed by C{signer}, or unsigned (what a domain without a
    key does, accepted as unverified).
    """
    peer = await connect(reactor, server.endpoint)
    server.clients.append(peer)
    if signer is None:
        hello = {"Domain": domain, "To": server.domain, "Nonce": new_nonce()}
    else:
        hello = make_hello(signer, server.domain, reactor.seconds())
    answer = await peer.request("HELLO", headers=hello)
    assert answer.code == 200, answer
    return peer


def deliver(peer: FrameClientProtocol, obj: FMTPObject, *recipients: str):
    return peer.request("DELIVER", " ".join(recipients), obj.to_headers(), obj.body)


async def inbox_count(client: FrameClientProtocol) -> int:
    return int((await client.request("FETCH")).headers["Count"])


@pytest_twisted.ensureDeferred
async def test_no_countersign_for_what_a_user_stored(network: Network) -> None:
    """
    Before: on keyless.example (no key published), mallory PUT a message
    C{From: ceo@keyless.example}, said HELLO to lenore.org as
    keyless.example (accepted as unverified), and DELIVERed it; lenore.org
    asked keyless.example to confirm, which said yes because the object
    was stored, and lost received "Please wire 10,000 EUR" from the ceo.
    """
    lenore = await network.start("lenore.org", "127.0.0.3")
    keyless = await network.start("keyless.example", "127.0.0.4", publish_key=False)
    await lenore.add_account(LOST)
    await keyless.add_account(MALLORY)
    lost = await lenore.login(LOST)
    mallory = await keyless.login(MALLORY)

    forged = await mallory.request(
        "PUT",
        headers={"Type": "message", "From": "ceo@keyless.example", "To": LOST},
        body=b"Please wire 10,000 EUR",
    )
    assert forged.code == 554, forged
    stored = await mallory.request(
        "PUT", headers={"Type": "message", "To": LOST}, body=b"Please wire 10,000 EUR"
    )
    assert stored.code == 201, stored
    obj = message_of(await mallory.request("GET", stored.headers["Id"]))

    peer = await raw_peer(lenore, "keyless.example")
    answer = await deliver(peer, obj, LOST)
    assert answer.code == 554, answer
    assert "does not confirm" in answer.argument
    ceo = FMTPObject(
        new_object_id("ceo@keyless.example", reactor.seconds()),
        "message",
        {"From": "ceo@keyless.example", "To": LOST},
        b"Please wire 10,000 EUR",
    )
    answer = await deliver(peer, ceo, LOST)
    assert answer.code == 554, answer
    assert await inbox_count(lost) == 0


@pytest_twisted.ensureDeferred
async def test_a_peer_cannot_plant_objects_of_this_domain(network: Network) -> None:
    """
    Before: evil.test, after an honest HELLO, DELIVERed an object owned by
    b@lenore.org, which was then served to anyone as b's public object;
    and one with the id victim@lenore.org, which became victim's user
    object (Policy: reject) when the admin made the account.
    """
    lenore = await network.start("lenore.org", "127.0.0.3")
    evil = await network.start("evil.test", "127.0.0.7")
    await lenore.add_account("b@lenore.org")
    now = reactor.seconds()
    peer = await raw_peer(lenore, "evil.test", evil.signer)

    # Signed by evil.test for its own sender, but under ids of lenore.org:
    # a post "by b", and the user object of an account not made yet,
    # filed through b's inbox.
    post = FMTPObject(
        new_object_id("b@lenore.org", now),
        "post",
        {"From": "x@evil.test", "To": "b@lenore.org", "Public": "yes"},
        b"b@lenore.org says: send your password to evil.test",
    )
    profile = FMTPObject(
        "victim@lenore.org",
        "user",
        {"From": "x@evil.test", "To": "b@lenore.org", "Policy": "reject"},
    )
    for planted in (post, profile):
        signed = evil.signer.sign_object(planted, now)
        answer = await deliver(peer, signed, "b@lenore.org")
        assert answer.code == 554, answer
    # From a lenore.org user, signed by evil.test.
    claimed = FMTPObject(
        new_object_id("x@evil.test", now),
        "message",
        {"From": "b@lenore.org", "To": "b@lenore.org"},
    )
    answer = await deliver(peer, evil.signer.sign_object(claimed, now), "b@lenore.org")
    assert answer.code == 554, answer

    store = lenore.services.store
    assert await store.get_object(post.id) is None
    assert await store.get_object(profile.id) is None
    assert await store.get_object(claimed.id) is None
    anyone = await connect(reactor, lenore.endpoint)
    lenore.clients.append(anyone)
    assert (await anyone.request("GET", post.id)).code == 550


@pytest_twisted.ensureDeferred
async def test_unsigned_from_a_domain_with_a_key(network: Network) -> None:
    """
    Before: a DELIVER of an unsigned message from poe.net (which publishes
    a key) was accepted when poe.net's server confirmed it, though
    doc/protocol.md 8.4 says 554.  Here poe.net really did send it, so
    its server would confirm: only the rule refuses it.
    """
    poe = await network.start("poe.net", "127.0.0.2")
    lenore = await network.start("lenore.org", "127.0.0.3")
    await poe.add_account(EDGAR)
    edgar = await poe.login(EDGAR)
    # lost has no account yet: lenore.org refuses, and edgar gets a bounce.
    sent = await edgar.request("SEND", headers={"To": LOST}, body=b"unsigned?")
    assert sent.code == 201, sent
    bounce = await within(edgar.pushes.get())
    assert bounce.headers["Parent"] == sent.headers["Id"]

    await lenore.add_account(LOST)
    signed = await poe.services.store.get_object(sent.headers["Id"])
    unsigned = FMTPObject(
        signed.id,
        signed.type,
        {k: v for k, v in signed.properties.items() if k != "Signature"},
        signed.body,
    )
    peer = await raw_peer(lenore, "poe.net", poe.signer)
    answer = await deliver(peer, unsigned, LOST)
    assert answer.code == 554, answer
    assert "publishes a key" in answer.argument
    assert await lenore.services.store.get_object(signed.id) is None


@pytest_twisted.ensureDeferred
async def test_no_open_relay_and_no_unproved_relaying(network: Network) -> None:
    """
    A server relays only for its children, and only what the origin's
    signature proves: a peer that is not a child is refused, and a child's
    tampered message is not queued onward.
    """
    poe = await network.start("poe.net", "127.0.0.2")
    evil = await network.start("evil.test", "127.0.0.7")
    relay = await network.start(
        "relay.example",
        "127.0.0.6",
        settings=replace(FAST, relay_for=frozenset({"poe.net"})),
    )
    now = reactor.seconds()
    queue = relay.services.store

    stranger = await raw_peer(relay, "evil.test", evil.signer)
    spam = FMTPObject(
        new_object_id("x@evil.test", now), "message", {"To": LOST}, b"spam"
    )
    answer = await deliver(stranger, evil.signer.sign_object(spam, now), LOST)
    assert answer.code == 554, answer
    assert "does not relay" in answer.argument

    child = await raw_peer(relay, "poe.net", poe.signer)
    message = poe.signer.sign_object(
        FMTPObject(
            new_object_id(EDGAR, now), "message", {"From": EDGAR, "To": LOST}, b"ok"
        ),
        now,
    )
    tampered = FMTPObject(
        message.id, message.type, dict(message.properties), b"tampered"
    )
    answer = await deliver(child, tampered, LOST)
    assert answer.code == 554, answer
    assert await queue.queued_for("lenore.org") == []
    answer = await deliver(child, message, LOST)
    assert (answer.code, answer.body) == (
        200,
        f"{LOST} 201 queued for relay\r\n".encode(),
    )


@pytest_twisted.ensureDeferred
async def test_a_keyless_child_is_not_relayed(network: Network) -> None:
    """
    A parent relays only what its origin's signature proves
    (doc/protocol.md 8.4), even for a child: a countersign from a child
    whose domain publishes no key proves nothing to the domains the parent
    relays to, which would refuse the message, leaving its sender unaware.

    Before: keyless.example, a child of relay.example, sent a message to
    someone at relay.example and to lost@lenore.org; relay.example asked
    keyless.example to confirm it (yes: it was sent to relay.example) and
    queued it onward for lenore.org.
    """
    relay = await network.start(
        "relay.example",
        "127.0.0.6",
        settings=replace(FAST, relay_for=frozenset({"keyless.example"})),
    )
    keyless = await network.start("keyless.example", "127.0.0.4", publish_key=False)
    await keyless.add_account(MALLORY)
    mallory = await keyless.login(MALLORY)
    sent = await mallory.request(
        "SEND", headers={"To": f"usher@relay.example {LOST}"}, body=b"hello"
    )
    assert sent.code == 201, sent
    obj = message_of(await mallory.request("GET", sent.headers["Id"]))

    child = await raw_peer(relay, "keyless.example")
    answer = await deliver(child, obj, LOST)
    assert answer.code == 554, answer
    assert answer.argument == (
        "keyless.example publishes no key, so its message cannot be relayed "
        "by keyless.example"
    )
    assert await relay.services.store.queued_for("lenore.org") == []
