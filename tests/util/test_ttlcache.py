"""
Tests for L{fmtp.util.ttlcache}: a bounded cache whose entries expire.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.util.ttlcache import TTLCache


class TTLCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.cache: TTLCache[str, str | None] = TTLCache(self.clock, max_entries=3)

    def test_kept_for_its_ttl(self) -> None:
        """
        An entry is alive through the last instant of its TTL, and gone
        after it.
        """
        self.cache.set("a", "A", 30)
        self.cache.set("b", "B", 60)
        self.clock.advance(30)
        self.assertEqual(self.cache.get("a"), "A")
        self.assertIn("a", self.cache)
        self.clock.advance(0.5)
        self.assertIsNone(self.cache.get("a"))
        self.assertEqual(self.cache.get("a", "default"), "default")
        self.assertNotIn("a", self.cache)
        self.assertEqual(self.cache.peek("b"), "B")
        self.assertEqual(len(self.cache), 1, "the dead entry is dropped when met")

    def test_none_is_a_value(self) -> None:
        """
        A cached L{None} ("no such user") is told apart from no entry.
        """
        self.cache.set("nobody", None, 30)
        self.assertIn("nobody", self.cache)
        self.assertIsNone(self.cache.get("nobody", "missing"))

    def test_set_again(self) -> None:
        self.cache.set("a", "A", 30)
        self.clock.advance(20)
        self.cache.set("a", "A2", 30)
        self.clock.advance(20)
        self.assertEqual(self.cache.get("a"), "A2")

    def test_least_recently_used_goes_first(self) -> None:
        for key in "abc":
            self.cache.set(key, key.upper(), 300)
        self.cache.get("a")
        self.cache.peek("b")  # not a use
        self.assertIn("b", self.cache)  # nor this
        self.cache.set("d", "D", 300)
        self.assertEqual(list(self.cache), ["c", "a", "d"])
        self.assertEqual(len(self.cache), 3)

    def test_iteration_skips_the_dead(self) -> None:
        self.cache.set("a", "A", 10)
        self.cache.set("b", "B", 100)
        self.clock.advance(50)
        self.assertEqual(list(self.cache), ["b"])

    def test_pop(self) -> None:
        self.cache.set("a", "A", 10)
        self.cache.set("b", "B", 10)
        self.assertEqual(self.cache.pop("a"), "A")
        self.assertNotIn("a", self.cache)
        self.assertIsNone(self.cache.pop("a"))
        self.clock.advance(11)
        self.assertEqual(self.cache.pop("b", "gone"), "gone")
        self.assertEqual(len(self.cache), 0)

    def test_minimum_size(self) -> None:
        with self.assertRaises(ValueError):
            TTLCache(self.clock, max_entries=0)
