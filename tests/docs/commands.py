"""
Every shell command the documentation shows, run as a reader runs it:
tests/docs/blocks.py says which commands, and what they must show.

How commands run (L{Session}): in a directory standing for the checkout
(its entries linked, the Python environment running the test as
C{.venv}, and first on C{PATH}; the checkout on C{PYTHONPATH}); each by
C{bash -o pipefail -c}, on a pseudo-terminal of its own, so that a
password prompt is answered as a person answers it, with L{PASSWORD}.
Each must exit 0 within L{COMMAND_TIMEOUT}.  C{twistd ... fmtp} starts
in the background, is waited for until it logs L{READY} (and the lines
a console block shows after it, if any), and is stopped when the
document ends.  A read-only C{fmtp} command (C{inbox}, C{read}...) that
fails or does not show what the document shows yet (a message still on
its way between two servers) is run again, for L{RETRY_TIMEOUT} at
most.  An C{nc} session is typed into a connection of the test's own
(L{tests.docs.transcripts}).

The documented addresses (C{127.0.0.1:7070}, the quickstart's
C{127.0.0.2} and C{127.0.0.3}) are bound in a network namespace of the
test's own (L{in_private_network}), where a server running on this
machine cannot disturb them nor be disturbed; its PID namespace ends
every process the session left when the runner ends, however it ends.

Run a document by hand (as tests/docs/test_docs.py does)::

    python -m tests.docs.commands doc/quickstart.md
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.docs.blocks import (
    CHECKOUT,
    NC,
    Command,
    DocumentError,
    block_problems,
    commands_of,
    match_lines,
    relative,
)
from tests.docs.transcripts import run_transcript

#: The shell documented commands are written for.
BASH = shutil.which("bash") or "/bin/bash"

#: The answer to every password prompt; a document that types a password
#: (a LOGIN into nc) must use this one.
PASSWORD = "nevermore-quoth"
#: Seconds a command may take; a server to start; a stopped server to end.
COMMAND_TIMEOUT = 30.0
SERVER_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
#: Seconds a read-only command is repeated until it shows what the
#: document shows, and the pause between two tries.
RETRY_TIMEOUT = 15.0
RETRY_INTERVAL = 0.2
#: What C{twistd fmtp} logs once it accepts connections.
READY = "Serving the object protocol"
#: A server run in the foreground, which the test runs in the background.
SERVER = re.compile(r"(^|[\s/])twistd\s(.*\s)?(-n|--nodaemon)\s")
#: fmtp commands that change nothing, and so may be run again.
READ_ONLY = re.compile(
    r"(^|[\s/])fmtp\s+(inbox|read|list|get|held|capa|users(?!\s+delete)"
    r"|queue(?!\s+(retry|drop)))\b"
)
#: What C{fmtp} asks a password with, on the terminal.
PROMPT = re.compile(rb"(Password|Again): \Z")


def bring_loopback_up() -> None:
    """
    Bring C{lo} up in a new network namespace, where it starts down, with
    the ioctls C{ip link set lo up} makes (iproute2 may be missing).
    """
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


UNSHARE = ("unshare", "--user", "--map-root-user", "--net", "--pid", "--fork")


def in_private_network(args: Sequence[str]) -> list[str]:
    """
    C{args} run in a network and PID namespace of their own: only C{lo},
    and every process gone when the first one ends (C{--kill-child} ends
    it with unshare, should unshare be killed).
    """
    return [*UNSHARE, "--kill-child", *args]


def private_network_problem() -> str | None:
    """
    L{None} if this machine lets an unprivileged user make the namespaces
    L{in_private_network} needs, else why not.
    """
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux)"
    probe = in_private_network([sys.executable, "-c", "pass"])
    try:
        done = subprocess.run(probe, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare failed: {e}"
    if done.returncode:
        return f"unshare failed: {done.stderr.decode(errors='replace').strip()}"
    return None


def run_on_terminal(
    text: str, cwd: Path, env: dict[str, str], timeout: float
) -> tuple[int, str]:
    """
    Run C{text} with bash on a pseudo-terminal of its own, as in a
    terminal window, answering each password prompt with L{PASSWORD}.

    @return: the exit status, and everything the terminal showed.
    @raise DocumentError: if it does not end within C{timeout} seconds.
    """
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.chdir(cwd)
            os.execve(BASH, ["bash", "-o", "pipefail", "-c", text], env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: every end of the terminal is closed
                break
            if not data:
                break
            output += data
            if PROMPT.search(output):
                os.write(fd, PASSWORD.encode() + b"\n")
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                shown = output.decode("utf-8", "replace").replace("\r\n", "\n")
                return os.waitstatus_to_exitcode(status), shown.replace("\r", "")
            time.sleep(0.01)
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise DocumentError(
            f"still running after {timeout:g} s; it showed:\n{output.decode()}"
        )
    finally:
        os.close(fd)


@dataclass
class Server:
    process: subprocess.Popen
    log: Path
    where: str


class Session:
    """
    A document's commands, run one after the other in a directory that
    stands for the checkout.
    """

    def __init__(self, directory: Path, checkout: Path = CHECKOUT) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        # What a run in the checkout itself may have left, and the
        # environment, which is the test's own.
        skip = {".git", ".venv", ".tox", "__pycache__", "build", "fmtp-data"}
        skip |= {"twistd.pid", "twistd.log"}
        for entry in checkout.iterdir():
            if entry.name not in skip and not entry.name.endswith(".egg-info"):
                (directory / entry.name).symlink_to(entry)
        (directory / ".venv").symlink_to(Path(sys.prefix))
        home = directory / ".home"
        home.mkdir()
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("FMTP_", "XDG_", "VIRTUAL_ENV", "PYTHON"))
        }
        env["PATH"] = os.pathsep.join(
            [str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")]
        )
        env.update(
            PYTHONPATH=str(checkout),
            PYTHONUNBUFFERED="1",
            HOME=str(home),
            TZ="UTC",
            TERM="dumb",
        )
        self.env = env
        self.servers: list[Server] = []
        self.ran = 0

    def run(self, command: Command) -> None:
        """
        Run one command as the document says, or raise L{DocumentError}.
        """
        self.ran += 1
        if SERVER.search(command.text):
            self.start_server(command)
            return
        nc = NC.match(command.text)
        if nc:
            try:
                run_transcript(
                    nc["host"],
                    int(nc["port"]),
                    command.transcript or [],
                    bool(nc["crlf"]),
                    COMMAND_TIMEOUT,
                )
            except OSError as e:
                raise DocumentError(f"the connection failed: {e}") from None
            return
        deadline = time.monotonic() + RETRY_TIMEOUT
        while True:
            status, shown = run_on_terminal(
                command.text, self.directory, self.env, COMMAND_TIMEOUT
            )
            problem = None
            if status != 0:
                problem = f"exit status {status}"
            elif command.shown is not None:
                problem = match_lines(command.shown, shown.splitlines())
            if problem is None:
                return
            if not READ_ONLY.search(command.text) or time.monotonic() > deadline:
                raise DocumentError(f"{problem}; the terminal showed:\n{shown}")
            time.sleep(RETRY_INTERVAL)

    def start_server(self, command: Command) -> None:
        log = self.directory / f"server-{len(self.servers) + 1}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [BASH, "-c", command.text],
                cwd=self.directory,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.servers.append(Server(process, log, command.where))
        deadline = time.monotonic() + SERVER_TIMEOUT
        while READY not in log.read_text("utf-8", "replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                why = "ended" if process.poll() is not None else "is not ready"
                raise DocumentError(
                    f"the server {why}; its log:\n{log.read_text('utf-8', 'replace')}"
                )
            time.sleep(0.05)
        # The log lines a console block shows, which may follow READY.
        while command.shown:
            problem = match_lines(command.shown, log.read_text("utf-8").splitlines())
            if problem is None:
                break
            if time.monotonic() > deadline:
                raise DocumentError(f"the server's log shows {problem}")
            time.sleep(0.05)

    def stop(self) -> list[str]:
        """
        Stop the servers, and return the problems their logs show.
        """
        problems = []
        for server in self.servers:
            if server.process.poll() is None:
                os.killpg(server.process.pid, signal.SIGTERM)
            try:
                server.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait()
                problems.append(f"{server.where}: the server ignored SIGTERM")
            log = server.log.read_text("utf-8", "replace")
            if "Traceback (most recent call last)" in log:
                problems.append(
                    f"{server.where}: the server logged a traceback:\n{log}"
                )
        return problems

    def server_logs(self) -> str:
        return "".join(
            f"--- log of the server of {server.where} ---\n"
            + server.log.read_text("utf-8", "replace")
            for server in self.servers
        )


def run_document(path: Path, directory: Path) -> int:
    """
    Run a document's commands, saying what ran; the number of failures.
    """
    problems = block_problems(path)
    if problems:
        print("\n".join(problems))
        return len(problems)
    started = time.monotonic()
    session = Session(directory)
    failed = 0
    try:
        for command in commands_of(path):
            began = time.monotonic()
            try:
                session.run(command)
            except DocumentError as e:
                print(f"FAIL {command.where}: $ {command.text}\n{e}")
                print(session.server_logs())
                failed = 1
                break
            print(f"ok   {command.where} ({time.monotonic() - began:.1f} s)")
    finally:
        for problem in session.stop():
            print(f"FAIL {problem}")
            failed += 1
    print(
        f"{relative(path)}: {session.ran} commands in "
        f"{time.monotonic() - started:.1f} s, {failed} failed",
        flush=True,
    )
    return failed


def main(argv: Sequence[str]) -> int:
    """
    Run documents in this process's network namespace (the test starts it
    in one of its own: L{in_private_network}).
    """
    bring_loopback_up()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="doc-commands-") as scratch:
        for number, name in enumerate(argv):
            path = Path(name).resolve()
            failed += run_document(path, Path(scratch) / str(number))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
