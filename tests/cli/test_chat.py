"""
C{fmtp chat ROOM} as a user at a terminal runs it: a real C{python -m
fmtp} process on a pseudo-terminal, against the server of
L{tests.cli.test_messaging} (its chat port on loopback), with a second
user talking through the client library in this process; and the text
each event prints, without a terminal.
"""

from __future__ import annotations

import signal

import pytest_twisted

from fmtp.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from fmtp.cli.chat import ChatSession, event_text, line_text
from fmtp.client.chat import Invited, MemberChanged, RoomClosed, RoomLine
from fmtp.objects import FMTPObject
from fmtp.store.rooms import HistoryEntry
from tests.cli.test_messaging import (  # noqa: F401 (fixtures)
    ANNABEL,
    COMMAND_TIMEOUT,
    EDGAR,
    Children,
    CLIServer,
    assert_clean,
    children,
    server,
)
from tests.cli.test_rooms import LOUNGE, chat_as
from tests.client.test_presence import next_event
from tests.helpers import within
from tests.integration.test_twistd import wait_for_exit


def line(kind: str, properties: dict[str, str], body: bytes = b"") -> RoomLine:
    obj = FMTPObject(
        "1800000000000.a1b2c3d4e5f6.edgar@poe.net",
        kind,
        {"From": EDGAR, **properties},
        body,
    )
    return RoomLine(LOUNGE, HistoryEntry(3, "d", "p", obj, 1800000000.0))


def test_line_text_escapes_control_characters() -> None:
    """
    A line from someone else is one line on the terminal: its escape
    sequences and line breaks are shown escaped, never acted on.
    """
    text = line_text(line("message", {}, b"Quoth\x1b[2J the\nraven"))
    assert text.endswith(f" {EDGAR}: Quoth\\x1b[2J the\\x0araven")
    assert len(text.split(" ", 1)[0]) == 5  # HH:MM
    topic = line_text(line("room-topic", {"Topic": "Lenore\x07"}))
    assert topic.endswith(f" -- {EDGAR} set the topic: Lenore\\x07")
    retraction = RoomLine(
        LOUNGE, HistoryEntry(4, "d", "p", line("retraction", {}).entry.obj, 0, 3)
    )
    assert line_text(retraction).endswith(f"-- {EDGAR} retracted line 3")
    gone = RoomLine(LOUNGE, HistoryEntry(3, "d", "p", None, 0, retracted_by=4))
    assert line_text(gone).endswith("-- (line 3, retracted)")


def test_event_text() -> None:
    assert event_text(MemberChanged(LOUNGE, ANNABEL, "member", False)) == (
        f"-- {ANNABEL} is member"
    )
    assert event_text(MemberChanged(LOUNGE, ANNABEL, "moderator", True, EDGAR)) == (
        f"-- {ANNABEL} is moderator, with voice (by {EDGAR})"
    )
    assert event_text(MemberChanged(LOUNGE, ANNABEL, "none", False)) == (
        f"-- {ANNABEL} left"
    )
    assert event_text(
        MemberChanged(LOUNGE, ANNABEL, "none", False, EDGAR, "Spam\x1b")
    ) == (f"-- {ANNABEL} was removed (by {EDGAR}): Spam\\x1b")
    assert event_text(MemberChanged(LOUNGE, ANNABEL, "banned", False, EDGAR)) == (
        f"-- {ANNABEL} was banned (by {EDGAR})"
    )
    assert event_text(Invited(LOUNGE, EDGAR)) == (
        f"-- {EDGAR} invites you into {LOUNGE}: fmtp chat {LOUNGE}"
    )
    assert event_text(RoomClosed(LOUNGE, "destroyed")) == (
        f"-- you are out of {LOUNGE}: destroyed"
    )
    assert event_text(RoomClosed(LOUNGE, "left")) == f"-- you left {LOUNGE}"


def test_session_shows_only_its_room_and_ends_when_closed() -> None:
    written: list[str] = []
    session = ChatSession(object(), LOUNGE, written.append)
    session.event(MemberChanged("other@poe.net", ANNABEL, "member", False))
    assert written == []
    session.event(RoomClosed(LOUNGE, "banned"))
    assert written == [f"-- you are out of {LOUNGE}: banned\n"]
    assert session.closed_reason == "banned"
    assert session.done.called


