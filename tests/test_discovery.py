"""
Protocol plugins: the example time plugin in plugins/fmtp-time, the
contract every installed plugin must meet, and discovery of a plugin that
lives outside fmtp.

The example is what a hobbyist copies, so it is tested the way
doc/plugins.md tells them to test theirs: its handler over a
StringTransport driven by a Clock, its datagram side through the cookie
rules, and the whole server on real loopback sockets.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from fmtp.client import DatagramClient, connect
from fmtp.discovery import find_protocol_plugins
from fmtp.framing.datagram import FrameDatagramProtocol
from fmtp.framing.stream import FrameStreamFactory, FrameStreamProtocol
from fmtp.interfaces import IProtocolPlugin
from fmtp.protocols.object.plugin import ObjectProtocolPlugin
from fmtp.server import build_server
from fmtp.serveroptions import check_listener
from fmtp.wire import Frame, parse_datagram, request, serialize
from tests.helpers import StreamHarness, bound_ports, make_services

CHECKOUT = Path(__file__).resolve().parent.parent
#: The example plugin's distribution, and the one module it installs.
EXAMPLE = CHECKOUT / "plugins" / "fmtp-time"
EXAMPLE_MODULE = EXAMPLE / "fmtp" / "plugins" / "fmtp_time.py"

#: 2023-11-14T22:13:20Z, and most of a second more: TIME must truncate.
NOW = 1_700_000_000.75

#: What a protocol name must look like to make a usable --listen-NAME.
PLUGIN_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")


def load_example() -> ModuleType:
    """
    Import plugins/fmtp-time/fmtp/plugins/fmtp_time.py by path.

    In this process C{fmtp.plugins.__path__} was fixed when fmtp was first
    imported, without plugins/fmtp-time on C{sys.path}, so the example
    cannot be imported by its installed name here; a private name keeps it
    from being mistaken for an installed plugin.
    """
    name = "fmtp_time_example"
    spec = importlib.util.spec_from_file_location(name, EXAMPLE_MODULE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fmtp_time = load_example()


def time_connection(services) -> StreamHarness:
    """
    One time-protocol stream over a StringTransport: the example's
    commands on C{services}'s server, built once per server by its plugin.
    """
    return StreamHarness(services, handler=fmtp_time.timeProtocol.handler(services))


class TimeCommandsTests(SynchronousTestCase):
    """
    The time handler over a stream, on a Clock: every answer is exact.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.services = make_services(self.clock)
        self.conn = time_connection(self.services)

    def test_greeting(self) -> None:
        self.assertEqual((self.conn.greeting.code, self.conn.greeting.tag), (220, "*"))
        self.assertEqual(self.conn.greeting.argument, "poe.net fmtp/1 time ready")

    def test_time(self) -> None:
        answer = self.conn.ask("TIME", "t1")
        self.assertEqual((answer.code, answer.tag), (200, "t1"))
        self.assertEqual(answer.headers["Time"], "1700000000")
        self.assertEqual(answer.headers["Date"], "2023-11-14T22:13:20Z")

    def test_time_follows_the_clock(self) -> None:
        self.clock.advance(86400 + 0.5)
        # A day idle closed the first connection (see test_idle_stream_closed).
        answer = time_connection(self.services).ask("time")
        self.assertEqual(answer.headers["Time"], "1700086401")
        self.assertEqual(answer.headers["Date"], "2023-11-15T22:13:21Z")

    def test_time_and_date_agree(self) -> None:
        """
        Both headers come from the same whole second, so a client may read
        either.
        """
        for step in (0.2, 0.05, 0.7, 59.05):
            self.clock.advance(step)
            answer = self.conn.ask("TIME")
            date = datetime.strptime(answer.headers["Date"], "%Y-%m-%dT%H:%M:%S%z")
            self.assertEqual(date.tzinfo, UTC)
            self.assertEqual(int(date.timestamp()), int(answer.headers["Time"]))
            self.assertEqual(int(answer.headers["Time"]), int(self.clock.seconds()))

    def test_argument_refused(self) -> None:
        """
        An L{FMTPError} raised by a command becomes its reply, and the
        connection goes on.
        """
        answer = self.conn.ask("TIME", "t2", "tomorrow")
        self.assertEqual((answer.code, answer.tag), (501, "t2"))
        self.assertIn("takes no argument", answer.argument)
        self.assertEqual(self.conn.ask("TIME", "t3").code, 200)

    def test_capa(self) -> None:
        answer = self.conn.ask("CAPA")
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.headers["Protocol"], "time")
        # The shared session commands come with the example's own.
        self.assertEqual(answer.headers["Commands"], "CAPA LOGIN LOGOUT QUIT TIME")

    def test_unknown_command(self) -> None:
        self.assertEqual(self.conn.ask("GET", "g", "x").code, 502)

    def test_pipelined_requests_keep_their_tags(self) -> None:
        self.conn.protocol.dataReceived(b"TIME a\r\n\r\nCAPA b\r\n\r\nTIME c\r\n\r\n")
        answers = self.conn.frames()
        self.assertEqual([a.tag for a in answers], ["a", "b", "c"])
        self.assertEqual({a.code for a in answers}, {200})

    def test_idle_stream_closed(self) -> None:
        """
        Timeouts come with the framing layer, on the services' clock.
        """
        self.clock.advance(self.services.idle_timeout)
        [closing] = self.conn.frames()
        self.assertEqual((closing.code, closing.tag), (421, "*"))
        self.assertTrue(self.conn.transport.disconnecting)


class RecordingDatagramTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


class TimeDatagramTests(SynchronousTestCase):
    """
    TIME over datagrams, under the cookie rule the framing layer enforces.
    """

    source = ("192.0.2.7", 5353)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        services = make_services(self.clock)
        self.protocol = fmtp_time.timeProtocol.datagram_protocol(services)
        self.transport = RecordingDatagramTransport()
        self.protocol.makeConnection(self.transport)

    def receive(self, data: bytes) -> list[Frame]:
        self.protocol.datagramReceived(data, self.source)
        sent, self.transport.sent = self.transport.sent, []
        self.assertEqual({addr for _, addr in sent} - {self.source}, set())
        return [parse_datagram(data) for data, _ in sent]

    def cookie(self) -> str:
        padded = serialize(request("TIME", "c", headers={"Pad": "x" * 100}))
        [answer] = self.receive(padded)
        self.assertEqual(answer.code, 432)
        return answer.headers["Cookie"]

    def test_time_after_cookie(self) -> None:
        cookie = self.cookie()
        [answer] = self.receive(
            serialize(request("TIME", "2", headers={"Cookie": cookie}))
        )
        self.assertEqual((answer.code, answer.tag), (200, "2"))
        self.assertEqual(answer.headers["Time"], "1700000000")

    def test_capa_lists_time(self) -> None:
        cookie = self.cookie()
        [answer] = self.receive(
            serialize(request("CAPA", "3", headers={"Cookie": cookie}))
        )
        self.assertEqual(answer.headers["Commands"], "CAPA TIME")
        self.assertEqual(answer.headers["Max-Body"], "1200")

    def test_unverified_source_gets_no_time(self) -> None:
        """
        A short request from a source without a cookie gets nothing: the
        cookie reply would be larger than it, so a forged source cannot
        use a time server to amplify traffic.
        """
        self.assertEqual(self.receive(b"TIME 1\r\n\r\n"), [])


class PluginContractTests(SynchronousTestCase):
    """
    The example plugin, and every plugin this fmtp finds, meet the
    L{IProtocolPlugin} contract.
    """

    def assertGoodPlugin(self, plugin: IProtocolPlugin) -> None:
        verifyObject(IProtocolPlugin, plugin)
        self.assertTrue(IPlugin.providedBy(plugin), plugin)
        self.assertTrue(PLUGIN_NAME.fullmatch(plugin.name), plugin.name)
        self.assertTrue(plugin.description)
        for description in plugin.default_listeners:
            check_listener(description, plugin)

    def test_example(self) -> None:
        plugin = fmtp_time.timeProtocol
        self.assertGoodPlugin(plugin)
        self.assertEqual(plugin.name, "time")
        self.assertEqual(
            tuple(plugin.default_listeners),
            ("tcp:7079:interface=127.0.0.1", "udp:7079:interface=127.0.0.1"),
        )

    def test_example_builds_framing_protocols(self) -> None:
        services = make_services(Clock())
        plugin = fmtp_time.timeProtocol
        factory = plugin.stream_factory(services)
        self.assertIsInstance(factory, FrameStreamFactory)
        self.assertIsInstance(factory.handler.groups[1], fmtp_time.TimeCommands)
        self.assertIs(factory.handler.services, services)
        self.assertIsInstance(
            factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1)),
            FrameStreamProtocol,
        )
        datagram = plugin.datagram_protocol(services)
        self.assertIsInstance(datagram, FrameDatagramProtocol)
        # One handler per server, for streams and datagrams alike.
        self.assertIs(datagram.handler, factory.handler)

    def test_installed_plugins(self) -> None:
        found = find_protocol_plugins()
        self.assertIn("object", found)
        for name, plugin in found.items():
            self.assertEqual(plugin.name, name)
            self.assertGoodPlugin(plugin)


