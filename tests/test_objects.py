"""
Unit tests of the object model: addresses, ids, names, digests, views.
"""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from fmtp.errors import InvalidAddress, InvalidObject, InvalidObjectId
from fmtp.objects import (
    FMTPObject,
    canonical_name,
    check_type,
    new_object_id,
    normalize_address,
    normalize_domain,
    parse_object_id,
    user_object,
)


class AddressTests(SynchronousTestCase):
    def test_normal_form(self) -> None:
        self.assertEqual(normalize_address("Edgar@Poe.NET"), "edgar@poe.net")
        self.assertEqual(normalize_address("lost@localhost"), "lost@localhost")
        self.assertEqual(
            normalize_address("世界@Bücher.example"), "世界@xn--bcher-kva.example"
        )
        self.assertEqual(normalize_address("a.b+c_d-e@x.org"), "a.b+c_d-e@x.org")

    def test_bad_addresses(self) -> None:
        for bad in [
            "",
            "edgar",
            "edgar@",
            "@poe.net",
            "a@b@c",
            "ed gar@poe.net",
            ".edgar@poe.net",
            "ed..gar@poe.net",
            "x" * 65 + "@poe.net",
            "edgar@poe..net",
            "edgar@-poe.net",
            "edgar@poe.net.",
            "edgar@" + "a" * 64 + ".net",
        ]:
            with self.assertRaises(InvalidAddress, msg=bad) as e:
                normalize_address(bad)
            self.assertEqual(e.exception.code, 553)
            self.assertIn("bad", e.exception.message)

    def test_domain(self) -> None:
        self.assertEqual(normalize_domain("LENORE.org"), "lenore.org")
        self.assertRaises(InvalidAddress, normalize_domain, "bad domain")

    def test_cached_forms_match_each_spelling(self) -> None:
        """
        Normal forms are cached by spelling: each spelling, asked twice,
        gets its own normal form both times, and a refusal is never
        cached into an answer.
        """
        cases = {
            "Edgar@Poe.NET": "edgar@poe.net",
            "edgar@poe.net": "edgar@poe.net",
            "世界@Bücher.example": "世界@xn--bcher-kva.example",
            "世界@xn--bcher-kva.example": "世界@xn--bcher-kva.example",
            "Ｅｄｇａｒ@poe.net": "ｅｄｇａｒ@poe.net",
            "e\u0301@x.org": "\u00e9@x.org",
            "\u00c9@x.org": "\u00e9@x.org",
        }
        for _ in range(2):
            for spelling, normal in cases.items():
                self.assertEqual(normalize_address(spelling), normal)
        for _ in range(2):
            for bad in ["a@@b", "a b@x.org", "a@bad domain", "..@x.org", "a@x."]:
                self.assertRaises(InvalidAddress, normalize_address, bad)
            self.assertRaises(InvalidAddress, normalize_domain, "bad domain")
        self.assertEqual(normalize_domain("BÜCHER.example"), "xn--bcher-kva.example")
        self.assertEqual(normalize_domain("Bücher.example"), "xn--bcher-kva.example")

    def test_not_text(self) -> None:
        """
        Whatever is not a string is refused as an address or domain, even
        what cannot be a cache key.
        """
        for bad in [None, 5, b"a@x.org", ["a@x.org"]]:
            self.assertRaises(InvalidAddress, normalize_address, bad)
            self.assertRaises(InvalidAddress, normalize_domain, bad)


class ObjectIdTests(SynchronousTestCase):
    def test_new_ids_are_unique_and_parse(self) -> None:
        ids = {new_object_id("edgar@poe.net", 1700000000.5) for _ in range(1000)}
        self.assertEqual(len(ids), 1000)
        ms, owner = parse_object_id(ids.pop())
        self.assertEqual((ms, owner), (1700000000500, "edgar@poe.net"))

    def test_new_id_format(self) -> None:
        """
        An id is the millisecond time, 12 lower-case hex digits of nonce
        and the owner.
        """
        for _ in range(2000):
            ms, nonce, owner = new_object_id("edgar@poe.net", 1.25).split(".", 2)
            self.assertEqual((ms, owner), ("1250", "edgar@poe.net"))
            self.assertRegex(nonce, "^[0-9a-f]{12}$")

    def test_user_id_is_its_address(self) -> None:
        self.assertEqual(parse_object_id("lost@lenore.org"), (None, "lost@lenore.org"))

    def test_bad_ids(self) -> None:
        for bad in ["", "nonsense", "1.2.3", "17.abc.Edgar@poe.net", "x" * 600, "1²"]:
            self.assertRaises(InvalidObjectId, parse_object_id, bad)


