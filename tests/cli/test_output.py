"""
What the C{fmtp} command prints, in pieces: text from strangers made safe
for a terminal, tables, and progress only where someone watches.
"""

from __future__ import annotations

import io

from fmtp.cli.output import Progress, printable, table


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_printable_escapes_what_drives_a_terminal() -> None:
    """
    Escape sequences (colours, window titles, cursor moves) and
    bidirectional overrides are shown, not obeyed; ordinary text, accents
    and emoji pass.
    """
    assert printable("\x1b]0;owned\x07subject") == "\\x1b]0;owned\\x07subject"
    assert printable("photo\u202egnp.exe") == "photo\\u202egnp.exe"
    assert printable("a\nb") == "a\\x0ab"
    assert printable("a\nb\tc\r", keep_newlines=True) == "a\nb\tc\\x0d"
    assert printable("Ça va 👍") == "Ça va 👍"


def test_table() -> None:
    assert table(["SEQ", "FROM"], [["1", "edgar@poe.net"], ["12", "x"]]) == (
        "SEQ  FROM\n1    edgar@poe.net\n12   x\n"
    )


def test_progress_on_a_terminal_only_once_it_takes_a_while() -> None:
    clock, stream = FakeClock(), Terminal()
    progress = Progress("saving", stream=stream, clock=clock)
    progress.update(10, 100, "bytes")
    assert stream.getvalue() == ""
    clock.now += 1
    progress.update(2_000_000, 4_000_000, "bytes")
    assert stream.getvalue() == "\rsaving: 2.0 MB of 4.0 MB\x1b[K"
    # Not again before its delay.
    progress.update(3_000_000, 4_000_000, "bytes")
    assert stream.getvalue().count("\r") == 1
    progress.done()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_no_progress_when_piped_or_asked_not_to() -> None:
    clock, piped, terminal = FakeClock(), io.StringIO(), Terminal()
    for stream, enabled in ((piped, True), (terminal, False)):
        progress = Progress("inbox", enabled, stream=stream, clock=clock)
        clock.now += 10
        progress.update(5, unit="messages")
        progress.note("waiting")
        progress.done()
        assert stream.getvalue() == ""
