"""
The values chat commands carry, and the frame a history entry travels in.
"""

from __future__ import annotations

import pytest

from fmtp.errors import Forbidden, InvalidAddress, InvalidObject
from fmtp.objects import FMTPObject
from fmtp.protocols.chat.lines import (
    ConfigChange,
    entry_frame,
    entry_of_frame,
    parse_config,
    parse_room,
    parse_text,
)
from fmtp.store.rooms import HistoryEntry, verify_chain
from fmtp.wire import FrameParser, Limits, serialize

ROOM = "lounge@poe.net"


def test_room_of_this_domain_in_normal_form() -> None:
    assert parse_room("Lounge@POE.net", "poe.net") == ROOM
    with pytest.raises(InvalidObject):
        parse_room("", "poe.net")
    with pytest.raises(InvalidAddress):
        parse_room("no address", "poe.net")
    with pytest.raises(Forbidden):
        parse_room("lounge@lenore.org", "poe.net")


@pytest.mark.parametrize("text", ["a\x00b", "right\u202eleft", "two\u2028lines"])
def test_texts_are_one_plain_line(text: str) -> None:
    with pytest.raises(InvalidObject):
        parse_text(text, "Name", 100)


def test_config_headers() -> None:
    assert parse_config({}) == ConfigChange()
    change = parse_config({"Public": "YES", "Max-Members": "7", "Password": "p"})
    assert (change.public, change.max_members, change.password) == (True, 7, "p")
    for bad in (
        {"Moderated": "1"},
        {"Max-Members": "-1"},
        {"Password": "p", "Clear-Password": "yes"},
        {"Topic": "x" * 501},
    ):
        with pytest.raises(InvalidObject):
            parse_config(bad)


def test_entries_round_trip_through_their_frames() -> None:
    first = FMTPObject(
        "1800000000000.abcdefabcdef.edgar@poe.net",
        "message",
        {"From": "edgar@poe.net", "To": ROOM},
        b"one\r\n\r\nwith blank lines",
    )
    second = FMTPObject(
        "1800000000001.abcdefabcdef.edgar@poe.net",
        "retraction",
        {
            "From": "edgar@poe.net",
            "To": ROOM,
            "Parent-Digest": first.digest(),
            "Retracts": "1",
        },
    )
    entries = [
        HistoryEntry(1, first.digest(), "", None, 1.5, retracted_by=2),
        HistoryEntry(2, second.digest(), first.digest(), second, 2.25, retracts=1),
    ]
    body = b"".join(serialize(entry_frame(ROOM, e)) for e in entries)
    read = [entry_of_frame(f) for f in FrameParser(Limits()).feed(body)]
    assert read == [(ROOM, e) for e in entries]
    verify_chain([e for _, e in read])


def test_a_frame_that_is_no_entry() -> None:
    with pytest.raises(ValueError):
        entry_of_frame(FrameParser(Limits()).feed(b"256 * x\r\nRoom: a@b\r\n\r\n")[0])
