"""
Every shell command the documentation shows, run as a reader runs it.

README.md and doc/*.md show commands in fenced blocks of two kinds:

  - C{```sh}: commands, one a line.  A line ending in a backslash goes on
    on the next; a here-document runs to its end word; C{#} starts a
    comment, as in the shell.
  - C{```console}: a terminal, C{$ COMMAND} lines each followed by what
    the reader then sees (prompts, standard output and error).  Every
    line shown must appear, in that order, in what the command printed,
    once dates, ids, digests and keys are masked; a word holding C{...}
    stands for any word, and C{...} alone for anything (L{match_lines}).
    C{$ nc [-C] HOST PORT} is followed by the frames typed and received,
    marked C{C:} and C{S:} as in protocol.md, or bare (a frame that
    starts with a reply code is the server's); the server's greeting may
    be left out: see L{run_transcript}.

Each such block runs, in the order of its document, in a session of the
document's own, unless an HTML comment right before it says why not.
The comment may also name a command the test runs in its place, or
before a block that needs it (a server, in the foreground for a reader,
which the test starts in the background)::

    <!-- not run: REASON -->
    <!-- not run: REASON; the test runs: COMMAND -->
    <!-- the test runs: COMMAND -->

A block without a language that holds commands (a C{$ } line, or a first
word such as C{fmtp} or C{twistd}) is refused, so that new documentation
cannot slip past the test: L{block_problems}.

How commands run (L{Session}): in a directory standing for the checkout
(its entries linked, the Python environment running the test as
C{.venv}, and first on C{PATH}; the checkout on C{PYTHONPATH}); each by
C{bash -o pipefail -c}, on a pseudo-terminal of its own, so that a
password prompt is answered as a person answers it, with L{PASSWORD}.
Each must exit 0 within L{COMMAND_TIMEOUT}.  C{twistd ... fmtp} starts
in the background, is waited for until it logs L{READY} (and the lines
a console block shows after it, if any), and is stopped when the
document ends.  A read-only C{fmtp} command (C{inbox},
C{read}...) that fails or does not show what the document shows yet (a
message still on its way between two servers) is run again, for
L{RETRY_TIMEOUT} at most.

The documented addresses (C{127.0.0.1:7070}, the quickstart's
C{127.0.0.2} and C{127.0.0.3}) are bound in a network namespace of the
test's own (L{in_private_network}), where a server running on this
machine cannot disturb them nor be disturbed; its PID namespace ends
every process the session left when the runner ends, however it ends.

Run a document by hand (as tests/test_docs.py does)::

    python -m tests.doc_commands doc/quickstart.md
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The shell documented commands are written for.
BASH = shutil.which("bash") or "/bin/bash"
#: The checkout whose documentation is run.
CHECKOUT = Path(__file__).resolve().parent.parent
#: The documents whose commands are run.
DOCUMENTS = ("README.md", "doc/*.md")

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

#: Languages of blocks of commands.
SHELL_LANGUAGES = frozenset({"sh", "shell", "bash", "console"})
#: First words that make a block without a language one of commands.
COMMAND_WORDS = frozenset(
    "fmtp twistd python python3 pip nc sudo systemctl sqlite3 cd echo cat "
    "export curl git mkdir rm cp".split()
)

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
COMMENT = re.compile(r"^\s*<!--\s*(?P<text>.*?)\s*-->\s*$")
MARKER = re.compile(
    r"^(?:not run:\s*(?P<reason>.+?)(?:;\s*)?)?"
    r"(?:the test runs:\s*(?P<command>.+?))?\s*$"
)
HEREDOC = re.compile(r"<<-?\s*(?P<quote>['\"]?)(?P<word>\w+)(?P=quote)")
NC = re.compile(r"^nc(?P<crlf>\s+-C)?\s+(?P<host>\S+)\s+(?P<port>\d+)\s*$")
SERVER = re.compile(r"(^|[\s/])twistd\s(.*\s)?(-n|--nodaemon)\s")
#: fmtp commands that change nothing, and so may be run again.
READ_ONLY = re.compile(
    r"(^|[\s/])fmtp\s+(inbox|read|list|get|held|capa|users(?!\s+delete)"
    r"|queue(?!\s+(retry|drop)))\b"
)
PROMPT = re.compile(rb"(Password|Again): \Z")

#: What varies from run to run, masked on both sides before comparing.
MASKS = (
    # An object id's time and nonce; its address is compared.
    (re.compile(r"\b\d{13}\.[A-Za-z0-9_-]{1,32}\.(?=\S*@)"), "<ms>.<nonce>."),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?Z?"), "<date>"),
    (re.compile(r"\b[0-9a-f]{16,}\b"), "<hex>"),
    # Unix times in seconds, from 2017 to 2033.
    (re.compile(r"\b1[5-9]\d{8}\b"), "<seconds>"),
    (re.compile(r"p=[A-Za-z0-9+/]{43}="), "p=<key>"),
)


class DocumentError(Exception):
    """
    A command of a document did not do what the document says.
    """


@dataclass
class Block:
    """
    A fenced block of a document.

    @ivar line: the line of its opening fence, from 1.
    @ivar language: the first word of its info string, or C{""}.
    @ivar reason: why it is not run, if a marker says so.
    @ivar instead: the command a marker says the test runs before it.
    @ivar marker: the text of the marker comment before it, if any.
    """

    path: Path
    line: int
    language: str
    lines: list[str]
    reason: str | None = None
    instead: str | None = None
    marker: str | None = None

    @property
    def where(self) -> str:
        return f"{relative(self.path)}:{self.line}"

    @property
    def commands(self) -> bool:
        """
        Whether the block holds commands (run or marked).
        """
        if self.language in SHELL_LANGUAGES:
            return True
        return self.language == "" and looks_like_commands(self.lines)

    @property
    def runs(self) -> bool:
        return self.language in SHELL_LANGUAGES and self.reason is None


@dataclass
class Command:
    """
    One command of a block: its text for bash, its line in the document,
    and, in a console block, the output shown after it (or, after
    C{nc}, the frames of the session).
    """

    text: str
    where: str
    shown: list[str] | None = None
    transcript: list[str] | None = None


def relative(path: Path) -> str:
    try:
        return str(path.relative_to(CHECKOUT))
    except ValueError:
        return str(path)


def documents(checkout: Path = CHECKOUT) -> list[Path]:
    return [path for pattern in DOCUMENTS for path in sorted(checkout.glob(pattern))]


def looks_like_commands(lines: Sequence[str]) -> bool:
    """
    Whether a block without a language shows commands: a C{$ } prompt,
    or a first word that names a command.
    """
    if any(line.startswith("$ ") for line in lines):
        return True
    words = next((line.split() for line in lines if line.strip()), [])
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    if not words:
        return False
    first = words[0]
    return first in COMMAND_WORDS or bool(re.fullmatch(r"\S*/bin/\S+", first))


def read_blocks(path: Path) -> list[Block]:
    """
    The fenced blocks of a Markdown document, with the marker comment
    right before each, if any.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        info = opening["info"].split()
        block = Block(path, index + 1, info[0] if info else "", [])
        before = index - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        comment = COMMENT.match(lines[before]) if before >= 0 else None
        if comment and comment["text"].startswith(("not run:", "the test runs:")):
            block.marker = comment["text"]
            marker = MARKER.match(comment["text"])
            if marker:
                block.reason, block.instead = marker["reason"], marker["command"]
        index += 1
        while index < len(lines):
            line = lines[index]
            stripped = line.lstrip(" ")
            if stripped.startswith(fence) and not stripped.strip(fence[0]).strip():
                break
            block.lines.append(line[min(indent, len(line) - len(stripped)) :])
            index += 1
        index += 1
        blocks.append(block)
    return blocks


