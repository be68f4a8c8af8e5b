"""
The messaging commands as a user runs them: real C{python -m fmtp}
processes (the checkout on C{PYTHONPATH}, no controlling terminal) against
a server built in this process by L{fmtp.server.build_server} on loopback
ports, with a DNS server on loopback for the key lookups of C{fmtp read}.

Each child runs without blocking the reactor (the server answers it from
this very process), with its standard output and error kept apart, and
with a configuration of its own: edgar's settings come from a config file,
annabel's from environment variables, and nobody's from the machine's.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol

from fmtp import datadir
from fmtp.accounts import hash_password
from fmtp.attachments import Attachment
from fmtp.cli import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from fmtp.cli.messaging import subjects
from fmtp.cli.output import Progress
from fmtp.client import Client, ConnectionLost, ReplyError
from fmtp.federation.node import FederationSettings
from fmtp.keys.records import format_key_record, zone_line
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.loginthrottle import LoginLimits
from fmtp.objects import FMTPObject, new_object_id, user_object
from fmtp.server import build_server
from fmtp.wire import reply
from tests.cli.test_main import closed_pipe
from tests.dnsserver import key_txt, start_dns_server, zone_text
from tests.helpers import FAST_SCRYPT_N, HeldPort, bound_ports, eventually
from tests.integration.test_twistd import (
    CHECKOUT,
    FMTP,
    child_environment,
    wait_for_exit,
)

EDGAR = "edgar@poe.net"
ANNABEL = "annabel@poe.net"
PASSWORD = "nevermore-quoth"
#: Seconds a command that ends by itself may take.
COMMAND_TIMEOUT = 30.0


@dataclass
class Ran:
    status: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


class Children:
    """
    The commands a test starts, each with its standard output and error
    in files of their own; whatever still runs at the end is killed.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[subprocess.Popen] = []
        self.terminals: list[Terminal] = []
        self.count = 0

    def start_on_pty(
        self, args: Sequence[str], env: dict[str, str]
    ) -> tuple[subprocess.Popen, Terminal, Path]:
        """
        Start a command with a pseudo-terminal as its standard input and
        output, as a user at a terminal runs it; its standard error goes
        to a file.
        """
        self.count += 1
        err = self.directory / f"command-{self.count}.err"
        master, slave = pty.openpty()
        try:
            with open(err, "wb") as err_file:
                child = subprocess.Popen(
                    [*FMTP, *args],
                    cwd=self.directory,
                    env=env,
                    stdin=slave,
                    stdout=slave,
                    stderr=err_file,
                    start_new_session=True,
                )
        finally:
            os.close(slave)
        self.started.append(child)
        terminal = Terminal(master)
        self.terminals.append(terminal)
        return child, terminal, err

    def start(
        self,
        args: Sequence[str],
        env: dict[str, str],
        stdin: bytes = b"",
        stdout: int | None = None,
        command: Sequence[str] = FMTP,
    ) -> tuple[subprocess.Popen, Path, Path]:
        self.count += 1
        out = self.directory / f"command-{self.count}.out"
        err = self.directory / f"command-{self.count}.err"
        with open(out, "wb") as out_file, open(err, "wb") as err_file:
            child = subprocess.Popen(
                [*command, *args],
                cwd=self.directory,
                env=env,
                stdin=subprocess.PIPE,
                stdout=out_file if stdout is None else stdout,
                stderr=err_file,
                start_new_session=True,
            )
        self.started.append(child)
        assert child.stdin is not None
        child.stdin.write(stdin)
        child.stdin.close()
        return child, out, err

    async def run(
        self,
        args: Sequence[str],
        env: dict[str, str],
        stdin: bytes = b"",
        command: Sequence[str] = FMTP,
    ) -> Ran:
        child, out, err = self.start(args, env, stdin, command=command)
        status = await wait_for_exit(child, COMMAND_TIMEOUT)
        assert status is not None, f"fmtp {' '.join(args)} still running"
        return Ran(status, out.read_text("utf-8"), err.read_text("utf-8"))

    async def run_all(self, *commands: tuple[Sequence[str], dict[str, str]]) -> list:
        """
        Run independent commands at once, to keep the test short.
        """
        return await gatherResults(
            [Deferred.fromCoroutine(self.run(args, env)) for args, env in commands]
        )

    def kill_all(self) -> None:
        for child in self.started:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)
        for terminal in self.terminals:
            terminal.close()


