"""
The C{fmtp} command as a user runs it: a real C{python -m fmtp} process
from the checkout, in a scratch working directory.

Every ordinary failure must end with one line on standard error, no
traceback, and the exit status C{fmtp --help} documents: 1 refused, 2
usage, 3 unreachable, 130 Ctrl-C, 141 standard output closed.  Admin
commands must refuse a data directory that is missing (unless asked to
make one) or of another domain, rather than fill a new empty store that
no server reads.

Children run in a session of their own (no controlling terminal), as
under cron or a service manager: C{getpass} then cannot ask, and a test
run from a terminal never waits on its keyboard.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from fmtp.cli import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from fmtp.dns.hostsfile import parse_hosts
from tests.integration.test_twistd import (
    FMTP,
    PASSWORD,
    Processes,
    child_environment,
    processes,  # noqa: F401 (a fixture)
    run_command,
    start_server,
    wait_for_exit,
)

#: Seconds a command that ends by itself may take (adduser hashes the
#: password with scrypt at full cost).
COMMAND_TIMEOUT = 30.0

PASSWORD_LINE = PASSWORD.encode() + b"\n"


@dataclass
class Result:
    status: int
    out: str
    err: str


def fmtp(
    args: Sequence[str], cwd: Path, stdin: bytes = b"", stdout=subprocess.PIPE
) -> Result:
    """
    Run C{fmtp ARGS} to its end, without a controlling terminal.
    """
    completed = subprocess.run(
        [*FMTP, *args],
        cwd=cwd,
        env=child_environment(),
        input=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=COMMAND_TIMEOUT,
        start_new_session=True,
    )
    return Result(
        completed.returncode,
        (completed.stdout or b"").decode("utf-8", "replace"),
        completed.stderr.decode("utf-8", "replace"),
    )


def passwd(cwd: Path, address: str) -> Result:
    return fmtp(["passwd", "--password-file", "-", address], cwd, PASSWORD_LINE)


def assert_failed(result: Result, status: int, *words: str) -> str:
    """
    The command failed with C{status} and said why in one line on
    standard error, naming each of C{words}, with no traceback.

    @return: that line.
    """
    assert result.status == status, result
    assert "Traceback" not in result.out + result.err, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("fmtp: "), result
    for word in words:
        assert word in lines[0], result
    return lines[0]


def adduser(cwd: Path, address: str, *options: str) -> Result:
    return fmtp(
        ["adduser", *options, "--password-file", "-", address], cwd, PASSWORD_LINE
    )


def test_adduser_from_another_directory(tmp_path: Path) -> None:
    """
    Run where there is no data directory, C{adduser} refuses, naming the
    directory it looked for, and makes nothing.
    """
    result = adduser(tmp_path, "alice@localhost")
    assert_failed(
        result,
        EXIT_REFUSED,
        f"no data directory {tmp_path / 'fmtp-data'}",
        "--data-dir",
        "--create-data-dir",
    )
    assert list(tmp_path.iterdir()) == []


def test_admin_commands_keep_to_the_data_dir_domain(tmp_path: Path) -> None:
    """
    C{--create-data-dir} makes a data directory for the address's domain;
    then an address of another domain is refused by C{adduser} and
    C{passwd}, and the accounts of its own domain are managed as before.
    """
    data_dir = tmp_path / "fmtp-data"
    created = adduser(tmp_path, "alice@localhost", "--create-data-dir")
    assert created.status == EXIT_OK, created
    assert "Made the data directory fmtp-data for localhost" in created.out
    assert "Created alice@localhost" in created.out
    assert (data_dir / "domain").read_text() == "localhost\n"
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700

    assert_failed(
        adduser(tmp_path, "bob@example.org"),
        EXIT_REFUSED,
        "data directory of localhost; example.org is another domain",
    )
    assert_failed(
        passwd(tmp_path, "bob@example.org"),
        EXIT_REFUSED,
        "example.org",
    )
    changed = passwd(tmp_path, "alice@localhost")
    assert changed.status == EXIT_OK, changed
    assert "Changed the password of alice@localhost" in changed.out


@pytest.mark.parametrize(
    ("store", "status", "named"),
    [
        ("postgresql://fmtp@db.example/fmtp", EXIT_USAGE, "PostgreSQL"),
        ("memory:", EXIT_USAGE, "memory:"),
        ("sqlite:elsewhere.sqlite", EXIT_REFUSED, "no store elsewhere.sqlite"),
    ],
)
def test_admin_store_urls(tmp_path: Path, store: str, status: int, named: str) -> None:
    """
    A store no server can be reading is refused, not created or used.
    """
    (tmp_path / "fmtp-data").mkdir()
    (tmp_path / "fmtp-data" / "domain").write_text("localhost\n")
    result = adduser(tmp_path, "alice@localhost", "--store", store)
    assert_failed(result, status, named)
    assert not (tmp_path / "elsewhere.sqlite").exists()


def test_password_without_terminal(tmp_path: Path) -> None:
    """
    A password piped in without C{--password-file}: C{getpass} has no
    terminal to ask on; the command says to use C{--password-file}, and
    the data directory it was asked to make is not made.
    """
    result = fmtp(
        ["adduser", "--create-data-dir", "alice@localhost"], tmp_path, PASSWORD_LINE
    )
    assert_failed(result, EXIT_USAGE, "no terminal", "--password-file")
    assert not (tmp_path / "fmtp-data").exists()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["capa", "--server", "localhost:7070"], "--server localhost:7070"),
        (["list", "--timeout", "0"], "--timeout"),
        (["adduser", "not-an-address"], "not-an-address"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], named: str) -> None:
    assert_failed(fmtp(args, tmp_path), EXIT_USAGE, named, "--help")


def test_server_not_running(tmp_path: Path) -> None:
    """
    A port bound by nobody's listener (held by this test, so nothing else
    takes it meanwhile) refuses the connection.
    """
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        result = fmtp(["list", "--server", f"tcp:127.0.0.1:{port}"], tmp_path)
    assert_failed(result, EXIT_UNREACHABLE, "Connection refused", "server running")


def test_silent_server_times_out(tmp_path: Path) -> None:
    """
    A peer that accepts the connection (the kernel does, from the listen
    queue) but never says a word: the command gives up after C{--timeout},
    over TCP and over UDP.
    """
    with socket.socket() as silent, socket.socket(type=socket.SOCK_DGRAM) as deaf:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        deaf.bind(("127.0.0.1", 0))
        for kind, sock in (("tcp", silent), ("udp", deaf)):
            server = f"{kind}:127.0.0.1:{sock.getsockname()[1]}"
            result = fmtp(["capa", "--server", server, "--timeout", "0.5"], tmp_path)
            assert_failed(
                result, EXIT_UNREACHABLE, f"no answer from {server} within 0.5 s"
            )


def test_ctrl_c_while_waiting(tmp_path: Path) -> None:
    """
    Ctrl-C while the command waits for a silent server ends it at once,
    quietly, with status 130.
    """
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(COMMAND_TIMEOUT)
        port = silent.getsockname()[1]
        child = subprocess.Popen(
            [*FMTP, "list", "--server", f"tcp:127.0.0.1:{port}", "--timeout", "60"],
            cwd=tmp_path,
            env=child_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            # Connected: the command is in its reactor, waiting.
            connection, _ = silent.accept()
            connection.close()
        except BaseException:
            child.kill()
            raise
        finally:
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=COMMAND_TIMEOUT)
    assert child.returncode == EXIT_INTERRUPTED, (out, err)
    assert (out, err) == (b"", b"")


def closed_pipe() -> int:
    """
    The writing end of a pipe whose reader has gone, as C{head -1}'s
    after its first line.
    """
    reader, writer = os.pipe()
    os.close(reader)
    return writer


def test_keygen_hosts_entry(tmp_path: Path) -> None:
    """
    C{keygen --hosts-entry} prints only the hosts file line naming the key
    it makes (or, with C{--show}, the key it reads), so that C{>> hosts}
    builds a file C{twistd fmtp --hosts-file} reads, with the record the
    zone line would publish.
    """
    made = {}
    for domain in ("poe.net", "lenore.org"):
        key_file = tmp_path / f"{domain}.key"
        result = fmtp(
            [
                "keygen",
                "--domain",
                domain,
                "--key-file",
                str(key_file),
                "--hosts-entry",
            ],
            tmp_path,
        )
        assert (result.status, result.err) == (EXIT_OK, ""), result
        with open(tmp_path / "hosts", "a") as hosts_file:
            hosts_file.write(result.out)
        shown = fmtp(
            ["keygen", "--show", "--domain", domain, "--key-file", str(key_file)],
            tmp_path,
        )
        again = fmtp(
            ["keygen", "--show", "--hosts-entry", "--domain", domain]
            + ["--key-file", str(key_file)],
            tmp_path,
        )
        assert again.out == result.out and again.status == EXIT_OK, again
        zone_record = shown.out.splitlines()[-1].partition(" IN TXT ")[2]
        assert result.out == f"key {domain} {zone_record}\n"
        made[domain] = zone_record.strip('"')
    hosts = parse_hosts((tmp_path / "hosts").read_text().splitlines(), "hosts")
    assert hosts.keys == {domain: [record] for domain, record in made.items()}


def test_help_documents_exit_statuses(tmp_path: Path) -> None:
    result = fmtp(["--help"], tmp_path)
    assert result.status == EXIT_OK, result
    words = " ".join(result.out.split())
    for line in ("0 done", "1 refused", "2 usage", "3 unreachable", "130 interrupted"):
        assert line in words, result.out


LISTED_ID = re.compile(rb"^(\S+\.edgar@localhost) post ", re.MULTILINE)


async def list_into_closed_pipe(tmp_path: Path, server: str) -> int:
    """
    C{fmtp list | head -1} once C{head} has gone: the exit status of
    C{fmtp list}, whose standard error must stay empty.
    """
    writer = closed_pipe()
    try:
        with open(tmp_path / "list-closed.err", "wb") as err:
            child = subprocess.Popen(
                [*FMTP, "list", "--server", server],
                cwd=tmp_path,
                env=child_environment(),
                stdin=subprocess.DEVNULL,
                stdout=writer,
                stderr=err,
            )
    finally:
        os.close(writer)
    try:
        status = await wait_for_exit(child, COMMAND_TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    assert (tmp_path / "list-closed.err").read_bytes() == b""
    return status


@pytest_twisted.ensureDeferred
async def test_try_it(tmp_path: Path, processes: Processes) -> None:  # noqa: F811
    """
    The README's "Try it" commands against a server on its embedded
    default (with port-0 listeners), run from the server's directory;
    then a refusal by the server, and C{fmtp list} into a closed pipe.
    """
    server = await start_server(processes, tmp_path, "server")
    tcp = f"tcp:127.0.0.1:{server.tcp_port}"
    udp = f"udp:127.0.0.1:{server.udp_port}"

    def run(name: str, args: Sequence[str], stdin: bytes = b"") -> Deferred:
        return Deferred.fromCoroutine(
            run_command(processes, [*FMTP, *args], tmp_path, name, stdin)
        )

    status, output = await run(
        "adduser", ["adduser", "--password-file", "-", "edgar@localhost"], PASSWORD_LINE
    )
    assert status == EXIT_OK, output
    poem = b"Once upon a midnight dreary\n"
    login = ["--user", "edgar@localhost", "--password-file", "-"]
    status, output = await run(
        "put", ["put", "--server", tcp, *login, "--public", "-"], PASSWORD_LINE + poem
    )
    assert status == EXIT_OK, output
    assert output.startswith(b"201 "), output

    # Independent commands, run together to keep the test short.
    by_tcp, by_udp, missing, closed = await gatherResults(
        [
            run("list-tcp", ["list", "--server", tcp]),
            run("list-udp", ["list", "--server", udp]),
            run("get-missing", ["get", "--server", tcp, "no-such-id"]),
            Deferred.fromCoroutine(list_into_closed_pipe(tmp_path, tcp)),
        ]
    )
    assert by_tcp[0] == by_udp[0] == EXIT_OK, (by_tcp, by_udp)
    match = LISTED_ID.search(by_tcp[1])
    assert match, by_tcp
    assert match.group(1) in by_udp[1]
    assert missing[0] == EXIT_REFUSED, missing
    assert missing[1][:1] in (b"4", b"5"), missing
    assert b"Traceback" not in missing[1]
    assert closed == EXIT_BROKEN_PIPE

    status, output = await run("get", ["get", "--server", tcp, match.group(1).decode()])
    assert status == EXIT_OK, output
    assert output.endswith(b"\n\n" + poem), output

    # A message to oneself, read back: the embedded default's domain,
    # localhost, publishes no key, so the server's own is used.
    status, output = await run(
        "send",
        ["send", "edgar@localhost", "--server", tcp, *login],
        PASSWORD_LINE + poem,
    )
    assert status == EXIT_OK, output
    message_id = output.split()[1].decode()
    status, output = await run(
        "read", ["read", message_id, "--server", tcp, *login], PASSWORD_LINE
    )
    assert status == EXIT_OK, output
    assert (
        b"verified with the key your server announces; localhost publishes no key"
    ) in output, output
    assert output.endswith(b"\n\n" + poem), output
    await server.terminate()


@pytest_twisted.ensureDeferred
async def test_adduser_refuses_a_rooms_address(tmp_path: Path) -> None:
    """
    Users and chat rooms share one namespace: C{adduser} refuses the
    address of a room, as CREATE refuses a user's.
    """
    from twisted.internet import reactor

    from fmtp.store import SQLiteStore
    from fmtp.store.rooms import RoomConfig

    assert adduser(tmp_path, "alice@localhost", "--create-data-dir").status == EXIT_OK
    store = SQLiteStore(str(tmp_path / "fmtp-data" / "fmtp.sqlite"), reactor=reactor)
    await store.open()
    try:
        await store.create_room("lobby@localhost", "alice@localhost", RoomConfig(), 0.0)
    finally:
        await store.close()
    assert_failed(
        adduser(tmp_path, "lobby@localhost"),
        EXIT_REFUSED,
        "lobby@localhost is a chat room's address",
    )
