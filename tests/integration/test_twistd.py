"""
C{twistd fmtp} run as an administrator runs it: a real C{twistd} process in
a scratch working directory, its data in the default C{./fmtp-data}, spoken
to over real loopback sockets by L{fmtp.client} and the C{fmtp} command.

The in-process tests (C{test_integration}) build the same service tree, but
only a real process checks what the admin sees: the plugin is found, the
options are parsed and refused as twistd does, the first start writes the
domain key and prints its DNS record, SIGTERM shuts the server down
cleanly, and everything survives a restart.

Every process started here is registered with the L{processes} fixture,
which kills whatever is still running when the test ends, pass or fail.
Nothing here sleeps while blocking the reactor: waits are polls spaced by
L{deferLater}.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.task import deferLater

from fmtp.client import DatagramClient, FrameClientProtocol, connect
from fmtp.errors import NotFound
from fmtp.keys.keyfile import load_private_key
from fmtp.keys.records import zone_line
from fmtp.keys.signing import DomainSigner
from fmtp.serveroptions import PROTOCOL_PLUGINS, Options
from fmtp.wire import Frame

#: The checkout, put on C{PYTHONPATH} so twistd finds C{twisted/plugins}
#: and C{fmtp} from it rather than from any installed copy.
CHECKOUT = Path(__file__).resolve().parents[2]

#: How to run C{twistd} and C{fmtp} from the checkout with this Python.
TWISTD = (sys.executable, "-c", "from twisted.scripts.twistd import run; run()")
FMTP = (sys.executable, "-m", "fmtp")

DOMAIN = "localhost"
ALICE = f"alice@{DOMAIN}"
PASSWORD = "a long enough test password"

#: Seconds a server gets to accept connections, and to exit after SIGTERM.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
#: Seconds between polls: short, so waiting costs little.
POLL_INTERVAL = 0.05

#: A binary body small enough for a datagram reply (under 1200 bytes with
#: its headers), holding every byte value, CRLFs and a frame-like line, so
#: that the codec cannot be getting it right by accident.
PUBLIC_BODY = bytes(range(256)) + b"\r\n\r\nGET 1 x\r\n\r\n\x00\xff"
#: A larger binary body, for TCP only.
PRIVATE_BODY = bytes((i * 7919) % 256 for i in range(64 * 1024))

RECORD = re.compile(r'fmtpkey\.[^ ]+\. IN TXT "v=FMTP1; [^"]*"')


#: Listeners on port 0: the kernel picks free ports, so tests running in
#: parallel never race for one, and the server logs what it bound.
LISTENERS = (
    "--listen-object",
    "tcp:0:interface=127.0.0.1",
    "--listen-object",
    "udp:0:interface=127.0.0.1",
    "--listen-presence",
    "tcp:0:interface=127.0.0.1",
    "--listen-chat",
    "tcp:0:interface=127.0.0.1",
)

#: The line L{fmtp.listeners.Listener} logs once bound, which is the only
#: way to learn a port-0 listener's port from outside the process.
SERVING = re.compile(
    r"Serving the object protocol on (tcp|udp):\S+ \(127\.0\.0\.1:(\d+)\)"
)


def child_environment() -> dict[str, str]:
    """
    The environment for children: the checkout first on C{PYTHONPATH}, and
    unbuffered output so a log read while the process runs is complete.
    """
    env = dict(os.environ)
    paths = [str(CHECKOUT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Processes:
    """
    Every child a test starts, so that teardown can kill the survivors
    whatever the test did.
    """

    def __init__(self) -> None:
        self._started: list[subprocess.Popen] = []

    def start(
        self, args: Sequence[str], cwd: Path, output: Path, stdin: bool = False
    ) -> subprocess.Popen:
        """
        Start a child with its stdout and stderr in the file C{output}:
        a file, not a pipe, so a chatty child never blocks on a full pipe
        that nobody reads while the test waits on something else.
        """
        with open(output, "wb") as out:
            process = subprocess.Popen(
                list(args),
                cwd=cwd,
                env=child_environment(),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._started.append(process)
        return process

    def kill_all(self) -> None:
        for process in self._started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=STOP_TIMEOUT)
            if process.stdin is not None:
                process.stdin.close()


@pytest.fixture
def processes() -> Iterator[Processes]:
    children = Processes()
    try:
        yield children
    finally:
        children.kill_all()


async def wait_for_exit(process: subprocess.Popen, timeout: float) -> int | None:
    """
    Poll a child until it exits, for at most C{timeout} seconds.

    @return: its exit status, or L{None} if it is still running.
    """
    deadline = reactor.seconds() + timeout
    while process.poll() is None and reactor.seconds() < deadline:
        await deferLater(reactor, POLL_INTERVAL, lambda: None)
    return process.poll()


async def run_command(
    processes: Processes,
    args: Sequence[str],
    cwd: Path,
    name: str,
    stdin: bytes = b"",
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """
    Run a short-lived command without blocking the reactor.

    @return: its exit status and its output (stdout and stderr together).
    """
    output = cwd / f"{name}.out"
    process = processes.start(args, cwd, output, stdin=True)
    assert process.stdin is not None
    process.stdin.write(stdin)
    process.stdin.close()
    status = await wait_for_exit(process, timeout)
    assert status is not None, f"{' '.join(args)} still running after {timeout}s"
    return status, output.read_bytes()


class ServerProcess:
    """
    One C{twistd -n fmtp} child, its ports and its log.
    """

    def __init__(self, process: subprocess.Popen, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        self.tcp_port = 0
        self.udp_port = 0

    @property
    def tcp(self) -> str:
        return f"tcp:127.0.0.1:{self.tcp_port}:timeout=2"

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    async def connect(self) -> FrameClientProtocol:
        return await connect(reactor, self.tcp)

    async def wait_for_ports(self, deadline: float, interval: float) -> None:
        """
        Poll the log until it names the ports both listeners bound.

        @raise AssertionError: if the process exits or C{deadline} (in
            reactor seconds) passes first.
        """
        while True:
            ports = {kind: int(port) for kind, port in SERVING.findall(self.log())}
            if len(ports) == 2:
                self.tcp_port, self.udp_port = ports["tcp"], ports["udp"]
                return
            assert self.process.poll() is None, f"twistd exited:\n{self.log()}"
            assert reactor.seconds() < deadline, f"no listeners:\n{self.log()}"
            await deferLater(reactor, interval, lambda: None)

    async def wait_until_serving(self, timeout: float = START_TIMEOUT) -> None:
        """
        Wait until the server has bound its listeners and greets a TCP
        client, polling, for at most C{timeout} seconds in all.
        """
        deadline = reactor.seconds() + timeout
        await self.wait_for_ports(deadline, POLL_INTERVAL)
        while True:
            assert self.process.poll() is None, f"twistd exited:\n{self.log()}"
            try:
                connection = await self.connect()
            except ConnectError:
                assert reactor.seconds() < deadline, f"not serving:\n{self.log()}"
                await deferLater(reactor, POLL_INTERVAL, lambda: None)
            else:
                await close(connection)
                return

    async def terminate(self) -> None:
        """
        Send SIGTERM, as an init system does, and check that the server
        shuts down cleanly and promptly.

        twistd stops the reactor (and so every service) on SIGTERM, then
        re-raises the signal on itself so that whoever sent it sees the
        process end by it (L{twisted.scripts.twistd.runApp}): status
        C{-SIGTERM} here, 143 in a shell, a clean stop to systemd.  Status
        0 is accepted too, for a twistd that exits normally.
        """
        self.process.send_signal(signal.SIGTERM)
        status = await wait_for_exit(self.process, STOP_TIMEOUT)
        log = self.log()
        assert status is not None, f"still running {STOP_TIMEOUT}s after SIGTERM"
        assert status in (0, -signal.SIGTERM), f"exit status {status}:\n{log}"
        assert "Server Shut Down." in log, log
        assert "Traceback" not in log, log


def start_twistd(processes: Processes, cwd: Path, name: str) -> ServerProcess:
    """
    Start C{twistd -n fmtp} in C{cwd} with no fmtp option but its
    listeners, as an admin trying it out would.
    """
    log_path = cwd / f"{name}.log"
    process = processes.start([*TWISTD, "-n", "fmtp", *LISTENERS], cwd, log_path)
    return ServerProcess(process, log_path)


async def start_server(processes: Processes, cwd: Path, name: str) -> ServerProcess:
    server = start_twistd(processes, cwd, name)
    await server.wait_until_serving()
    return server


async def close(connection: FrameClientProtocol) -> None:
    connection.transport.loseConnection()
    await connection.closed


def listed_ids(answer: Frame) -> list[str]:
    """
    The object ids of a LIST reply: one C{ID TYPE DIGEST} line each.
    """
    return [line.split(" ")[0] for line in answer.body.decode().splitlines() if line]


def published_record(log: str) -> str:
    match = RECORD.search(log)
    assert match, f"no TXT record in the log:\n{log}"
    return match.group(0)


def record_from_key_file(path: Path) -> str:
    """
    The TXT record for the key on disk, made the way the server makes it.
    """
    return zone_line(DOMAIN, DomainSigner(load_private_key(path), DOMAIN).public_key())


async def add_account(processes: Processes, cwd: Path) -> None:
    status, output = await run_command(
        processes,
        [*FMTP, "adduser", "--data-dir", "fmtp-data", "--password-file", "-", ALICE],
        cwd,
        "adduser",
        stdin=PASSWORD.encode() + b"\n",
    )
    assert status == 0, output
    assert f"Created {ALICE}".encode() in output


async def login(server: ServerProcess) -> FrameClientProtocol:
    connection = await server.connect()
    answer = await connection.request(
        "LOGIN", headers={"Address": ALICE, "Password": PASSWORD}
    )
    assert answer.code == 230, answer
    assert answer.headers["Address"] == ALICE
    return connection


async def put_objects(server: ServerProcess) -> tuple[str, str, str]:
    """
    Log in and PUT one public and one private object.

    @return: the public id, its digest, and the private id.
    """
    connection = await login(server)
    try:
        public = await connection.request(
            "PUT", headers={"Type": "post", "Public": "yes"}, body=PUBLIC_BODY
        )
        private = await connection.request(
            "PUT", headers={"Type": "note"}, body=PRIVATE_BODY
        )
    finally:
        await close(connection)
    assert public.code == 201, public
    assert private.code == 201, private
    assert public.headers["Id"].endswith("." + ALICE)
    return public.headers["Id"], public.headers["Digest"], private.headers["Id"]


async def check_objects_over_tcp(
    server: ServerProcess, public_id: str, digest: str, private_id: str
) -> None:
    """
    The owner reads both objects back byte for byte and lists both as
    hers; an anonymous client reads and lists only the public one.
    """
    owner = await login(server)
    try:
        public = await owner.request("GET", public_id)
        private = await owner.request("GET", private_id)
        mine = await owner.request("LIST", headers={"Owner": ALICE})
    finally:
        await close(owner)
    assert public.code == 200, public
    assert public.body == PUBLIC_BODY
    assert public.headers["Digest"] == digest
    assert private.code == 200, private
    assert private.body == PRIVATE_BODY
    assert mine.code == 200, mine
    assert {public_id, private_id} <= set(listed_ids(mine))

    anonymous = await server.connect()
    try:
        public = await anonymous.request("GET", public_id)
        private = await anonymous.request("GET", private_id)
        listing = await anonymous.request("LIST")
    finally:
        await close(anonymous)
    assert public.code == 200, public
    assert public.body == PUBLIC_BODY
    assert private.code == NotFound.code, private
    assert listing.code == 200, listing
    assert public_id in listed_ids(listing)
    assert private_id not in listed_ids(listing)


async def check_objects_over_udp(
    server: ServerProcess, public_id: str, private_id: str
) -> None:
    """
    GET and LIST in datagrams: the first request is answered with a
    cookie, which the client echoes to get its answer.
    """
    client = DatagramClient(reactor, "127.0.0.1", server.udp_port, timeout=2.0)
    port = reactor.listenUDP(0, client, interface="127.0.0.1")
    try:
        assert client.cookie is None
        public = await client.request("GET", public_id)
        assert client.cookie is not None, "the server never asked for a cookie"
        private = await client.request("GET", private_id)
        listing = await client.request("LIST")
    finally:
        await port.stopListening()
    assert public.code == 200, public
    assert public.body == PUBLIC_BODY
    assert private.code == NotFound.code, private
    assert listing.code == 200, listing
    assert public_id in listed_ids(listing)
    assert private_id not in listed_ids(listing)


@pytest_twisted.ensureDeferred
async def test_serve_stop_and_restart(tmp_path: Path, processes: Processes) -> None:
    """
    First start: key made with mode 0600 and its record logged; an account
    added with C{fmtp adduser} while the server runs; objects stored and
    read over TCP and UDP.  SIGTERM: a clean, prompt shutdown.  Second
    start on the same directory: same key, account and objects.
    """
    key_path = tmp_path / "fmtp-data" / "domain.key"
    server = await start_server(processes, tmp_path, "first")

    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    first_log = server.log()
    record = published_record(first_log)
    assert record.startswith(f'fmtpkey.{DOMAIN}. IN TXT "v=FMTP1; ')
    assert record == record_from_key_file(key_path)

    await add_account(processes, tmp_path)
    public_id, digest, private_id = await put_objects(server)
    await check_objects_over_tcp(server, public_id, digest, private_id)
    await check_objects_over_udp(server, public_id, private_id)

    await server.terminate()

    server = await start_server(processes, tmp_path, "second")
    second_log = server.log()
    assert "Made a new key" not in second_log, second_log
    assert record_from_key_file(key_path) == record
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600

    await check_objects_over_tcp(server, public_id, digest, private_id)
    await check_objects_over_udp(server, public_id, private_id)

    # The fmtp command, as a user trying the server from a shell would.
    status, output = await run_command(
        processes,
        [*FMTP, "get", "--server", f"tcp:127.0.0.1:{server.tcp_port}", public_id],
        tmp_path,
        "get",
    )
    assert status == 0, output
    head, _, body = output.partition(b"\n\n")
    assert head.startswith(b"200 "), output
    assert body[: len(PUBLIC_BODY)] == PUBLIC_BODY

    await server.terminate()


@pytest_twisted.ensureDeferred
async def test_request_as_soon_as_bound(tmp_path: Path, processes: Processes) -> None:
    """
    A request sent the moment the port is bound is answered from the
    store, not with 451: the listeners bind, and the kernel accepts
    connections, before the store has finished opening, so requests that
    arrive meanwhile must wait for it.
    """
    server = start_twistd(processes, tmp_path, "server")
    await server.wait_for_ports(reactor.seconds() + START_TIMEOUT, 0.005)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", server.tcp_port, timeout=2)
    connection = await connectProtocol(endpoint, FrameClientProtocol())
    # Sent at once, without waiting for the greeting.
    try:
        answer = await connection.request("LIST")
    finally:
        await close(connection)
    assert answer.code == 200, answer
    await server.terminate()


def run_twistd(args: Sequence[str], cwd: Path) -> tuple[int, str]:
    """
    Run twistd to completion, for runs that end by themselves: C{--help},
    option errors, a listener that cannot bind.  C{subprocess.run} kills
    the child if it outlives the timeout.
    """
    result = subprocess.run(
        [*TWISTD, *args],
        cwd=cwd,
        env=child_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    return result.returncode, output


def test_help(tmp_path: Path) -> None:
    """
    C{twistd fmtp --help} documents the options, including the default
    listeners, which are checked here rather than bound: tests run in
    parallel, and the default ports are shared by them all.
    """
    status, output = run_twistd(["fmtp", "--help"], tmp_path)
    assert status == 0, output
    for option in ("--domain", "--data-dir", "--store", "--listen-object"):
        assert option + "=" in output, output
    words = " ".join(output.split())
    for default in PROTOCOL_PLUGINS["object"].default_listeners:
        assert default in words, output
    assert not (tmp_path / "fmtp-data").exists()


def test_default_options() -> None:
    """
    With no options the server serves C{localhost} from C{./fmtp-data} on
    its plugins' default loopback listeners.
    """
    options = Options()
    options.parseOptions([])
    assert options["domain"] == "localhost"
    assert options["store"] == "sqlite:" + os.path.join("fmtp-data", "fmtp.sqlite")
    assert options["key-file"] == os.path.join("fmtp-data", "domain.key")
    assert options["listen"] == {}
    assert PROTOCOL_PLUGINS["object"].default_listeners == (
        "tcp:7070:interface=127.0.0.1",
        "udp:7070:interface=127.0.0.1",
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--listen-object", "udp:notaport"], "udp:notaport"),
        (["--listen-object", "udp:70000"], "udp:70000"),
        (["--listen-object", "udp:7070:bogus=1"], "bogus"),
        (["--listen-object", "tcp:notaport"], "tcp:notaport"),
        (["--domain", "bad domain"], "bad domain"),
        (["--max-body", "12"], "--max-body"),
        (["--store", "bogus:"], "bogus:"),
        (["--store", "sqlite://x/fmtp.db"], "sqlite://x/fmtp.db"),
    ],
)
def test_bad_option(tmp_path: Path, args: list[str], named: str) -> None:
    """
    A bad option value stops twistd with a non-zero status and a message
    naming the culprit, before anything is created or bound.
    """
    status, output = run_twistd(["-n", "fmtp", *args], tmp_path)
    assert status != 0, output
    assert named in output, output
    assert "Traceback" not in output, output
    assert not (tmp_path / "fmtp-data").exists()


def test_port_in_use(tmp_path: Path) -> None:
    """
    A listener that cannot bind stops the start-up with a non-zero status
    naming the address, rather than leaving a server that lacks it.
    """
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, output = run_twistd(
            [
                "-n",
                "fmtp",
                "--listen-object",
                f"tcp:{port}:interface=127.0.0.1",
                "--listen-object",
                "udp:0:interface=127.0.0.1",
            ],
            tmp_path,
        )
    assert status != 0, output
    assert f"127.0.0.1:{port}" in output, output
    assert "Address already in use" in output, output
