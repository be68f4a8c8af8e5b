"""
The documentation works as written: every command README.md and
doc/*.md show runs as a reader runs it, or says why it does not; and the
frames protocol.md shows typed into C{nc} do what it says.
tests/docs/blocks.py has the convention, tests/docs/commands.py the runner.

Each document's commands run in a process of their own, in a network
namespace of their own, all started together (the slowest document sets
the time).  The Python examples of doc/client.md run in
tests/cli/test_messaging.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from fmtp.client import Client
from tests.docs.blocks import (
    CHECKOUT,
    Block,
    DocumentError,
    block_commands,
    block_problems,
    commands_of,
    documents,
    match_lines,
    quote_problems,
    read_blocks,
    relative,
    transcript_frames,
)
from tests.docs.commands import in_private_network, private_network_problem
from tests.docs.transcripts import run_transcript
from tests.integration.test_server import RunningServer

#: Seconds a document's commands may take together.
DOCUMENT_TIMEOUT = 120.0

DOCUMENTS = documents()
RUN = [path for path in DOCUMENTS if any(True for _ in commands_of(path))]


def test_every_block_of_commands_is_run_or_marked() -> None:
    problems = [problem for path in DOCUMENTS for problem in block_problems(path)]
    assert not problems, "\n".join(problems)
    assert {relative(path) for path in RUN} >= {"README.md", "doc/quickstart.md"}


def test_quoted_code_is_the_real_code() -> None:
    """
    Code a document quotes from a file (the plugin examples, their tests)
    is in that file as shown.
    """
    problems = [problem for path in DOCUMENTS for problem in quote_problems(path)]
    assert not problems, "\n".join(problems)
    quoted = {
        block.source
        for block in read_blocks(CHECKOUT / "doc" / "plugins.md")
        if block.source
    }
    assert {
        "plugins/fmtp-time/fmtp/plugins/fmtp_time.py",
        "plugins/fmtp-nudge/fmtp/plugins/fmtp_nudge.py",
    } <= quoted


def test_quotes_that_drifted_are_refused(tmp_path: Path) -> None:
    """
    A part of a quotation missing from its file, or out of its order,
    fails the check, saying which; C{...} elides.
    """
    (tmp_path / "example.py").write_text(
        "def a():\n    return 1\n\n\ndef b():\n    pass\n"
    )
    doc = write(
        tmp_path,
        "<!-- from example.py -->\n```python\ndef a():\n    ...\ndef b():\n```\n\n"
        "<!-- from example.py -->\n```python\ndef b():\n...\ndef a():\n```\n\n"
        "<!-- from example.py -->\n```python\ndef a():\n    return 2\n```\n\n"
        "<!-- from nothing.py -->\n```python\npass\n```\n",
    )
    problems = quote_problems(doc, checkout=tmp_path)
    assert [p.split(":")[1] for p in problems] == ["9", "16", "22"], problems
    assert "after the part before it" in problems[0]
    assert "'def a():'" in problems[1]
    assert "no file" in problems[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "doc.md"
    path.write_text(text)
    return path


def test_unmarked_commands_are_refused(tmp_path: Path) -> None:
    """
    Commands in a block without a language fail the check, whether they
    are a terminal session or bare; so does a marker without a reason, or
    before a block that is no commands.  A tagged block runs unless
    marked, and a marker may name a command the test runs instead.
    """
    doc = write(
        tmp_path,
        "```\n$ nc localhost 7070\n```\n\n"
        "```\nFMTP_USER=a@b fmtp inbox\n```\n\n"
        "<!-- not run: -->\n```sh\nfmtp list\n```\n\n"
        "<!-- not run: why not -->\n```ini\n[client]\n```\n\n"
        "```\n220 * poe.net fmtp/1 object ready\n```\n\n"
        "```sh\nfmtp list   # runs\n```\n\n"
        "<!-- not run: it needs root; the test runs: fmtp capa -->\n"
        "```console\n$ sudo fmtp users\n```\n",
    )
    problems = block_problems(doc)
    assert [p.split(":")[1] for p in problems] == ["1", "5", "10", "15"], problems
    assert "tag it ```sh" in problems[0] and "tag it ```sh" in problems[1]
    assert "cannot read the marker 'not run:'" in problems[2]
    assert "not commands" in problems[3]
    # The block whose marker cannot be read is taken for one that runs.
    assert [c.text for c in commands_of(doc)] == [
        "fmtp list",
        "fmtp list   # runs",
        "fmtp capa",
    ]


def test_commands_of_blocks() -> None:
    """
    Continued lines and here-documents are one command; a console block's
    output lines belong to the command before them, and an C{nc}
    command's to its transcript.
    """
    sh = Block(
        Path("x.md"),
        1,
        "sh",
        ["# a comment", "cat > f <<'EOF'", "a", "EOF", "echo a \\", "  b", ""],
    )
    assert [c.text for c in block_commands(sh)] == [
        "cat > f <<'EOF'\na\nEOF",
        "echo a \\\n  b",
    ]
    console = Block(
        Path("x.md"),
        1,
        "console",
        ["$ fmtp list", "one", "two", "$ nc -C localhost 7070", "220 * x"],
    )
    listed, nc = block_commands(console)
    assert (listed.shown, listed.transcript) == (["one", "two"], None)
    assert (nc.shown, nc.transcript) == (None, ["220 * x"])


def test_shown_output_matching() -> None:
    """
    Shown lines must appear in order; dates, object ids' times and
    nonces, long hex and keys are masked; C{...} elides.
    """
    actual = [
        "Password: ",
        "SEQ  DATE              FROM           SUBJECT",
        "7    2026-01-02 03:04  edgar@poe.net  Nevermore",
        "Sent 1796037215939.8d4a8b3fd33d.edgar@poe.net",
        'key a "v=FMTP1; k=ed25519; p=qFC50F1M62FApcegxxrH5fxpCQyXgYa3hmwc4kQWe6s="',
        "Signed by poe.net (key 65ee27ff5655e45d), verified",
    ]
    shown = [
        "SEQ  DATE  FROM  SUBJECT",
        "7    2025-11-22 10:15  edgar@poe.net  Nevermore",
        "",
        "Sent 1763800000000.9f53fe42a795.edgar@poe.net",
        'key a "v=FMTP1; k=ed25519; p=fpJ/+3cUBz4/AFdHqfzOKnSAENJBCMxmm+eDq/WLIxo="',
        "Signed by poe.net (key 7a70...), ...",
    ]
    assert match_lines(shown, actual) is None
    assert match_lines(["Sent 1763800000000.9f53fe42a795.lost@poe.net"], actual)
    assert (
        match_lines(["1763800000000.ab.a.b@c"], ["1796037215939.8d4a8b3fd33d.a.b@c"])
        is None
    )
    assert match_lines(["8    2025-11-22 10:15  edgar@poe.net  Nevermore"], actual)
    assert match_lines(list(reversed(shown[:2])), actual)


def test_transcript_frames() -> None:
    """
    Frames typed and received, told apart by C{C:}/C{S:} marks or by
    the reply code; a body runs for its Length, typed line endings
    included.
    """
    marked = transcript_frames(
        ["S: 220 * x", "S:", "C: PUT 1", "C: Length: 3", "C:", "C: abc", "S: 201 1"]
    )
    assert [(f.sent, f.lines, f.body) for f in marked] == [
        (False, ["220 * x"], []),
        (True, ["PUT 1", "Length: 3"], ["abc"]),
        (False, ["201 1"], []),
    ]
    bare = transcript_frames(["220 * x", "", "CAPA 1", "", "200 1 ok", "A: b", "..."])
    assert [(f.sent, f.lines, f.elided) for f in bare] == [
        (False, ["220 * x"], False),
        (True, ["CAPA 1"], False),
        (False, ["200 1 ok", "A: b"], True),
    ]


def put_example() -> list[str]:
    """
    The session of protocol.md 4.2, which stores a post.
    """
    for block in read_blocks(CHECKOUT / "doc" / "protocol.md"):
        if "C: PUT 2" in block.lines:
            return block.lines
    raise AssertionError("protocol.md has no PUT example")


@pytest.mark.parametrize("crlf", [True, False], ids=["nc -C", "nc"])
@pytest_twisted.ensureDeferred
async def test_protocol_put_example_typed_into_nc(tmp_path: Path, crlf: bool) -> None:
    """
    protocol.md 4.2, typed line by line as C{nc -C} (CRLF) or C{nc} (LF)
    sends it, gets the replies it shows, and stores a body of exactly the
    line typed: the line ending after it is not part of it.
    """
    lines = put_example()
    login = transcript_frames(lines)[0]
    address = next(
        v for n, _, v in (h.partition(": ") for h in login.lines) if n == "Address"
    )
    password = next(
        v for n, _, v in (h.partition(": ") for h in login.lines) if n == "Password"
    )
    server = await RunningServer(tmp_path).start()
    try:
        await server.add_account(address, password)
        host, port = server.tcp.split(":")[1:]
        await deferToThread(run_transcript, host, int(port), lines, crlf, 30.0)
        client = await Client.connect(reactor, server.tcp, timeout=10)
        await client.login(address, password)
        [listed] = (await client.list(object_type="post", owner=address)).items
        post = await client.get(listed.id)
        await client.quit()
    finally:
        await server.stop()
    assert post.body == b"Once upon a midnight dreary"
    assert post.properties["Title"] == "The Raven"


def test_transcript_mismatch_is_reported(tmp_path: Path) -> None:
    """
    A reply that differs from the one shown fails, saying which line.
    """
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(b"220 * poe.net fmtp/1 object ready\r\n\r\n")
            connection.recv(100)
            connection.sendall(b"500 1 no\r\n\r\n")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with pytest.raises(DocumentError, match="expected '200 1 ok', got '500 1 no'"):
            run_transcript(
                "127.0.0.1",
                listener.getsockname()[1],
                ["220 * poe.net fmtp/1 object ready", "", "CAPA 1", "", "200 1 ok"],
                True,
                10.0,
            )
    finally:
        thread.join(10)
        listener.close()


@pytest.fixture(scope="module")
def document_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[Path, tuple[subprocess.Popen, Path]]]:
    """
    Start the commands of every document that has some, each in its own
    namespaces, all at once.
    """
    problem = private_network_problem()
    if problem:
        pytest.skip(f"cannot make a private network namespace: {problem}")
    directory = tmp_path_factory.mktemp("documents")
    runs = {}
    try:
        for number, path in enumerate(RUN):
            output = directory / f"{number}.out"
            with open(output, "wb") as out:
                process = subprocess.Popen(
                    in_private_network(
                        [sys.executable, "-m", "tests.docs.commands", str(path)]
                    ),
                    cwd=CHECKOUT,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            runs[path] = (process, output)
        yield runs
    finally:
        for process, _ in runs.values():
            if process.poll() is None:
                process.kill()
            process.wait(10)


@pytest.mark.parametrize("path", RUN, ids=relative)
def test_documented_commands_run(
    path: Path, document_runs: dict[Path, tuple[subprocess.Popen, Path]]
) -> None:
    process, output = document_runs[path]
    try:
        status = process.wait(DOCUMENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        status = None
    assert status == 0, output.read_text("utf-8", "replace")