class Terminal:
    """
    The master side of a child's pseudo-terminal: what the test types,
    and what the child showed (with the terminal's CRLF read as LF).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.seen = b""

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode("utf-8"))

    def shown(self) -> str:
        while self.fd >= 0:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                # EIO: the child closed its side.
                break
            if not data:
                break
            self.seen += data
        return self.seen.decode("utf-8", "replace").replace("\r\n", "\n")

    async def shows(self, text: str) -> str:
        """
        Wait, with a deadline, until the child has shown C{text}.
        """
        await eventually(lambda: text in self.shown())
        return self.shown()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def environment(**settings: str) -> dict[str, str]:
    """
    A child's environment: the checkout first on the path, and none of
    the machine's own fmtp settings.
    """
    env = {k: v for k, v in child_environment().items() if not k.startswith("FMTP_")}
    env.update(settings)
    return env


class CLIServer:
    """
    poe.net, served in this process from a data directory the admin
    commands can use too, with edgar and annabel's accounts, and a route
    to lenore.org that refuses connections (its messages wait in the
    queue).
    """

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "data"
        datadir.create(str(self.data_dir), "poe.net")
        self.dns = start_dns_server({"poe.net": zone_text("poe.net")})
        self.refusing = HeldPort()
        hosts = tmp_path / "hosts"
        hosts.write_text(f"route lenore.org 127.0.0.1:{self.refusing.port}\n")
        self.root, self.services = build_server(
            reactor,
            domain="poe.net",
            store_url=f"sqlite:{self.data_dir / 'fmtp.sqlite'}",
            key_file=str(self.data_dir / "domain.key"),
            listeners={
                "object": ["tcp:0:interface=127.0.0.1"],
                "presence": ["tcp:0:interface=127.0.0.1"],
                "chat": ["tcp:0:interface=127.0.0.1"],
            },
            hosts_file=str(hosts),
            nameservers=[self.dns.nameserver],
            login_limits=LoginLimits(failure_delay=0.05),
            # What waits for lenore.org stays put between the admin's
            # looks at it, rather than being retried within seconds.
            federation=FederationSettings(retry_schedule=(3600.0,)),
        )
        self.password_file = tmp_path / "password"
        self.password_file.write_text(PASSWORD + "\n")
        self.clients: list[Client] = []

    async def start(self) -> CLIServer:
        self.root.startService()
        ports = await bound_ports(self.root)
        self.tcp = f"tcp:127.0.0.1:{ports['object', 'tcp']}"
        self.presence_tcp = f"tcp:127.0.0.1:{ports['presence', 'tcp']}"
        self.chat_tcp = f"tcp:127.0.0.1:{ports['chat', 'tcp']}"
        for address in (EDGAR, ANNABEL):
            store = self.services.store
            await store.add_account(address, hash_password(PASSWORD, n=FAST_SCRYPT_N))
            await store.put_object(user_object(address))
        # Edgar's settings in a config file, annabel's in the environment.
        config = self.tmp_path / "edgar-config" / "fmtp" / "client.ini"
        config.parent.mkdir(parents=True)
        config.write_text(
            f"[client]\nserver = {self.tcp}\nuser = {EDGAR}\n"
            f"password-file = {self.password_file}\ntimeout = 10\n"
            f"presence-server = {self.presence_tcp}\n"
            f"chat-server = {self.chat_tcp}\n"
        )
        self.edgar = environment(XDG_CONFIG_HOME=str(config.parent.parent))
        self.annabel = environment(
            XDG_CONFIG_HOME=str(self.tmp_path / "nothing"),
            FMTP_SERVER=self.tcp,
            FMTP_USER=ANNABEL,
            FMTP_PASSWORD_FILE=str(self.password_file),
            FMTP_PRESENCE_SERVER=self.presence_tcp,
            FMTP_CHAT_SERVER=self.chat_tcp,
        )
        return self

    async def client(self, address: str) -> Client:
        connected = await Client.connect(reactor, self.tcp, timeout=10)
        self.clients.append(connected)
        await connected.login(address, PASSWORD)
        return connected

    async def stop(self) -> None:
        for connected in self.clients:
            await connected.close()
        if self.root.running:
            await self.root.stopService()
        await self.dns.stop()
        self.refusing.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CLIServer]:
    running = pytest_twisted.blockon(ensureDeferred(CLIServer(tmp_path).start()))
    yield running
    pytest_twisted.blockon(ensureDeferred(running.stop()))


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    started = Children(tmp_path)
    yield started
    started.kill_all()


def assert_clean(ran: Ran, status: int = EXIT_OK) -> None:
    """
    The command ended with C{status}, and said nothing on standard error
    unless it failed, then one line.
    """
    assert ran.status == status, ran
    assert "Traceback" not in ran.out + ran.err, ran
    if status == EXIT_OK:
        assert ran.err == "", ran
    else:
        assert len(ran.err.splitlines()) == 1, ran
        assert ran.err.startswith("fmtp: "), ran


@pytest_twisted.ensureDeferred
async def test_send_inbox_read_save_reply(
    server: CLIServer, children: Children, tmp_path: Path
) -> None:
    """
    Edgar (settings from his config file) sends annabel a message with
    two files; annabel (settings from the environment, the password from
    the file FMTP_PASSWORD_FILE names) finds it in her inbox, reads it
    (the signature checked against her server's key, poe.net publishing
    none in DNS), saves the files byte for byte, and replies in the
    thread.
    """
    picture = bytes(range(256)) * 40
    (tmp_path / "raven.png").write_bytes(picture)
    (tmp_path / "notes").write_bytes(b"# Nevermore\r\n\x00")
    sent = await children.run(
        [
            "send",
            ANNABEL,
            "--subject",
            "The Raven",
            "--attach",
            "raven.png",
            "--attach",
            "notes:text/markdown",
            "--json",
        ],
        server.edgar,
        stdin=b"Quoth the raven\n",
    )
    assert_clean(sent)
    sent = sent.json()
    assert (
        sent["results"] == [{"address": ANNABEL, "code": 201, "text": "delivered"}]
        and sent["queued"] == []
    )

    inbox = await children.run(["inbox", "--json"], server.annabel)
    assert_clean(inbox)
    [entry] = inbox.json()["messages"]
    assert (entry["id"], entry["from"], entry["subject"]) == (
        sent["id"],
        EDGAR,
        "The Raven",
    )
    table = await children.run(["inbox"], server.annabel)
    assert_clean(table)
    assert table.out.splitlines()[0].split() == ["SEQ", "DATE", "FROM", "SUBJECT"]
    assert f"{EDGAR}  The Raven" in table.out

    saved_to = tmp_path / "saved"
    saved_to.mkdir()
    read = await children.run(
        ["read", sent["id"], "--save", str(saved_to), "--dns", server.dns.dns_option],
        server.annabel,
    )
    assert_clean(read)
    key = server.services.signer.public_key().fingerprint
    assert (
        f"Signature: Signed by poe.net (key {key}), verified with the key your "
        "server announces; poe.net publishes no key in DNS"
    ) in read.out
    assert "Attachment: raven.png (image/png, 10240 bytes)" in read.out
    assert "Attachment: notes (text/markdown, 14 bytes)" in read.out
    assert "\n\nQuoth the raven\n" in read.out
    assert (saved_to / "raven.png").read_bytes() == picture
    assert (saved_to / "notes").read_bytes() == b"# Nevermore\r\n\x00"

    replied = await children.run(
        ["reply", sent["id"], "--body", "Tell me truly", "--json"], server.annabel
    )
    assert_clean(replied)
    edgar = await server.client(EDGAR)
    original, answer = (
        await edgar.get(sent["id"]),
        await edgar.get(replied.json()["id"]),
    )
    assert answer.properties["Parent"] == sent["id"]
    assert answer.properties["Parent-Digest"] == original.digest()
    assert answer.properties["Subject"] == "Re: The Raven"
    assert answer.properties["To"] == EDGAR
    assert answer.body == b"Tell me truly"


@pytest_twisted.ensureDeferred
async def test_send_results_and_bad_input(
    server: CLIServer, children: Children, tmp_path: Path
) -> None:
    """
    A local recipient who does not exist is reported (status 1), one of
    another domain is queued; a missing file, a bad address or no account
    is a usage error, before anything is sent.
    """
    ran = await children.run(
        ["send", ANNABEL, "nobody@poe.net", "lost@lenore.org", "--body", "hello"],
        server.edgar,
    )
    assert_clean(ran, EXIT_REFUSED)
    assert "not delivered to 1 of 2 local recipients" in ran.err
    lines = ran.out.splitlines()
    assert lines[0].startswith("Sent ") and lines[0].endswith(f".{EDGAR}")
    assert [line.split(None, 1) for line in lines[1:]] == [
        ["TO", "RESULT"],
        [ANNABEL, "201 delivered"],
        ["nobody@poe.net", "550 no such user"],
        ["lost@lenore.org", "queued for lenore.org"],
    ]

    nobody = environment(XDG_CONFIG_HOME=str(tmp_path / "nothing"))
    refused = [
        (["send", ANNABEL, "--attach", "missing.png", "--body", "x"], "missing.png"),
        (["send", "not-an-address", "--body", "x"], "not-an-address"),
        (["send", "--body", "x"], "recipient"),
        (["inbox"], "FMTP_USER"),
    ]
    ran = await children.run_all(
        *[(args, nobody if args == ["inbox"] else server.edgar) for args, _ in refused]
    )
    for result, (_, named) in zip(ran, refused, strict=True):
        assert_clean(result, EXIT_USAGE)
        assert named in result.err, result


async def send_as_edgar(server: CLIServer, *attachments: Attachment, **kw) -> str:
    edgar = await server.client(EDGAR)
    return (await edgar.send([ANNABEL], b"files", attachments=attachments, **kw)).id


@pytest_twisted.ensureDeferred
async def test_save_never_leaves_the_directory(
    server: CLIServer, children: Children, tmp_path: Path
) -> None:
    """
    Names a sender chose to escape the directory, hide a file or replace
    one are made safe; a symbolic link planted in the directory is never
    followed; a directory that does not exist is refused.
    """
    message_id = await send_as_edgar(
        server,
        Attachment("../../escaped", "text/plain", b"one"),
        Attachment("/etc/passwd", "text/plain", b"two"),
        Attachment(".bashrc", "text/plain", b"three"),
        Attachment("passwd", "text/plain", b"four"),
    )
    directory = tmp_path / "downloads" / "inner"
    directory.mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"untouched")
    (directory / "passwd").symlink_to(outside)
    ran = await children.run(
        ["read", message_id, "--save", str(directory), "--json"], server.annabel
    )
    assert_clean(ran)
    saved = {item["name"]: Path(item["path"]).name for item in ran.json()["saved"]}
    assert saved == {
        "../../escaped": "escaped",
        "/etc/passwd": "passwd-1",
        ".bashrc": "bashrc",
        "passwd": "passwd-2",
    }
    assert sorted(p.name for p in directory.iterdir()) == [
        "bashrc",
        "escaped",
        "passwd",
        "passwd-1",
        "passwd-2",
    ]
    assert (directory / "passwd-1").read_bytes() == b"two"
    assert (directory / "passwd").is_symlink()
    assert outside.read_bytes() == b"untouched"
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == ["inner"]
    assert oct((directory / "bashrc").stat().st_mode & 0o777) == oct(0o600)

    ran = await children.run(
        ["read", message_id, "--save", str(tmp_path / "missing")], server.annabel
    )
    assert_clean(ran, EXIT_USAGE)
    assert f"--save {tmp_path / 'missing'}: no such directory" in ran.err


@pytest_twisted.ensureDeferred
async def test_signature_checks(
    server: CLIServer, children: Children, tmp_path: Path
) -> None:
    """
    What C{read} says it checked: the key in DNS once poe.net publishes
    one; a signature by a key DNS does not publish fails (status 1, and
    nothing is saved); an object nobody signed is said to be unsigned; a
    message whose attachment table is malformed is shown whole, with a
    warning.
    """
    message_id = await send_as_edgar(server, Attachment("a.txt", "text/plain", b"data"))
    signer = server.services.signer
    key = signer.public_key().fingerprint
    read = ["read", message_id, "--dns", server.dns.dns_option]

    server.dns.set_zone("poe.net", zone_text("poe.net", [key_txt(signer.public_key())]))
    ran = await children.run([*read, "--json"], server.annabel)
    assert_clean(ran)
    assert ran.json()["signature"] == {
        "status": "verified",
        "domain": "poe.net",
        "key": key,
        "source": "dns",
        "text": f"Signed by poe.net (key {key}), verified against DNS",
    }

    other = DomainSigner(generate_private_key(), "poe.net").public_key()
    server.dns.set_zone("poe.net", zone_text("poe.net", [key_txt(other)]))
    saved_to = tmp_path / "saved"
    saved_to.mkdir()
    ran = await children.run([*read, "--save", str(saved_to)], server.annabel)
    assert_clean(ran, EXIT_REFUSED)
    expected = (
        f"Signed by poe.net (key {key}), but the signature does not verify "
        "against DNS: unknown key"
    )
    assert f"Signature: {expected}\n" in ran.out
    assert ran.err == f"fmtp: {expected}; nothing saved\n"
    assert list(saved_to.iterdir()) == []

    edgar = await server.client(EDGAR)
    post_id, _ = await edgar.put("post", {"Public": "yes"}, b"a draft")
    ran = await children.run(["read", post_id], server.edgar)
    assert_clean(ran)
    assert "Signature: unsigned: nothing shows who wrote it" in ran.out

    broken = FMTPObject(
        new_object_id(EDGAR, time.time()),
        "message",
        {"From": EDGAR, "To": ANNABEL, "Attachments": "3"},
        b"\x1b]0;owned\x07text",
    )
    await server.services.store.deliver_local(ANNABEL, broken, False)
    ran = await children.run(["read", broken.id], server.annabel)
    assert_clean(ran)
    assert "Warning: the attachment table is malformed" in ran.out
    ran = await children.run(
        ["read", broken.id, "--save", str(saved_to)], server.annabel
    )
    assert_clean(ran, EXIT_REFUSED)
    assert "nothing saved" in ran.err


@pytest_twisted.ensureDeferred
async def test_signature_checked_against_a_hosts_file(
    server: CLIServer, children: Children, tmp_path: Path
) -> None:
    """
    C{read --hosts-file} checks a signature against the key the hosts file
    names for the signing domain, before DNS (which here publishes another
    key): as a server with that hosts file does.  A wrong key there fails
    (status 1); a domain the file has no key for is looked up in DNS; a
    file that cannot be read or parsed is a usage error.
    """
    message_id = await send_as_edgar(server)
    public = server.services.signer.public_key()
    other = DomainSigner(generate_private_key(), "poe.net").public_key()
    server.dns.set_zone("poe.net", zone_text("poe.net", [key_txt(other)]))
    hosts = tmp_path / "hosts"
    read = ["read", message_id, "--hosts-file", str(hosts)]
    read += ["--dns", server.dns.dns_option]

    hosts.write_text(f'key poe.net "{format_key_record(public)}"\n')
    ran = await children.run([*read, "--json"], server.annabel)
    assert_clean(ran)
    assert ran.json()["signature"] == {
        "status": "verified",
        "domain": "poe.net",
        "key": public.fingerprint,
        "source": "hosts",
        "text": (
            f"Signed by poe.net (key {public.fingerprint}), verified against "
            f"the hosts file {hosts}"
        ),
    }

    hosts.write_text(f"key poe.net {format_key_record(other)}\n")
    ran = await children.run(read, server.annabel)
    assert_clean(ran, EXIT_REFUSED)
    assert ran.err == (
        f"fmtp: Signed by poe.net (key {public.fingerprint}), but the signature "
        f"does not verify against the hosts file {hosts}: unknown key\n"
    )

    hosts.write_text(
        f"key lenore.org {format_key_record(public)}\nroute poe.net 127.0.0.1\n"
    )
    server.dns.set_zone("poe.net", zone_text("poe.net", [key_txt(public)]))
    ran = await children.run([*read, "--json"], server.annabel)
    assert_clean(ran)
    assert ran.json()["signature"]["source"] == "dns"

    hosts.write_text("key poe.net\n")
    ran = await children.run(read, server.annabel)
    assert_clean(ran, EXIT_USAGE)
    assert f"--hosts-file {hosts}:1: expected: key DOMAIN RECORD" in ran.err
    hosts.unlink()
    ran = await children.run(read, server.annabel)
    assert_clean(ran, EXIT_USAGE)
    assert f"--hosts-file {hosts}: No such file or directory" in ran.err


@pytest_twisted.ensureDeferred
async def test_inbox_paging_and_held_senders(
    server: CLIServer, children: Children, tmp_path: Path
) -> None:
    """
    The inbox in pages, each saying where the next starts; senders held
    by the confirm policy, approved and refused; and C{fmtp inbox} into a
    pipe whose reader has gone ends quietly with status 141.
    """
    edgar = await server.client(EDGAR)
    ids = [
        (await edgar.send([ANNABEL], b"", subject=f"number {n}")).id for n in range(5)
    ]
    first = await children.run(["inbox", "--limit", "2"], server.annabel)
    assert_clean(first)
    assert "number 0" in first.out and "number 1" in first.out
    assert "number 2" not in first.out
    since = first.out.splitlines()[-1].rpartition("--since ")[2]
    assert first.out.splitlines()[-1] == f"More may follow: fmtp inbox --since {since}"
    rest = await children.run(["inbox", "--since", since, "--json"], server.annabel)
    assert_clean(rest)
    page = rest.json()
    assert [m["id"] for m in page["messages"]] == ids[2:]
    assert [m["subject"] for m in page["messages"]] == [
        "number 2",
        "number 3",
        "number 4",
    ]
    assert page["next_since"] == page["messages"][-1]["seq"]
    assert_clean(await children.run(["inbox", "--limit", "0"], server.annabel), 2)

    writer = closed_pipe()
    try:
        child, _, err = children.start(["inbox"], server.annabel, stdout=writer)
    finally:
        os.close(writer)
    assert await wait_for_exit(child, COMMAND_TIMEOUT) == EXIT_BROKEN_PIPE
    assert err.read_text() == ""

    annabel = await server.client(ANNABEL)
    await annabel.put("user", {"Policy": "confirm"}, object_id=ANNABEL)
    lost = "lost@poe.net"
    await server.services.store.add_account(lost, hash_password(PASSWORD, n=2**10))
    for sender in (EDGAR, lost):
        client = await server.client(sender)
        await client.send([ANNABEL], b"may I?")
    held = await children.run(["held", "--json"], server.annabel)
    assert_clean(held)
    assert held.json() == {"held": [EDGAR, lost]}
    approved = await children.run(["approve", EDGAR], server.annabel)
    assert_clean(approved)
    assert approved.out == f"Approved {EDGAR}: 1 held moved to your inbox\n"
    refused = await children.run(["refuse", lost], server.annabel)
    assert_clean(refused)
    assert refused.out == f"Refused {lost}: 1 held dropped\n"
    held = await children.run(["held"], server.annabel)
    assert held.out == "No messages are held.\n"


@pytest_twisted.ensureDeferred
async def test_read_and_reply_by_inbox_number(
    server: CLIServer, children: Children
) -> None:
    """
    C{read} and C{reply} take the number C{inbox} shows (its SEQ column)
    as well as an id; a number the inbox does not hold is refused
    (status 1), never taken for another message.
    """
    edgar = await server.client(EDGAR)
    first, second = [
        (await edgar.send([ANNABEL], b"text " + subject.encode(), subject=subject)).id
        for subject in ("first", "second")
    ]
    listed = (await children.run(["inbox", "--json"], server.annabel)).json()
    numbers = {m["id"]: str(m["seq"]) for m in listed["messages"]}
    read = await children.run(["read", numbers[second]], server.annabel)
    assert_clean(read)
    assert f"Id: {second}\n" in read.out and "\n\ntext second\n" in read.out

    replied = await children.run(
        ["reply", numbers[first], "--body", "to the first", "--json"], server.annabel
    )
    assert_clean(replied)
    answer = await edgar.get(replied.json()["id"])
    assert answer.properties["Parent"] == first
    assert answer.properties["Subject"] == "Re: first"

    missing = str(max(int(n) for n in numbers.values()) + 1000)
    commands = [
        (number, command)
        for number in (missing, "0")
        for command in (["read", number], ["reply", number, "--body", "x"])
    ]
    ran = await children.run_all(*[(args, server.annabel) for _, args in commands])
    for (number, _), result in zip(commands, ran, strict=True):
        assert_clean(result, EXIT_REFUSED)
        assert result.err == (
            f"fmtp: no message {number} in your inbox (fmtp inbox lists them)\n"
        )


@pytest_twisted.ensureDeferred
async def test_watch(server: CLIServer, children: Children) -> None:
    """
    C{fmtp watch} shows a message another process sends, as it arrives,
    then ends at Ctrl-C with status 130 and nothing on standard error;
    another ends with status 3 and one line when the server goes away.
    """
    watcher, out, err = children.start(["watch", "--json"], server.annabel)
    await eventually(lambda: len(server.services.router) == 1)
    sent = await children.run(
        ["send", ANNABEL, "--subject", "Are you there?", "--body", "Lenore"],
        server.edgar,
    )
    assert_clean(sent)
    line = await eventually(lambda: out.read_text().strip())
    pushed = json.loads(line)
    assert (pushed["from"], pushed["subject"], pushed["text"]) == (
        EDGAR,
        "Are you there?",
        "Lenore",
    )
    assert sent.out.startswith(f"Sent {pushed['id']}\n")
    watcher.send_signal(signal.SIGINT)
    assert await wait_for_exit(watcher, COMMAND_TIMEOUT) == EXIT_INTERRUPTED
    assert err.read_text() == ""

    await eventually(lambda: len(server.services.router) == 0)
    proxy, listening = forwarding_proxy(server)
    try:
        env = dict(server.annabel, FMTP_SERVER=proxy)
        watcher, out, err = children.start(["watch"], env)
        await eventually(lambda: len(server.services.router) == 1)
        # The server goes away: its end of the connection closes.
        for connection in listening.factory.open:
            connection.server.transport.loseConnection()
        assert await wait_for_exit(watcher, COMMAND_TIMEOUT) == EXIT_UNREACHABLE
    finally:
        await listening.stopListening()
    assert_clean(Ran(EXIT_UNREACHABLE, out.read_text(), err.read_text()), 3)
    assert "closed the connection" in err.read_text()


class DropReplies(Protocol):
    """
    A proxy in front of the server that forwards everything, except that,
    while C{factory.drops} is positive, it cuts the connection at the
    reply to a SEND (after the server got it): the reply is lost.
    """

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.factory.open.append(self)
        self.sent = False
        self.server: Protocol | None = None
        self.transport.pauseProducing()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.factory.port)
        connectProtocol(endpoint, _Back(self)).addCallback(self._connected)

    def _connected(self, server: Protocol) -> None:
        self.server = server
        self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        if data.startswith(b"SEND ") or b"\nSEND " in data:
            self.sent = True
        self.server.transport.write(data)

    def from_server(self, data: bytes) -> None:
        if self.sent and self.factory.drops > 0:
            self.factory.drops -= 1
            if not self.factory.swallow:
                self.transport.abortConnection()
                self.server.transport.abortConnection()
        else:
            self.transport.write(data)

    def connectionLost(self, reason) -> None:
        self.factory.open.remove(self)
        if self.server is not None:
            self.server.transport.loseConnection()


class _Back(Protocol):
    def __init__(self, front: DropReplies) -> None:
        self.front = front

    def dataReceived(self, data: bytes) -> None:
        self.front.from_server(data)

    def connectionLost(self, reason) -> None:
        self.front.transport.loseConnection()


def forwarding_proxy(server: CLIServer, drops: int = 0):
    """
    A L{DropReplies} proxy in front of C{server}.

    @return: its endpoint and its listening port.
    """
    factory = Factory.forProtocol(DropReplies)
    factory.port = int(server.tcp.rsplit(":", 1)[1])
    factory.connections, factory.drops, factory.open = 0, drops, []
    factory.swallow = False
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    return f"tcp:127.0.0.1:{listening.getHost().port}", listening


@pytest_twisted.ensureDeferred
async def test_send_retried_once_with_the_same_key(
    server: CLIServer, children: Children
) -> None:
    """
    The reply to a SEND is lost: the command sends again, once, with the
    same Idempotency-Key, and the message reaches annabel once.  When the
    second reply is lost too (the connection cut, or no reply within
    --timeout), it says so (status 3) and names the key to repeat the send
    with safely.
    """
    endpoint, listening = forwarding_proxy(server, drops=1)
    factory = listening.factory
    proxy = dict(server.edgar, FMTP_SERVER=endpoint)
    try:
        ran = await children.run(["send", ANNABEL, "--body", "once"], proxy)
        assert_clean(ran)
        assert factory.connections == 2
        annabel = await server.client(ANNABEL)
        [entry] = (await annabel.fetch()).entries
        assert ran.out.startswith(f"Sent {entry.id}\n")

        factory.drops = 2
        ran = await children.run(["send", ANNABEL, "--body", "twice"], proxy)
        assert_clean(ran, EXIT_UNREACHABLE)
        assert "closed the connection, twice; the message may have been sent" in ran.err
        key = ran.err.split("--key ")[1].split()[0]
        again = await children.run(
            ["send", ANNABEL, "--body", "twice", "--key", key], server.edgar
        )
        assert_clean(again)
        entries = (await annabel.fetch()).entries
        assert len(entries) == 2
        assert again.out.startswith(f"Sent {entries[1].id}\n")

        # Replies that never come: the same, after --timeout each time.
        factory.drops, factory.swallow = 2, True
        ran = await children.run(
            ["send", ANNABEL, "--body", "late", "--timeout", "0.5"], proxy
        )
        assert_clean(ran, EXIT_UNREACHABLE)
        assert f"no answer from {endpoint} within 0.5 s, twice; the message" in ran.err
        assert len((await annabel.fetch()).entries) == 3
    finally:
        await listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_admin_users_queue_and_key(server: CLIServer, children: Children) -> None:
    """
    On the running server's data directory: the queue shows what waits
    for lenore.org and why, makes it due, and drops it with a signed
    bounce to its sender; C{users} lists and deletes accounts (a deleted
    one cannot log in); C{keygen --show} prints the record of the key in
    use; C{--version}.
    """
    admin = environment(XDG_CONFIG_HOME=str(server.tmp_path / "nothing"))
    data = ["--data-dir", str(server.data_dir)]
    edgar = await server.client(EDGAR)
    sent = await edgar.send(["lost@lenore.org", "raven@lenore.org"], b"far away")

    async def attempted():
        rows = await server.services.store.queued_for("lenore.org")
        return rows and rows[0].attempts >= 1

    await eventually(attempted)
    listed, shown = await children.run_all(
        (["queue", "--json", *data], admin), (["queue", *data], admin)
    )
    assert_clean(listed)
    [row] = listed.json()["queue"]
    assert (row["id"], row["domain"], row["recipients"], row["attempts"]) == (
        sent.id,
        "lenore.org",
        ["lost@lenore.org", "raven@lenore.org"],
        1,
    )
    assert row["last_error"]
    assert_clean(shown)
    assert f"lenore.org  {sent.id}  lost@lenore.org raven@lenore.org  1" in shown.out
    assert shown.out.endswith("1 waiting, for 1 domain\n")

    retried = await children.run(["queue", "retry", "lenore.org", *data], admin)
    assert_clean(retried)
    assert retried.out.startswith("1 delivery for lenore.org made due now")
    [queued] = await server.services.store.queued_for("lenore.org")
    assert queued.next_attempt <= time.time() and queued.attempts == 1

    dropped = await children.run(["queue", "drop", sent.id, *data], admin)
    assert_clean(dropped)
    assert dropped.out == (
        f"Dropped {sent.id} for lenore.org (lost@lenore.org raven@lenore.org); "
        f"bounced to {EDGAR}\n"
    )
    assert await server.services.store.queued_for("lenore.org") == []
    [bounce] = [await edgar.get(e.id) for e in (await edgar.fetch()).entries]
    assert bounce.properties["From"] == "postmaster@poe.net"
    assert bounce.properties["Parent"] == sent.id
    assert b"dropped from the queue by the administrator" in bounce.body
    await server.services.keys.verify_object(bounce)
    nothing = await children.run(["queue", "drop", sent.id, *data], admin)
    assert_clean(nothing, EXIT_REFUSED)

    users, key, version = await children.run_all(
        (["users", "--json", *data], admin),
        (
            ["keygen", "--show", "--key-file", str(server.data_dir / "domain.key")],
            admin,
        ),
        (["--version"], admin),
    )
    assert_clean(users)
    assert users.json() == {"users": [{"address": ANNABEL}, {"address": EDGAR}]}
    deleted = await children.run(["users", "delete", ANNABEL, *data], admin)
    assert_clean(deleted)
    assert deleted.out.startswith(f"Deleted {ANNABEL}: ")
    with pytest.raises(ReplyError) as refused:
        await server.client(ANNABEL)
    assert refused.value.code == 535
    users = await children.run(["users", *data], admin)
    assert users.out == f"{EDGAR}\n"
    again = await children.run(["users", "delete", ANNABEL, *data], admin)
    assert_clean(again, EXIT_REFUSED)

    assert_clean(key)
    record = zone_line("poe.net", server.services.signer.public_key())
    assert key.out.splitlines()[-1] == record
    assert version.out.startswith("fmtp ") and version.status == 0


def python_examples(path: Path) -> list[str]:
    """
    The C{```python} blocks of a document.
    """
    text = path.read_text()
    return [block.split("```")[0] for block in text.split("```python\n")[1:]]


@pytest_twisted.ensureDeferred
async def test_client_md_examples_run(
    server: CLIServer, children: Children, tmp_path: Path
) -> None:
    """
    The library examples of doc/client.md run as written, with the
    settings the command reads from the environment.
    """
    examples = python_examples(CHECKOUT / "doc" / "client.md")
    assert len(examples) == 2
    outputs = []
    for n, example in enumerate(examples):
        script = tmp_path / f"example{n}.py"
        script.write_text(example)
        ran = await children.run(
            [str(script)], server.annabel, command=[sys.executable]
        )
        assert_clean(ran)
        outputs.append(ran.out)
    blocking, pushed = outputs
    assert blocking.startswith("sent ") and f" {ANNABEL} Reminder\n" in blocking
    assert pushed == "pushed True Echo\n"


@pytest_twisted.ensureDeferred
async def test_inbox_subjects_when_a_get_fails() -> None:
    """
    A message the server will not show gets a subject saying why; a lost
    connection is reported as such (status 3), not as a wrapped error.
    """

    class Server:
        def __init__(self, lost: bool) -> None:
            self.lost = lost

        async def get(self, object_id: str) -> FMTPObject:
            await succeed(None)
            if object_id == "gone":
                raise ReplyError("GET", reply(550, "1", "no such object"))
            if self.lost:
                raise ConnectionLost("GET: connection closed")
            return FMTPObject(object_id, "message", {"Subject": "hi"}, b"")

    quiet = Progress("inbox", False)
    titles = await subjects(Server(False), [f"{n}.x.a@b.c" for n in range(40)], quiet)
    assert titles == ["hi"] * 40
    assert await subjects(Server(False), ["gone"], quiet) == [
        "(unreadable: 550 no such object)"
    ]
    with pytest.raises(ConnectionLost):
        await subjects(Server(True), ["a", "b"], quiet)
