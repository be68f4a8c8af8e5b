"""
Tests for L{fmtp.keys}: key records, signatures, key files and the static
verifier.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import tempfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from fmtp.errors import BadSignature, InvalidKeyRecord, NoKeyPublished
from fmtp.interfaces import IDomainSigner, IKeyVerifier
from fmtp.keys.keyfile import (
    InsecureKeyFileError,
    KeyFileError,
    load_or_create_signer,
    load_private_key,
    write_private_key,
)
from fmtp.keys.records import (
    DomainPublicKey,
    SignatureInfo,
    fingerprint,
    format_key_record,
    format_signature,
    key_record_name,
    parse_key_record,
    parse_signature,
    zone_line,
)
from fmtp.keys.signing import DomainSigner, generate_private_key, signing_input
from fmtp.keys.static import StaticKeyVerifier
from fmtp.objects import FMTPObject

# A fixed key, so that expected record texts can be written out.
RAW = bytes(range(32))
RAW_B64 = base64.b64encode(RAW).decode("ascii")
RAW_FP = fingerprint(RAW)

NOW = 1_700_000_000


def make_message(**extra: str) -> FMTPObject:
    """
    A reply from alice@example.com to bob@example.net.
    """
    properties = {
        "From": "alice@example.com",
        "To": "bob@example.net",
        "Parent": "1699999999000.aaaa.bob@example.net",
        "Parent-Digest": "ab" * 32,
        "Subject": "hello",
    }
    properties.update(extra)
    return FMTPObject(
        "1700000000000.abcdef.alice@example.com", "message", properties, b"body"
    )


class FingerprintTests(SynchronousTestCase):
    def test_fingerprint(self) -> None:
        """
        A fingerprint is the hex of the first 8 bytes of the SHA-256 of the
        raw key.
        """
        import hashlib

        self.assertEqual(fingerprint(RAW), hashlib.sha256(RAW).hexdigest()[:16])
        self.assertEqual(len(RAW_FP), 16)
        self.assertEqual(RAW_FP, RAW_FP.lower())

    def test_distinct(self) -> None:
        self.assertNotEqual(fingerprint(RAW), fingerprint(bytes(32)))

    def test_bad_public_key_values(self) -> None:
        """
        A L{DomainPublicKey} whose fingerprint does not name its key cannot
        be built.
        """
        self.assertRaises(ValueError, DomainPublicKey, "example.com", RAW, "0" * 16)
        self.assertRaises(ValueError, DomainPublicKey, "example.com", RAW[:31], RAW_FP)
        self.assertRaises(ValueError, DomainPublicKey, "example.com", RAW, "xyz")
        self.assertRaises(
            ValueError, DomainPublicKey, "example.com", RAW, RAW_FP, None, True
        )


class KeyRecordTests(SynchronousTestCase):
    def test_format(self) -> None:
        key = DomainPublicKey("example.com", RAW, RAW_FP)
        self.assertEqual(format_key_record(key), f"v=FMTP1; k=ed25519; p={RAW_B64}")
        key = DomainPublicKey("example.com", RAW, RAW_FP, not_after=NOW)
        self.assertEqual(
            format_key_record(key), f"v=FMTP1; k=ed25519; p={RAW_B64}; x={NOW}"
        )

    def test_round_trip(self) -> None:
        for key in [
            DomainPublicKey("example.com", RAW, RAW_FP),
            DomainPublicKey("example.com", RAW, RAW_FP, not_after=NOW),
            DomainPublicKey("example.com", RAW, RAW_FP, not_after=0),
            DomainPublicKey.revocation("example.com", RAW_FP),
        ]:
            self.assertEqual(
                parse_key_record("example.com", format_key_record(key)), key
            )

    def test_round_trip_generated(self) -> None:
        signer = DomainSigner(generate_private_key(), "Example.COM")
        key = signer.public_key()
        self.assertEqual(key.domain, "example.com")
        self.assertEqual(parse_key_record("example.com", format_key_record(key)), key)

    def test_parse_domain_normalized(self) -> None:
        key = parse_key_record("Bücher.example", f"v=FMTP1; p={RAW_B64}")
        self.assertEqual(key.domain, "xn--bcher-kva.example")

    def test_any_order_and_spacing(self) -> None:
        """
        After v=, tags may come in any order with any white space around
        them, and a trailing semicolon is allowed.
        """
        for text in [
            f"v=FMTP1;p={RAW_B64};k=ed25519",
            f"  v = FMTP1 ;\tx={NOW} ; p= {RAW_B64} ;k=ed25519; ",
            f"v=FMTP1; f={RAW_FP}; p={RAW_B64}; x={NOW}",
        ]:
            key = parse_key_record("example.com", text)
            self.assertEqual(key.raw_key, RAW)
            self.assertEqual(key.fingerprint, RAW_FP)
            self.assertFalse(key.revoked)

    def test_default_key_type(self) -> None:
        key = parse_key_record("example.com", f"v=FMTP1; p={RAW_B64}")
        self.assertEqual(key, DomainPublicKey("example.com", RAW, RAW_FP))

    def test_unknown_tags_ignored(self) -> None:
        key = parse_key_record(
            "example.com", f"v=FMTP1; p={RAW_B64}; n=a note; future_tag=1"
        )
        self.assertEqual(key, DomainPublicKey("example.com", RAW, RAW_FP))

    def test_fingerprint_tag_uppercase(self) -> None:
        key = parse_key_record(
            "example.com", f"v=FMTP1; p={RAW_B64}; f={RAW_FP.upper()}"
        )
        self.assertEqual(key.fingerprint, RAW_FP)

    def test_revocation(self) -> None:
        key = parse_key_record("example.com", f"v=FMTP1; k=ed25519; p=; f={RAW_FP}")
        self.assertTrue(key.revoked)
        self.assertEqual(key.raw_key, b"")
        self.assertEqual(key.fingerprint, RAW_FP)
        self.assertFalse(key.verify(b"\0" * 64, b"data"))

    def assertInvalid(self, text: str, *fragments: str) -> None:
        """
        Parsing C{text} raises L{InvalidKeyRecord} whose message holds each
        of C{fragments}.
        """
        e = self.assertRaises(InvalidKeyRecord, parse_key_record, "example.com", text)
        for fragment in fragments:
            self.assertIn(fragment, str(e))

    def test_empty(self) -> None:
        self.assertInvalid("", "must begin with v=FMTP1")

    def test_version_not_first(self) -> None:
        self.assertInvalid(f"p={RAW_B64}; v=FMTP1", "must begin with v=FMTP1")

    def test_missing_version(self) -> None:
        self.assertInvalid(f"k=ed25519; p={RAW_B64}", "must begin with v=FMTP1")

    def test_other_record(self) -> None:
        """
        Some other TXT record at the same name is refused at once.
        """
        self.assertInvalid("google-site-verification=abc", "must begin with v=FMTP1")
        self.assertInvalid("v=spf1 -all", "unsupported version v=spf1 -all")

    def test_wrong_version(self) -> None:
        self.assertInvalid(f"v=FMTP2; p={RAW_B64}", "unsupported version")

    def test_wrong_key_type(self) -> None:
        self.assertInvalid(f"v=FMTP1; k=rsa; p={RAW_B64}", "unsupported key type k=rsa")

    def test_missing_key(self) -> None:
        self.assertInvalid("v=FMTP1; k=ed25519", "missing p=")

    def test_not_a_tag(self) -> None:
        self.assertInvalid(f"v=FMTP1; p={RAW_B64}; junk", "'junk'", "name=value")
        self.assertInvalid(f"v=FMTP1; p={RAW_B64}; 1x=2", "name=value")
        self.assertInvalid(f"v=FMTP1; p={RAW_B64}; =2", "name=value")

    def test_duplicate_tag(self) -> None:
        self.assertInvalid(f"v=FMTP1; p={RAW_B64}; p={RAW_B64}", "duplicate tag p=")
        self.assertInvalid(f"v=FMTP1; v=FMTP1; p={RAW_B64}", "duplicate tag v=")

    def test_bad_base64(self) -> None:
        self.assertInvalid("v=FMTP1; p=not*base64!", "not standard base64")
        self.assertInvalid("v=FMTP1; p=AAA", "not standard base64")
        self.assertInvalid("v=FMTP1; p=AAAA AAAA", "not standard base64")
        self.assertInvalid("v=FMTP1; p=\u00e9\u00e9\u00e9\u00e9", "not standard base64")
        # URL-safe base64 is not the standard alphabet.
        urlsafe = base64.urlsafe_b64encode(b"\xff" * 32).decode()
        self.assertInvalid(f"v=FMTP1; p={urlsafe}", "not standard base64")

    def test_wrong_key_length(self) -> None:
        short = base64.b64encode(RAW[:31]).decode()
        self.assertInvalid(f"v=FMTP1; p={short}", "31 bytes instead of 32")
        long = base64.b64encode(RAW + b"x").decode()
        self.assertInvalid(f"v=FMTP1; p={long}", "33 bytes instead of 32")

    def test_bad_not_after(self) -> None:
        for x in ["soon", "-1", "1.5", "", "\u0661\u0662", "1" * 40]:
            self.assertInvalid(
                f"v=FMTP1; p={RAW_B64}; x={x}", "not a whole number of seconds"
            )

    def test_bad_fingerprint_tag(self) -> None:
        self.assertInvalid(f"v=FMTP1; p={RAW_B64}; f=abc", "not 16 hex digits")
        self.assertInvalid("v=FMTP1; p=; f=zzzzzzzzzzzzzzzz", "not 16 hex digits")

    def test_fingerprint_mismatch(self) -> None:
        self.assertInvalid(
            f"v=FMTP1; p={RAW_B64}; f={'0' * 16}", "does not match", RAW_FP
        )

    def test_revocation_without_fingerprint(self) -> None:
        self.assertInvalid("v=FMTP1; k=ed25519; p=", "must name the key", "f=")

    def test_zone_line(self) -> None:
        key = DomainPublicKey("example.com", RAW, RAW_FP, not_after=NOW)
        self.assertEqual(
            zone_line("example.com", key),
            f'fmtpkey.example.com. IN TXT "v=FMTP1; k=ed25519; p={RAW_B64}; x={NOW}"',
        )
        self.assertEqual(
            key_record_name("Bücher.example"), "fmtpkey.xn--bcher-kva.example"
        )

    def test_zone_line_longest_record(self) -> None:
        """
        Even the longest record fits in one TXT string.
        """
        key = DomainPublicKey.revocation("example.com", RAW_FP)
        key = DomainPublicKey(
            key.domain, RAW, RAW_FP, not_after=9_999_999_999_999_999_999
        )
        self.assertLessEqual(len(format_key_record(key)), 255)
        zone_line("example.com", key)

    @given(st.text())
    def test_parse_arbitrary_text(self, text: str) -> None:
        """
        Any text either parses or raises L{InvalidKeyRecord}.
        """
        try:
            parse_key_record("example.com", text)
        except InvalidKeyRecord:
            pass

    @given(
        st.lists(
            st.sampled_from(
                [
                    "v=FMTP1",
                    "v=FMTP2",
                    "k=ed25519",
                    "k=rsa",
                    f"p={RAW_B64}",
                    "p=",
                    "p=AAAA",
                    f"f={RAW_FP}",
                    "f=0000000000000000",
                    "x=12",
                    "x=-1",
                    "z=",
                    "=",
                    "",
                    " ",
                ]
            )
            | st.text(max_size=8),
            max_size=6,
        )
    )
    def test_parse_arbitrary_tags(self, parts: list[str]) -> None:
        """
        Any mix of plausible tags either parses into a consistent key or
        raises L{InvalidKeyRecord}.
        """
        try:
            key = parse_key_record("example.com", ";".join(parts))
        except InvalidKeyRecord:
            return
        self.assertEqual(parse_key_record("example.com", format_key_record(key)), key)


class SignatureFormatTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        info = SignatureInfo("example.com", RAW_FP, NOW, b"\x01" * 64)
        value = format_signature(info)
        self.assertEqual(
            value,
            f"v=1; d=example.com; f={RAW_FP}; t={NOW}; "
            "s=" + base64.b64encode(b"\x01" * 64).decode(),
        )
        self.assertEqual(parse_signature(value), info)

    def test_any_order_and_unknown_tags(self) -> None:
        s = base64.b64encode(b"\x01" * 64).decode()
        info = parse_signature(f"v=1;s={s};t={NOW}; q=later ;f={RAW_FP};d=example.com")
        self.assertEqual(info, SignatureInfo("example.com", RAW_FP, NOW, b"\x01" * 64))

    def assertMalformed(self, value: str, fragment: str) -> None:
        e = self.assertRaises(BadSignature, parse_signature, value)
        self.assertIn(fragment, str(e))

    def test_malformed(self) -> None:
        s = base64.b64encode(b"\x01" * 64).decode()
        good = {"d": "example.com", "f": RAW_FP, "t": str(NOW), "s": s}

        def value(**changes: str | None) -> str:
            tags = dict(good, **changes)
            return "v=1; " + "; ".join(
                f"{k}={v}" for k, v in tags.items() if v is not None
            )

        self.assertMalformed("", "must begin with v=1")
        self.assertMalformed("garbage", "must begin with v=1")
        self.assertMalformed("v=1; garbage", "name=value")
        self.assertMalformed(value().replace("v=1; ", "") + "; v=1", "must begin")
        self.assertMalformed(value().replace("v=1", "v=2"), "unsupported version")
        self.assertMalformed(value() + "; d=example.com", "duplicate tag d=")
        for name in "dfts":
            self.assertMalformed(value(**{name: None}), f"missing {name}=")
        self.assertMalformed(value(d="Example.com"), "must be written example.com")
        self.assertMalformed(value(d="ex ample.com"), "not a domain")
        self.assertMalformed(value(d=""), "not a domain")
        self.assertMalformed(value(d="example.com."), "not a domain")
        self.assertMalformed(value(f="abc"), "not 16 hex digits")
        self.assertMalformed(value(f=RAW_FP.upper()), "not 16 hex digits")
        self.assertMalformed(value(t="yesterday"), "not a whole number")
        self.assertMalformed(value(t="-5"), "not a whole number")
        self.assertMalformed(value(t="1.5"), "not a whole number")
        self.assertMalformed(value(s="!!!"), "not standard base64")
        self.assertMalformed(value(s=""), "0 bytes instead of 64")
        short = base64.b64encode(b"\x01" * 63).decode()
        self.assertMalformed(value(s=short), "63 bytes instead of 64")

    @given(st.text())
    def test_parse_arbitrary_text(self, text: str) -> None:
        """
        Any text either parses or raises L{BadSignature}.
        """
        try:
            parse_signature(text)
        except BadSignature:
            pass

    @given(st.text(), st.text(), st.text(), st.text())
    def test_parse_arbitrary_values(self, d: str, f: str, t: str, s: str) -> None:
        """
        Any tag values either parse or raise L{BadSignature}.
        """
        try:
            parse_signature(f"v=1; d={d}; f={f}; t={t}; s={s}")
        except BadSignature:
            pass


class SignerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.key = generate_private_key()
        self.signer = DomainSigner(self.key, "Example.com")

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IDomainSigner, self.signer))

    def test_attributes(self) -> None:
        self.assertEqual(self.signer.domain, "example.com")
        public = self.signer.public_key()
        self.assertEqual(public.domain, "example.com")
        self.assertEqual(self.signer.fingerprint, public.fingerprint)
        self.assertEqual(public.fingerprint, fingerprint(public.raw_key))
        self.assertFalse(public.revoked)
        self.assertIsNone(public.not_after)
        self.assertNotIn("PRIVATE", repr(self.signer))

    def test_sign(self) -> None:
        """
        The signed copy carries a signature over the signing input, by the
        signer's key, at the given time.
        """
        obj = make_message()
        signed = self.signer.sign_object(obj, NOW + 0.75)
        info = parse_signature(signed.properties["Signature"])
        self.assertEqual(info.domain, "example.com")
        self.assertEqual(info.fingerprint, self.signer.fingerprint)
        self.assertEqual(info.time, NOW)
        data = signing_input(obj, "example.com", self.signer.fingerprint, NOW)
        self.assertTrue(self.signer.public_key().verify(info.signature, data))
        self.assertFalse(self.signer.public_key().verify(info.signature, data + b"x"))
        self.assertFalse(self.signer.public_key().verify(b"short", data))

    def test_does_not_mutate(self) -> None:
        obj = make_message()
        before = dict(obj.properties)
        signed = self.signer.sign_object(obj, NOW)
        self.assertEqual(obj.properties, before)
        self.assertIsNot(signed.properties, obj.properties)
        self.assertEqual(
            {k: v for k, v in signed.properties.items() if k != "Signature"}, before
        )
        self.assertEqual(
            (signed.id, signed.type, signed.body), (obj.id, obj.type, obj.body)
        )

    def test_replaces_signature(self) -> None:
        """
        Signing a signed object replaces its signature.
        """
        first = self.signer.sign_object(make_message(), NOW)
        second = self.signer.sign_object(first, NOW + 10)
        self.assertEqual(parse_signature(second.properties["Signature"]).time, NOW + 10)
        self.assertEqual(first.digest(), second.digest())

    def test_signing_input(self) -> None:
        obj = make_message()
        self.assertEqual(
            signing_input(obj, "example.com", RAW_FP, NOW),
            (
                "fmtp-signature/1\n"
                "d:example.com\n"
                f"f:{RAW_FP}\n"
                f"t:{NOW}\n"
                f"digest:{obj.digest()}\n"
                "from:alice@example.com\n"
                "to:bob@example.net\n"
                "parent:1699999999000.aaaa.bob@example.net\n"
                f"parent-digest:{'ab' * 32}\n"
                "id:1700000000000.abcdef.alice@example.com\n"
            ).encode(),
        )

    def test_signing_input_missing_properties(self) -> None:
        obj = FMTPObject("alice@example.com", "user", {})
        self.assertIn(
            b"\nfrom:\nto:\nparent:\nparent-digest:\n",
            signing_input(obj, "example.com", RAW_FP, NOW),
        )


class VerifierTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.signer = DomainSigner(generate_private_key(), "example.com")
        self.records: dict[str, list[str]] = {
            "example.com": [format_key_record(self.signer.public_key())]
        }
        self.verifier = StaticKeyVerifier(self.records, self.clock)
        self.logged: list[dict] = []
        self.verifier._log = Logger(observer=self.logged.append)

    def verify(self, obj: FMTPObject) -> DomainPublicKey:
        return self.successResultOf(self.verifier.verify_object(obj))

    def refuse(self, obj: FMTPObject, message: str) -> None:
        failure = self.failureResultOf(self.verifier.verify_object(obj), BadSignature)
        self.assertIn(message, str(failure.value))

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IKeyVerifier, self.verifier))

    def test_round_trip(self) -> None:
        signed = self.signer.sign_object(make_message(), NOW)
        self.assertEqual(self.verify(signed), self.signer.public_key())

    def test_remembered_digest_is_not_trusted(self) -> None:
        """
        A signed copy remembers its digest for the server's own use, but
        a signature is checked against what the object holds: one changed
        in place (which nothing may do) does not verify.
        """
        signed = self.signer.sign_object(make_message(), NOW)
        self.assertEqual(signed.digest(), signed.computed_digest())
        signed.properties["Subject"] = "forged"
        self.refuse(signed, "does not verify")

    def test_keys_for_domain(self) -> None:
        keys = self.successResultOf(self.verifier.keys_for_domain("EXAMPLE.com"))
        self.assertEqual(keys, [self.signer.public_key()])

    def test_no_key_published(self) -> None:
        self.failureResultOf(
            self.verifier.keys_for_domain("example.org"), NoKeyPublished
        )
        self.failureResultOf(
            self.verifier.keys_for_domain("bad domain"), NoKeyPublished
        )
        other = DomainSigner(generate_private_key(), "example.org")
        obj = make_message(From="carol@example.org")
        self.failureResultOf(
            self.verifier.verify_object(other.sign_object(obj, NOW)), NoKeyPublished
        )

    def test_empty_record_list(self) -> None:
        verifier = StaticKeyVerifier({"example.org": []}, self.clock)
        self.failureResultOf(verifier.keys_for_domain("example.org"), NoKeyPublished)

    def test_bad_records_skipped(self) -> None:
        """
        A record that does not parse is logged and skipped; the others
        still count.
        """
        self.verifier.add_records("example.com", ["v=FMTP1; p=garbage"])
        keys = self.successResultOf(self.verifier.keys_for_domain("example.com"))
        self.assertEqual(keys, [self.signer.public_key()])
        self.assertEqual(len(self.logged), 1)
        self.assertEqual(self.logged[0]["record"], "v=FMTP1; p=garbage")
        self.assertIn("not standard base64", self.logged[0]["error"])

    def test_only_bad_records(self) -> None:
        verifier = StaticKeyVerifier(
            {"example.org": ["v=spf1 -all", "nope"]}, self.clock
        )
        verifier._log = Logger(observer=self.logged.append)
        self.failureResultOf(verifier.keys_for_domain("example.org"), NoKeyPublished)
        self.assertEqual(len(self.logged), 2)

    def test_add_records_rejects_string(self) -> None:
        self.assertRaises(
            TypeError, self.verifier.add_records, "example.com", "v=FMTP1"
        )

    def test_unsigned(self) -> None:
        self.refuse(make_message(), "unsigned")

    def test_malformed_signature(self) -> None:
        for value in ["", "v=1", "v=1; d=example.com; f=x; t=1; s=AA==", "v=2; x"]:
            self.refuse(make_message(Signature=value), "bad signature")

    def test_tampering(self) -> None:
        """
        Changing the body, the id, the type or any property but the
        envelope ones makes the signature fail.
        """
        signed = self.signer.sign_object(make_message(), NOW)
        self.verify(signed)

        def changed(**props: str) -> FMTPObject:
            properties = dict(signed.properties, **props)
            return FMTPObject(signed.id, signed.type, properties, signed.body)

        tampered = [
            FMTPObject(signed.id, signed.type, signed.properties, b"other body"),
            FMTPObject(signed.id, "post", signed.properties, signed.body),
            FMTPObject(
                "1700000000001.abcdef.alice@example.com",
                signed.type,
                signed.properties,
                signed.body,
            ),
            changed(From="mallory@example.com"),
            changed(To="eve@example.net"),
            changed(To="bob@example.net, eve@example.net"),
            changed(Parent="1699999999000.bbbb.bob@example.net"),
            changed(**{"Parent-Digest": "cd" * 32}),
            changed(Subject="goodbye"),
            changed(Public="yes"),
        ]
        without_parent = dict(signed.properties)
        del without_parent["Parent"]
        tampered.append(FMTPObject(signed.id, signed.type, without_parent, signed.body))
        for obj in tampered:
            self.refuse(obj, "signature does not verify")

    def test_envelope_changes(self) -> None:
        """
        The envelope properties frame the object; changing them leaves the
        signature valid.
        """
        signed = self.signer.sign_object(make_message(), NOW)
        properties = dict(signed.properties, Length="4", Digest="whatever")
        self.verify(FMTPObject(signed.id, signed.type, properties, signed.body))

    def test_signature_fields_covered(self) -> None:
        """
        The time and key named in the signature are signed too.
        """
        signed = self.signer.sign_object(make_message(), NOW)
        info = parse_signature(signed.properties["Signature"])
        later = SignatureInfo(info.domain, info.fingerprint, NOW + 1, info.signature)
        self.refuse(
            make_message(Signature=format_signature(later)), "signature does not verify"
        )

    def test_wrong_domain(self) -> None:
        """
        A domain may only sign for its own senders.
        """
        other = DomainSigner(generate_private_key(), "example.org")
        self.verifier.add_signer(other)
        signed = other.sign_object(make_message(), NOW)
        self.refuse(signed, "signed by example.org for a sender at example.com")

    def test_domain_from_owner(self) -> None:
        """
        Without a C{From} property, the id's owner names the sender domain.
        """
        obj = FMTPObject("alice@example.com", "user", {"Address": "alice@example.com"})
        self.verify(self.signer.sign_object(obj, NOW))
        other = DomainSigner(generate_private_key(), "example.org")
        self.verifier.add_signer(other)
        self.refuse(other.sign_object(obj, NOW), "signed by example.org")

    def test_from_overrides_owner(self) -> None:
        """
        C{From} decides the sender domain even when the id's owner is
        elsewhere.
        """
        other = DomainSigner(generate_private_key(), "example.org")
        self.verifier.add_signer(other)
        obj = make_message(From="carol@example.org")
        self.verify(other.sign_object(obj, NOW))
        self.refuse(self.signer.sign_object(obj, NOW), "signed by example.com")

    def test_bad_sender(self) -> None:
        signed = self.signer.sign_object(make_message(From="not an address"), NOW)
        self.refuse(signed, "no sender domain")

    def test_revoked(self) -> None:
        signed = self.signer.sign_object(make_message(), NOW)
        self.records["example.com"].append(
            format_key_record(
                DomainPublicKey.revocation("example.com", self.signer.fingerprint)
            )
        )
        verifier = StaticKeyVerifier(self.records, self.clock)
        failure = self.failureResultOf(verifier.verify_object(signed), BadSignature)
        self.assertEqual(str(failure.value), "key revoked")

    def test_expired(self) -> None:
        public = self.signer.public_key()
        expiring = DomainPublicKey(
            public.domain, public.raw_key, public.fingerprint, NOW + 10
        )
        verifier = StaticKeyVerifier(
            {"example.com": [format_key_record(expiring)]}, self.clock
        )
        signed = self.signer.sign_object(make_message(), NOW)
        self.successResultOf(verifier.verify_object(signed))
        self.clock.advance(10)
        self.successResultOf(verifier.verify_object(signed))
        self.clock.advance(1)
        failure = self.failureResultOf(verifier.verify_object(signed), BadSignature)
        self.assertEqual(str(failure.value), "key expired")

    def test_unknown_key(self) -> None:
        other = DomainSigner(generate_private_key(), "example.com")
        failure = self.failureResultOf(
            self.verifier.verify_object(other.sign_object(make_message(), NOW)),
            BadSignature,
        )
        self.assertEqual(str(failure.value), "unknown key")

    def test_rotation(self) -> None:
        """
        Two published keys each verify their own signatures; revoking one
        leaves the other working.
        """
        new = DomainSigner(generate_private_key(), "example.com")
        self.verifier.add_signer(new)
        old_signed = self.signer.sign_object(make_message(), NOW)
        new_signed = new.sign_object(make_message(), NOW)
        self.assertEqual(self.verify(old_signed), self.signer.public_key())
        self.assertEqual(self.verify(new_signed), new.public_key())

        self.verifier.add_records(
            "example.com",
            [
                format_key_record(
                    DomainPublicKey.revocation("example.com", self.signer.fingerprint)
                )
            ],
        )
        self.refuse(old_signed, "key revoked")
        self.assertEqual(self.verify(new_signed), new.public_key())

    def test_signature_by_other_key_same_fingerprint(self) -> None:
        """
        A signature that names a published key but was made with another
        key does not verify.
        """
        other = generate_private_key()
        obj = make_message()
        data = signing_input(obj, "example.com", self.signer.fingerprint, NOW)
        info = SignatureInfo(
            "example.com", self.signer.fingerprint, NOW, other.sign(data)
        )
        self.refuse(
            make_message(Signature=format_signature(info)), "signature does not verify"
        )


class KeyFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        # Not self.mktemp(): under pytest it creates directories in the
        # working directory, the checkout.
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory)
        self.path = os.path.join(self.directory, "domain.key")

    def mode(self, path: str) -> int:
        return stat.S_IMODE(os.stat(path).st_mode)

    def test_write_and_load(self) -> None:
        key = generate_private_key()
        write_private_key(self.path, key)
        self.assertEqual(self.mode(self.path), 0o600)
        with open(self.path, "rb") as f:
            self.assertTrue(f.read().startswith(b"-----BEGIN PRIVATE KEY-----"))
        loaded = load_private_key(self.path)
        self.assertEqual(
            DomainSigner(loaded, "example.com").fingerprint,
            DomainSigner(key, "example.com").fingerprint,
        )

    def test_mode_despite_umask(self) -> None:
        old = os.umask(0)
        try:
            write_private_key(self.path, generate_private_key())
        finally:
            os.umask(old)
        self.assertEqual(self.mode(self.path), 0o600)

    def test_creates_directory(self) -> None:
        path = os.path.join(self.directory, "sub", "domain.key")
        write_private_key(path, generate_private_key())
        self.assertEqual(self.mode(os.path.dirname(path)), 0o700)
        self.assertEqual(self.mode(path), 0o600)

    def test_refuses_to_overwrite(self) -> None:
        first = generate_private_key()
        write_private_key(self.path, first)
        with open(self.path, "rb") as f:
            before = f.read()
        e = self.assertRaises(
            FileExistsError, write_private_key, self.path, generate_private_key()
        )
        self.assertIn("refusing to overwrite", str(e))
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_overwrite(self) -> None:
        write_private_key(self.path, generate_private_key())
        os.chmod(self.path, 0o644)
        second = generate_private_key()
        write_private_key(self.path, second, overwrite=True)
        self.assertEqual(self.mode(self.path), 0o600)
        self.assertEqual(
            DomainSigner(load_private_key(self.path), "example.com").fingerprint,
            DomainSigner(second, "example.com").fingerprint,
        )
        # No temporary file is left behind.
        self.assertEqual(os.listdir(self.directory), ["domain.key"])

    def test_overwrite_missing(self) -> None:
        write_private_key(self.path, generate_private_key(), overwrite=True)
        self.assertEqual(self.mode(self.path), 0o600)

    def test_group_readable_refused(self) -> None:
        write_private_key(self.path, generate_private_key())
        for mode in (0o640, 0o604, 0o620, 0o644):
            os.chmod(self.path, mode)
            e = self.assertRaises(InsecureKeyFileError, load_private_key, self.path)
            self.assertIn("chmod 600", str(e))
        os.chmod(self.path, 0o400)
        load_private_key(self.path)

    def test_missing_file(self) -> None:
        self.assertRaises(FileNotFoundError, load_private_key, self.path)

    def write(self, data: bytes, mode: int = 0o600) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def test_not_pem(self) -> None:
        self.write(b"not a key\n")
        e = self.assertRaises(KeyFileError, load_private_key, self.path)
        self.assertIn("not an unencrypted PEM private key", str(e))

    def test_encrypted(self) -> None:
        key = generate_private_key()
        self.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
        self.assertRaises(KeyFileError, load_private_key, self.path)

    def test_not_ed25519(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        self.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        e = self.assertRaises(KeyFileError, load_private_key, self.path)
        self.assertIn("must be Ed25519", str(e))

    def test_load_or_create(self) -> None:
        signer, created = load_or_create_signer(self.path, "example.com")
        self.assertTrue(created)
        self.assertEqual(self.mode(self.path), 0o600)
        again, created = load_or_create_signer(self.path, "example.com")
        self.assertFalse(created)
        self.assertEqual(again.fingerprint, signer.fingerprint)
        self.assertEqual(again.public_key(), signer.public_key())

    def test_load_or_create_insecure(self) -> None:
        """
        An insecure existing key is refused, not replaced.
        """
        load_or_create_signer(self.path, "example.com")
        os.chmod(self.path, 0o644)
        self.assertRaises(
            InsecureKeyFileError, load_or_create_signer, self.path, "example.com"
        )
