"""
The object protocol end to end, in-process: a server built by
L{fmtp.server.build_server} on real loopback sockets and a real SQLite file,
spoken to by L{fmtp.client} over TCP and UDP.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, gatherResults

from fmtp.accounts import hash_password
from fmtp.client import DatagramClient, connect
from fmtp.loginthrottle import LoginLimits
from fmtp.objects import user_object
from fmtp.server import build_server
from fmtp.wire import DEFAULT_LIMITS, Limits
from tests.helpers import bound_ports

EDGAR = "edgar@poe.net"
LISTENERS = ["tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"]
#: The presence protocol, served too, on a port of its own choosing.
PRESENCE_LISTENERS = ["tcp:0:interface=127.0.0.1"]
#: The chat protocol, likewise.
CHAT_LISTENERS = ["tcp:0:interface=127.0.0.1"]
PASSWORD = "nevermore-quoth"


class RunningServer:
    """
    One server on loopback ports of its own choosing, started and stopped
    by the test.
    """

    def __init__(
        self,
        data_dir,
        limits: Limits = DEFAULT_LIMITS,
        listeners=LISTENERS,
        presence_listeners=PRESENCE_LISTENERS,
        chat_listeners=CHAT_LISTENERS,
        **options,
    ) -> None:
        options.setdefault("login_limits", LoginLimits(failure_delay=0.05))
        self.root, self.services = build_server(
            reactor,
            domain="poe.net",
            store_url=f"sqlite:{data_dir / 'fmtp.sqlite'}",
            key_file=str(data_dir / "domain.key"),
            listeners={
                "object": listeners,
                "presence": presence_listeners,
                "chat": chat_listeners,
            },
            limits=limits,
            **options,
        )

    async def start(self) -> RunningServer:
        self.root.startService()
        ports = await bound_ports(self.root)
        self.tcp = f"tcp:127.0.0.1:{ports['object', 'tcp']}"
        self.udp_port = ports.get(("object", "udp"))
        self.presence_tcp = f"tcp:127.0.0.1:{ports['presence', 'tcp']}"
        self.presence_udp_port = ports.get(("presence", "udp"))
        if ("chat", "tcp") in ports:
            self.chat_tcp = f"tcp:127.0.0.1:{ports['chat', 'tcp']}"
        self.chat_udp_port = ports.get(("chat", "udp"))
        return self

    async def add_account(self, address: str, password: str) -> None:
        store = self.services.store
        await store.add_account(address, hash_password(password, n=2**10))
        await store.put_object(user_object(address))

    async def login(self, address: str = EDGAR, password: str = PASSWORD):
        connection = await connect(reactor, self.tcp)
        answer = await connection.request(
            "LOGIN", headers={"Address": address, "Password": password}
        )
        assert answer.code == 230, answer
        return connection

    async def udp_client(self):
        client = DatagramClient(reactor, "127.0.0.1", self.udp_port, timeout=2.0)
        port = reactor.listenUDP(0, client, interface="127.0.0.1")
        return client, port

    def stop(self):
        return self.root.stopService()


@pytest.fixture
def server(tmp_path):
    running = pytest_twisted.blockon(ensureDeferred(RunningServer(tmp_path).start()))
    yield running
    pytest_twisted.blockon(running.stop())


@pytest_twisted.ensureDeferred
async def test_tcp_and_udp_round_trip(server, tmp_path) -> None:
    await server.add_account(EDGAR, PASSWORD)
    edgar = await server.login()
    body = bytes(range(256)) * 4
    stored = await edgar.request(
        "PUT",
        headers={"Type": "post", "Public": "yes", "Title": "The Raven"},
        body=body,
    )
    assert stored.code == 201
    secret = await edgar.request("PUT", headers={"Type": "note"}, body=b"private")
    assert secret.code == 201

    anonymous = await connect(reactor, server.tcp)
    got = await anonymous.request("GET", stored.headers["Id"])
    assert (got.code, got.body, got.headers["Title"]) == (200, body, "The Raven")
    assert (await anonymous.request("GET", secret.headers["Id"])).code == 550
    listing = await anonymous.request("LIST")
    assert listing.body.decode().split()[0] == stored.headers["Id"]

    udp, port = await server.udp_client()
    try:
        small = await edgar.request(
            "PUT", headers={"Type": "post", "Public": "yes"}, body=b"hi"
        )
        answer = await udp.request("GET", small.headers["Id"])
        assert (answer.code, answer.body) == (200, b"hi")
        assert udp.cookie
        big = await udp.request("GET", stored.headers["Id"])
        assert big.code == 305
        listed = await udp.request("LIST", headers={"Limit": "1"})
        assert listed.code == 200 and listed.headers["Next-Start"] == "1"
        assert (await udp.request("PUT", headers={"Type": "post"})).code == 305
    finally:
        await port.stopListening()
    for connection in (edgar, anonymous):
        connection.transport.loseConnection()
        await connection.closed


@pytest_twisted.ensureDeferred
async def test_acknowledged_objects_survive_a_restart(tmp_path) -> None:
    first = await RunningServer(tmp_path).start()
    try:
        await first.add_account(EDGAR, PASSWORD)
        edgar = await first.login()
        puts = [
            edgar.request(
                "PUT", headers={"Type": "post", "Public": "yes"}, body=b"%d" % i
            )
            for i in range(50)
        ]
        answers = await gatherResults(puts)
        assert {a.code for a in answers} == {201}
        edgar.transport.loseConnection()
        await edgar.closed
    finally:
        await first.stop()
    key = (tmp_path / "domain.key").read_bytes()

    second = await RunningServer(tmp_path).start()
    try:
        assert (tmp_path / "domain.key").read_bytes() == key
        edgar = await second.login()
        for i, answer in enumerate(answers):
            got = await edgar.request("GET", answer.headers["Id"])
            assert got.body == b"%d" % i
        edgar.transport.loseConnection()
        await edgar.closed
    finally:
        await second.stop()


@pytest_twisted.ensureDeferred
async def test_bad_clients_do_not_disturb_others(server) -> None:
    await server.add_account(EDGAR, PASSWORD)
    edgar = await server.login()
    stored = await edgar.request("PUT", headers={"Type": "post"}, body=b"kept")

    wrong = await connect(reactor, server.tcp)
    answer = await wrong.request(
        "LOGIN", headers={"Address": EDGAR, "Password": "guess"}
    )
    assert answer.code == 535

    garbage = await connect(reactor, server.tcp)
    garbage.transport.write(b"\x00\xff\xfe not a frame\r\n\r\n")
    oversized = await connect(reactor, server.tcp)
    oversized.transport.write(b"PUT 1\r\nLength: 999999999\r\n\r\n")
    await oversized.closed
    assert oversized.unsolicited[-1].code == 552

    got = await edgar.request("GET", stored.headers["Id"])
    assert (got.code, got.body) == (200, b"kept")
    for connection in (edgar, wrong, garbage):
        connection.transport.loseConnection()
        await connection.closed
