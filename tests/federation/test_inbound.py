"""
Unit tests of receiving messages from other domains: every refusal, and
filing with policy, de-duplication and live push.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.delivery import RecipientResult, parse_results, results_text
from fmtp.errors import BadSignature, FMTPError, KeyLookupFailed
from fmtp.federation.inbound import DeliveryReceiver
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.keys.static import StaticKeyVerifier
from fmtp.objects import FMTPObject, new_object_id, user_object
from fmtp.store.memory import MemoryStore

LOST = "lost@lenore.org"
EDGAR = "edgar@poe.net"


class FailingKeys:
    def verify_object(self, obj):
        return fail(KeyLookupFailed())

    def keys_for_domain(self, domain):
        return fail(KeyLookupFailed())


class ReceiverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryStore()
        self.store.put_object(user_object(LOST))
        self.poe = DomainSigner(generate_private_key(), "poe.net")
        self.keys = StaticKeyVerifier({}, self.clock)
        self.keys.add_signer(self.poe)
        self.pushed: list[tuple[str, FMTPObject]] = []
        self.confirmations: list[tuple[str, str]] = []
        self.confirm = True
        self.receiver = self.make_receiver()

    def make_receiver(self, keys=None, **kw) -> DeliveryReceiver:
        return DeliveryReceiver(
            "lenore.org",
            self.store,
            keys or self.keys,
            self.clock,
            push=lambda address, obj: self.pushed.append((address, obj)),
            countersign=self.countersign,
            **kw,
        )

    def countersign(self, domain: str, obj: FMTPObject) -> Deferred:
        self.confirmations.append((domain, obj.id))
        return succeed(self.confirm)

    def message(self, sender=EDGAR, to=LOST, body=b"Nevermore", signer=None, **props):
        obj = FMTPObject(
            new_object_id(sender, self.clock.seconds()),
            "message",
            {"From": sender, "To": to, **props},
            body,
        )
        signer = self.poe if signer is None else signer
        return signer.sign_object(obj, self.clock.seconds()) if signer else obj

    def receive(self, obj, recipients=(LOST,), peer="poe.net"):
        return Deferred.fromCoroutine(
            self.receiver.receive(obj, list(recipients), peer)
        )

    def refused(self, obj, recipients=(LOST,), peer="poe.net", kind=FMTPError):
        return self.failureResultOf(self.receive(obj, recipients, peer), kind).value

    def test_delivered_and_pushed(self) -> None:
        obj = self.message()
        [result] = self.successResultOf(self.receive(obj))
        self.assertEqual((result.code, result.text), (201, "delivered"))
        self.assertEqual(self.pushed, [(LOST, obj)])
        [(seq, stored)] = self.successResultOf(self.store.inbox(LOST, 0, 10))
        self.assertEqual(stored.digest(), obj.digest())

    def test_bounce_is_filed_whatever_the_policy(self) -> None:
        """
        A bounce from this server's postmaster is filed in the user's inbox
        and pushed, never held for approval as a stranger's first message
        may be: it is the server telling its own user that a message
        failed.  Filed again (after a crash), it is not pushed again.
        """
        bounce = FMTPObject(
            new_object_id("postmaster@lenore.org", self.clock.seconds()),
            "message",
            {"From": "postmaster@lenore.org", "To": LOST},
            b"Your message failed",
        )
        self.successResultOf(
            Deferred.fromCoroutine(self.receiver.file_bounce(LOST, bounce))
        )
        self.successResultOf(
            Deferred.fromCoroutine(self.receiver.file_bounce(LOST, bounce))
        )
        self.assertEqual(self.pushed, [(LOST, bounce)])
        [(seq, stored)] = self.successResultOf(self.store.inbox(LOST, 0, 10))
        self.assertEqual(stored.id, bounce.id)
        self.assertEqual(self.successResultOf(self.store.held_senders(LOST)), [])

    def test_replayed_id_is_acknowledged_once(self) -> None:
        obj = self.message()
        self.successResultOf(self.receive(obj))
        [again] = self.successResultOf(self.receive(obj))
        self.assertEqual((again.code, again.text), (201, "already delivered"))
        self.assertEqual(len(self.pushed), 1)
        self.assertEqual(len(self.successResultOf(self.store.inbox(LOST, 0, 10))), 1)

    def test_same_id_other_content_refused(self) -> None:
        obj = self.message()
        self.successResultOf(self.receive(obj))
        other = self.poe.sign_object(
            FMTPObject(obj.id, "message", dict(obj.properties), b"changed"),
            self.clock.seconds(),
        )
        self.assertIn("other content", self.refused(other).message)

    def test_no_open_relay(self) -> None:
        obj = self.message(to="someone@elsewhere.org")
        error = self.refused(obj, recipients=["someone@elsewhere.org"])
        self.assertEqual(error.code, 554)
        self.assertIn("does not relay", error.message)

    def test_not_a_recipient_of_the_message(self) -> None:
        self.store.put_object(user_object("other@lenore.org"))
        obj = self.message()
        self.assertIn(
            "not a recipient", self.refused(obj, ["other@lenore.org"]).message
        )
        unaddressed = self.poe.sign_object(
            FMTPObject(
                new_object_id(EDGAR, self.clock.seconds()), "message", {"From": EDGAR}
            ),
            self.clock.seconds(),
        )
        self.assertEqual(
            self.refused(unaddressed).message,
            f"{LOST} is not a recipient of this message",
        )
        self.assertEqual(
            self.refused(obj, ["not an address"]).message,
            "bad address 'not an address': expected user@domain",
        )
        self.assertEqual(self.refused(obj, []).message, "no recipients")

    def test_bad_signature(self) -> None:
        obj = self.message()
        obj.body = b"tampered"
        error = self.refused(obj, kind=BadSignature)
        self.assertEqual(error.code, 554)

    def test_forged_sender_domain(self) -> None:
        spoofer = DomainSigner(generate_private_key(), "poe.net")
        self.assertIn("unknown key", self.refused(self.message(signer=spoofer)).message)
        evil = DomainSigner(generate_private_key(), "evil.example")
        self.keys.add_signer(evil)
        error = self.refused(self.message(signer=evil), peer="evil.example")
        self.assertIn("signed by evil.example", error.message)

    def test_stale_and_future_signatures(self) -> None:
        old = self.message()
        self.clock.advance(7 * 86400)
        self.assertIn("too old", self.refused(old).message)
        future = self.poe.sign_object(
            FMTPObject(
                new_object_id(EDGAR, self.clock.seconds()),
                "message",
                {"From": EDGAR, "To": LOST},
            ),
            self.clock.seconds() + 3600,
        )
        self.assertIn("future", self.refused(future).message)

    def test_signature_time_bounds(self) -> None:
        """
        A signature may be up to 300 s ahead of our clock and up to six
        days old, both bounds included; a second beyond either is refused.
        """
        now = self.clock.seconds()

        def signed_at(when: float) -> FMTPObject:
            obj = FMTPObject(
                new_object_id(EDGAR, now), "message", {"From": EDGAR, "To": LOST}
            )
            return self.poe.sign_object(obj, when)

        for when in (now + 300, now - 6 * 86400):
            [result] = self.successResultOf(self.receive(signed_at(when)))
            self.assertEqual(result.code, 201)
        early = self.refused(signed_at(now + 301), kind=BadSignature)
        self.assertEqual(early.message, "signature time is in the future; check clocks")
        late = self.refused(signed_at(now - 6 * 86400 - 1), kind=BadSignature)
        self.assertEqual(
            late.message, "signature too old: a replayed or long-delayed message"
        )

    def test_dns_failure_is_temporary(self) -> None:
        self.receiver = self.make_receiver(keys=FailingKeys())
        self.assertEqual(self.refused(self.message()).code, 451)

    def test_keyless_domain_needs_countersign(self) -> None:
        obj = self.message(sender="nokey@keyless.example", signer=False)
        [result] = self.successResultOf(self.receive(obj, peer="keyless.example"))
        self.assertEqual(result.code, 201)
        self.assertEqual(self.confirmations, [("keyless.example", obj.id)])
        self.confirm = False
        denied = self.message(sender="nokey@keyless.example", signer=False)
        error = self.refused(denied, peer="keyless.example")
        self.assertIn("does not confirm", error.message)

    def test_unsigned_claim_for_another_domain(self) -> None:
        obj = self.message(signer=False)
        self.assertEqual(
            self.refused(obj, peer="keyless.example").message,
            f"{obj.id} from poe.net came through keyless.example unsigned: "
            "a relayed message must carry its origin's signature",
        )
        self.assertEqual(self.confirmations, [])

    def test_without_countersigning(self) -> None:
        """
        A receiver that cannot countersign refuses what only a countersign
        would prove, saying why it needed one.
        """
        self.receiver = DeliveryReceiver(
            "lenore.org", self.store, self.keys, self.clock, push=lambda a, o: None
        )
        unsigned = self.message(sender="nokey@keyless.example", signer=False)
        keyless = DomainSigner(generate_private_key(), "keyless.example")
        signed = self.message(sender="ceo@keyless.example", signer=keyless)
        for obj, why in [
            (unsigned, "unsigned"),
            (signed, "its domain publishes no key"),
        ]:
            error = self.refused(obj, peer="keyless.example", kind=BadSignature)
            self.assertEqual(
                error.message, f"{why}, and countersigning is not available"
            )
        self.receiver = DeliveryReceiver(
            "lenore.org",
            self.store,
            self.keys,
            self.clock,
            push=lambda a, o: None,
            always_countersign=True,
        )
        error = self.refused(self.message(), kind=BadSignature)
        self.assertEqual(
            error.message, "countersign required, and countersigning is not available"
        )

    def test_dns_failure_is_temporary_for_unsigned_messages(self) -> None:
        self.receiver = self.make_receiver(keys=FailingKeys())
        obj = self.message(sender="nokey@keyless.example", signer=False)
        self.assertEqual(self.refused(obj, peer="keyless.example").code, 451)
        self.assertEqual(self.confirmations, [])

    # Who may speak for what (DESIGN decision 15)

    def test_unsigned_from_a_domain_with_a_key(self) -> None:
        """
        doc/protocol.md 8.4: a domain that publishes a key signs; its
        server confirming an unsigned message is not enough.
        """
        error = self.refused(self.message(signer=False), kind=BadSignature)
        self.assertEqual(error.code, 554)
        self.assertEqual(
            error.message,
            "unsigned, but poe.net publishes a key: its messages must be signed",
        )
        self.assertEqual(self.confirmations, [])

    def test_signed_by_a_keyless_domain_needs_countersign(self) -> None:
        """
        A signature by a key its domain does not publish proves nothing:
        the countersign decides.
        """
        keyless = DomainSigner(generate_private_key(), "keyless.example")
        obj = self.message(sender="ceo@keyless.example", signer=keyless)
        self.confirm = False
        error = self.refused(obj, peer="keyless.example")
        self.assertIn("does not confirm", error.message)
        self.assertEqual(self.confirmations, [("keyless.example", obj.id)])
        self.assertEqual(self.successResultOf(self.store.inbox(LOST, 0, 10)), [])

    def test_user_object_ids_are_not_delivered(self) -> None:
        """
        A peer cannot plant a user object: one whose id is an address,
        here of an account not made yet, that would become its profile.
        """
        planted = FMTPObject(
            "victim@lenore.org", "user", {"To": LOST, "Policy": "reject"}
        )
        error = self.refused(planted, peer="evil.example")
        self.assertIn("only messages", error.message)
        self.assertIsNone(
            self.successResultOf(self.store.get_object("victim@lenore.org"))
        )

    def test_objects_of_this_domain_come_only_from_it(self) -> None:
        evil = DomainSigner(generate_private_key(), "lenore.org")
        planted = FMTPObject(
            new_object_id("b@lenore.org", self.clock.seconds()),
            "post",
            {"To": LOST, "Public": "yes"},
        )
        error = self.refused(evil.sign_object(planted, 0), peer="evil.example")
        self.assertIn("only this server speaks for it", error.message)
        self.assertFalse(self.successResultOf(self.store.has_object(planted.id)))

    def test_from_must_own_the_id(self) -> None:
        other_owner = self.poe.sign_object(
            FMTPObject(
                new_object_id("mallory@poe.net", self.clock.seconds()),
                "message",
                {"From": EDGAR, "To": LOST},
            ),
            self.clock.seconds(),
        )
        self.assertIn("is not the owner", self.refused(other_owner).message)
        other_domain = FMTPObject(
            new_object_id("x@evil.example", self.clock.seconds()),
            "message",
            {"From": EDGAR, "To": LOST},
        )
        error = self.refused(
            self.poe.sign_object(other_domain, self.clock.seconds()),
            peer="evil.example",
        )
        self.assertIn("is not the owner", error.message)
        bad_from = self.poe.sign_object(
            FMTPObject(
                new_object_id(EDGAR, self.clock.seconds()),
                "message",
                {"From": "not an address", "To": LOST},
            ),
            self.clock.seconds(),
        )
        self.assertTrue(
            self.refused(bad_from).message.startswith("bad From: "),
        )

    def test_relayed_messages_need_their_origins_signature(self) -> None:
        # A peer relaying poe.net's signed message: the signature proves it.
        [result] = self.successResultOf(
            self.receive(self.message(), peer="relay.example")
        )
        self.assertEqual(result.code, 201)
        # A keyless origin's message cannot be relayed: only a countersign
        # could prove it, and the relay is not the origin.
        keyless = DomainSigner(generate_private_key(), "keyless.example")
        obj = self.message(sender="ceo@keyless.example", signer=keyless)
        error = self.refused(obj, peer="relay.example")
        self.assertIn("cannot be relayed", error.message)
        self.assertEqual(self.confirmations, [])

    def test_always_countersign(self) -> None:
        self.receiver = self.make_receiver(always_countersign=True)
        obj = self.message()
        self.successResultOf(self.receive(obj))
        self.assertEqual(self.confirmations, [("poe.net", obj.id)])

    def test_parent_digest(self) -> None:
        first = self.message()
        self.successResultOf(self.receive(first))
        reply = self.message(Parent=first.id, **{"Parent-Digest": first.digest()})
        self.successResultOf(self.receive(reply))
        forged = self.message(Parent=first.id, **{"Parent-Digest": "0" * 64})
        self.assertIn("Parent-Digest", self.refused(forged).message)
        undigested = self.message(Parent=first.id)
        error = self.refused(undigested)
        self.assertEqual(
            (error.code, error.message),
            (554, f"Parent-Digest does not match {first.id}"),
        )

    def test_policy(self) -> None:
        profile = user_object(LOST)
        profile.properties.update({"Policy": "confirm", "Blacklist": "spam@poe.net"})
        self.store.put_object(profile)
        [result] = self.successResultOf(
            self.receive(self.message(sender="spam@poe.net"))
        )
        self.assertEqual(
            result, RecipientResult(LOST, 554, "refused by the recipient's policy")
        )
        [result] = self.successResultOf(self.receive(self.message()))
        self.assertIn("held", result.text)
        self.assertEqual(self.pushed, [])
        self.assertEqual(self.successResultOf(self.store.inbox(LOST, 0, 10)), [])
        self.assertEqual(self.successResultOf(self.store.held_senders(LOST)), [EDGAR])

    def test_format(self) -> None:
        [result] = self.successResultOf(self.receive(self.message(Format="html")))
        self.assertEqual((result.address, result.code), (LOST, 554))
        self.assertIn("never", result.text)

    def test_unknown_user(self) -> None:
        obj = self.message(to="ghost@lenore.org")
        [result] = self.successResultOf(self.receive(obj, ["ghost@lenore.org"]))
        self.assertEqual(result.code, 550)


class ResultsTests(SynchronousTestCase):
    """
    The per-recipient result lines of a DELIVER reply (and of a SEND
    remembered with its key).
    """

    def test_round_trip(self) -> None:
        results = [
            RecipientResult(LOST, 201, "held until the recipient approves"),
            RecipientResult("ghost@lenore.org", 550, "no such user"),
        ]
        text = results_text(results)
        self.assertEqual(
            text,
            f"{LOST} 201 held until the recipient approves\r\n"
            "ghost@lenore.org 550 no such user\r\n",
        )
        self.assertEqual(parse_results(text), results)

    def test_lines_without_a_three_digit_code_are_skipped(self) -> None:
        text = (
            "a@x 250 ok\r\nb@x abc letters\r\nc@x 2500 four digits\r\n"
            "d@x \u00b2\u00b3\u00b9 not ascii\r\ngarbage\r\n"
        )
        self.assertEqual(parse_results(text), [RecipientResult("a@x", 250, "ok")])
