"""
The federation done-criterion, checked as an administrator would check it:
two servers on one machine, each started with C{twistd -n fmtp} and a DNS
zone, exchange verified messages between their users.

C{test_federation} runs the same conversation with servers built
in-process; only real processes check what an admin actually does: the
key is made with C{fmtp keygen} and its printed record is pasted into the
zone as is, C{--dns}, C{--domain}, C{--key-file} and C{--listen-object}
are parsed by twistd, accounts are made with C{fmtp adduser} while the
servers run, and both servers stop cleanly on SIGTERM.

The DNS server (Twisted Names, L{tests.dnsserver}) runs in this test's
reactor, so the children are started with C{reactor.spawnProcess} and
everything here waits on Deferreds with time-outs: a blocking wait would
stop the DNS server answering the very servers being waited for.  Every
child is registered with the L{children} fixture, which kills whatever is
still running when the test ends, pass or fail.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    fail,
    gatherResults,
    succeed,
)
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from fmtp.client import FrameClientProtocol, connect
from fmtp.dns.keyverifier import DNSKeyVerifier
from fmtp.keys.records import DomainPublicKey, parse_key_record
from fmtp.objects import FMTPObject
from fmtp.wire import Frame
from tests.dnsserver import RunningDNSServer, fmtp_zone, start_dns_server

#: The checkout, first on the children's C{PYTHONPATH} so that twistd finds
#: C{twisted/plugins} and C{fmtp} there rather than in any installed copy
#: (as in C{test_twistd}).
CHECKOUT = Path(__file__).resolve().parents[2]

#: How to run C{twistd} and C{fmtp} from the checkout with this Python.
TWISTD = (sys.executable, "-c", "from twisted.scripts.twistd import run; run()")
FMTP = (sys.executable, "-m", "fmtp")

POE, LENORE = "poe.net", "lenore.org"
EDGAR, LOST = f"edgar@{POE}", f"lost@{LENORE}"
PASSWORDS = {EDGAR: "once upon a midnight dreary", LOST: "nameless here for evermore"}

#: Each server on its own loopback address, as two hosts would be.
ADDRESSES = {POE: "127.0.0.2", LENORE: "127.0.0.3"}

#: Seconds a short command (keygen, adduser) may take: adduser hashes the
#: password with scrypt at full cost.
COMMAND_TIMEOUT = 20.0
#: Seconds a server gets to bind its listener, and to exit after SIGTERM.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
#: Seconds a message gets to go from one user to the other: DNS lookups,
#: a HELLO each way and one delivery, all on loopback.
DELIVERY_TIMEOUT = 15.0

#: The line L{fmtp.listeners.Listener} logs once bound: the only way to
#: learn a port-0 listener's port from outside the process.
SERVING = re.compile(
    rb"Serving the object protocol on tcp:\S+ \((127\.0\.0\.\d+):(\d+)\)"
)

#: The record line C{fmtp keygen} prints, to be pasted into the zone.
KEY_LINE = re.compile(r'^fmtpkey\.(\S+)\. IN TXT "([^"]*)"$', re.MULTILINE)


def child_environment() -> dict[str, str]:
    """
    The checkout first on C{PYTHONPATH}, and unbuffered output, so the log
    line naming the port arrives as soon as it is written.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(CHECKOUT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def within(d: Deferred, seconds: float) -> Deferred:
    """
    C{d}, failing with L{twisted.internet.defer.TimeoutError} (and
    cancelled) if it has not fired after C{seconds}.
    """
    return d.addTimeout(seconds, reactor)


class Child(ProcessProtocol):
    """
    One child process: its output (stdout and stderr together, also
    copied to a file for whoever reads a failure), and Deferreds for a
    pattern in that output and for the process's end.
    """

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.output = bytearray()
        #: What ended the process (L{ProcessDone}, L{ProcessTerminated}),
        #: once it has ended.
        self.reason: Failure | None = None
        self._watchers: list[tuple[re.Pattern[bytes], Deferred]] = []
        self._enders: list[Deferred] = []

    @property
    def running(self) -> bool:
        return self.reason is None

    def log(self) -> str:
        return self.output.decode("utf-8", "replace")

    def outReceived(self, data: bytes) -> None:
        self.output += data
        with open(self.log_path, "ab") as f:
            f.write(data)
        for watcher in list(self._watchers):
            pattern, d = watcher
            match = pattern.search(self.output)
            if match:
                self._watchers.remove(watcher)
                d.callback(match)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        watchers, self._watchers = self._watchers, []
        for _, d in watchers:
            d.errback(AssertionError(f"{self.name} exited:\n{self.log()}"))
        enders, self._enders = self._enders, []
        for d in enders:
            d.callback(self.exit_code())

    def wait_for(self, pattern: re.Pattern[bytes], timeout: float) -> Deferred:
        """
        Fire with the first match of C{pattern} in the output, as soon as
        it is there; fail if the process ends or C{timeout} passes first.
        """
        match = pattern.search(self.output)
        if match:
            return succeed(match)
        if not self.running:
            return fail(AssertionError(f"{self.name} exited:\n{self.log()}"))
        d = Deferred(lambda d: self._watchers.remove((pattern, d)))
        self._watchers.append((pattern, d))
        return within(d, timeout)

    def wait_for_exit(self, timeout: float) -> Deferred:
        """
        Fire with the exit status (see L{exit_code}) once the process has
        ended; fail if C{timeout} passes first.  Each call waits on its own
        Deferred, so a wait that timed out spoils no later one.
        """
        if not self.running:
            return succeed(self.exit_code())
        d = Deferred(self._enders.remove)
        self._enders.append(d)
        return within(d, timeout)

    def exit_code(self) -> int:
        """
        The exit status, or C{-SIGNAL} for a process ended by a signal, as
        L{subprocess.Popen.returncode} has it.
        """
        assert self.reason is not None
        value = self.reason.value
        if isinstance(value, ProcessDone):
            return 0
        assert isinstance(value, ProcessTerminated), value
        return -value.signal if value.signal is not None else value.exitCode


class Children:
    """
    Every child a test starts, so that teardown can kill the survivors
    whatever the test did.
    """

    def __init__(self) -> None:
        self._started: list[tuple[Child, IProcessTransport]] = []

    def spawn(
        self, args: Sequence[str], cwd: Path, name: str
    ) -> tuple[Child, IProcessTransport]:
        """
        Start C{args} in C{cwd}, its output logged to C{cwd/NAME.log}.
        """
        child = Child(name, cwd / f"{name}.log")
        transport = reactor.spawnProcess(
            child, args[0], list(args), env=child_environment(), path=str(cwd)
        )
        self._started.append((child, transport))
        return child, transport

    def kill_survivors(self) -> Deferred:
        waits = []
        for child, transport in self._started:
            if child.running:
                transport.signalProcess("KILL")
                waits.append(child.wait_for_exit(STOP_TIMEOUT))
        return DeferredList(waits, consumeErrors=True)


@pytest.fixture
def dns() -> Iterator[RunningDNSServer]:
    """
    The DNS server both fmtp servers and the test ask, with no zone yet:
    each zone is published once its server's port is known.
    """
    server = start_dns_server({})
    try:
        yield server
    finally:
        pytest_twisted.blockon(server.stop())


@pytest.fixture
def children() -> Iterator[Children]:
    started = Children()
    try:
        yield started
    finally:
        pytest_twisted.blockon(started.kill_survivors())


async def run_command(
    children: Children, args: Sequence[str], cwd: Path, name: str, stdin: bytes = b""
) -> tuple[int, str]:
    """
    Run a short-lived command to its end without blocking the reactor.

    @return: its exit status and its output (stdout and stderr together).
    """
    child, transport = children.spawn(args, cwd, name)
    if stdin:
        transport.write(stdin)
    transport.closeStdin()
    status = await child.wait_for_exit(COMMAND_TIMEOUT)
    return status, child.log()


async def keygen(children: Children, tmp_path: Path, domain: str) -> tuple[Path, str]:
    """
    Make C{domain}'s key with C{fmtp keygen}, as the admin guide says to
    before going live.

    @return: the key file, and the record line keygen printed, which goes
        into the zone exactly as printed.
    """
    key_file = tmp_path / f"{domain}.key"
    status, output = await run_command(
        children,
        [*FMTP, "keygen", "--domain", domain, "--key-file", str(key_file)],
        tmp_path,
        f"keygen-{domain}",
    )
    assert status == 0, output
    lines = list(KEY_LINE.finditer(output))
    assert len(lines) == 1, output
    assert lines[0].group(1) == domain, output
    return key_file, lines[0].group(0)


def record_key(domain: str, line: str) -> DomainPublicKey:
    """
    The key a record line publishes, as a verifier will read it.
    """
    match = KEY_LINE.fullmatch(line)
    assert match, line
    return parse_key_record(domain, match.group(2))


class ServerProcess:
    """
    One C{twistd -n fmtp} child serving C{domain} on C{host}:C{port}.
    """

    def __init__(
        self, domain: str, child: Child, transport: IProcessTransport, data_dir: Path
    ) -> None:
        self.domain = domain
        self.child = child
        self.transport = transport
        self.data_dir = data_dir
        self.host = ""
        self.port = 0
        self.clients: list[FrameClientProtocol] = []

    async def wait_until_bound(self) -> None:
        match = await self.child.wait_for(SERVING, START_TIMEOUT)
        self.host, self.port = match.group(1).decode(), int(match.group(2))

    async def login(self, address: str) -> FrameClientProtocol:
        client = await within(
            Deferred.fromCoroutine(
                connect(reactor, f"tcp:{self.host}:{self.port}:timeout=2")
            ),
            START_TIMEOUT,
        )
        self.clients.append(client)
        answer = await client.request(
            "LOGIN", headers={"Address": address, "Password": PASSWORDS[address]}
        )
        assert answer.code == 230, answer
        return client

    async def terminate(self) -> None:
        """
        Close the clients, then send SIGTERM, as C{systemctl stop} does,
        and check that the server shuts down cleanly and promptly: ended
        by the signal twistd re-raises on itself (or status 0), its log
        saying so, with no traceback anywhere in it.
        """
        for client in self.clients:
            client.transport.loseConnection()
            await within(client.closed, STOP_TIMEOUT)
        self.transport.signalProcess("TERM")
        status = await self.child.wait_for_exit(STOP_TIMEOUT)
        log = self.child.log()
        assert status in (0, -signal.SIGTERM), f"exit status {status}:\n{log}"
        assert "Server Shut Down." in log, log
        assert "Traceback" not in log, log


async def start_server(
    children: Children,
    tmp_path: Path,
    dns: RunningDNSServer,
    domain: str,
    key_file: Path,
    key_line: str,
) -> ServerProcess:
    """
    Start C{twistd -n fmtp} for C{domain} in a working directory of its
    own (so each has its own C{twistd.pid}), on port 0 of its loopback
    address; once the log names the port, publish the domain's zone: SRV
    and A records leading there, and the key record keygen printed.
    """
    cwd = tmp_path / domain
    cwd.mkdir()
    data_dir = cwd / "data"
    args = [
        *TWISTD,
        "-n",
        "fmtp",
        "--domain",
        domain,
        "--data-dir",
        str(data_dir),
        "--key-file",
        str(key_file),
        "--dns",
        dns.dns_option,
        "--listen-object",
        f"tcp:0:interface={ADDRESSES[domain]}",
        "--listen-presence",
        f"tcp:0:interface={ADDRESSES[domain]}",
        "--listen-chat",
        f"tcp:0:interface={ADDRESSES[domain]}",
    ]
    child, transport = children.spawn(args, cwd, "twistd")
    server = ServerProcess(domain, child, transport, data_dir)
    await server.wait_until_bound()
    assert server.host == ADDRESSES[domain], child.log()
    # The key made by keygen was found: the server made none of its own.
    assert "Made a new key" not in child.log(), child.log()
    dns.set_zone(domain, fmtp_zone(domain, server.host, server.port, extra=[key_line]))
    return server


async def check_dns(
    children: Children,
    tmp_path: Path,
    dns: RunningDNSServer,
    domain: str,
    key_file: Path,
) -> None:
    """
    The admin's pre-flight check, C{fmtp check-dns}, finds the published
    records sound and the key record matching the key file.
    """
    status, output = await run_command(
        children,
        [
            *FMTP,
            "check-dns",
            "--dns",
            dns.dns_option,
            "--key-file",
            str(key_file),
            domain,
        ],
        tmp_path,
        f"check-dns-{domain}",
    )
    assert status == 0, output


async def add_user(children: Children, server: ServerProcess, address: str) -> None:
    """
    C{fmtp adduser}, with the password on standard input, while the server
    runs (SQLite in WAL mode lets both write).
    """
    status, output = await run_command(
        children,
        [
            *FMTP,
            "adduser",
            "--data-dir",
            str(server.data_dir),
            "--password-file",
            "-",
            address,
        ],
        server.data_dir.parent,
        f"adduser-{address}",
        stdin=PASSWORDS[address].encode() + b"\n",
    )
    assert status == 0, output
    assert f"Created {address}" in output, output


def message_of(frame: Frame) -> FMTPObject:
    """
    The message a push carries, without the envelope's C{Digest}.
    """
    headers = {k: v for k, v in frame.headers.items() if k != "Digest"}
    return FMTPObject.from_headers(headers, frame.body)


def both(first, second) -> Deferred:
    """
    Run two coroutines at once; fire with both results, or with the first
    failure.
    """
    return gatherResults(
        [Deferred.fromCoroutine(first), Deferred.fromCoroutine(second)],
        consumeErrors=True,
    ).addErrback(lambda failure: failure.value.subFailure)


@pytest_twisted.ensureDeferred
async def test_two_twistd_servers_exchange_verified_messages(
    tmp_path: Path, dns: RunningDNSServer, children: Children
) -> None:
    """
    poe.net and lenore.org, each a C{twistd -n fmtp} with its own key from
    C{fmtp keygen} published in DNS: edgar@poe.net writes to
    lost@lenore.org, whose session gets the message pushed, and it
    verifies against poe.net's key in DNS; lost replies in the thread, and
    edgar's session gets the reply, hash-linked to his message and
    verified against lenore.org's key.  SIGTERM then stops both cleanly.
    """
    (poe_key_file, poe_line), (lenore_key_file, lenore_line) = await both(
        keygen(children, tmp_path, POE), keygen(children, tmp_path, LENORE)
    )
    poe, lenore = await both(
        start_server(children, tmp_path, dns, POE, poe_key_file, poe_line),
        start_server(children, tmp_path, dns, LENORE, lenore_key_file, lenore_line),
    )
    await both(
        check_dns(children, tmp_path, dns, POE, poe_key_file),
        check_dns(children, tmp_path, dns, LENORE, lenore_key_file),
    )
    await both(add_user(children, poe, EDGAR), add_user(children, lenore, LOST))
    edgar, lost = await both(poe.login(EDGAR), lenore.login(LOST))
    # What the world sees of each domain, asked as a third party would.
    keys = DNSKeyVerifier(dns.resolver(), reactor)

    sent = await edgar.request(
        "SEND",
        headers={"To": LOST, "Subject": "Nevermore"},
        body=b"Quoth the raven",
    )
    assert sent.code == 201, sent
    pushed = await within(lost.pushes.get(), DELIVERY_TIMEOUT)
    assert pushed.code == 250, pushed
    message = message_of(pushed)
    assert message.id == sent.headers["Id"]
    assert message.body == b"Quoth the raven"
    assert message.properties["From"] == EDGAR
    assert message.properties["To"] == LOST
    assert message.properties["Subject"] == "Nevermore"
    assert pushed.headers["Digest"] == message.digest() == sent.headers["Digest"]
    signed_by = await keys.verify_object(message)
    assert signed_by == record_key(POE, poe_line)

    answer = await lost.request(
        "SEND",
        headers={"To": EDGAR, "Parent": message.id, "Subject": "Re: Nevermore"},
        body=b"Nevermore",
    )
    assert answer.code == 201, answer
    pushed = await within(edgar.pushes.get(), DELIVERY_TIMEOUT)
    assert pushed.code == 250, pushed
    reply = message_of(pushed)
    assert reply.id == answer.headers["Id"]
    assert reply.body == b"Nevermore"
    assert reply.properties["From"] == LOST
    assert reply.properties["Parent"] == message.id
    assert reply.properties["Parent-Digest"] == sent.headers["Digest"]
    assert reply.properties["Top"] == message.id
    assert pushed.headers["Digest"] == reply.digest() == answer.headers["Digest"]
    signed_by = await keys.verify_object(reply)
    assert signed_by == record_key(LENORE, lenore_line)

    # Nothing else arrived: no bounce, no second copy.
    assert not edgar.pushes.pending and not lost.pushes.pending
    await both(poe.terminate(), lenore.terminate())
