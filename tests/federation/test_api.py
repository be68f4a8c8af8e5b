"""
Unit tests of L{fmtp.federation.api.ServerLinks} without sockets: what a
DELIVER and a CONFIRM decide (accept, confirm) and their handlers in the
registry, the durable queue, the HELLO answer and the parent's lookups.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from fmtp.errors import InvalidAddress, InvalidObject
from fmtp.federation.api import ServerLinks
from fmtp.federation.failures import LinkFailed
from fmtp.federation.hello import Peer, make_hello
from fmtp.federation.inbound import DeliveryRefused
from fmtp.federation.node import DEFAULT_FEDERATION, build_server_links
from fmtp.interfaces import IServerLinks
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.keys.static import StaticKeyVerifier
from fmtp.objects import FMTPObject, new_object_id, user_object
from fmtp.store.memory import MemoryStore
from fmtp.wire import request

LOST = "lost@lenore.org"
EDGAR = "edgar@poe.net"
USHER = "roderick@usher.example"
POE = Peer("poe.net", True, "n" * 16)


class ServerLinksTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryStore()
        self.store.put_object(user_object(LOST))
        self.lenore = DomainSigner(generate_private_key(), "lenore.org")
        self.poe = DomainSigner(generate_private_key(), "poe.net")
        self.keys = StaticKeyVerifier({}, self.clock)
        for signer in (self.lenore, self.poe):
            self.keys.add_signer(signer)
        self.pushed: list[tuple[str, FMTPObject]] = []
        self.links = self.build()

    def build(self, relay_for: frozenset[str] = frozenset()) -> ServerLinks:
        links, running = build_server_links(
            "lenore.org",
            self.store,
            self.keys,
            self.lenore,
            self.clock,
            lambda address, obj: self.pushed.append((address, obj)),
            settings=replace(DEFAULT_FEDERATION, relay_for=relay_for),
        )
        self.assertEqual(running, [], "without routes, nothing to run")
        return links

    def message(self, to: str = LOST, body: bytes = b"Nevermore") -> FMTPObject:
        now = self.clock.seconds()
        obj = FMTPObject(
            new_object_id(EDGAR, now), "message", {"From": EDGAR, "To": to}, body
        )
        return self.poe.sign_object(obj, now)

    def result(self, awaitable):
        return self.successResultOf(ensureDeferred(awaitable))

    def test_provides_the_interface(self) -> None:
        self.assertTrue(verifyObject(IServerLinks, self.links))
        self.assertEqual(self.links.verbs(), frozenset({"DELIVER", "CONFIRM"}))

    def test_accept_files_local_recipients(self) -> None:
        obj = self.message()
        results = self.result(self.links.accept(obj, ["Lost@Lenore.org"], "poe.net"))
        self.assertEqual([(r.address, r.code) for r in results], [(LOST, 201)])
        self.assertEqual(self.pushed, [(LOST, obj)])

    def test_accept_relays_for_children_only(self) -> None:
        """
        A recipient of another domain is relayed for a child this server
        relays for, and refuses the whole message for anyone else: no
        open relay.
        """
        obj = self.message(to=f"{LOST} {USHER}")
        refused = Deferred.fromCoroutine(
            self.links.accept(obj, [USHER, LOST], "poe.net")
        )
        error = self.failureResultOf(refused, DeliveryRefused).value
        self.assertIn("does not relay", error.message)
        self.assertEqual(self.pushed, [])

        kicks: list[None] = []
        links = self.build(relay_for=frozenset({"poe.net"}))
        links.relay._kick = lambda: kicks.append(None)
        results = self.result(links.accept(obj, [LOST, USHER], "poe.net"))
        self.assertEqual(
            [(r.address, r.code, r.text) for r in results],
            [(USHER, 201, "queued for relay"), (LOST, 201, "delivered")],
        )
        [queued] = self.successResultOf(self.store.queued_for("usher.example"))
        self.assertEqual(queued.recipients, (USHER,))
        self.assertEqual(len(kicks), 1)

    def test_accept_refuses_a_malformed_recipient(self) -> None:
        d = Deferred.fromCoroutine(
            self.links.accept(self.message(), ["not an address"], "poe.net")
        )
        self.failureResultOf(d, InvalidAddress)

    def test_confirm_vouches_only_for_what_was_sent_to_the_asker(self) -> None:
        now = self.clock.seconds()
        mine = FMTPObject(
            new_object_id(LOST, now), "message", {"From": LOST, "To": EDGAR}, b"x"
        )
        mine = self.lenore.sign_object(mine, now)
        self.result(self.links.enqueue(mine, [EDGAR]))
        self.assertTrue(
            self.result(self.links.confirm(mine.id, mine.digest(), "poe.net"))
        )
        self.assertFalse(self.result(self.links.confirm(mine.id, "0" * 64, "poe.net")))
        self.assertFalse(
            self.result(self.links.confirm(mine.id, mine.digest(), "usher.example"))
        )

    def test_deliver_handler(self) -> None:
        obj = self.message()
        frame = request("DELIVER", "t1", LOST, obj.to_headers(), obj.body)
        answer = self.result(self.links.dispatch("DELIVER", POE, frame))
        self.assertEqual((answer.code, answer.tag), (200, "t1"))
        self.assertEqual(answer.body, f"{LOST} 201 delivered\r\n".encode())
        keyless = Peer("poe.net", False, "k" * 16)
        again = self.result(self.links.dispatch("DELIVER", keyless, frame))
        self.assertEqual(again.body, f"{LOST} 201 already delivered\r\n".encode())
        empty = request("DELIVER", "t2", "", obj.to_headers(), obj.body)
        d = self.links.dispatch("DELIVER", POE, empty)
        self.assertEqual(self.failureResultOf(d, InvalidObject).value.code, 501)

    def test_confirm_handler(self) -> None:
        now = self.clock.seconds()
        mine = self.lenore.sign_object(
            FMTPObject(new_object_id(LOST, now), "message", {"From": LOST}, b"x"), now
        )
        self.result(self.links.enqueue(mine, [EDGAR]))
        digest = mine.digest()
        yes = request("CONFIRM", "t", mine.id, {"Digest": digest.upper()})
        self.assertEqual(
            self.result(self.links.dispatch("CONFIRM", POE, yes)).code, 200
        )
        no = request("CONFIRM", "t", mine.id, {"Digest": "0" * 64})
        self.assertEqual(self.result(self.links.dispatch("CONFIRM", POE, no)).code, 550)
        bare = request("CONFIRM", "t", mine.id)
        self.failureResultOf(self.links.dispatch("CONFIRM", POE, bare), InvalidObject)

    def test_deliver_and_confirm_cannot_be_taken_over(self) -> None:
        async def other(peer, frame):
            raise AssertionError("never")

        for verb in ("DELIVER", "confirm"):
            with self.assertRaises(KeyError):
                self.links.register(verb, other)

    def test_enqueue_queues_one_row_per_domain_and_kicks(self) -> None:
        kicks: list[None] = []
        links = ServerLinks(
            "lenore.org",
            self.store,
            self.clock,
            self.lenore,
            self.links.hello,
            self.links.receiver,
            kick=lambda: kicks.append(None),
        )
        now = self.clock.seconds()
        obj = self.lenore.sign_object(
            FMTPObject(new_object_id(LOST, now), "message", {"From": LOST}, b"x"), now
        )
        self.result(links.enqueue(obj, [EDGAR, "Annabel@poe.net", USHER]))
        [poe] = self.successResultOf(self.store.queued_for("poe.net"))
        self.assertEqual(poe.recipients, (EDGAR, "annabel@poe.net"))
        [usher] = self.successResultOf(self.store.queued_for("usher.example"))
        self.assertEqual(usher.recipients, (USHER,))
        self.assertEqual(len(kicks), 1)
        self.failureResultOf(links.enqueue(obj, [LOST]), ValueError)
        self.failureResultOf(links.enqueue(obj, []), ValueError)
        self.assertEqual(len(kicks), 1)

    def test_without_links_request_and_notify_fail(self) -> None:
        self.failureResultOf(self.links.request("poe.net", "PING"), LinkFailed)
        with self.assertRaises(LinkFailed):
            self.links.notify("poe.net", "k", "PING")

    def test_answer_hello(self) -> None:
        hello = make_hello(self.poe, "lenore.org", self.clock.seconds())
        peer, answer = self.result(self.links.answer_hello(hello))
        self.assertEqual((peer.domain, peer.verified), ("poe.net", True))
        self.assertEqual(answer["In-Reply-To"], hello["Nonce"])
        self.assertEqual((answer["Domain"], answer["To"]), ("lenore.org", "poe.net"))

    def test_address_for_child(self) -> None:
        """
        Only a child's GET of another domain's user is a lookup; and a
        server without links looks up for nobody.
        """
        self.assertIsNone(self.links.address_for_child("poe.net", USHER))
        links = self.build(relay_for=frozenset({"poe.net"}))
        links.lookup = lambda address, cache_only: None
        self.assertEqual(
            links.address_for_child("poe.net", "Roderick@Usher.example"), USHER
        )
        self.assertIsNone(links.address_for_child("usher.example", USHER))
        self.assertIsNone(links.address_for_child(None, USHER))
        self.assertIsNone(links.address_for_child("poe.net", LOST))
        self.assertIsNone(links.address_for_child("poe.net", "not an address"))