#: Run in a child whose sys.path has the example's directory, so that
#: fmtp.plugins picks it up when first imported, as it does when installed.
DISCOVERY_SCRIPT = textwrap.dedent(
    """
    import fmtp.discovery
    import fmtp.tap

    found = fmtp.discovery.find_protocol_plugins()
    assert {"object", "time"} <= set(found), sorted(found)
    assert type(found["time"]).__module__ == "fmtp.plugins.fmtp_time"
    assert found["object"].description.startswith("objects"), "object replaced"

    options = fmtp.tap.Options()
    options.parseOptions(["--listen-time", "tcp:0"])
    assert options["listen"] == {"time": ["tcp:0"]}, options["listen"]
    assert "--listen-time=" in str(options), "no --listen-time in --help"
    print("found", " ".join(sorted(found)))
    """
)


def test_discovered_from_its_own_directory(tmp_path: Path) -> None:
    """
    A plugin in a directory of its own is found through
    C{pluginPackagePaths}, and gets its C{--listen-NAME} option.

    The child runs in an empty directory so that nothing is found from
    the working directory, which C{python -c} puts on C{sys.path}.
    """
    env = dict(os.environ)
    paths = [str(CHECKOUT), str(EXAMPLE)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", DISCOVERY_SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "object" in result.stdout and "time" in result.stdout


@pytest_twisted.ensureDeferred
async def test_time_over_real_sockets(tmp_path: Path) -> None:
    """
    A whole server, built as C{twistd fmtp} builds it, serving the example
    next to a built-in protocol on loopback: TIME over TCP and UDP.
    """
    from twisted.internet import reactor

    root, services = build_server(
        reactor,
        domain="poe.net",
        store_url="memory:",
        key_file=str(tmp_path / "domain.key"),
        listeners={
            "time": ["tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"],
            "object": ["tcp:0:interface=127.0.0.1"],
        },
        plugins={"object": ObjectProtocolPlugin(), "time": fmtp_time.timeProtocol},
    )
    root.startService()
    clients = []
    udp_port = None
    try:
        ports = await bound_ports(root)
        assert set(ports) == {("time", "tcp"), ("time", "udp"), ("object", "tcp")}

        before = int(reactor.seconds())
        time_client = await connect(reactor, f"tcp:127.0.0.1:{ports['time', 'tcp']}")
        clients.append(time_client)
        answer = await time_client.request("TIME")
        after = int(reactor.seconds())
        assert answer.code == 200, answer
        assert before <= int(answer.headers["Time"]) <= after
        assert answer.headers["Date"] == fmtp_time.iso_utc(int(answer.headers["Time"]))
        assert (await time_client.request("CAPA")).headers["Protocol"] == "time"

        object_client = await connect(
            reactor, f"tcp:127.0.0.1:{ports['object', 'tcp']}"
        )
        clients.append(object_client)
        assert (await object_client.request("CAPA")).headers["Protocol"] == "object"
        assert (await object_client.request("TIME")).code == 502

        udp = DatagramClient(reactor, "127.0.0.1", ports["time", "udp"], timeout=5.0)
        udp_port = reactor.listenUDP(0, udp, interface="127.0.0.1")
        answer = await udp.request("TIME")
        assert answer.code == 200, answer
        assert udp.cookie, "the server asked for no cookie"
        assert int(answer.headers["Time"]) >= before
    finally:
        if udp_port is not None:
            await udp_port.stopListening()
        for client in clients:
            client.transport.loseConnection()
            await client.closed
        await root.stopService()