@pytest_twisted.ensureDeferred
async def test_chat_on_a_terminal(
    server: CLIServer,  # noqa: F811
    children: Children,  # noqa: F811
) -> None:
    """
    Annabel chats in edgar's public room from a terminal: she joins, sees
    what was said before, sees edgar's line (its escape shown escaped),
    says a line he receives, lists the members, is refused the topic,
    then sets it once a moderator, and leaves.
    """
    edgar = await chat_as(server, EDGAR)
    await within(edgar.create(LOUNGE, public=True))
    await within(edgar.say(LOUNGE, "Before you came"))
    child, terminal, err = children.start_on_pty(["chat", LOUNGE], server.annabel)
    await terminal.shows(f"-- in {LOUNGE}")
    assert f"{EDGAR}: Before you came\n" in terminal.shown()
    await within(edgar.enter(LOUNGE))

    await within(edgar.say(LOUNGE, "Quoth the raven\x1b[2J"))
    # His own line comes back to him too.
    assert (await next_event(edgar)).sender == EDGAR
    await terminal.shows(f"{EDGAR}: Quoth the raven\\x1b[2J\n")
    assert "\x1b" not in terminal.shown()

    terminal.type("Nevermore\n")
    heard = await next_event(edgar)
    assert (heard.sender, heard.text) == (ANNABEL, "Nevermore")
    await terminal.shows(f"{ANNABEL}: Nevermore\n")

    terminal.type("/who\n")
    shown = await terminal.shows(f"{EDGAR}    owner   -\n")
    assert f"{ANNABEL}  member  -\n" in shown

    terminal.type("/topic Lenore\n")
    await terminal.shows("!! TOPIC refused: 554 ")
    await within(edgar.role(LOUNGE, ANNABEL, "moderator"))
    await terminal.shows(f"-- {ANNABEL} is moderator (by {EDGAR})\n")
    terminal.type("/topic Lenore\n")
    await terminal.shows(f"-- {ANNABEL} set the topic: Lenore\n")
    assert await within(edgar.topic(LOUNGE)) == "Lenore"

    terminal.type("/leave\n")
    assert await wait_for_exit(child, COMMAND_TIMEOUT) == EXIT_OK
    assert terminal.shown().count(f"-- you left {LOUNGE}\n") == 1
    assert err.read_text() == ""
    assert [m.address for m in await within(edgar.who(LOUNGE))] == [EDGAR]


@pytest_twisted.ensureDeferred
async def test_chat_ends_with_ctrl_d_ctrl_c_or_a_kick(
    server: CLIServer,  # noqa: F811
    children: Children,  # noqa: F811
) -> None:
    """
    A room that does not exist is one line and status 1; Ctrl-D exits
    (status 0) and the user stays a member; Ctrl-C exits with 130 and
    says nothing; a kick ends the chat with one line and status 1.
    """
    edgar = await chat_as(server, EDGAR)
    await within(edgar.create(LOUNGE, public=True))
    nowhere = await children.run(["chat", "nowhere@poe.net"], server.annabel)
    assert_clean(nowhere, EXIT_REFUSED)
    assert "refused JOIN: 550 " in nowhere.err
    bad = await children.run(["chat", LOUNGE, "--recent", "501"], server.annabel)
    assert_clean(bad, EXIT_USAGE)

    child, terminal, err = children.start_on_pty(["chat", LOUNGE], server.annabel)
    await terminal.shows(f"-- in {LOUNGE}")
    terminal.type("\x04")
    assert await wait_for_exit(child, COMMAND_TIMEOUT) == EXIT_OK
    assert err.read_text() == ""
    annabel = await chat_as(server, ANNABEL)
    assert await within(annabel.my_rooms()) == [LOUNGE]

    child, terminal, err = children.start_on_pty(["chat", LOUNGE], server.annabel)
    await terminal.shows(f"-- in {LOUNGE}")
    child.send_signal(signal.SIGINT)
    assert await wait_for_exit(child, COMMAND_TIMEOUT) == EXIT_INTERRUPTED
    assert err.read_text() == ""

    child, terminal, err = children.start_on_pty(["chat", LOUNGE], server.annabel)
    await terminal.shows(f"-- in {LOUNGE}")
    await within(edgar.kick(LOUNGE, ANNABEL, "Hush"))
    assert await wait_for_exit(child, COMMAND_TIMEOUT) == EXIT_REFUSED
    assert f"-- {ANNABEL} was removed (by {EDGAR}): Hush\n" in terminal.shown()
    assert err.read_text() == f"fmtp: you are out of {LOUNGE}: kicked\n"
