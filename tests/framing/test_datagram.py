"""
Unit tests of the datagram rules: cookies, no amplification towards an
unverified source, the size cap, rate limits, and replies never answered.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from fmtp.cookies import SourceCookies
from fmtp.fairness import current_principal
from fmtp.framing.datagram import FrameDatagramProtocol
from fmtp.interfaces import IDatagramLimiter
from fmtp.objects import FMTPObject
from fmtp.ratelimit import LogLimiter, SourceRateLimiter, suppressed_note
from fmtp.wire import (
    MAX_DATAGRAM,
    UNSOLICITED_TAG,
    Limits,
    parse_datagram,
    request,
    serialize,
)
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

    def exact_request(self, verb: str, size: int, tag: str = "1", **headers) -> bytes:
        """
        A request without a cookie padded to exactly C{size} bytes.
        """
        data = serialize(request(verb, tag, headers={**headers, "Pad": "x"}))
        data = serialize(
            request(verb, tag, headers={**headers, "Pad": "x" * (size - len(data) + 1)})
        )
        self.assertEqual(len(data), size)
        return data

    def test_reply_as_large_as_the_request_is_sent(self) -> None:
        """
        No reply to an unverified source is I{larger} than its request: one
        of the same size is sent, one byte more is dropped.
        """
        self.protocol.datagramReceived(self.padded("CAPA"), SOURCE)
        [(cookie_reply, _)] = self.transport.sent
        size = len(cookie_reply)
        self.transport.sent = []
        [answer] = self.receive(self.exact_request("CAPA", size))
        self.assertEqual(answer.code, 432)
        self.assertEqual(self.receive(self.exact_request("CAPA", size - 1)), [])

    def public_object_answer_of(self, size: int) -> tuple[FMTPObject, int]:
        """
        A public object whose GET answer is C{size} bytes long, found by
        adjusting its body, and how long the answer to it is.
        """
        cookie = self.cookie()
        body = size - 200
        for attempt in range(5):
            obj = FMTPObject(
                f"{attempt}.sized{size}.edgar@poe.net",
                "post",
                {"Public": "yes"},
                b"x" * body,
            )
            self.services.store.put_object(obj)
            self.protocol.datagramReceived(
                serialize(request("GET", "g", obj.id, {"Cookie": cookie})), SOURCE
            )
            [(data, _)] = self.transport.sent
            self.transport.sent = []
            if len(data) == size or parse_datagram(data).code != 200:
                return obj, len(data)
            body += size - len(data)
        self.fail(f"no body gives a {size}-byte answer")

    def test_answer_of_the_largest_datagram_is_sent(self) -> None:
        """
        An answer of exactly L{MAX_DATAGRAM} bytes goes as it is; only a
        larger one becomes C{305}.
        """
        obj, size = self.public_object_answer_of(MAX_DATAGRAM)
        self.assertEqual(size, MAX_DATAGRAM)
        cookie = self.cookie()
        [answer] = self.receive(
            serialize(request("GET", "g", obj.id, {"Cookie": cookie}))
        )
        self.assertEqual((answer.code, len(answer.body)), (200, len(obj.body)))
        bigger = FMTPObject(
            f"9.sized{MAX_DATAGRAM}.edgar@poe.net",
            "post",
            {"Public": "yes"},
            obj.body + b"x",
        )
        self.services.store.put_object(bigger)
        [answer] = self.receive(
            serialize(request("GET", "g", bigger.id, {"Cookie": cookie}))
        )
        self.assertEqual(answer.code, 305)

    def test_default_rate_is_twenty_a_second_bursts_of_forty(self) -> None:
        """
        doc/protocol.md, Datagrams, 4: by default a source gets 40 answers
        at once, then 20 a second.
        """

        def answered(count: int, first: int) -> int:
            return sum(
                len(self.receive(self.padded("CAPA", str(first + i))))
                for i in range(count)
            )

        self.assertEqual(answered(50, 0), 40)
        self.clock.advance(1)
        self.assertEqual(answered(30, 100), 20)
        self.clock.advance(60)
        self.assertEqual(answered(50, 200), 40)

    def test_drops_are_logged_once_every_ten_seconds(self) -> None:
        """
        doc/admin.md: a source over its rate gets one log line about its
        drops every ten seconds, the next one saying how many were held
        back; an answered cookie request is no error and is not logged.
        """
        with capturedLogs() as events:
            for i in range(45):
                self.receive(self.padded("CAPA", str(i)))
        lines = [formatEvent(event) for event in events]
        self.assertEqual(
            lines, ["datagram from 192.0.2.7: over its rate limit, dropped"]
        )
        with capturedLogs() as events:
            self.clock.advance(9.9)
            self.protocol.limiter = SourceRateLimiter(self.clock, rate=0, burst=0)
            self.receive(self.padded("CAPA"))
            self.clock.advance(0.1)
            self.receive(self.padded("CAPA"))
        lines = [formatEvent(event) for event in events]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("(5 similar lines suppressed)", lines[0])

    def test_one_flooder_does_not_silence_the_log_of_others(self) -> None:
        """
        The log lines are limited per source: a source flooding does not
        keep the drops of another out of the log.
        """
        for i in range(45):
            self.receive(self.padded("CAPA", str(i)))
        other = ("198.51.100.9", 5353)
        for i in range(40):
            self.receive(self.padded("CAPA", str(i)), other)
        with capturedLogs() as events:
            self.receive(self.padded("CAPA"), other)
        [line] = [formatEvent(event) for event in events]
        self.assertIn(other[0], line)

    def test_dropped_reply_is_logged(self) -> None:
        """
        A reply dropped for being larger than an unverified source's
        request is logged with both sizes.
        """
        data = b"CAPA 1\r\n\r\n"
        with capturedLogs() as events:
            self.assertEqual(self.receive(data), [])
        [line] = [formatEvent(event) for event in events]
        self.assertRegex(
            line,
            r"^datagram from 192\.0\.2\.7: reply of \d+ bytes exceeds the "
            f"{len(data)}-byte request of an unverified source; dropped "
            r"\(clients pad first requests\)$",
        )

    def test_replies_received_are_logged(self) -> None:
        with capturedLogs() as events:
            self.receive(self.padded("200"))
        [line] = [formatEvent(event) for event in events]
        self.assertEqual(
            line, "datagram from 192.0.2.7: a reply, not a request; not answered"
        )

    def test_each_source_has_its_own_rate(self) -> None:
        """
        A source over its rate does not take the rate of another.
        """
        for i in range(50):
            self.receive(self.padded("CAPA", str(i)))
        other = ("198.51.100.9", 5353)
        self.assertEqual(len(self.receive(self.padded("CAPA"), other)), 1)

    def test_largest_datagram_is_served(self) -> None:
        """
        A request of exactly L{MAX_DATAGRAM} bytes is served; one byte more
        gets C{552}, tagged C{*} (its own tag was not read).
        """
        cookie = self.cookie()
        data = self.exact_request("CAPA", MAX_DATAGRAM, tag="7", Cookie=cookie)
        [answer] = self.receive(data)
        self.assertEqual((answer.code, answer.tag), (200, "7"))
        data = self.exact_request("CAPA", MAX_DATAGRAM + 1, tag="8", Cookie=cookie)
        [answer] = self.receive(data)
        self.assertEqual((answer.code, answer.tag), (552, UNSOLICITED_TAG))

    def test_server_frame_limits_apply(self) -> None:
        """
        Datagrams are parsed under the server's frame limits, not the
        defaults.
        """
        services = make_services(self.clock, limits=Limits(max_headers=2))
        protocol = FrameDatagramProtocol(object_protocol(services))
        protocol.makeConnection(self.transport)
        headers = {"Cookie": protocol.cookies.cookie_for(SOURCE[0])}
        data = serialize(request("CAPA", "1", headers={**headers, "A": "a", "B": "b"}))
        protocol.datagramReceived(data, SOURCE)
        [(sent, _)] = self.transport.sent
        self.assertGreaterEqual(parse_datagram(sent).code, 500)

    def test_store_work_is_charged_to_the_source(self) -> None:
        """
        The store's fair scheduler sees a datagram request as its source
        host's, so one source cannot take the share of all the others.
        """
        cookie = self.cookie()
        store = self.services.store
        principals = []
        read_object = store.read_object

        def recording(*args, **kwargs):
            principals.append(current_principal.get())
            return read_object(*args, **kwargs)

        store.read_object = recording
        [answer] = self.receive(
            serialize(request("GET", "2", "edgar@poe.net", {"Cookie": cookie}))
        )
        self.assertEqual(answer.code, 200)
        self.assertEqual(set(principals), {("host", SOURCE[0])})

    def test_unexpected_error_is_a_temporary_failure(self) -> None:
        """
        A request that fails unexpectedly is answered 451 with its tag, and
        the failure is logged with its source.
        """
        cookie = self.cookie()

        def broken(*args, **kwargs):
            raise RuntimeError("the store broke")

        self.services.store.read_object = broken
        self.services.store.get_object = broken
        with capturedLogs() as events:
            [answer] = self.receive(
                serialize(request("GET", "9", "edgar@poe.net", {"Cookie": cookie}))
            )
        self.assertEqual((answer.code, answer.tag), (451, "9"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIn(
            "Unexpected error answering 192.0.2.7",
            [formatEvent(event) for event in events],
        )

    def test_error_replies_are_logged(self) -> None:
        """
        An error answered to a source is logged, with its code.
        """
        with capturedLogs() as events:
            self.receive(b"X" * (MAX_DATAGRAM + 1))
        [line] = [formatEvent(event) for event in events]
        self.assertEqual(
            line,
            f"datagram from 192.0.2.7: 552 datagram larger than {MAX_DATAGRAM} bytes",
        )

    def test_sending_later_to_a_source_never_exceeds_the_limit(self) -> None:
        """
        What a command sends a datagram's source later (an ISP bridge's
        notifications) goes to that source, through this listener, and
        never larger than L{MAX_DATAGRAM}; nothing once it stopped.
        """
        self.assertTrue(self.protocol.send_unsolicited(b"x" * MAX_DATAGRAM, SOURCE))
        self.assertFalse(
            self.protocol.send_unsolicited(b"x" * (MAX_DATAGRAM + 1), SOURCE)
        )
        self.assertEqual(self.transport.sent, [(b"x" * MAX_DATAGRAM, SOURCE)])
        self.protocol.transport = None
        self.assertFalse(self.protocol.send_unsolicited(b"x", SOURCE))

    def test_default_cookie_lasts_five_to_ten_minutes(self) -> None:
        """
        doc/protocol.md, Datagrams, 2: a cookie is valid 5 to 10 minutes.
        """
        cookie = self.cookie()
        self.clock.advance(599)
        data = self.padded("GET", argument="edgar@poe.net", headers={"Cookie": cookie})
        self.assertEqual(self.receive(data)[0].code, 200)
        self.clock.advance(1)
        self.assertEqual(self.receive(data)[0].code, 432)


class RefusingRefusals:
    """
    A limiter that serves every datagram and lets no refusal through.
    """

    def __init__(self) -> None:
        self.asked: list[tuple[str, int, int]] = []

    def allow(self, source) -> bool:
        return True

    def allow_refusal(self, source, size: int, request_size: int) -> bool:
        self.asked.append((source, size, request_size))
        return False


class LimiterSeamTests(SynchronousTestCase):
    """
    The listener asks its limiter before it sends any refusal (a 432, an
    error), never before an answer that is not one.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.services = make_services(self.clock)
        self.limiter = RefusingRefusals()
        self.protocol = FrameDatagramProtocol(
            object_protocol(self.services), self.limiter
        )
        self.transport = RecordingDatagramTransport()
        self.protocol.makeConnection(self.transport)

    def test_refusals_are_held_back_answers_are_not(self) -> None:
        first = serialize(request("CAPA", "1", "", {"Pad": "x" * 128}))
        self.protocol.datagramReceived(first, SOURCE)
        self.protocol.datagramReceived(b"X" * (MAX_DATAGRAM + 1), SOURCE)
        self.assertEqual(self.transport.sent, [])
        self.assertEqual(
            [(s, r) for s, _, r in self.limiter.asked],
            [(SOURCE[0], len(first)), (SOURCE[0], MAX_DATAGRAM + 1)],
        )
        cookie = self.protocol.cookies.cookie_for(SOURCE[0])
        capa = serialize(request("CAPA", "2", "", {"Cookie": cookie}))
        self.protocol.datagramReceived(capa, SOURCE)
        [(answer, _)] = self.transport.sent
        self.assertEqual(parse_datagram(answer).code, 200)

    def test_the_default_limiter_lets_every_refusal_through(self) -> None:
        limiter = SourceRateLimiter(self.clock)
        verifyObject(IDatagramLimiter, limiter)
        self.assertTrue(limiter.allow_refusal("192.0.2.1", 5000, 10))


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

    def test_bounded_by_default(self) -> None:
        """
        The table holds 65,536 sources by default; the least recently seen
        goes first, and comes back with a full bucket.
        """
        clock = MemoryReactorClock()
        limiter = SourceRateLimiter(clock, burst=1)
        for i in range(65536):
            limiter.allow(i)
        self.assertEqual(len(limiter), 65536)
        self.assertFalse(limiter.allow(0))
        limiter.allow("one more")
        self.assertEqual(len(limiter), 65536)
        self.assertTrue(limiter.allow(1))

    def test_cost(self) -> None:
        limiter = SourceRateLimiter(MemoryReactorClock(), rate=1, burst=3)
        self.assertTrue(limiter.allow("a", cost=3))
        self.assertFalse(limiter.allow("a", cost=1))


