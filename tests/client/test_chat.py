"""
The chat calls of the client library (L{fmtp.client.chat}): the pushes
and replies parsed from frames, and every call against a real server's
chat port on loopback and an SQLite file, as typed values; refusals as
L{ReplyError} with their codes.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from fmtp.client import ReplyError
from fmtp.client.chat import (
    Invited,
    Member,
    MemberChanged,
    RoomClosed,
    RoomLine,
    RoomListing,
    RoomSettings,
    Standing,
    config_headers,
    parse_event,
    parse_history,
    parse_members,
    parse_rooms,
)
from fmtp.client.protocol import ProtocolError
from fmtp.wire import Frame, reply
from tests.client.test_presence import (  # noqa: F401 (fixture)
    ANNABEL,
    EDGAR,
    next_event,
    server,
)
from tests.helpers import within

LOUNGE = "lounge@poe.net"


def push(code: int, headers: dict[str, str]) -> Frame:
    return reply(code, "*", "room event", headers)


def test_parse_pushes() -> None:
    assert parse_event(
        push(
            257,
            {
                "Room": LOUNGE,
                "Address": ANNABEL,
                "Role": "none",
                "Voice": "no",
                "By": EDGAR,
                "Reason": "Spam",
            },
        )
    ) == MemberChanged(LOUNGE, ANNABEL, "none", False, EDGAR, "Spam")
    assert parse_event(push(258, {"Room": LOUNGE, "From": EDGAR})) == Invited(
        LOUNGE, EDGAR
    )
    assert parse_event(push(259, {"Room": LOUNGE, "Reason": "kicked"})) == (
        RoomClosed(LOUNGE, "kicked")
    )
    assert parse_event(push(250, {"Id": "x"})) is None


def test_bad_pushes_are_protocol_errors() -> None:
    """
    A push without what it must carry, or a line that is not an entry,
    is the server's fault, said as a L{ProtocolError}.
    """
    with pytest.raises(ProtocolError):
        parse_event(push(257, {"Room": LOUNGE}))
    with pytest.raises(ProtocolError):
        parse_event(push(259, {"Reason": "left"}))
    with pytest.raises(ProtocolError):
        parse_event(push(256, {"Room": LOUNGE, "Seq": "x"}))
    with pytest.raises(ProtocolError):
        parse_history(reply(200, "1", "ok", {"Room": LOUNGE, "Head": "-1"}))
    with pytest.raises(ProtocolError):
        parse_members(b"edgar@poe.net owner loud\r\n")


def test_parse_lists() -> None:
    assert parse_members(b"annabel@poe.net member voice\r\nedgar@poe.net owner -\n")
    assert parse_members(b"a@poe.net member voice\r\n") == [
        Member("a@poe.net", "member", True)
    ]
    assert parse_rooms(b"lounge@poe.net The lounge\r\nbare@poe.net\r\n") == [
        RoomListing(LOUNGE, "The lounge"),
        RoomListing("bare@poe.net", ""),
    ]


def test_config_headers_set_only_what_is_given() -> None:
    assert config_headers() == {}
    assert config_headers(
        name="Lounge", public=True, moderated=False, max_members=5, password="p"
    ) == {
        "Name": "Lounge",
        "Public": "yes",
        "Moderated": "no",
        "Max-Members": "5",
        "Password": "p",
    }
    assert config_headers(clear_password=True) == {"Clear-Password": "yes"}


@pytest_twisted.ensureDeferred
async def test_every_call_against_a_server(server) -> None:  # noqa: F811
    edgar = await within(server.chat(EDGAR))
    annabel = await within(server.chat(ANNABEL))
    made = await within(edgar.create(LOUNGE, name="Lounge", public=True))
    assert made == RoomSettings(LOUNGE, "Lounge", "", True, False, False, 1000, False)
    assert (await within(edgar.config(LOUNGE, topic="Ravens"))).topic == "Ravens"
    assert (await within(annabel.list())).rooms == [RoomListing(LOUNGE, "Lounge")]
    assert await within(annabel.join(LOUNGE)) == Standing(
        LOUNGE, ANNABEL, "member", False
    )
    assert await within(annabel.my_rooms()) == [LOUNGE]

    assert await within(annabel.enter(LOUNGE, 0)) == 0
    said = await within(edgar.say(LOUNGE, "Once upon a midnight"))
    assert said.seq == 1
    line = await next_event(annabel)
    assert isinstance(line, RoomLine)
    assert (line.seq, line.kind, line.sender, line.text) == (
        1,
        "message",
        EDGAR,
        "Once upon a midnight",
    )
    await within(edgar.set_topic(LOUNGE, "Lenore"))
    topic = await next_event(annabel)
    assert (topic.kind, topic.text) == ("room-topic", "Lenore")
    assert await within(annabel.topic(LOUNGE)) == "Lenore"
    await within(edgar.retract(LOUNGE, 1))
    retraction = await next_event(annabel)
    assert retraction.kind == "retraction" and retraction.entry.retracts == 1

    page = await within(annabel.history(LOUNGE, 0, 2))
    assert (page.head, page.next_since) == (3, 2)
    assert [line.kind for line in page.lines] == ["retracted", "room-topic"]

    standing = await within(edgar.role(LOUNGE, ANNABEL, voice=True))
    assert standing == Standing(LOUNGE, ANNABEL, "member", True)
    assert await next_event(annabel) == MemberChanged(
        LOUNGE, ANNABEL, "member", True, EDGAR
    )
    assert await within(edgar.who(LOUNGE)) == [
        Member(ANNABEL, "member", True),
        Member(EDGAR, "owner", False),
    ]
    await within(annabel.exit(LOUNGE))
    with pytest.raises(ReplyError) as refused:
        await within(annabel.exit(LOUNGE))
    assert refused.value.code == 503

    await within(annabel.enter(LOUNGE))
    await within(edgar.kick(LOUNGE, ANNABEL, "Hush"))
    assert await next_event(annabel) == MemberChanged(
        LOUNGE, ANNABEL, "none", False, EDGAR, "Hush"
    )
    assert await next_event(annabel) == RoomClosed(LOUNGE, "kicked")
    await within(edgar.ban(LOUNGE, ANNABEL))
    assert await within(edgar.who(LOUNGE, "banned")) == [
        Member(ANNABEL, "banned", False)
    ]
    with pytest.raises(ReplyError) as refused:
        await within(annabel.join(LOUNGE))
    assert refused.value.code == 554
    assert await within(edgar.unban(LOUNGE, ANNABEL)) is True
    assert await within(edgar.unban(LOUNGE, ANNABEL)) is False
    assert await within(edgar.invite(LOUNGE, ANNABEL)) is True
    assert await next_event(annabel) == Invited(LOUNGE, EDGAR)
    await within(annabel.join(LOUNGE))
    await within(annabel.leave(LOUNGE))
    with pytest.raises(ReplyError) as refused:
        await within(edgar.leave(LOUNGE))
    assert refused.value.code == 554
    await within(edgar.destroy(LOUNGE))
    with pytest.raises(ReplyError) as refused:
        await within(edgar.config(LOUNGE))
    assert refused.value.code == 550