def block_problems(path: Path) -> list[str]:
    """
    What keeps a document from the convention of this module: blocks of
    commands neither tagged C{sh}/C{console} nor marked, markers that do
    not parse or sit before a block of no commands.
    """
    problems = []
    for block in read_blocks(path):
        if block.marker is not None and not MARKER.match(block.marker):
            problems.append(f"{block.where}: cannot read the marker {block.marker!r}")
        elif block.marker is not None and not (block.reason or block.instead):
            problems.append(f"{block.where}: the marker gives no reason")
        if block.commands and block.language not in SHELL_LANGUAGES:
            if block.reason is None:
                problems.append(
                    f"{block.where}: commands in a block without a language: "
                    "tag it ```sh (commands) or ```console ($ commands and their "
                    "output), or mark it <!-- not run: REASON -->"
                )
        elif block.marker is not None and not block.commands and block.reason:
            problems.append(
                f"{block.where}: a 'not run' marker before a block that is not "
                f"commands ({block.language or 'no language'})"
            )
        if block.runs:
            try:
                block_commands(block)
            except DocumentError as e:
                problems.append(str(e))
    return problems


def block_commands(block: Block) -> list[Command]:
    """
    The commands of a block that runs, in order.
    """
    if block.language == "console":
        return console_commands(block)
    return sh_commands(block)