class LogLimiterTests(SynchronousTestCase):
    def test_counts_what_it_held_back(self) -> None:
        clock = MemoryReactorClock()
        limiter = LogLimiter(clock, rate=1, burst=1)
        self.assertEqual([limiter.allow("a") for _ in range(3)], [0, None, None])
        self.assertEqual(limiter.allow("b"), 0)
        clock.advance(1)
        self.assertEqual(limiter.allow("a"), 2)
        clock.advance(1)
        self.assertEqual(limiter.allow("a"), 0)

    def test_counts_are_bounded(self) -> None:
        """
        Counts are kept for at most C{max_sources} sources, the least
        recently held back forgotten first.
        """
        clock = MemoryReactorClock()
        limiter = LogLimiter(clock, rate=1, burst=1, max_sources=2)
        self.assertEqual([limiter.allow(s) for s in "abab"], [0, 0, None, None])
        self.assertEqual([limiter.allow("c"), limiter.allow("c")], [0, None])
        clock.advance(1)
        self.assertEqual([limiter.allow(s) for s in "abc"], [0, 1, 1])

    def test_buckets_are_bounded_too(self) -> None:
        """
        The buckets are kept for C{max_sources} sources as the counts are:
        a source pushed out starts again with a full bucket.
        """
        limiter = LogLimiter(MemoryReactorClock(), rate=1, burst=1, max_sources=1)
        self.assertEqual([limiter.allow("a"), limiter.allow("a")], [0, None])
        self.assertEqual(limiter.allow("b"), 0)
        self.assertEqual(limiter.allow("a"), 1)

    def test_note(self) -> None:
        self.assertEqual(suppressed_note(0), "")
        self.assertEqual(suppressed_note(1), " (1 similar line suppressed)")
        self.assertEqual(suppressed_note(2), " (2 similar lines suppressed)")


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

    def test_given_secret(self) -> None:
        """
        Two minters sharing a secret accept each other's cookies, which are
        16 hex digits.
        """
        clock = MemoryReactorClock()
        a = SourceCookies(clock, secret=b"s" * 32)
        b = SourceCookies(clock, secret=b"s" * 32)
        cookie = a.cookie_for("h")
        self.assertRegex(cookie, "^[0-9a-f]{16}$")
        self.assertTrue(b.is_valid("h", cookie))
        self.assertFalse(b.is_valid("h", cookie[:-1] + "g"))
