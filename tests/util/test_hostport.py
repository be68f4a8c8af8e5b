"""
Tests for L{fmtp.util.hostport}: the one C{HOST:PORT} parser, and the
callers that word its errors their own way.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from fmtp.cli.config import DEFAULT_SERVER, check_server
from fmtp.dns.hostsfile import DEFAULT_HOSTS, parse_hosts
from fmtp.dns.resolver import parse_nameserver
from fmtp.listeners import parse_udp_listener
from fmtp.protocols.object.plugin import ObjectProtocolPlugin
from fmtp.util.hostport import (
    DEFAULT_FMTP_PORT,
    OBJECT_PORT,
    ip_literal,
    parse_host_port,
    parse_port,
)


class HostPortTests(SynchronousTestCase):
    def test_host_port_names(self) -> None:
        self.assertEqual(
            parse_host_port("Lost.Lenore.org:8000"), ("lost.lenore.org", 8000)
        )
        self.assertEqual(
            parse_host_port("lost.lenore.org", 7070), ("lost.lenore.org", 7070)
        )
        with self.assertRaises(ValueError):
            parse_host_port("lost.lenore.org")
        with self.assertRaises(ValueError):
            parse_host_port("bad name!:80")

    @given(st.text(max_size=40))
    def test_never_crashes(self, text: str) -> None:
        """
        Whatever an admin types, the answer is a result or a ValueError.
        """
        try:
            host, port = parse_host_port(text, 7070)
        except ValueError:
            return
        self.assertTrue(0 < port < 65536 and host)

    def test_addresses(self) -> None:
        self.assertEqual(parse_host_port("[2001:DB8::1]:53"), ("2001:db8::1", 53))
        self.assertEqual(parse_host_port("Lenore.org.:1", names=True)[0], "lenore.org")
        with self.assertRaises(ValueError) as raised:
            parse_host_port("lenore.org:53", names=False)
        self.assertIn("not an IP address", str(raised.exception))


class PortTests(SynchronousTestCase):
    def test_ports(self) -> None:
        self.assertEqual(parse_port("7070"), 7070)
        self.assertEqual(parse_port("0", minimum=0), 0)
        for text, words in [
            ("0", "out of range"),
            ("65536", "out of range"),
            ("", "not a number"),
            ("-1", "not a number"),
            ("²", "not a number"),
        ]:
            with self.assertRaises(ValueError) as raised:
                parse_port(text)
            self.assertIn(words, str(raised.exception), text)

    def test_ip_literal(self) -> None:
        self.assertEqual(ip_literal("127.0.0.1"), "127.0.0.1")
        self.assertEqual(ip_literal("[::1]"), "::1")
        self.assertEqual(ip_literal("2001:DB8::1"), "2001:db8::1")
        self.assertIsNone(ip_literal("lenore.org"))


def test_default_port_is_said_once() -> None:
    """
    The object protocol's port, where each place that needs it reads it:
    the default listeners, the client's default server, the hosts file of
    the embedded default.
    """
    assert DEFAULT_FMTP_PORT == OBJECT_PORT == 7070
    assert ObjectProtocolPlugin.default_listeners == (
        "tcp:7070:interface=127.0.0.1",
        "udp:7070:interface=127.0.0.1",
    )
    assert DEFAULT_SERVER == "tcp:127.0.0.1:7070"
    hosts = parse_hosts(DEFAULT_HOSTS.splitlines())
    assert hosts.routes == {"localhost": [("localhost", 7070)]}


def test_callers_keep_their_wording() -> None:
    """
    Every caller of the one parser still says what it expected.
    """
    with pytest.raises(ValueError, match="from 0 to 65535"):
        parse_udp_listener("udp:65536")
    assert parse_udp_listener("udp:0:interface=127.0.0.1") == (0, "127.0.0.1")
    with pytest.raises(usage.UsageError, match="expected udp:HOST:PORT"):
        check_server("udp:localhost:0", "--server")
    assert check_server("udp:127.0.0.1:7070", "--server") == ("127.0.0.1", 7070)
    assert check_server("udp:[::1]:7070", "--server") == ("::1", 7070)
    with pytest.raises(ValueError, match="not an IP address"):
        parse_nameserver("ns.example:53")