def sh_commands(block: Block) -> list[Command]:
    commands = []
    lines, index = block.lines, 0
    while index < len(lines):
        start, text = index, lines[index]
        index += 1
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        while text.endswith("\\") and index < len(lines):
            text += "\n" + lines[index]
            index += 1
        heredoc = HEREDOC.search(text)
        if heredoc:
            while index < len(lines) and lines[index].strip() != heredoc["word"]:
                text += "\n" + lines[index]
                index += 1
            text += "\n" + heredoc["word"]
            index += 1
        commands.append(
            Command(text, f"{relative(block.path)}:{block.line + 1 + start}")
        )
    return commands


def console_commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    lines, index = block.lines, 0
    while index < len(lines):
        start, line = index, lines[index]
        index += 1
        if line.startswith("$ "):
            text = line[2:]
            while text.endswith("\\") and index < len(lines):
                text += "\n" + lines[index].removeprefix("> ")
                index += 1
            where = f"{relative(block.path)}:{block.line + 1 + start}"
            commands.append(Command(text, where, shown=[]))
        elif not commands:
            raise DocumentError(
                f"{block.where}: a console block starts with a $ COMMAND line"
            )
        else:
            shown = commands[-1].shown
            assert shown is not None
            shown.append(line)
    for command in commands:
        if NC.match(command.text):
            command.transcript, command.shown = command.shown, None
    return commands


def normalize(line: str) -> str:
    """
    A line with what varies masked and its white space runs made one
    space.
    """
    for pattern, mask in MASKS:
        line = pattern.sub(mask, line)
    return " ".join(line.split())


def line_pattern(shown: str) -> re.Pattern[str]:
    """
    The lines a shown line stands for: C{...} alone stands for any text,
    a word holding C{...} for any word.
    """
    words = []
    for word in normalize(shown).split(" "):
        if word == "...":
            words.append(".*")
        elif "..." in word:
            words.append(r"\S*")
        else:
            words.append(re.escape(word))
    return re.compile(" ".join(words))


def match_lines(shown: Sequence[str], actual: Sequence[str]) -> str | None:
    """
    L{None} if every non-blank line of C{shown} (but a bare C{...}) matches
    a line of C{actual}, in order; else which one does not.
    """
    wanted = [line for line in shown if normalize(line) not in ("", "...")]
    lines = [normalize(line) for line in actual]
    position = 0
    for line in wanted:
        pattern = line_pattern(line)
        while position < len(lines) and not pattern.fullmatch(lines[position]):
            position += 1
        if position == len(lines):
            return f"no line matching {line.strip()!r} (in order)"
        position += 1
    return None


@dataclass
class Frame:
    """
    A frame of a transcript: typed (C{sent}) or received, its command
    line and header lines, its body lines; C{elided} when C{...} stands
    for the rest of it.
    """

    sent: bool
    lines: list[str]
    body: list[str] = field(default_factory=list)
    elided: bool = False


def transcript_frames(lines: Sequence[str], eol: bytes = b"\r\n") -> list[Frame]:
    """
    The frames of an C{nc} session as a document shows it: lines marked
    C{C:} (typed) and C{S:} (received), or unmarked, a frame whose first
    line is a reply code being the server's.  A body is as many lines as
    its C{Length} covers, each with its line ending (C{eol} when typed,
    CRLF when received).
    """
    marked = any(line.startswith(("S:", "C:")) for line in lines)
    items: list[tuple[bool | None, str]] = []
    for line in lines:
        if marked:
            side, _, rest = line.partition(":")
            items.append((side == "C", rest.removeprefix(" ")))
        else:
            items.append((None, line))
    frames: list[Frame] = []
    index = 0
    while index < len(items):
        typed, text = items[index]
        index += 1
        if not text.strip():
            continue
        if text.strip() == "...":
            if frames:
                frames[-1].elided = True
            continue
        sent = typed if typed is not None else not re.match(r"\d{3}(\s|$)", text)
        frame = Frame(sent, [text])
        frames.append(frame)
        while index < len(items) and items[index][1].strip():
            if items[index][1].strip() == "...":
                frame.elided = True
            else:
                frame.lines.append(items[index][1])
            index += 1
        index += 1
        length = header(frame.lines, "Length")
        if length is None or frame.elided or not length.isdigit():
            continue
        counted, ending = 0, len(eol if sent else b"\r\n")
        while counted < int(length) and index < len(items):
            body_line = items[index][1]
            frame.body.append(body_line)
            counted += len(body_line.encode("utf-8")) + ending
            index += 1
    return frames


