"""
Unit tests of L{fmtp.auth.router}: sessions, typed events reaching only
the sessions that take their kind, and session keys proving datagrams.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from fmtp.auth.router import Event, Router, datagram_mac, session_id
from fmtp.interfaces import IRouter, ISession

EDGAR = "edgar@poe.net"
ANNABEL = "annabel@poe.net"


class RouterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.router = Router(self.clock)
        self.got: dict[str, list[Event]] = {}

    def open(self, address: str, protocol: str, *kinds: str):
        name = f"{address}/{protocol}/{len(self.got)}"
        self.got[name] = []
        return name, self.router.open(address, protocol, self.got[name].append, kinds)

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IRouter, self.router))
        _, session = self.open(EDGAR, "object", "message")
        self.assertTrue(verifyObject(ISession, session))
        self.assertEqual(session.opened, 1000)
        self.assertEqual(session.kinds, frozenset({"message"}))

    def test_events_reach_only_the_kinds_asked_for(self) -> None:
        phone, _ = self.open(EDGAR, "object", "message")
        desktop, _ = self.open(EDGAR, "presence", "presence")
        other, _ = self.open(ANNABEL, "object", "message")
        message = Event("message", "m")
        self.assertEqual(self.router.deliver(EDGAR, message), 1)
        self.assertEqual(self.router.deliver(EDGAR, Event("nudge", "n")), 0)
        self.assertEqual(self.got[phone], [message])
        self.assertEqual(self.got[desktop], [])
        self.assertEqual(self.got[other], [])

    def test_deliver_to_one_session(self) -> None:
        phone, first = self.open(EDGAR, "presence", "presence")
        desktop, second = self.open(EDGAR, "presence", "presence")
        event = Event("presence", "p")
        self.assertTrue(self.router.deliver_to(second, event))
        self.assertFalse(self.router.deliver_to(second, Event("message", "m")))
        self.assertEqual((self.got[phone], self.got[desktop]), ([], [event]))
        self.router.close(second)
        self.assertFalse(self.router.deliver_to(second, event))
        self.assertEqual(self.got[desktop], [event])

    def test_online_and_sessions(self) -> None:
        self.assertEqual(self.router.online(EDGAR), frozenset())
        _, first = self.open(EDGAR, "object", "message")
        _, second = self.open(EDGAR, "presence", "presence")
        self.assertEqual(self.router.online(EDGAR), {"object", "presence"})
        self.assertEqual(self.router.sessions(EDGAR, "presence"), [second])
        self.assertEqual(len(self.router.sessions(EDGAR)), 2)
        self.router.close(second)
        self.router.close(second)
        self.assertEqual(self.router.online(EDGAR), {"object"})
        self.router.close(first)
        self.assertEqual(self.router.sessions(EDGAR), [])
        self.assertEqual(len(self.router), 0)

    def test_keys(self) -> None:
        _, session = self.open(EDGAR, "object", "message")
        _, other = self.open(EDGAR, "object", "message")
        self.assertNotEqual(session.key, other.key)
        self.assertGreaterEqual(len(session.key), 40)
        self.assertIs(self.router.session_for_key(session.key), session)
        self.router.close(session)
        self.assertIsNone(self.router.session_for_key(session.key))

    def test_fan_out_reaches_each_address_once(self) -> None:
        edgar, _ = self.open(EDGAR, "chat", "room")
        annabel, _ = self.open(ANNABEL, "chat", "room")
        line = Event("room", "hello")
        reached = self.router.fan_out([EDGAR, ANNABEL, EDGAR, "nobody@poe.net"], line)
        self.assertEqual(reached, 2)
        self.assertEqual((self.got[edgar], self.got[annabel]), ([line], [line]))

    def test_a_sink_may_close_its_session(self) -> None:
        sessions = []

        def closing(event: Event) -> None:
            self.router.close(sessions[0])

        sessions.append(self.router.open(EDGAR, "object", closing, ["message"]))
        other, _ = self.open(EDGAR, "object", "message")
        self.assertEqual(self.router.deliver(EDGAR, Event("message", 1)), 2)
        self.assertEqual(len(self.got[other]), 1)
        self.assertEqual(self.router.sessions(EDGAR, "object")[0].key, _.key)

    def test_datagrams_prove_their_session(self) -> None:
        """
        A datagram names its session by the public id, never the key, and
        proves it with a MAC keyed by the key.
        """
        self.router.by_id("chat")
        _, session = self.open(EDGAR, "chat", "room-line")
        _, unnamed = self.open(EDGAR, "presence", "presence")
        self.assertEqual(session.id, session_id(session.key))
        self.assertEqual(len(session.id), 32)
        self.assertNotIn(session.id, session.key)
        data = b"STATUS 1\r\nStatus: away\r\n\r\n"
        mac = datagram_mac(session.key, data)
        self.assertIs(self.router.verify_datagram(session.id, data, mac), session)
        self.assertIs(
            self.router.verify_datagram(session.id, data, mac.upper()), session
        )
        self.assertIsNone(self.router.verify_datagram(session.id, data + b"x", mac))
        self.assertIsNone(self.router.verify_datagram(session.id, data, "0" * 64))
        self.assertIsNone(self.router.verify_datagram(session.key, data, mac))
        self.assertIsNone(self.router.verify_datagram("unknown", data, mac))
        self.assertIsNone(self.router.verify_datagram(session.id, data, "ünï"))
        # A session of a protocol that takes no datagrams is not found.
        unnamed_mac = datagram_mac(unnamed.key, data)
        self.assertIsNone(self.router.verify_datagram(unnamed.id, data, unnamed_mac))
        self.router.close(session)
        self.assertIsNone(self.router.verify_datagram(session.id, data, mac))


def test_unsigned_bytes_drop_only_the_mac_header_line() -> None:
    """
    A datagram's MAC covers it without its Mac line, in any spelling or
    place among the headers; a Mac-like line in the body stays.
    """
    from fmtp.auth.router import unsigned_bytes

    body = b"Mac: not a header\r\n"
    for signed, unsigned in [
        (b"P 1\r\nMac: ab\r\nA: 1\r\n\r\n", b"P 1\r\nA: 1\r\n\r\n"),
        (b"P 1\nA: 1\nmac:ab \n\n", b"P 1\nA: 1\n\n"),
        (
            b"P 1\r\nLength: 19\r\n\r\n" + body,
            b"P 1\r\nLength: 19\r\n\r\n" + body,
        ),
        (b"P 1\r\n", b"P 1\r\n"),
        (b"", b""),
    ]:
        assert unsigned_bytes(signed) == unsigned
