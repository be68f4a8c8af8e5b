"""
Unit tests of the datagram rules: cookies, no amplification towards an
unverified source, the size cap, rate limits, and replies never answered.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.cookies import SourceCookies
from fmtp.framing.datagram import FrameDatagramProtocol
from fmtp.ratelimit import SourceRateLimiter
from fmtp.wire import MAX_DATAGRAM, parse_datagram, request, serialize
from tests.helpers import add_account, make_services, object_protocol

SOURCE = ("192.0.2.7", 5353)


class RecordingDatagramTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple]] = []

    def write(self, data: bytes, addr) -> None:
        self.sent.append((data, addr))


class DatagramTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.services = make_services(self.clock)
        add_account(self.services.store, "edgar@poe.net", "nevermore-quoth")
        self.protocol = FrameDatagramProtocol(object_protocol(self.services))
        self.transport = RecordingDatagramTransport()
        self.protocol.makeConnection(self.transport)

    def receive(self, data: bytes, source=SOURCE):
        self.protocol.datagramReceived(data, source)
        sent, self.transport.sent = self.transport.sent, []
        for _, addr in sent:
            self.assertEqual(addr, source)
        return [parse_datagram(data) for data, _ in sent]

    def padded(self, verb, tag="1", argument="", headers=None, size=128) -> bytes:
        headers = dict(headers or {})
        data = serialize(request(verb, tag, argument, headers))
        headers["Pad"] = "x" * max(1, size - len(data) - 7)
        return serialize(request(verb, tag, argument, headers))

    def cookie(self) -> str:
        [answer] = self.receive(self.padded("CAPA"))
        self.assertEqual(answer.code, 432)
        return answer.headers["Cookie"]

    def test_first_contact_gets_only_a_cookie(self) -> None:
        request_bytes = self.padded("GET", argument="edgar@poe.net")
        self.protocol.datagramReceived(request_bytes, SOURCE)
        [(data, _)] = self.transport.sent
        self.assertLessEqual(len(data), len(request_bytes))
        self.assertEqual(parse_datagram(data).code, 432)

    def test_small_unverified_request_gets_nothing(self) -> None:
        self.assertEqual(self.receive(b"CAPA 1\r\n\r\n"), [])

    def test_cookie_unlocks_answers(self) -> None:
        cookie = self.cookie()
        [answer] = self.receive(
            serialize(request("GET", "2", "edgar@poe.net", {"Cookie": cookie}))
        )
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.headers["Address"], "edgar@poe.net")

    def test_cookie_is_bound_to_the_source_host(self) -> None:
        cookie = self.cookie()
        spoofed = ("198.51.100.1", 5353)
        data = self.padded("GET", argument="edgar@poe.net", headers={"Cookie": cookie})
        [answer] = self.receive(data, spoofed)
        self.assertEqual(answer.code, 432)

    def test_cookie_expires(self) -> None:
        cookie = self.cookie()
        self.clock.advance(600)
        data = self.padded("CAPA", headers={"Cookie": cookie})
        self.assertEqual(self.receive(data)[0].code, 432)

    def test_stream_only_commands(self) -> None:
        cookie = self.cookie()
        for verb in ("LOGIN", "PUT", "DELETE"):
            [answer] = self.receive(
                serialize(request(verb, "3", "", {"Cookie": cookie}))
            )
            self.assertEqual(answer.code, 305)

    def test_large_answer_says_use_tcp(self) -> None:
        cookie = self.cookie()
        store = self.services.store
        from fmtp.objects import FMTPObject

        big = FMTPObject("1.abc.edgar@poe.net", "post", {"Public": "yes"}, b"x" * 2000)
        store.put_object(big)
        [answer] = self.receive(
            serialize(request("GET", "4", big.id, {"Cookie": cookie}))
        )
        self.assertEqual(answer.code, 305)

    def test_list_over_udp(self) -> None:
        cookie = self.cookie()
        [answer] = self.receive(serialize(request("LIST", "5", "", {"Cookie": cookie})))
        self.assertEqual(answer.code, 200)

    def test_oversized_datagram(self) -> None:
        [answer] = self.receive(b"X" * (MAX_DATAGRAM + 1))
        self.assertEqual(answer.code, 552)

    def test_garbage(self) -> None:
        [answer] = self.receive(b"\x00\xff garbage that is not a frame at all\r\n" * 3)
        self.assertGreaterEqual(answer.code, 500)
        self.assertEqual(self.receive(b"\x01"), [])

    def test_replies_are_never_answered(self) -> None:
        self.assertEqual(self.receive(self.padded("200")), [])

    def test_rate_limit_drops(self) -> None:
        limiter = self.protocol.limiter
        answered = sum(
            len(self.receive(self.padded("CAPA", str(i))))
            for i in range(int(limiter.burst) + 10)
        )
        self.assertEqual(answered, limiter.burst)
        self.clock.advance(1)
        self.assertEqual(len(self.receive(self.padded("CAPA"))), 1)


class SourceRateLimiterTests(SynchronousTestCase):
    def test_refills(self) -> None:
        clock = MemoryReactorClock()
        limiter = SourceRateLimiter(clock, rate=2, burst=2)
        self.assertEqual([limiter.allow("a") for _ in range(3)], [True, True, False])
        self.assertTrue(limiter.allow("b"))
        clock.advance(0.5)
        self.assertTrue(limiter.allow("a"))
        self.assertFalse(limiter.allow("a"))

    def test_bounded(self) -> None:
        limiter = SourceRateLimiter(MemoryReactorClock(), max_sources=10)
        for i in range(100):
            limiter.allow(i)
        self.assertEqual(len(limiter), 10)


class SourceCookiesTests(SynchronousTestCase):
    def test_windows(self) -> None:
        clock = MemoryReactorClock()
        cookies = SourceCookies(clock, window=300)
        cookie = cookies.cookie_for("192.0.2.1")
        self.assertTrue(cookies.is_valid("192.0.2.1", cookie))
        self.assertFalse(cookies.is_valid("192.0.2.2", cookie))
        self.assertFalse(cookies.is_valid("192.0.2.1", None))
        self.assertFalse(cookies.is_valid("192.0.2.1", "short"))
        clock.advance(300)
        self.assertTrue(cookies.is_valid("192.0.2.1", cookie))
        clock.advance(300)
        self.assertFalse(cookies.is_valid("192.0.2.1", cookie))

    def test_secret_matters(self) -> None:
        clock = MemoryReactorClock()
        a, b = SourceCookies(clock), SourceCookies(clock)
        self.assertFalse(b.is_valid("h", a.cookie_for("h")))
