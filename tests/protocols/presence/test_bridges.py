"""
Unit tests of ISP bridges' PUBLISH (doc/protocol.md 9.6) through the
presence protocol's datagram listener, on a Clock: authentication (an
unknown bridge and a bad MAC answered alike), the anti-replay window,
idempotent repeats, the bridge's pattern, malformed input, the datagram
rules (cookies, no reply larger than its request), and the presence it
sets: one more session of the user, pushed to subscribers, ending with
its time to live.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from fmtp.auth.replay import ReplayWindow, Seen
from fmtp.interfaces import IDatagramLimiter
from fmtp.protocols.presence.bridgedir import (
    BRIDGE_CACHE_SECONDS,
    BridgeDirectory,
    bridge_networks,
)
from fmtp.protocols.presence.bridgelimits import BridgeSourceLimiter, source_address
from fmtp.protocols.presence.bridges import (
    DEFAULT_TTL,
    signed_publish,
)
from fmtp.protocols.presence.plugin import PresenceProtocolPlugin
from fmtp.store import MemoryStore
from fmtp.store.bridges import Bridge
from fmtp.wire import UNSOLICITED_TAG, parse_datagram, request, serialize
from tests.framing.test_datagram import RecordingDatagramTransport
from tests.protocols.presence.test_commands import (
    ANNABEL,
    EDGAR,
    LENORE,
    PresenceTestCase,
)

SECRET = "5e" * 32
BRIDGE = Bridge("poe-dsl", "edgar@poe.net annabel@poe.net", SECRET, 0.0)
SOURCE = ("192.0.2.7", 5353)


def is_notification(data: bytes) -> bool:
    """
    Whether the server sent C{data} to a bridge unasked: a signed push.
    """
    frame = parse_datagram(data)
    return frame.tag == UNSOLICITED_TAG and "Mac" in frame.headers


class ReplayWindowTests(SynchronousTestCase):
    def test_new_used_and_too_old(self) -> None:
        window = ReplayWindow(size=8)
        self.assertIs(window.check(0), Seen.NEW)
        window.accept(5)
        self.assertIs(window.check(5), Seen.USED)
        self.assertIs(window.check(3), Seen.NEW)
        window.accept(3)
        self.assertIs(window.check(3), Seen.USED)
        window.accept(12)
        # 5 is 7 behind 12: still in the window, and remembered.
        self.assertIs(window.check(5), Seen.USED)
        self.assertIs(window.check(6), Seen.NEW)
        # 3 is 9 behind: out of it, whether it was used or not.
        self.assertIs(window.check(3), Seen.TOO_OLD)
        self.assertIs(window.check(4), Seen.TOO_OLD)

    def test_a_jump_beyond_the_window_forgets_all_behind(self) -> None:
        window = ReplayWindow(size=8)
        window.accept(1)
        window.accept(2**64 - 1)
        self.assertIs(window.check(2**64 - 1), Seen.USED)
        self.assertIs(window.check(2**64 - 2), Seen.NEW)
        self.assertIs(window.check(2), Seen.TOO_OLD)


class BridgeTestCase(PresenceTestCase):
    """
    The presence server of poe.net with the bridge L{BRIDGE}, its datagram
    listener, and ANNABEL subscribed to EDGAR, logged in over a stream.
    """

    def setUp(self) -> None:
        super().setUp()
        self.store.add_bridge(BRIDGE)
        self.listener = PresenceProtocolPlugin(self.settings).datagram_protocol(
            self.services
        )
        self.transport = RecordingDatagramTransport()
        #: The notifications sent to the bridge, with where they went.
        self.notified: list[tuple[bytes, tuple]] = []
        self.listener.makeConnection(self.transport)
        self.subscribed(ANNABEL, EDGAR)
        self.annabel = self.logged_in(ANNABEL, "online")
        self.pushes(self.annabel)
        self.cookie = self.get_cookie()

    def receive_raw(self, data: bytes, source=SOURCE) -> list[bytes]:
        """
        What the listener sent back for C{data}: never more than one
        datagram, never to another address, never larger than C{data}.
        The notifications it made the server send the bridge (tag C{*}),
        to the same address, are kept apart in L{notified}.
        """
        self.listener.datagramReceived(data, source)
        self.clock.advance(0)
        sent, self.transport.sent = self.transport.sent, []
        for _, addr in sent:
            self.assertEqual(addr, source)
        self.notified.extend(a for a in sent if is_notification(a[0]))
        sent = [a for a in sent if not is_notification(a[0])]
        self.assertLessEqual(len(sent), 1)
        for answer, _ in sent:
            self.assertLessEqual(len(answer), len(data))
        return [answer for answer, _ in sent]

    def receive(self, data: bytes, source=SOURCE):
        [answer] = self.receive_raw(data, source)
        return parse_datagram(answer)

    def get_cookie(self, source=SOURCE) -> str:
        first = signed_publish("poe-dsl", SECRET, 0, [f"{EDGAR} online"])
        answer = self.receive(first, source)
        self.assertEqual(answer.code, 432)
        return answer.headers["Cookie"]

    def publish(self, seq: int, *lines: str, secret=SECRET, name="poe-dsl", **kw):
        kw.setdefault("cookie", self.cookie)
        return signed_publish(name, secret, seq, list(lines), **kw)

    def seen_by_annabel(self):
        return self.pushes(self.annabel)


class PublishTests(BridgeTestCase):
    def test_a_source_without_a_cookie_gets_only_a_cookie(self) -> None:
        """
        The first datagram of a source is not applied: it gets a 432 and
        its cookie, and only a datagram echoing it is.
        """
        self.assertEqual(self.seen_by_annabel(), [])
        data = self.publish(1, f"{EDGAR} away", cookie="0" * 16)
        self.assertEqual(self.receive(data).code, 432)
        self.assertEqual(self.seen_by_annabel(), [])
        answer = self.receive(self.publish(1, f"{EDGAR} away"))
        self.assertEqual((answer.code, answer.headers["Applied"]), (200, "1"))
        self.assertEqual(
            self.seen_by_annabel(), [("252", {"From": EDGAR, "Status": "away"})]
        )

    def test_it_counts_as_one_more_session_of_the_user(self) -> None:
        """
        The bridge's presence has the bridge's name as its resource and
        the priority rule weighs it with the user's own sessions.
        """
        self.receive(self.publish(1, f"{EDGAR} busy on the phone"))
        self.assertEqual(
            self.seen_by_annabel(),
            [("252", {"From": EDGAR, "Status": "busy", "Note": "on the phone"})],
        )
        presence = self.handler.groups[1].presence
        self.assertEqual([e.resource for e in presence._users[EDGAR]], ["poe-dsl"])
        desk = self.logged_in(EDGAR, "away", Priority="5")
        self.assertEqual(
            self.seen_by_annabel(), [("252", {"From": EDGAR, "Status": "away"})]
        )
        desk.ask("LOGOUT")
        self.assertEqual(
            self.seen_by_annabel(),
            [("252", {"From": EDGAR, "Status": "busy", "Note": "on the phone"})],
        )

    def test_presence_ends_with_its_time_to_live_unless_refreshed(self) -> None:
        self.receive(self.publish(1, f"{EDGAR} online", ttl=60))
        self.seen_by_annabel()
        self.clock.advance(50)
        # The same presence again: nothing to push, and 60 s more.
        self.receive(self.publish(2, f"{EDGAR} online", ttl=60))
        self.assertEqual(self.seen_by_annabel(), [])
        self.clock.advance(50)
        self.assertEqual(self.seen_by_annabel(), [])
        self.clock.advance(10)
        self.assertEqual(
            self.seen_by_annabel(), [("252", {"From": EDGAR, "Status": "offline"})]
        )

    def test_default_time_to_live(self) -> None:
        self.receive(self.publish(1, f"{EDGAR} online"))
        self.seen_by_annabel()
        self.clock.advance(DEFAULT_TTL - 1)
        self.assertEqual(self.seen_by_annabel(), [])
        self.clock.advance(1)
        self.assertEqual(
            self.seen_by_annabel(), [("252", {"From": EDGAR, "Status": "offline"})]
        )

    def test_offline_ends_it_at_once(self) -> None:
        self.receive(self.publish(1, f"{EDGAR} online"))
        self.seen_by_annabel()
        answer = self.receive(self.publish(2, f"{EDGAR} offline"))
        self.assertEqual(answer.headers, {"Applied": "1"})
        self.assertEqual(
            self.seen_by_annabel(), [("252", {"From": EDGAR, "Status": "offline"})]
        )

    def test_several_users_in_one_datagram(self) -> None:
        self.subscribed(EDGAR, ANNABEL)
        edgar = self.logged_in(EDGAR, "online", Priority="9")
        self.pushes(edgar)
        self.seen_by_annabel()
        self.receive(self.publish(1, f"{EDGAR} away", f"{ANNABEL} busy"))
        self.assertEqual(
            self.pushes(edgar), [("252", {"From": ANNABEL, "Status": "busy"})]
        )
        # Edgar's own session outranks the bridge: nothing changes for Annabel.
        self.assertEqual(self.seen_by_annabel(), [])


class AttackTests(BridgeTestCase):
    def assert_nothing_applied(self) -> None:
        self.assertEqual(self.seen_by_annabel(), [])
        presence = self.handler.groups[1].presence
        self.assertEqual(presence.user_presence(EDGAR).status, "offline")

    def test_unknown_bridge_and_bad_mac_get_the_same_answer(self) -> None:
        """
        Names cannot be probed: an unknown bridge and a known one with a
        wrong MAC get the same bytes back, and both are logged.
        """
        with capturedLogs() as events:
            bad_mac = self.receive_raw(
                self.publish(1, f"{EDGAR} away", secret="ab" * 32)
            )
            unknown = self.receive_raw(self.publish(1, f"{EDGAR} away", name="poe-dsx"))
        self.assertEqual(parse_datagram(bad_mac[0]).code, 535)
        self.assertEqual(bad_mac[0], unknown[0])
        self.assert_nothing_applied()
        lines = [formatEvent(e) for e in events]
        self.assertTrue(any("535" in line for line in lines), lines)
        self.assertFalse(any(SECRET in line for line in lines), lines)

    def test_a_changed_byte_breaks_the_mac(self) -> None:
        data = self.publish(1, f"{EDGAR} away")
        tampered = data.replace(b"away", b"busy")
        self.assertEqual(self.receive(tampered).code, 535)
        self.assert_nothing_applied()

    def test_missing_or_malformed_headers(self) -> None:
        for data in (
            serialize(
                request(
                    "PUBLISH", "1", headers={"Cookie": self.cookie, "Pad": "x" * 64}
                )
            ),
            self.publish(-1, f"{EDGAR} away"),
            self.publish(2**64, f"{EDGAR} away"),
            self.publish(1, f"{EDGAR} away", ttl=0),
            self.publish(1, f"{EDGAR} away", ttl=3601),
            self.publish(1),
        ):
            self.assertEqual(self.receive(data).code, 501, data)
        self.assert_nothing_applied()

    def test_a_repeat_is_answered_as_the_first_time_and_not_applied_again(self) -> None:
        first = self.publish(1, f"{EDGAR} away")
        answer = self.receive_raw(first)
        self.assertEqual(
            self.seen_by_annabel(), [("252", {"From": EDGAR, "Status": "away"})]
        )
        self.receive(self.publish(2, f"{EDGAR} busy"))
        self.seen_by_annabel()
        # The first datagram again (a retry, or a replay): the same answer,
        # and Edgar stays busy.
        self.assertEqual(self.receive_raw(first), answer)
        self.assertEqual(self.seen_by_annabel(), [])
        presence = self.handler.groups[1].presence
        self.assertEqual(presence.user_presence(EDGAR).status, "busy")

    def test_a_seq_used_with_other_bytes_is_refused(self) -> None:
        self.receive(self.publish(1, f"{EDGAR} away"))
        self.seen_by_annabel()
        with capturedLogs() as events:
            answer = self.receive(self.publish(1, f"{EDGAR} busy"))
        self.assertEqual(answer.code, 503)
        self.assertIn("used already", answer.argument)
        self.assertEqual(self.seen_by_annabel(), [])
        self.assertTrue(any("503" in formatEvent(e) for e in events))

    def test_a_seq_older_than_the_window_is_refused(self) -> None:
        self.receive(self.publish(2000, f"{EDGAR} away"))
        self.seen_by_annabel()
        answer = self.receive(self.publish(2000 - 1024, f"{EDGAR} busy"))
        self.assertEqual(answer.code, 503)
        self.assertIn("older than the last 1024", answer.argument)
        self.assertEqual(
            self.receive(self.publish(2000 - 1023, f"{EDGAR} busy")).code, 200
        )

    def test_reordered_datagrams_end_on_the_newest(self) -> None:
        """
        Within the window a late datagram is accepted, but does not undo
        what a newer one set for the same user.
        """
        self.receive(self.publish(5, f"{EDGAR} busy"))
        self.seen_by_annabel()
        late = self.receive(self.publish(4, f"{EDGAR} away"))
        self.assertEqual((late.code, late.headers["Applied"]), (200, "1"))
        self.assertEqual(self.seen_by_annabel(), [])
        presence = self.handler.groups[1].presence
        self.assertEqual(presence.user_presence(EDGAR).status, "busy")

    def test_users_outside_the_pattern_are_refused_the_others_applied(self) -> None:
        with capturedLogs() as events:
            answer = self.receive(
                self.publish(
                    1,
                    f"{LENORE} online",
                    f"{EDGAR} away",
                    "edgar@lenore.org online",
                    "not-an-address online",
                    f"{ANNABEL} dancing",
                    f"{ANNABEL} online \u202enote",
                )
            )
        self.assertEqual(answer.code, 200)
        self.assertEqual(
            answer.headers,
            {"Applied": "1", "Refused": "1=554 3=554 4=553 5=501 6=501"},
        )
        self.assertEqual(
            self.seen_by_annabel(), [("252", {"From": EDGAR, "Status": "away"})]
        )
        presence = self.handler.groups[1].presence
        self.assertEqual(presence.user_presence(LENORE).status, "offline")
        lines = [formatEvent(e) for e in events]
        self.assertTrue(any("poe-dsl" in line and "refused" in line for line in lines))

    def test_oversized_datagram(self) -> None:
        lines = [f"{EDGAR} online {'x' * 100}"] * 12
        answer = self.receive(self.publish(1, *lines))
        self.assertEqual(answer.code, 552)
        self.assert_nothing_applied()

    def test_a_removed_bridge_is_refused_once_the_cache_expires(self) -> None:
        self.assertEqual(self.receive(self.publish(1, f"{EDGAR} away")).code, 200)
        self.store.remove_bridge("poe-dsl")
        self.clock.advance(BRIDGE_CACHE_SECONDS)
        self.assertEqual(self.receive(self.publish(2, f"{EDGAR} busy")).code, 535)

    def test_a_bridge_added_again_starts_a_new_window(self) -> None:
        """
        Removed and added again (a new secret), a bridge may count from 0
        again; the old secret's datagrams are refused.
        """
        old = self.publish(1000, f"{EDGAR} away")
        self.assertEqual(self.receive(old).code, 200)
        self.store.remove_bridge("poe-dsl")
        new_secret = "77" * 32
        self.store.add_bridge(Bridge("poe-dsl", BRIDGE.users, new_secret, 1.0))
        self.clock.advance(BRIDGE_CACHE_SECONDS)
        answer = self.receive(self.publish(1, f"{EDGAR} busy", secret=new_secret))
        self.assertEqual(answer.code, 200)
        self.assertEqual(self.receive(self.publish(1001, f"{EDGAR} away")).code, 535)

    def test_publish_over_a_stream_is_refused(self) -> None:
        conn = self.connect()
        answer = conn.ask("PUBLISH", "1", headers={"Bridge": "poe-dsl", "Seq": "1"})
        self.assertEqual(answer.code, 503)

    def test_one_sources_burst_does_not_starve_another(self) -> None:
        other = ("192.0.2.99", 4000)
        other_cookie = self.get_cookie(other)
        limiter = self.listener.limiter.per_source
        for seq in range(1, int(limiter.burst) + 20):
            self.receive_raw(self.publish(seq, f"{EDGAR} away"))
        self.assertEqual(self.receive_raw(self.publish(999, f"{EDGAR} busy")), [])
        answer = self.receive(
            self.publish(1000, f"{ANNABEL} busy", cookie=other_cookie), other
        )
        self.assertEqual(answer.code, 200)


class BridgeRateTests(BridgeTestCase):
    """
    A bridge given source networks sends from them at its own rate, all
    of them together; a spoofer of them gets few refusals, none larger
    than its request.
    """

    def given_sources(self, *sources: str, rate: int = 100, bridge=BRIDGE) -> None:
        self.store.update_bridge(replace(bridge, sources=sources, rate=rate))
        self.clock.advance(BRIDGE_CACHE_SECONDS)
        self.listener.limiter.bridge_of(SOURCE[0])  # read now

    def answered(self, count: int, source=SOURCE, first_seq: int = 1, **kw) -> int:
        cookie = kw.pop("cookie", self.cookie)
        return sum(
            len(
                self.receive_raw(
                    self.publish(seq, f"{EDGAR} away", cookie=cookie, **kw), source
                )
            )
            for seq in range(first_seq, first_seq + count)
        )

    def test_a_bridge_without_sources_keeps_the_per_source_limit(self) -> None:
        # The cookie of setUp took one token of the 40.
        self.assertEqual(self.answered(60), 39)

    def test_its_sources_send_at_its_rate_bursts_of_twice_as_many(self) -> None:
        self.given_sources("192.0.2.0/24", rate=100)
        self.assertEqual(self.answered(250), 200)
        self.clock.advance(0.5)
        self.assertEqual(self.answered(100, first_seq=300), 50)

    def test_its_rate_is_shared_by_every_address_of_its_networks(self) -> None:
        """
        A spoofer cycling through the bridge's networks gets no more than
        the bridge's one rate.
        """
        self.given_sources("192.0.2.0/24", "2001:db8::/32", rate=50)
        sources = [(f"192.0.2.{i}", 9) for i in range(1, 20)]
        sources += [(f"2001:db8::{i:x}", 9) for i in range(1, 20)]
        served = 0
        for n in range(300):
            source = sources[n % len(sources)]
            data = self.publish(1000 + n, f"{EDGAR} away", cookie="0" * 16)
            served += len(self.receive_raw(data, source))
        # Everything past the rate is dropped unread; of what was read,
        # only an ordinary source's burst of refusals went back.
        self.assertEqual(served, 40)
        self.assertEqual(self.answered(10), 0)

    def test_spoofed_bad_macs_get_few_refusals_and_none_larger(self) -> None:
        """
        A spoofer of the bridge's source with the bridge's cookie (on its
        path) sends bad MACs at the bridge's rate: the server answers an
        ordinary source's burst of them, each no larger than its
        request, and the bridge's own datagrams are still served.
        """
        self.given_sources("192.0.2.0/24", rate=1000)
        refused = self.answered(500, secret="ab" * 32)
        self.assertEqual(refused, 40)
        self.assertEqual(self.answered(10, first_seq=600), 10)

    def test_refusals_to_a_bridge_are_never_larger_than_the_request(self) -> None:
        """
        A 432 larger than a tiny request from a bridge's network is not
        sent, cookie or none.
        """
        self.given_sources("192.0.2.0/24")
        self.assertEqual(self.receive_raw(b"PUBLISH 1\r\n\r\n"), [])
        tiny = f"PUBLISH 2\r\nCookie: {self.cookie}\r\n\r\n".encode()
        self.assertEqual(self.receive_raw(tiny), [])

    def test_other_sources_keep_their_own_limit(self) -> None:
        self.given_sources("192.0.2.0/24", rate=1000)
        other = ("198.51.100.9", 7)
        cookie = self.get_cookie(other)
        self.assertEqual(self.answered(60, other, cookie=cookie), 39)

    def test_the_most_specific_network_decides(self) -> None:
        """
        Of two bridges' overlapping networks, the longer prefix decides
        whose rate a source counts against.
        """
        other = Bridge("poe-fiber", BRIDGE.users, "66" * 32, 0.0)
        self.store.add_bridge(other)
        self.given_sources("192.0.2.0/24", rate=10)
        self.given_sources("192.0.2.7/32", rate=100, bridge=other)
        self.assertEqual(self.listener.limiter.bridge_of(SOURCE[0]), "poe-fiber")
        self.assertEqual(self.listener.limiter.bridge_of("192.0.2.8"), "poe-dsl")
        self.assertEqual(self.answered(250), 200)
        self.assertEqual(self.answered(30, ("192.0.2.8", 9), 500), 20)

    def test_a_change_takes_effect_once_the_cache_expires(self) -> None:
        self.given_sources("192.0.2.0/24", rate=100)
        self.store.update_bridge(replace(BRIDGE, sources=(), rate=100))
        self.assertEqual(self.listener.limiter.bridge_of(SOURCE[0]), "poe-dsl")
        self.clock.advance(BRIDGE_CACHE_SECONDS)
        self.assertIsNone(self.listener.limiter.bridge_of(SOURCE[0]))


class FailingStore:
    def list_bridges(self):
        from twisted.internet.defer import fail

        return fail(RuntimeError("disk gone"))


class CountingStore:
    """
    Counts the reads of the bridges' list, and of single bridges.
    """

    def __init__(self, store) -> None:
        self.store = store
        self.lists = 0

    def list_bridges(self):
        self.lists += 1
        return self.store.list_bridges()

    def get_bridge(self, name):  # pragma: no cover (must not be called)
        raise AssertionError("bridges are read as a list")


class DirectoryTests(SynchronousTestCase):
    def test_made_up_names_cost_no_store_read(self) -> None:
        """
        A sender cycling through bridge names it makes up gets 535 for
        each, and the store is read once per few seconds, not per name.
        """
        clock = Clock()
        store = CountingStore(MemoryStore())
        store.store.add_bridge(BRIDGE)
        directory = BridgeDirectory(clock, store)
        for n in range(2000):
            d = Deferred.fromCoroutine(directory.get(f"made-up-{n}"))
            self.assertIsNone(self.successResultOf(d))
        self.assertEqual(store.lists, 1)
        clock.advance(BRIDGE_CACHE_SECONDS)
        d = Deferred.fromCoroutine(directory.get(BRIDGE.name))
        self.assertEqual(self.successResultOf(d), BRIDGE)
        self.assertEqual(store.lists, 2)

    def test_a_read_under_way_is_waited_for_by_all(self) -> None:
        clock = Clock()
        pending: Deferred = Deferred()

        class SlowStore:
            def list_bridges(self):
                return pending

        directory = BridgeDirectory(clock, SlowStore())
        first = Deferred.fromCoroutine(directory.get(BRIDGE.name))
        second = Deferred.fromCoroutine(directory.get(BRIDGE.name))
        self.assertNoResult(first)
        pending.callback([BRIDGE])
        self.assertEqual(self.successResultOf(first), BRIDGE)
        self.assertEqual(self.successResultOf(second), BRIDGE)


def failing_limiter() -> BridgeSourceLimiter:
    clock = Clock()
    return BridgeSourceLimiter(clock, BridgeDirectory(clock, FailingStore()))


class BridgeSourceLimiterTests(SynchronousTestCase):
    def test_provides_the_interface(self) -> None:
        verifyObject(IDatagramLimiter, failing_limiter())

    def test_a_store_that_fails_leaves_ordinary_limits_and_a_log_line(self) -> None:
        limiter = failing_limiter()
        with capturedLogs() as events:
            allowed = [limiter.allow("192.0.2.7") for _ in range(41)]
        self.assertEqual(allowed.count(True), 40)
        self.assertTrue(any("Reading the bridges" in formatEvent(e) for e in events))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class BridgeNetworkTests(SynchronousTestCase):
    def test_longest_prefix_first_then_by_name(self) -> None:
        bridges = [
            Bridge("b", "*@poe.net", SECRET, 0.0, ("10.0.0.0/8", "10.1.0.0/16"), 5),
            Bridge("a", "*@poe.net", SECRET, 0.0, ("10.1.0.0/16", "bogus"), 7),
        ]
        self.assertEqual(
            [(str(n.network), n.bridge, n.rate) for n in bridge_networks(bridges)],
            [("10.1.0.0/16", "a", 7), ("10.1.0.0/16", "b", 5), ("10.0.0.0/8", "b", 5)],
        )

    def test_source_address(self) -> None:
        self.assertEqual(str(source_address("::ffff:192.0.2.7")), "192.0.2.7")
        self.assertEqual(str(source_address("fe80::1%eth0")), "fe80::1")
        self.assertIsNone(source_address("not an address"))
