"""
Unit tests of the recipient policy.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from fmtp.policy import Decision, decide, format_refusal, matches


class MatchTests(SynchronousTestCase):
    def test_patterns(self) -> None:
        self.assertTrue(matches("edgar@poe.net", "edgar@poe.net"))
        self.assertTrue(matches("Edgar@POE.net", "*@poe.net"))
        self.assertTrue(matches("x@mail.spam.example", "a@b *@*.spam.example"))
        self.assertFalse(matches("edgar@poe.net", "*@lenore.org"))
        self.assertFalse(matches("edgar@poe.net", ""))
        self.assertFalse(matches("e@poe.net", "?@poe.net"))
        self.assertTrue(matches("?@poe.net", "?@poe.net"))
        self.assertFalse(matches("a@poe.net", "[a]@poe.net"))


class DecideTests(SynchronousTestCase):
    def test_default_accepts(self) -> None:
        self.assertEqual(decide({}, "a@b.org", False), Decision.ACCEPT)

    def test_blacklist_and_whitelist(self) -> None:
        profile = {"Blacklist": "*@poe.net", "Whitelist": "edgar@poe.net"}
        self.assertEqual(decide(profile, "edgar@poe.net", False), Decision.ACCEPT)
        self.assertEqual(decide(profile, "other@poe.net", False), Decision.REJECT)

    def test_policies(self) -> None:
        self.assertEqual(
            decide({"Policy": "reject"}, "a@b.org", False), Decision.REJECT
        )
        confirm = {"Policy": "Confirm", "Whitelist": "friend@b.org"}
        self.assertEqual(decide(confirm, "a@b.org", False), Decision.HOLD)
        self.assertEqual(decide(confirm, "a@b.org", True), Decision.ACCEPT)
        self.assertEqual(decide(confirm, "friend@b.org", False), Decision.ACCEPT)
        self.assertEqual(decide({"Policy": "reject"}, "a@b.org", True), Decision.REJECT)


class FormatTests(SynchronousTestCase):
    def test_formats(self) -> None:
        self.assertIsNone(format_refusal({}, None))
        self.assertIsNone(format_refusal({}, "Markdown"))
        self.assertIn("never", format_refusal({}, "html"))
        self.assertIn("unknown", format_refusal({}, "rtf"))
        self.assertIn("does not accept", format_refusal({"Format": "plain"}, "bbcode"))
