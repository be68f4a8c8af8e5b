"""
Tests for L{fmtp.federation.volatile}: volatile updates, coalesced by key,
on a C{Clock} with fake links whose replies the test hands out.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.errors import InvalidAddress
from fmtp.federation.failures import LinkFailed, LinkLost, LinkRefused
from fmtp.federation.volatile import VolatileQueue
from fmtp.wire import Frame, reply


class FakeLink:
    """
    A link whose requests wait until the test answers them.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict, bytes, Deferred]] = []

    def request(self, verb, argument="", headers=None, body=b"") -> Deferred:
        d: Deferred = Deferred()
        self.requests.append((verb, argument, headers, body, d))
        return d

    def bodies(self) -> list[bytes]:
        return [body for _, _, _, body, _ in self.requests]

    def answer(self, code: int = 200) -> None:
        """
        Answer every request not answered yet with C{code}.
        """
        for *_, d in self.requests:
            if not d.called:
                d.callback(reply(code, "t"))

    def lose(self) -> None:
        for *_, d in self.requests:
            if not d.called:
                d.errback(LinkLost("connection lost"))


class FakePool:
    """
    C{link_to}: each call waits until the test gives a link or a failure.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Deferred]] = []

    def link_to(self, domain: str) -> Deferred:
        d: Deferred = Deferred()
        self.calls.append((domain, d))
        return d

    def give(self, link: FakeLink) -> None:
        self.calls[-1][1].callback(link)

    def refuse(self, error: Exception) -> None:
        self.calls[-1][1].errback(error)


class VolatileQueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.pool = FakePool()
        self.link = FakeLink()
        self.queue = VolatileQueue(self.pool.link_to, self.clock)

    def notify(self, key: str, body: bytes, domain="lenore.org", lifetime=60.0):
        self.queue.notify(domain, key, "PRESENCE", key, {"K": key}, body, lifetime)

    def test_a_newer_update_replaces_one_waiting_for_the_link(self) -> None:
        self.notify("edgar", b"online")
        self.notify("edgar", b"away")
        self.notify("edgar", b"offline")
        self.assertEqual(len(self.pool.calls), 1, "one link for all of them")
        self.pool.give(self.link)
        self.assertEqual(self.link.bodies(), [b"offline"])
        verb, argument, headers, _, _ = self.link.requests[0]
        self.assertEqual(
            (verb, argument, headers), ("PRESENCE", "edgar", {"K": "edgar"})
        )
        self.link.answer()
        stats = self.queue.stats
        self.assertEqual((stats.sent, stats.replaced), (1, 2))
        self.assertEqual(self.queue.domains(), [], "nothing kept once sent")

    def test_keys_are_sent_together_in_the_order_they_came(self) -> None:
        self.notify("edgar", b"1")
        self.notify("lost", b"2")
        self.notify("edgar", b"3")
        self.pool.give(self.link)
        self.assertEqual(self.link.bodies(), [b"2", b"3"])

    def test_an_update_waits_for_the_one_in_flight_then_only_the_newest(self) -> None:
        self.notify("edgar", b"online")
        self.pool.give(self.link)
        self.notify("edgar", b"away")
        self.notify("edgar", b"offline")
        self.assertEqual(self.link.bodies(), [b"online"])
        self.assertEqual(
            [u.body for u in self.queue.pending("lenore.org")], [b"offline"]
        )
        self.link.answer()
        self.pool.give(self.link)
        self.assertEqual(self.link.bodies(), [b"online", b"offline"])
        self.link.answer()
        self.assertEqual(self.queue.stats.sent, 2)

    def test_updates_are_dropped_once_their_lifetime_passes(self) -> None:
        """
        An update that could not be sent in its lifetime is never sent,
        even when the link comes after; nothing is kept.
        """
        self.notify("edgar", b"online", lifetime=10.0)
        self.clock.advance(11)
        self.pool.give(self.link)
        self.assertEqual(self.link.requests, [])
        self.assertEqual(self.queue.stats.expired, 1)
        self.assertEqual(self.queue.domains(), [])

    def test_link_failures_are_retried_within_the_lifetime(self) -> None:
        self.notify("edgar", b"online", lifetime=30.0)
        self.pool.refuse(LinkFailed("connection refused"))
        self.assertEqual([u.attempts for u in self.queue.pending("lenore.org")], [1])
        self.clock.advance(0.9)
        self.assertEqual(len(self.pool.calls), 1, "waits a second before trying again")
        self.clock.advance(0.1)
        self.assertEqual(len(self.pool.calls), 2)
        self.pool.give(self.link)
        self.link.answer()
        self.assertEqual(self.link.bodies(), [b"online"])
        self.assertEqual(self.queue.stats.sent, 1)

    def test_an_update_is_given_up_after_its_tries(self) -> None:
        self.notify("edgar", b"online", lifetime=600.0)
        for delay in (1.0, 5.0):
            self.pool.refuse(LinkFailed("connection refused"))
            self.clock.advance(delay)
        self.pool.refuse(LinkFailed("connection refused"))
        self.assertEqual(len(self.pool.calls), 3)
        self.assertEqual(self.queue.stats.failed, 1)
        self.assertEqual(self.queue.domains(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_pause_ends_when_an_update_expires(self) -> None:
        """
        An update that would expire during the pause between tries is
        dropped when it expires, not when the pause would have ended.
        """
        self.queue = VolatileQueue(self.pool.link_to, self.clock, retry_delays=(30.0,))
        self.notify("edgar", b"online", lifetime=5.0)
        self.pool.refuse(LinkFailed("connection refused"))
        self.clock.advance(5)
        self.assertEqual(self.queue.stats.expired, 1)
        self.assertEqual(len(self.pool.calls), 1)
        self.assertEqual(self.queue.domains(), [])

    def test_a_lost_link_or_a_4xx_is_tried_again_and_a_5xx_is_not(self) -> None:
        self.notify("edgar", b"e")
        self.notify("lost", b"l")
        self.notify("usher", b"u")
        self.pool.give(self.link)
        _, _, _, _, edgar = self.link.requests[0]
        _, _, _, _, lost = self.link.requests[1]
        _, _, _, _, usher = self.link.requests[2]
        edgar.errback(LinkLost("lost"))
        lost.callback(reply(451, "t"))
        usher.callback(reply(554, "t", "no such user"))
        self.assertEqual(
            [u.key for u in self.queue.pending("lenore.org")], ["edgar", "lost"]
        )
        self.assertEqual(self.queue.stats.failed, 1)
        self.clock.advance(1)
        self.pool.give(self.link)
        self.assertEqual(self.link.bodies()[3:], [b"e", b"l"])

    def test_a_peer_that_says_slow_down_gets_the_update_later(self) -> None:
        """
        A 429 is the peer asking for time, not refusing: the update is
        tried again, a second apart or more, however often it is answered
        so, until its lifetime passes; never given up after three tries.
        """
        self.notify("edgar", b"away", lifetime=60.0)
        self.pool.give(self.link)
        for _ in range(10):
            self.link.answer(429)
            self.assertEqual(
                [u.key for u in self.queue.pending("lenore.org")], ["edgar"]
            )
            self.clock.advance(1)
            self.pool.give(self.link)
        self.link.answer(200)
        self.assertEqual((self.queue.stats.sent, self.queue.stats.failed), (1, 0))
        self.assertEqual(len(self.link.requests), 11)
        # Past its lifetime it goes, as any update.
        self.notify("lost", b"busy", lifetime=3.0)
        self.pool.give(self.link)
        for _ in range(3):
            self.link.answer(429)
            self.clock.advance(1)
            if self.queue.pending("lenore.org"):
                self.pool.give(self.link)
        self.assertEqual(self.queue.pending("lenore.org"), [])
        self.assertEqual(self.queue.stats.expired, 1)

    def test_a_retry_gives_way_to_a_newer_update(self) -> None:
        self.notify("edgar", b"online")
        self.pool.give(self.link)
        self.notify("edgar", b"offline")
        self.link.lose()
        self.assertEqual(
            [u.body for u in self.queue.pending("lenore.org")], [b"offline"]
        )
        self.assertEqual(self.queue.stats.replaced, 1)

    def test_a_domain_without_a_server_drops_its_updates(self) -> None:
        self.notify("edgar", b"online")
        self.pool.refuse(LinkRefused("lenore.org has no fmtp server"))
        self.assertEqual(self.queue.stats.failed, 1)
        self.assertEqual(self.queue.domains(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_keys_per_domain_are_capped_oldest_first(self) -> None:
        self.queue = VolatileQueue(self.pool.link_to, self.clock, max_keys=2)
        for key in ("a", "b", "c"):
            self.notify(key, key.encode())
        self.notify("c", b"c2")
        self.assertEqual([u.key for u in self.queue.pending("lenore.org")], ["b", "c"])
        self.assertEqual((self.queue.stats.dropped, self.queue.stats.replaced), (1, 1))

    def test_domains_are_capped(self) -> None:
        self.queue = VolatileQueue(self.pool.link_to, self.clock, max_domains=2)
        self.notify("a", b"1", domain="one.example")
        self.notify("a", b"1", domain="two.example")
        self.notify("a", b"1", domain="three.example")
        self.notify("b", b"2", domain="one.example")
        self.assertEqual(self.queue.domains(), ["one.example", "two.example"])
        self.assertEqual(self.queue.stats.dropped, 1)

    def test_bad_updates_are_refused_at_once(self) -> None:
        with self.assertRaises(InvalidAddress):
            self.notify("k", b"", domain="not a domain")
        with self.assertRaises(ValueError):
            self.queue.notify("lenore.org", "k", "BAD VERB")
        with self.assertRaises(ValueError):
            self.notify("k", b"", lifetime=0)
        self.assertEqual(self.pool.calls, [])

    def test_close_drops_what_waits_and_stops_the_timers(self) -> None:
        self.notify("edgar", b"online")
        self.pool.refuse(LinkFailed("connection refused"))
        self.notify("lost", b"online", domain="poe.net")
        closed = self.queue.close()
        self.assertNoResult(closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.pool.refuse(LinkFailed("shutting down", 421))
        self.successResultOf(closed)
        self.assertEqual(self.queue.domains(), [])
        self.notify("edgar", b"away")
        self.assertEqual(len(self.pool.calls), 2, "nothing is sent after close")

    def test_one_domain_does_not_wait_for_another(self) -> None:
        self.notify("edgar", b"1", domain="lenore.org")
        self.notify("edgar", b"2", domain="usher.example")
        self.assertEqual(
            [d for d, _ in self.pool.calls], ["lenore.org", "usher.example"]
        )
        other = FakeLink()
        self.pool.give(other)
        self.assertEqual(other.bodies(), [b"2"])


def test_a_synchronous_link_sends_at_once() -> None:
    """
    A link already open (a fired Deferred) sends in the same call, and
    leaves nothing behind.
    """
    clock = Clock()
    sent: list[Frame] = []

    def request(verb, argument="", headers=None, body=b""):
        sent.append(body)
        return succeed(reply(200, "t"))

    link = type("Link", (), {"request": staticmethod(request)})()
    queue = VolatileQueue(lambda domain: succeed(link), clock)
    queue.notify("lenore.org", "edgar", "PRESENCE", body=b"online")
    assert sent == [b"online"]
    assert queue.domains() == [] and queue.stats.sent == 1
    queue.notify("lenore.org", "edgar", "PRESENCE", body=b"away")
    assert sent == [b"online", b"away"]
    failing = VolatileQueue(lambda domain: fail(LinkFailed("down")), clock)
    failing.notify("lenore.org", "edgar", "PRESENCE")
    assert [u.attempts for u in failing.pending("lenore.org")] == [1]