def header(lines: Sequence[str], name: str) -> str | None:
    for line in lines[1:]:
        key, colon, value = line.partition(":")
        if colon and key.strip().lower() == name.lower():
            return value.strip()
    return None


class FrameReader:
    """
    Frames read from a blocking socket, each within a deadline.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DocumentError("no reply in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise DocumentError("no reply in time") from None
        if not data:
            raise DocumentError("the server closed the connection")
        self.buffer += data

    def line(self, deadline: float) -> str:
        while b"\n" not in self.buffer:
            self._fill(deadline)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def frame(self, deadline: float) -> tuple[list[str], bytes]:
        lines: list[str] = []
        while True:
            line = self.line(deadline)
            if line.strip():
                lines.append(line)
            elif lines:
                break
        length = header(lines, "Length") or "0"
        while len(self.buffer) < int(length):
            self._fill(deadline)
        body, self.buffer = self.buffer[: int(length)], self.buffer[int(length) :]
        return lines, body


def connect(host: str, port: int, deadline: float) -> socket.socket:
    """
    Connect as C{nc} does, again while the server is still starting.
    """
    while True:
        try:
            return socket.create_connection((host, port), timeout=5)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise DocumentError(f"nothing listens on {host}:{port}") from None
            time.sleep(RETRY_INTERVAL)


def check_frame(shown: Frame, lines: list[str], body: bytes) -> str | None:
    """
    L{None} if a received frame is what the document shows: its command
    line, each header shown (by name, in any order), the body lines shown.
    """
    if not line_pattern(shown.lines[0]).fullmatch(normalize(lines[0])):
        return f"expected {shown.lines[0]!r}, got {lines[0]!r}"
    for line in shown.lines[1:]:
        name, _, value = line.partition(":")
        got = header(lines, name)
        if got is None:
            return f"no {name} header in the reply {lines!r}"
        if not line_pattern(value).fullmatch(normalize(got)):
            return f"expected {line.strip()!r}, got {name}: {got!r}"
    text = body.decode("utf-8", "replace").splitlines()
    return match_lines(shown.body, text)


def run_transcript(
    host: str, port: int, lines: Sequence[str], crlf: bool, timeout: float
) -> None:
    """
    Type the frames of a transcript into a connection as C{nc} (C{nc -C}
    with C{crlf}) sends them, line by line with the Enter key, and check
    each reply the transcript shows.

    @raise DocumentError: saying which reply differs.
    """
    eol = b"\r\n" if crlf else b"\n"
    deadline = time.monotonic() + timeout
    frames = transcript_frames(lines, eol)
    with connect(host, port, deadline) as sock:
        reader = FrameReader(sock)
        if frames and frames[0].sent:
            # A transcript that does not show the greeting starts after it.
            greeting, _ = reader.frame(deadline)
            if not greeting[0].startswith("220 "):
                raise DocumentError(f"expected a greeting, got {greeting[0]!r}")
        for frame in frames:
            if frame.sent:
                typed = [*frame.lines, "", *frame.body]
                sock.sendall(b"".join(line.encode("utf-8") + eol for line in typed))
                continue
            got, body = reader.frame(deadline)
            problem = check_frame(frame, got, body)
            if problem:
                raise DocumentError(f"{problem}\nreceived: {got!r} {body!r}")


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


def instead_command(block: Block) -> Command:
    assert block.instead is not None
    return Command(block.instead, f"{block.where} (marker)")


def commands_of(path: Path) -> Iterator[Command]:
    """
    What the test runs of a document, in order.
    """
    for block in read_blocks(path):
        if block.instead:
            yield instead_command(block)
        if block.runs:
            yield from block_commands(block)


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
