"""
The commands README.md and doc/*.md show, read as a reader reads them.

Commands are shown in fenced blocks of two kinds:

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
    starts with a reply code is the server's): L{transcript_frames}.

Each such block runs (tests/docs/commands.py), in the order of its
document, unless an HTML comment right before it says why not.  The
comment may also name a command the test runs in its place, or before a
block that needs it (a server, which a reader runs in the foreground of
another terminal)::

    <!-- not run: REASON -->
    <!-- not run: REASON; the test runs: COMMAND -->
    <!-- the test runs: COMMAND -->

A block without a language that holds commands (a C{$ } line, or a first
word such as C{fmtp} or C{twistd}) is refused, so that new documentation
cannot slip past the test: L{block_problems}.

Code quoted from a file of the checkout is marked with the file it comes
from, and must be found there as shown (a line C{...} alone elides what
lies between two parts, which must come in the file's order), so that a
guide cannot drift from the example it explains: L{quote_problems}::

    <!-- from plugins/fmtp-time/fmtp/plugins/fmtp_time.py -->
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The checkout whose documentation is read.
CHECKOUT = Path(__file__).resolve().parents[2]
#: The documents whose commands are run.
DOCUMENTS = ("README.md", "doc/*.md")

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
QUOTE = re.compile(r"^from\s+(?P<source>\S+)$")
HEREDOC = re.compile(r"<<-?\s*(?P<quote>['\"]?)(?P<word>\w+)(?P=quote)")
NC = re.compile(r"^nc(?P<crlf>\s+-C)?\s+(?P<host>\S+)\s+(?P<port>\d+)\s*$")
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
    @ivar source: the file of the checkout it quotes, if a comment says so.
    """

    path: Path
    line: int
    language: str
    lines: list[str]
    reason: str | None = None
    instead: str | None = None
    marker: str | None = None
    source: str | None = None

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
        quote = QUOTE.match(comment["text"]) if comment else None
        if quote:
            block.source = quote["source"]
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


def quote_parts(lines: Sequence[str]) -> list[str]:
    """
    The parts of a quotation, split at the lines that hold only C{...},
    each without its leading and trailing blank lines.
    """
    parts: list[list[str]] = [[]]
    for line in lines:
        if line.strip() == "...":
            parts.append([])
        else:
            parts[-1].append(line)
    texts = ["\n".join(part).strip("\n") for part in parts]
    return [text for text in texts if text.strip()]


def quote_problems(path: Path, checkout: Path = CHECKOUT) -> list[str]:
    """
    The quotations of a document that are not in the file they name: a
    part missing, or out of the file's order.
    """
    problems = []
    for block in read_blocks(path):
        if block.source is None:
            continue
        source = checkout / block.source
        if not source.is_file():
            problems.append(f"{block.where}: quotes {block.source}, which is no file")
            continue
        text = source.read_text(encoding="utf-8")
        position = 0
        for part in quote_parts(block.lines):
            found = text.find(part, position)
            if found < 0:
                where = "" if part not in text else " after the part before it"
                first = part.splitlines()[0].strip()
                problems.append(
                    f"{block.where}: not in {block.source}{where}: "
                    f"the part starting {first!r}"
                )
                break
            position = found + len(part)
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
    """
    The value of a frame's header C{name} (in any case), if it has one.
    """
    for line in lines[1:]:
        key, colon, value = line.partition(":")
        if colon and key.strip().lower() == name.lower():
            return value.strip()
    return None


def commands_of(path: Path) -> Iterator[Command]:
    """
    What the test runs of a document, in order.
    """
    for block in read_blocks(path):
        if block.instead:
            yield Command(block.instead, f"{block.where} (marker)")
        if block.runs:
            yield from block_commands(block)
