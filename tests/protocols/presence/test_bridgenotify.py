"""
Unit tests of what the server sends ISP bridges (doc/protocol.md 9.8), on
a Clock: the notifications of their users' presence events (signed,
numbered, only to where a fresh PUBLISH came from, at the bridge's rate),
and RESYNC over a stream (signed and numbered as PUBLISH, never replayed,
only the bridge's own users, paged).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from fmtp.auth.router import Event, datagram_mac, unsigned_bytes
from fmtp.protocols.presence.bridgedir import BRIDGE_CACHE_SECONDS
from fmtp.protocols.presence.bridgenotify import BridgeNotifier
from fmtp.protocols.presence.bridgeresync import RESYNC_BURST, signed_resync
from fmtp.protocols.presence.commands import render_request
from fmtp.protocols.presence.events import REQUEST
from fmtp.wire import Frame, parse_datagram
from tests.protocols.presence.test_bridges import (
    BRIDGE,
    SECRET,
    SOURCE,
    BridgeTestCase,
)
from tests.protocols.presence.test_commands import ANNABEL, EDGAR, LENORE

OTHER = ("198.51.100.9", 7000)


def verified(data: bytes, secret: str = SECRET) -> Frame:
    """
    A notification, once its MAC is checked as a bridge checks it.
    """
    frame = parse_datagram(data)
    expected = datagram_mac(secret, unsigned_bytes(data))
    assert frame.headers["Mac"] == expected, frame
    del frame.headers["Mac"]
    return frame


class NotifyTestCase(BridgeTestCase):
    """
    Edgar sees Annabel (approved); the bridge publishes Edgar.
    """

    def setUp(self) -> None:
        super().setUp()
        self.subscribed(EDGAR, ANNABEL)

    def notifications(self, to=SOURCE) -> list[tuple[str, dict[str, str]]]:
        """
        The notifications sent to C{to} (checked and without their MAC);
        those sent elsewhere wait for their own call.
        """
        self.clock.advance(0)
        sent = self.notified + self.transport.sent
        self.transport.sent = []
        self.notified = [(d, addr) for d, addr in sent if addr != to]
        frames = [verified(d) for d, addr in sent if addr == to]
        return [(f.verb, f.headers) for f in frames]

    def annabel_asks(self, verb: str, argument: str = "", **headers) -> Frame:
        """
        The reply to Annabel's request (what was pushed to her dropped).
        """
        frames = self.annabel.send(verb, "a", argument, headers)
        self.seen_by_annabel()
        [answer] = [f for f in frames if f.tag == "a"]
        return answer

    def annabel_goes(self, status: str, **headers) -> None:
        self.assertEqual(self.annabel_asks("STATUS", status, **headers).code, 200)


class NotificationTests(NotifyTestCase):
    def test_a_bridged_user_is_notified_signed_and_numbered(self) -> None:
        self.assertEqual(self.receive(self.publish(1, f"{EDGAR} online")).code, 200)
        self.notifications()
        self.annabel_goes("busy")
        self.annabel_goes("away")
        self.assertEqual(
            self.notifications(),
            [
                (
                    "252",
                    {
                        "Bridge": "poe-dsl",
                        "Seq": "1",
                        "To": EDGAR,
                        "From": ANNABEL,
                        "Status": "busy",
                    },
                ),
                (
                    "252",
                    {
                        "Bridge": "poe-dsl",
                        "Seq": "2",
                        "To": EDGAR,
                        "From": ANNABEL,
                        "Status": "away",
                    },
                ),
            ],
        )

    def test_requests_and_subscription_changes_are_notified(self) -> None:
        self.receive(self.publish(1, f"{EDGAR} online"))
        lenore = self.logged_in(LENORE)
        self.assertEqual(lenore.ask("SUBSCRIBE", "1", EDGAR).code, 200)
        [(code, headers)] = self.notifications()
        self.assertEqual((code, headers["From"], headers["To"]), ("253", LENORE, EDGAR))
        # Annabel removes Edgar's subscription: he is told how they stand
        # now, and that she shows nothing to him.
        self.assertEqual(self.annabel_asks("DENY", EDGAR).code, 200)
        told = self.notifications()
        self.assertEqual(
            [(code, h["From"], h.get("Subscription")) for code, h in told],
            [("254", ANNABEL, "from"), ("252", ANNABEL, None)],
        )
        self.assertEqual(told[1][1]["Status"], "offline")
        self.assertEqual([h["Seq"] for _, h in told], ["2", "3"])

    def test_nothing_is_sent_before_the_bridge_published(self) -> None:
        """
        A user whose bridge has never published (its session made some
        other way) is not notified: the server knows no address for it.
        """
        notifier = self.handler.groups[1].notifier
        notifier.notify("poe-dsl", EDGAR, Event(REQUEST, LENORE))
        self.assertEqual(self.transport.sent, [])
        self.assertEqual(notifier.last_seq(BRIDGE), 0)

    def test_none_for_a_user_the_bridge_no_longer_publishes(self) -> None:
        self.receive(self.publish(1, f"{EDGAR} online"))
        self.receive(self.publish(2, f"{EDGAR} offline"))
        self.annabel_goes("busy")
        self.assertEqual(self.notifications(), [])


class NotificationAttackTests(NotifyTestCase):
    def test_only_a_fresh_authenticated_publish_moves_them(self) -> None:
        """
        A bad MAC, an unknown bridge, or a replay of an accepted datagram
        from another address (with a cookie of its own) does not make
        the server send notifications there; a fresh PUBLISH does.
        """
        first = self.publish(1, f"{EDGAR} online")
        self.receive(first)
        cookie = self.get_cookie(OTHER)
        attempts = [
            self.publish(2, f"{EDGAR} online", secret="ab" * 32, cookie=cookie),
            self.publish(2, f"{EDGAR} online", name="poe-dsx", cookie=cookie),
            self.publish(1, f"{EDGAR} online", cookie=cookie),
        ]
        for data in attempts:
            self.receive(data, OTHER)
        # A datagram without a cookie of its source: 432 only.
        self.assertEqual(
            self.receive(self.publish(3, f"{EDGAR} online", cookie=None), OTHER).code,
            432,
        )
        self.annabel_goes("busy")
        self.assertEqual(self.notifications(OTHER), [])
        self.assertEqual([h["Status"] for _, h in self.notifications(SOURCE)], ["busy"])
        self.receive(self.publish(4, f"{EDGAR} online", cookie=cookie), OTHER)
        self.annabel_goes("away")
        self.assertEqual(self.notifications(SOURCE), [])
        self.assertEqual([h["Seq"] for _, h in self.notifications(OTHER)], ["2"])

    def test_over_the_bridges_rate_they_are_dropped_numbered_and_logged(
        self,
    ) -> None:
        """
        The bridge's rate (here 2 a second, bursts of 4) bounds what is
        sent to it; what is dropped still takes its number, so the
        bridge sees a gap.
        """
        self.store.update_bridge(replace(BRIDGE, rate=2))
        self.clock.advance(BRIDGE_CACHE_SECONDS)
        self.receive(self.publish(1, f"{EDGAR} online"))
        with capturedLogs() as events:
            for n in range(10):
                self.annabel_goes(["busy", "away"][n % 2])
        self.assertEqual(
            [h["Seq"] for _, h in self.notifications()], ["1", "2", "3", "4"]
        )
        lines = [formatEvent(e) for e in events]
        self.assertEqual(
            len([line for line in lines if "over its rate" in line]), 1, lines
        )
        self.clock.advance(1)
        self.annabel_goes("online")
        self.assertEqual([h["Seq"] for _, h in self.notifications()], ["11"])
        self.assertEqual(
            self.handler.groups[1].notifier._outboxes["poe-dsl"].dropped, 6
        )

    def test_a_removed_bridge_is_sent_nothing_more(self) -> None:
        self.receive(self.publish(1, f"{EDGAR} online"))
        self.store.remove_bridge("poe-dsl")
        self.clock.advance(BRIDGE_CACHE_SECONDS)
        self.assertEqual(self.receive(self.publish(2, f"{EDGAR} online")).code, 535)
        self.annabel_goes("busy")
        self.assertEqual(self.notifications(), [])

    def test_a_bridge_removed_while_silent_is_sent_nothing_more(self) -> None:
        """
        The bridge publishes once and says nothing more: removed, it is
        forgotten at the next read of the bridges, which an event for it
        starts, not only when its users' Ttl ends.
        """
        self.receive(self.publish(1, f"{EDGAR} online"))
        self.annabel_goes("away")
        self.assertEqual(len(self.notifications()), 1)
        self.store.remove_bridge("poe-dsl")
        self.clock.advance(BRIDGE_CACHE_SECONDS)
        self.annabel_goes("busy")
        self.annabel_goes("online")
        self.assertEqual(self.notifications(), [])


class BridgeNotifierTests(SynchronousTestCase):
    """
    The numbering, on its own.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.sent: list[bytes] = []
        self.notifier = BridgeNotifier(self.clock, {REQUEST: render_request})

    def send(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    def notify(self, count: int, bridge: str = "poe-dsl") -> list[str]:
        for _ in range(count):
            self.notifier.notify(bridge, EDGAR, Event(REQUEST, LENORE))
        sent, self.sent = self.sent, []
        return [parse_datagram(d).headers["Seq"] for d in sent]

    def test_numbers_start_at_one_and_count_up(self) -> None:
        self.notifier.heard_from(BRIDGE, self.send)
        self.assertEqual(self.notify(3), ["1", "2", "3"])
        self.assertEqual(self.notifier.last_seq(BRIDGE), 3)
        # Heard from again (another address): the count goes on.
        self.notifier.heard_from(BRIDGE, self.send)
        self.assertEqual(self.notify(1), ["4"])

    def test_a_new_secret_counts_from_one_again(self) -> None:
        self.notifier.heard_from(BRIDGE, self.send)
        self.notify(3)
        again = replace(BRIDGE, secret="77" * 32)
        self.assertEqual(self.notifier.last_seq(again), 0)
        self.notifier.heard_from(again, self.send)
        self.assertEqual(self.notify(1), ["1"])
        verified(self.sent_one(), "77" * 32)

    def sent_one(self) -> bytes:
        self.notifier.notify("poe-dsl", EDGAR, Event(REQUEST, LENORE))
        return self.sent.pop()

    def test_rate_refills_on_the_clock(self) -> None:
        self.notifier.heard_from(replace(BRIDGE, rate=5), self.send)
        self.assertEqual(len(self.notify(20)), 10)
        self.clock.advance(1)
        self.assertEqual(self.notify(20)[:1], ["21"])

    def test_a_datagram_not_sent_is_counted(self) -> None:
        self.notifier.heard_from(BRIDGE, lambda data: False)
        self.notify(2)
        self.assertEqual(self.notifier._outboxes["poe-dsl"].dropped, 2)
        self.assertEqual(self.notifier.last_seq(BRIDGE), 2)


class ResyncTestCase(NotifyTestCase):
    """
    RESYNC over a stream.
    """

    def resync(self, seq: int, conn=None, **kw) -> Frame:
        conn = conn or self.connect()
        conn.send_bytes(
            signed_resync(
                kw.pop("name", "poe-dsl"), kw.pop("secret", SECRET), seq, **kw
            )
        )
        [answer] = conn.frames()
        return answer


class ResyncTests(ResyncTestCase):
    def test_it_answers_its_users_subscriptions_and_the_notification_seq(
        self,
    ) -> None:
        self.store.update_bridge(replace(BRIDGE, users="*@poe.net"))
        self.clock.advance(BRIDGE_CACHE_SECONDS)
        self.subscribed(LENORE, EDGAR)
        self.receive(self.publish(1, f"{EDGAR} online", f"{LENORE} away"))
        self.annabel_goes("busy")
        self.annabel_goes("busy", Note="at the shop")
        answer = self.resync(2)
        self.assertEqual(answer.code, 200, answer)
        self.assertEqual(answer.headers, {"Notify-Seq": "3", "Users": "2"})
        self.assertEqual(
            answer.body.decode().splitlines(),
            [
                f"{EDGAR} {ANNABEL} both busy at the shop",
                f"{EDGAR} {LENORE} from offline",
                f"{LENORE} {EDGAR} to online",
            ],
        )

    def test_only_users_it_publishes_now_and_its_pattern_allows(self) -> None:
        """
        Users it never published, published offline, whose Ttl ended,
        or that its pattern no longer allows are not in the answer.
        """
        self.subscribed(LENORE, EDGAR)
        self.subscribed(ANNABEL, LENORE)
        self.receive(self.publish(1, f"{EDGAR} online", f"{ANNABEL} busy", ttl=60))
        self.receive(self.publish(2, f"{ANNABEL} offline"))
        self.assertEqual(self.resync(3).headers["Users"], "1")
        self.store.update_bridge(replace(BRIDGE, users="annabel@poe.net"))
        self.clock.advance(BRIDGE_CACHE_SECONDS)
        self.assertEqual(self.resync(4).body, b"")
        self.store.update_bridge(BRIDGE)
        self.clock.advance(60)
        answer = self.resync(5)
        self.assertEqual((answer.headers["Users"], answer.body), ("0", b""))

    def test_answers_are_paged(self) -> None:
        resync = self.handler.groups[1].bridge_resync
        resync._page_users = 1
        self.receive(self.publish(1, f"{EDGAR} online", f"{ANNABEL} busy"))
        first = self.resync(2)
        self.assertEqual(first.headers["Next"], ANNABEL)
        self.assertTrue(first.body.decode().startswith(f"{ANNABEL} {EDGAR} "))
        second = self.resync(3, after=ANNABEL)
        self.assertNotIn("Next", second.headers)
        self.assertTrue(second.body.decode().startswith(f"{EDGAR} {ANNABEL} "))


class ResyncAttackTests(ResyncTestCase):
    def test_unknown_bridge_and_bad_mac_get_the_same_answer(self) -> None:
        bad_mac = self.resync(1, secret="ab" * 32)
        unknown = self.resync(1, name="poe-dsx")
        self.assertEqual(bad_mac.code, 535)
        self.assertEqual((unknown.code, unknown.argument), (535, bad_mac.argument))
        self.assertEqual(self.resync(1).code, 200)

    def test_a_replayed_resync_is_refused(self) -> None:
        """
        Its Seq shares the PUBLISH window: the same bytes again (sent by
        whoever captured them) or a number used by a PUBLISH are refused,
        unlike a repeated PUBLISH.
        """
        self.receive(self.publish(5, f"{EDGAR} online"))
        data = signed_resync("poe-dsl", SECRET, 6)
        conn = self.connect()
        conn.send_bytes(data)
        self.assertEqual(conn.frames()[0].code, 200)
        with capturedLogs() as events:
            conn.send_bytes(data)
            [again] = conn.frames()
        self.assertEqual(again.code, 503)
        self.assertTrue(any("503" in formatEvent(e) for e in events))
        self.assertEqual(self.resync(5).code, 503)
        self.assertEqual(self.resync(2000).code, 200)
        self.assertEqual(self.resync(2000 - 1024).code, 503)

    def test_a_changed_byte_breaks_the_mac(self) -> None:
        conn = self.connect()
        data = signed_resync("poe-dsl", SECRET, 1, after=ANNABEL)
        conn.send_bytes(data.replace(b"annabel", b"lenore"))
        self.assertEqual(conn.frames()[0].code, 535)

    def test_resync_in_a_datagram_says_use_a_stream(self) -> None:
        data = signed_resync("poe-dsl", SECRET, 1)
        data = data.replace(b"\r\n\r\n", f"\r\nCookie: {self.cookie}\r\n\r\n".encode())
        answer = self.receive(data)
        self.assertEqual(answer.code, 305)
        self.assertEqual(self.resync(1).code, 200)

    def test_malformed_headers(self) -> None:
        conn = self.connect()
        for headers in (
            {},
            {"Bridge": "poe-dsl", "Seq": "1"},
            {"Bridge": "poe-dsl", "Seq": "x", "Mac": "00"},
        ):
            self.assertEqual(conn.ask("RESYNC", "1", headers=headers).code, 501)
        self.assertEqual(self.resync(1, after="not an address").code, 553)

    def test_resyncs_are_rate_limited_per_bridge(self) -> None:
        codes = [self.resync(seq).code for seq in range(1, int(RESYNC_BURST) + 2)]
        self.assertEqual(codes, [200] * int(RESYNC_BURST) + [429])
        self.clock.advance(1)
        self.assertEqual(self.resync(100).code, 200)


class DocumentedExampleTests(SynchronousTestCase):
    def test_the_macs_shown_in_protocol_md_are_right(self) -> None:
        """
        The notification and the RESYNC of doc/protocol.md 9.8, whose
        secret is C{a7} 32 times, carry the MACs a bridge computes.
        """
        text = (Path(__file__).parents[3] / "doc" / "protocol.md").read_text()
        section = text[text.index("### 9.8") :]
        blocks = re.findall(r"```\n(.*?)```", section, re.S)[:2]
        self.assertEqual(len(blocks), 2)
        for block in blocks:
            lines = []
            for line in block.splitlines():
                lines.append(line[3:])
                if line in ("C:", "S:"):
                    break
            data = "".join(f"{line}\r\n" for line in lines).encode()
            mac = parse_datagram(data).headers["Mac"]
            self.assertEqual(mac, datagram_mac("a7" * 32, unsigned_bytes(data)))
