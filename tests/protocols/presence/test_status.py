"""
Unit tests of L{fmtp.protocols.presence.status}: the values STATUS takes,
and the rule that makes a user's presence from their sessions'.
"""

from __future__ import annotations

import pytest

from fmtp.errors import InvalidObject
from fmtp.protocols.presence.status import (
    NOTHING,
    SessionPresence,
    Shown,
    parse_note,
    parse_priority,
    parse_resource,
    parse_status,
    user_presence,
)


def session(status: str, priority: int, order: int, note: str = "") -> SessionPresence:
    return SessionPresence("edgar@poe.net", f"r{order}", status, note, priority, order)


def test_priority_then_latest_decides() -> None:
    assert user_presence([]) == NOTHING
    low = session("away", -1, 9)
    high = session("busy", 3, 1, "x")
    assert user_presence([low, high]) == Shown("busy", "x")
    assert user_presence([low, high, session("online", 3, 2)]) == Shown("online")
    assert user_presence([low, session("invisible", 3, 5), high]) == NOTHING


@pytest.mark.parametrize("text", ["-128", "127", "+5", "0", "-0"])
def test_priorities(text: str) -> None:
    assert parse_priority(text) == int(text)


@pytest.mark.parametrize("text", ["-129", "128", "", "1e2", "0x1", " 1", "١"])
def test_bad_priorities(text: str) -> None:
    with pytest.raises(InvalidObject, match="Priority"):
        parse_priority(text)


def test_words_and_resources() -> None:
    assert parse_status("BUSY") == "busy"
    for bad in ("offline", "gone", ""):
        with pytest.raises(InvalidObject):
            parse_status(bad)
    assert parse_resource("phone-2") == "phone-2"
    for bad in ("", "a b", "a\tb", "x" * 65, "\x7f"):
        with pytest.raises(InvalidObject):
            parse_resource(bad)
    assert parse_note("cafe\u0301") == "caf\u00e9"
    with pytest.raises(InvalidObject):
        parse_note("a\x00b")


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\r", "\n"])
def test_a_note_is_one_line(separator: str) -> None:
    """
    A note breaks no line of a subscriber's BUDDIES body, even for a
    client that splits lines as Unicode does (C{str.splitlines}): it
    could otherwise forge a contact's line there.
    """
    with pytest.raises(InvalidObject, match="Note"):
        parse_note(f"brb{separator}mallory@poe.net both online")


#: Format characters (Unicode category Cf): bidi overrides, embeddings and
#: isolates, zero-width joiners and spaces, the byte order mark.
FORMAT_CHARACTERS = ["\u202e", "\u202d", "\u2066", "\u200d", "\u200b", "\ufeff"]


@pytest.mark.parametrize("character", FORMAT_CHARACTERS)
def test_no_format_characters_in_a_note(character: str) -> None:
    """
    The attack: a right-to-left override in a note makes the rest of a
    buddy's BUDDIES line (and any text shown after it) read reversed, so
    a note can show a status it is not; zero-width characters hide text.
    """
    with pytest.raises(InvalidObject, match="Note"):
        parse_note(f"brb{character}enilno")


@pytest.mark.parametrize("character", [*FORMAT_CHARACTERS, "\x85", "\x9b"])
def test_no_format_or_control_characters_in_a_resource(character: str) -> None:
    with pytest.raises(InvalidObject, match="Resource"):
        parse_resource(f"phone{character}")