class NameTests(SynchronousTestCase):
    def test_canonical(self) -> None:
        self.assertEqual(canonical_name("given-NAME"), "Given-Name")
        self.assertEqual(canonical_name("id"), "Id")
        self.assertEqual(canonical_name("PARENT-digest"), "Parent-Digest")

    def test_type(self) -> None:
        self.assertEqual(check_type("message"), "message")
        for bad in ["", "Message", "1post", "a" * 33, "po st"]:
            self.assertRaises(InvalidObject, check_type, bad)


class DigestTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.obj = FMTPObject(
            "1700000000000.abc.edgar@poe.net",
            "message",
            {"To": "lost@lenore.org", "Subject": "Nevermore"},
            b"body",
        )

    def test_stable_and_sensitive(self) -> None:
        digest = self.obj.digest()
        self.assertEqual(len(digest), 64)
        reordered = FMTPObject(
            self.obj.id,
            "message",
            {"Subject": "Nevermore", "To": "lost@lenore.org"},
            b"body",
        )
        self.assertEqual(reordered.digest(), digest)
        for changed in [
            FMTPObject(self.obj.id, "post", dict(self.obj.properties), b"body"),
            FMTPObject(self.obj.id, "message", {"To": "x@y.org"}, b"body"),
            FMTPObject(self.obj.id, "message", dict(self.obj.properties), b"bodY"),
        ]:
            self.assertNotEqual(changed.digest(), digest)

    def test_envelope_is_not_covered(self) -> None:
        sealed = FMTPObject(
            self.obj.id,
            "message",
            {**self.obj.properties, "Signature": "v=1", "Digest": "x"},
            b"body",
        )
        self.assertEqual(sealed.digest(), self.obj.digest())

    def test_with_digest(self) -> None:
        """
        A copy made with its digest known answers with it, equals the
        object it copies with the same properties, and a copy of it
        (C{dataclasses.replace}) computes its own again.
        """
        properties = {**self.obj.properties, "Signature": "v=1"}
        sealed = self.obj.with_digest(properties, self.obj.digest())
        self.assertEqual(sealed.digest(), self.obj.digest())
        self.assertEqual(sealed.computed_digest(), self.obj.digest())
        self.assertEqual(
            sealed, FMTPObject(self.obj.id, "message", properties, b"body")
        )
        changed = dataclasses.replace(sealed, body=b"other")
        self.assertNotEqual(changed.digest(), self.obj.digest())
        self.assertEqual(changed.digest(), changed.computed_digest())
        self.assertNotIn(self.obj.digest(), repr(sealed))

    def test_text_that_is_not_unicode_is_refused(self) -> None:
        obj = FMTPObject(self.obj.id, "post", {"Subject": "\ud800"})
        self.assertRaises(InvalidObject, obj.digest)

    def test_line_breaks_cannot_forge_properties(self) -> None:
        forged = FMTPObject(self.obj.id, "post", {"A": "b\nc:d"})
        self.assertRaises(InvalidObject, forged.digest)


class ViewTests(SynchronousTestCase):
    def test_user_public_view(self) -> None:
        user = user_object("edgar@poe.net")
        user.properties.update({"Given-Name": "Edgar", "Whitelist": "*@lenore.org"})
        view = user.public_view()
        self.assertEqual(
            view.properties, {"Address": "edgar@poe.net", "Given-Name": "Edgar"}
        )
        self.assertIn("Whitelist", user.properties)

    def test_public_flag(self) -> None:
        obj = FMTPObject("1.a.edgar@poe.net", "post", {"Public": "YES"})
        self.assertTrue(obj.public)
        self.assertFalse(FMTPObject("1.a.edgar@poe.net", "post").public)

    def test_from_headers(self) -> None:
        obj = FMTPObject.from_headers(
            {"Id": "1.a.edgar@poe.net", "Type": "post", "Title": "x", "Length": "3"},
            b"abc",
        )
        self.assertEqual(obj.properties, {"Title": "x"})
        self.assertRaises(InvalidObject, FMTPObject.from_headers, {"Type": "post"})
        self.assertRaises(
            InvalidObjectId, FMTPObject.from_headers, {"Id": "bad", "Type": "post"}
        )
