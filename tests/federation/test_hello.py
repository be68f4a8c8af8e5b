"""
Unit tests of the signed HELLO handshake, driven by a Clock.
"""

from __future__ import annotations

import dataclasses

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.errors import KeyLookupFailed
from fmtp.federation.hello import (
    HelloRefused,
    HelloVerifier,
    Peer,
    hello_input,
    make_hello,
)
from fmtp.keys.records import DomainPublicKey, format_key_record
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.keys.static import StaticKeyVerifier


class FailingKeys:
    def keys_for_domain(self, domain):
        from twisted.internet.defer import fail

        return fail(KeyLookupFailed())


class HelloTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.poe = DomainSigner(generate_private_key(), "poe.net")
        self.lenore = DomainSigner(generate_private_key(), "lenore.org")
        self.keys = StaticKeyVerifier({}, self.clock)
        self.keys.add_signer(self.poe)
        self.keys.add_signer(self.lenore)
        self.at_lenore = HelloVerifier(self.keys, self.clock, "lenore.org")
        self.at_poe = HelloVerifier(self.keys, self.clock, "poe.net")

    def verify(self, verifier, headers, in_reply_to=""):
        return self.successResultOf(
            Deferred.fromCoroutine(verifier.verify(headers, in_reply_to))
        )

    def refused(self, verifier, headers, in_reply_to="", kind=HelloRefused):
        d = Deferred.fromCoroutine(verifier.verify(headers, in_reply_to))
        return self.failureResultOf(d, kind).value

    def test_handshake(self) -> None:
        hello = make_hello(self.poe, "lenore.org", self.clock.seconds())
        peer = self.verify(self.at_lenore, hello)
        self.assertEqual(peer, Peer("poe.net", True, hello["Nonce"]))
        answer = make_hello(
            self.lenore, "poe.net", self.clock.seconds(), in_reply_to=peer.nonce
        )
        back = self.verify(self.at_poe, answer, in_reply_to=hello["Nonce"])
        self.assertEqual((back.domain, back.verified), ("lenore.org", True))

    def test_replay_refused(self) -> None:
        hello = make_hello(self.poe, "lenore.org", self.clock.seconds())
        self.verify(self.at_lenore, hello)
        self.assertIn("replayed", self.refused(self.at_lenore, hello).message)

    def test_replay_refused_for_the_whole_window(self) -> None:
        """
        A nonce is remembered as long as its HELLO is inside the window:
        a HELLO recorded and played again 250 s later, its time still
        within 300 s, is refused as a replay; a minute later the window
        refuses it.
        """
        hello = make_hello(self.poe, "lenore.org", self.clock.seconds())
        self.verify(self.at_lenore, hello)
        self.clock.advance(250)
        error = self.refused(self.at_lenore, hello)
        self.assertEqual(error.code, 554)
        self.assertIn("replayed", error.message)
        self.clock.advance(60)
        self.assertIn("window", self.refused(self.at_lenore, hello).message)

    def test_replay_of_an_old_hello_refused(self) -> None:
        """
        The memory runs from the HELLO's own time: one signed 250 s ago,
        accepted once, is refused when played again.
        """
        hello = make_hello(self.poe, "lenore.org", self.clock.seconds() - 250)
        self.verify(self.at_lenore, hello)
        self.clock.advance(40)
        self.assertIn("replayed", self.refused(self.at_lenore, hello).message)

    def test_replay_refused_at_the_edge_of_the_window(self) -> None:
        """
        A HELLO exactly 300 s old is still inside the window, so its nonce
        is still remembered: played again then, it is refused as a replay.
        """
        hello = make_hello(self.poe, "lenore.org", self.clock.seconds())
        self.verify(self.at_lenore, hello)
        self.clock.advance(300)
        self.assertEqual(
            self.refused(self.at_lenore, hello).message, "HELLO refused: replayed"
        )

    def test_window_is_inclusive(self) -> None:
        """
        A HELLO made exactly 300 s before or after our time is accepted;
        one second more is not.
        """
        now = self.clock.seconds()
        for offset in (-300, 300):
            hello = make_hello(self.poe, "lenore.org", now + offset)
            self.assertTrue(self.verify(self.at_lenore, hello).verified)
        for offset in (-301, 301):
            hello = make_hello(self.poe, "lenore.org", now + offset)
            self.assertEqual(
                self.refused(self.at_lenore, hello).message,
                "HELLO refused: its time is outside the window; check clocks",
            )

    def test_expired_nonces_forgotten_oldest_first(self) -> None:
        """
        When the oldest remembered nonce leaves the window, only it is
        forgotten: a younger HELLO played again is still refused.
        """
        old = make_hello(self.poe, "lenore.org", self.clock.seconds())
        self.verify(self.at_lenore, old)
        self.clock.advance(200)
        young = make_hello(self.poe, "lenore.org", self.clock.seconds())
        self.verify(self.at_lenore, young)
        self.clock.advance(150)
        self.assertIn("window", self.refused(self.at_lenore, old).message)
        self.assertIn("replayed", self.refused(self.at_lenore, young).message)

    def test_signed_bytes(self) -> None:
        """
        The signature covers the bytes section 8.2 of the protocol defines,
        so that another implementation can check it.
        """
        self.assertEqual(
            hello_input("poe.net", "lenore.org", 1_800_000_000, "n" * 16, "r" * 16),
            b"fmtp-hello/1\nfrom:poe.net\nto:lenore.org\nt:1800000000\n"
            b"nonce:nnnnnnnnnnnnnnnn\nin-reply-to:rrrrrrrrrrrrrrrr\n",
        )

    def test_nonce_format(self) -> None:
        """
        The nonce is 16 to 64 base64url characters, checked on its own:
        a HELLO whose signature covers a bad nonce is refused all the same
        (554), signed or not, and so is a nonce of non-ASCII letters and
        digits.
        """
        now = self.clock.seconds()
        for nonce in [
            "short",
            "n" * 15,
            "n" * 65,
            "bad nonce with spaces!!",
            "padded/base64+nonce==",
            "é" * 24,
            "\uff11" * 24,
        ]:
            signed = make_hello(self.poe, "lenore.org", now, nonce=nonce)
            unsigned = {"Domain": "keyless.example", "To": "lenore.org", "Nonce": nonce}
            for hello in (signed, unsigned):
                error = self.refused(self.at_lenore, hello)
                self.assertEqual(error.code, 554)
                self.assertIn("Nonce must be", error.message)
        for nonce in ["n" * 16, "A-z_0" * 12 + "9" * 4]:
            good = make_hello(self.poe, "lenore.org", now, nonce=nonce)
            self.verify(self.at_lenore, good)

    def test_outside_window(self) -> None:
        hello = make_hello(self.poe, "lenore.org", self.clock.seconds())
        self.clock.advance(301)
        self.assertIn("window", self.refused(self.at_lenore, hello).message)
        early = make_hello(self.poe, "lenore.org", self.clock.seconds() + 400)
        self.assertIn("window", self.refused(self.at_lenore, early).message)

    def test_misaddressed(self) -> None:
        hello = make_hello(self.poe, "elsewhere.org", self.clock.seconds())
        self.assertIn("addressed", self.refused(self.at_lenore, hello).message)

    def test_forged_domain(self) -> None:
        spoofer = DomainSigner(generate_private_key(), "poe.net")
        hello = make_hello(spoofer, "lenore.org", self.clock.seconds())
        self.assertIn("unknown key", self.refused(self.at_lenore, hello).message)

    def test_signed_by_another_domain(self) -> None:
        """
        A HELLO claiming poe.net but signed by lenore.org is refused
        before any key is looked up, saying which domain signed it.
        """
        hello = make_hello(self.lenore, "lenore.org", self.clock.seconds())
        hello["Domain"] = "poe.net"
        self.assertEqual(
            self.refused(self.at_lenore, hello).message,
            "HELLO refused: signed by lenore.org for poe.net",
        )

    def test_expired_key(self) -> None:
        """
        A HELLO signed by a key whose record's C{x=} time has passed is
        refused, like any other signature by an expired key.
        """
        expired = dataclasses.replace(
            self.poe.public_key(), not_after=int(self.clock.seconds()) - 1
        )
        keys = StaticKeyVerifier({}, self.clock)
        keys.add_records("poe.net", [format_key_record(expired)])
        verifier = HelloVerifier(keys, self.clock, "lenore.org")
        hello = make_hello(self.poe, "lenore.org", self.clock.seconds())
        self.assertEqual(
            self.refused(verifier, hello).message, "HELLO refused: key expired"
        )

    def test_missing_domain_or_addressee(self) -> None:
        """
        A HELLO without C{Nonce}, C{Domain} or C{To} is refused (554) as
        malformed, not answered with an internal error.
        """
        good = make_hello(self.poe, "lenore.org", self.clock.seconds())
        unsigned = {k: v for k, v in good.items() if k not in ("Nonce", "Signature")}
        self.assertEqual(
            self.refused(self.at_lenore, unsigned).message,
            "HELLO refused: Nonce must be 16 to 64 base64url characters",
        )
        for name in ("Domain", "To"):
            hello = {k: v for k, v in good.items() if k != name}
            error = self.refused(self.at_lenore, hello)
            self.assertEqual(error.code, 554)
            self.assertEqual(error.message, "HELLO refused: bad domain: ''")

    def test_tampered(self) -> None:
        hello = make_hello(self.poe, "lenore.org", self.clock.seconds())
        hello["Nonce"] = hello["Nonce"][::-1]
        self.assertIn("verify", self.refused(self.at_lenore, hello).message)

    def test_answer_must_name_our_nonce(self) -> None:
        answer = make_hello(
            self.lenore, "poe.net", self.clock.seconds(), in_reply_to="x" * 24
        )
        error = self.refused(self.at_poe, answer, in_reply_to="y" * 24)
        self.assertEqual(error.message, "HELLO refused: it does not answer our HELLO")
        hello = make_hello(self.poe, "lenore.org", self.clock.seconds())
        self.refused(self.at_lenore, hello, in_reply_to="y" * 24)

    def test_malformed(self) -> None:
        good = make_hello(self.poe, "lenore.org", self.clock.seconds())
        for change in [
            {"Domain": "bad domain"},
            {"To": ""},
            {"Nonce": "short"},
            {"Nonce": "bad nonce with spaces!!"},
            {"Signature": "v=1; nonsense"},
        ]:
            error = self.refused(self.at_lenore, {**good, **change})
            self.assertTrue(error.message.startswith("HELLO refused: "), error)

    def test_unsigned_only_from_keyless_domains(self) -> None:
        unsigned = {"Domain": "keyless.example", "To": "lenore.org", "Nonce": "n" * 24}
        peer = self.verify(self.at_lenore, unsigned)
        self.assertEqual(peer, Peer("keyless.example", False, "n" * 24))
        keyless = DomainSigner(generate_private_key(), "keyless.example")
        signed = make_hello(keyless, "lenore.org", self.clock.seconds())
        peer = self.verify(self.at_lenore, signed)
        self.assertEqual(peer, Peer("keyless.example", False, signed["Nonce"]))
        # A signed HELLO carries a time, so its nonce is remembered even
        # when no key can check it: played again, it is a replay.
        self.assertEqual(
            self.refused(self.at_lenore, signed).message, "HELLO refused: replayed"
        )
        claimed = {**unsigned, "Domain": "poe.net"}
        self.assertIn("must sign", self.refused(self.at_lenore, claimed).message)

    def test_revoked_key(self) -> None:
        revocation = DomainPublicKey.revocation("poe.net", self.poe.fingerprint)
        self.keys.add_records("poe.net", [format_key_record(revocation)])
        hello = make_hello(self.poe, "lenore.org", self.clock.seconds())
        self.assertIn("revoked", self.refused(self.at_lenore, hello).message)

    def test_dns_failure_is_temporary(self) -> None:
        verifier = HelloVerifier(FailingKeys(), self.clock, "lenore.org")
        hello = make_hello(self.poe, "lenore.org", self.clock.seconds())
        error = self.refused(verifier, hello, kind=KeyLookupFailed)
        self.assertEqual(error.code, 451)

    def test_a_nonce_is_forgotten_once_its_hello_is_stale(self) -> None:
        """
        A nonce is remembered only while a HELLO of its time would still
        pass the window check: past that, the window refuses a replay by
        itself, and holding the nonce would only take memory.
        """
        hello = make_hello(self.poe, "lenore.org", self.clock.seconds())
        self.verify(self.at_lenore, hello)
        self.assertEqual(len(list(self.at_lenore._seen)), 1)
        self.clock.advance(self.at_lenore.window + 1)
        self.assertEqual(list(self.at_lenore._seen), [])
        self.assertIn("window", self.refused(self.at_lenore, hello).message)

    def test_nonce_memory_is_bounded(self) -> None:
        verifier = HelloVerifier(self.keys, self.clock, "lenore.org", max_nonces=10)
        for _ in range(50):
            self.verify(
                verifier, make_hello(self.poe, "lenore.org", self.clock.seconds())
            )
        self.assertLessEqual(len(verifier._seen), 11)
