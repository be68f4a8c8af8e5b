"""
Unit tests of receiving messages from other domains: every refusal, and
filing with policy, de-duplication and live push.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.errors import BadSignature, FMTPError, KeyLookupFailed
from fmtp.federation.inbound import DeliveryReceiver
from fmtp.keys import DomainSigner, StaticKeyVerifier, generate_private_key
from fmtp.objects import FMTPObject, new_object_id, user_object
from fmtp.store.memory import MemoryStore

LOST = "lost@lenore.org"
EDGAR = "edgar@poe.net"


class FailingKeys:
    def verify_object(self, obj):
        from twisted.internet.defer import fail

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
        self.assertIn(
            "does not match", self.refused(obj, peer="keyless.example").message
        )

    def test_always_countersign(self) -> None:
        self.receiver = self.make_receiver(always_countersign=True)
        self.successResultOf(self.receive(self.message()))
        self.assertEqual(len(self.confirmations), 1)

    def test_parent_digest(self) -> None:
        first = self.message()
        self.successResultOf(self.receive(first))
        reply = self.message(Parent=first.id, **{"Parent-Digest": first.digest()})
        self.successResultOf(self.receive(reply))
        forged = self.message(Parent=first.id, **{"Parent-Digest": "0" * 64})
        self.assertIn("Parent-Digest", self.refused(forged).message)

    def test_policy(self) -> None:
        profile = user_object(LOST)
        profile.properties.update({"Policy": "confirm", "Blacklist": "spam@poe.net"})
        self.store.put_object(profile)
        [result] = self.successResultOf(
            self.receive(self.message(sender="spam@poe.net"))
        )
        self.assertEqual(result.code, 554)
        [result] = self.successResultOf(self.receive(self.message()))
        self.assertIn("held", result.text)
        self.assertEqual(self.pushed, [])
        self.assertEqual(self.successResultOf(self.store.inbox(LOST, 0, 10)), [])
        self.assertEqual(self.successResultOf(self.store.held_senders(LOST)), [EDGAR])

    def test_format(self) -> None:
        [result] = self.successResultOf(self.receive(self.message(Format="html")))
        self.assertEqual(result.code, 554)
        self.assertIn("never", result.text)

    def test_unknown_user(self) -> None:
        obj = self.message(to="ghost@lenore.org")
        [result] = self.successResultOf(self.receive(obj, ["ghost@lenore.org"]))
        self.assertEqual(result.code, 550)
