"""
L{fmtp.connlimit}: how many streams a server admits and from whom, and how
it closes them at shutdown.  test_abuse tries the caps over real sockets.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.connlimit import (
    HARD_RESERVE,
    LOOPBACK,
    ConnectionLimits,
    Connections,
    default_limits,
    open_file_limit,
    parse_networks,
    source_of,
)


class FakeStream:
    def __init__(self, connections: Connections, finishes: bool = True) -> None:
        self.connections = connections
        self.finishes = finishes
        self.aborted = False

    def shut_down(self) -> None:
        if self.finishes:
            self.connections.release(self)

    def abort(self) -> None:
        self.aborted = True
        self.connections.release(self)


class DefaultsTests(SynchronousTestCase):
    def test_below_the_file_limit_with_a_reserve(self) -> None:
        limits = default_limits(1024)
        self.assertEqual(limits.max_total, 1024 - 128)
        self.assertEqual(limits.max_trusted, 1024 - HARD_RESERVE)
        self.assertEqual(limits.max_per_source, 64)
        self.assertEqual(limits.trusted, LOOPBACK)

    def test_small_limits_keep_a_minimum_reserve(self) -> None:
        limits = default_limits(256)
        self.assertEqual(limits.max_total, 256 - 64)
        self.assertEqual(limits.max_per_source, 64)

    def test_admin_values_stay_out_of_the_hard_reserve(self) -> None:
        limits = default_limits(1024, max_total=5000, max_per_source=9000)
        self.assertEqual(limits.max_total, 1024 - HARD_RESERVE)
        self.assertEqual(limits.max_per_source, limits.max_total)
        self.assertEqual(default_limits(1024, trusted=()).trusted, ())

    def test_from_this_process(self) -> None:
        self.assertGreater(open_file_limit(), HARD_RESERVE)
        self.assertLess(default_limits().max_total, open_file_limit())

    def test_parse_networks(self) -> None:
        self.assertEqual(
            parse_networks(["10.0.0.0/8", "2001:db8::1"]),
            (
                ipaddress.ip_network("10.0.0.0/8"),
                ipaddress.ip_network("2001:db8::1/128"),
            ),
        )
        with self.assertRaises(ValueError) as e:
            parse_networks(["10.0.0.300/8"])
        self.assertIn("10.0.0.300/8", str(e.exception))

    def test_sources(self) -> None:
        """
        IPv6 hosts count by /64; a mapped IPv4 address is the IPv4 one.
        """
        self.assertEqual(source_of("2001:db8::1")[0], source_of("2001:db8::ffff:1")[0])
        self.assertNotEqual(
            source_of("2001:db8::1")[0], source_of("2001:db8:0:1::1")[0]
        )
        self.assertEqual(source_of("::ffff:192.0.2.1")[0], source_of("192.0.2.1")[0])
        self.assertEqual(source_of("/tmp/socket"), ("/tmp/socket", None))


class AdmitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.limits = ConnectionLimits(
            max_total=5,
            max_per_source=2,
            max_trusted=7,
            trusted=parse_networks(["10.9.0.0/16"]),
        )
        self.connections = Connections(self.limits, self.clock)

    def open(self, host: str) -> tuple[FakeStream, str | None]:
        stream = FakeStream(self.connections)
        return stream, self.connections.admit(stream, host)

    def test_per_source(self) -> None:
        self.assertIsNone(self.open("192.0.2.1")[1])
        first, _ = self.open("192.0.2.1")
        self.assertEqual(
            self.open("192.0.2.1")[1], "too many connections from your address"
        )
        self.assertIsNone(self.open("192.0.2.2")[1])
        self.connections.release(first)
        self.assertIsNone(self.open("192.0.2.1")[1])
        self.assertEqual(self.connections.count_from("192.0.2.1"), 2)

    def test_total_and_the_reserve_for_trusted_sources(self) -> None:
        for i in range(5):
            self.assertIsNone(self.open(f"192.0.2.{i}")[1])
        self.assertEqual(
            self.open("192.0.2.9")[1], "too many connections, try again later"
        )
        self.assertIsNone(self.open("10.9.1.1")[1])
        self.assertIsNone(self.open("10.9.1.1")[1])
        self.assertEqual(
            self.open("10.9.1.1")[1], "too many connections, try again later"
        )
        self.assertEqual(len(self.connections), 7)

    def test_refusals_are_logged_sparingly(self) -> None:
        from twisted.logger import globalLogPublisher

        logged: list[dict] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        self.open("192.0.2.1")
        self.open("192.0.2.1")
        for _ in range(100):
            self.open("192.0.2.1")
        refused = [e for e in logged if "Refused" in e.get("log_format", "")]
        self.assertEqual(len(refused), 1)
        self.clock.advance(60)
        self.open("192.0.2.1")
        self.assertEqual(logged[-1]["suppressed"], " (99 similar lines suppressed)")

    def test_release_of_a_stranger_is_ignored(self) -> None:
        self.connections.release(FakeStream(self.connections))
        self.assertEqual(len(self.connections), 0)


class ShutDownTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.connections = Connections(default_limits(1024), self.clock)

    def test_nothing_open(self) -> None:
        self.successResultOf(self.connections.shut_down(5))

    def test_waits_for_streams_then_aborts_stragglers(self) -> None:
        quick = FakeStream(self.connections)
        slow = FakeStream(self.connections, finishes=False)
        for stream in (quick, slow):
            self.connections.admit(stream, "192.0.2.1")
        d = self.connections.shut_down(5)
        self.assertNoResult(d)
        self.assertEqual(self.connections.streams(), [slow])
        self.clock.advance(5)
        self.successResultOf(d)
        self.assertTrue(slow.aborted)
        self.assertFalse(quick.aborted)

    def test_deadline_cancelled_when_all_finish(self) -> None:
        slow = FakeStream(self.connections, finishes=False)
        self.connections.admit(slow, "192.0.2.1")
        d = self.connections.shut_down(5)
        self.connections.release(slow)
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class OptionsTests(SynchronousTestCase):
    """
    C{twistd fmtp} options for the limits.
    """

    def parse(self, *args: str):
        from fmtp.serveroptions import Options

        options = Options()
        options.parseOptions(list(args))
        return options["connection-limits"]

    def test_defaults(self) -> None:
        self.assertEqual(self.parse(), default_limits())

    def test_options(self) -> None:
        limits = self.parse(
            "--max-connections",
            "100",
            "--max-connections-per-source",
            "5",
            "--trusted-source",
            "10.0.0.0/8",
            "--trusted-source",
            "2001:db8::/48",
        )
        self.assertEqual((limits.max_total, limits.max_per_source), (100, 5))
        self.assertEqual(
            limits.trusted, parse_networks(["10.0.0.0/8", "2001:db8::/48"])
        )

    def test_bad_values(self) -> None:
        from twisted.python.usage import UsageError

        for args in (
            ["--max-connections", "0"],
            ["--max-connections-per-source", "many"],
            ["--trusted-source", "example.com"],
        ):
            with self.assertRaises(UsageError, msg=args):
                self.parse(*args)
