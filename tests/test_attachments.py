"""
Unit tests of L{fmtp.attachments}: the table in the headers, the bytes in
the body, and the names a client may write to disk.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fmtp.attachments import (
    MAX_ATTACHMENTS,
    Attachment,
    attach,
    check,
    safe_name,
    split,
)
from fmtp.errors import InvalidObject
from fmtp.objects import FMTPObject
from fmtp.wire import FrameParser, request, serialize

_names = st.text(
    st.characters(exclude_categories=["Cc", "Cs", "Co", "Cn", "Cf", "Zl", "Zp"]),
    min_size=1,
    max_size=40,
).filter(lambda name: name.strip())
_attachments = st.lists(
    st.builds(
        Attachment,
        _names,
        st.sampled_from(["image/png", "text/csv", "application/octet-stream"]),
        st.binary(max_size=64),
    ),
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(text=st.binary(max_size=64), attachments=_attachments)
def test_round_trip_through_a_frame(text, attachments) -> None:
    """
    Whatever the bytes (CRLFs, frame-like lines, nothing at all), text
    and attachments come back as they went, through the wire codec.
    """
    headers, body = attach(text, attachments)
    check(headers, len(body))
    frame = request("SEND", "1", headers={"To": "a@poe.net", **headers}, body=body)
    [parsed] = FrameParser().feed(serialize(frame))
    got_text, got = split(parsed.headers, parsed.body)
    assert got_text == text
    # Names travel in their NFC form, without surrounding space.
    assert [(a.name, a.type, a.data) for a in got] == [
        (unicodedata.normalize("NFC", a.name).strip(), a.type, a.data)
        for a in attachments
    ]


def test_the_table_is_signed_with_the_message() -> None:
    headers, body = attach(b"hi", [Attachment("a.txt", "text/plain", b"x")])
    obj = FMTPObject("1.n.a@poe.net", "message", headers, body)
    swapped = dict(headers, **{"Attachment-1": "1 text/plain b.txt"})
    assert FMTPObject(obj.id, obj.type, swapped, body).digest() != obj.digest()


def test_no_attachments_no_headers() -> None:
    assert attach(b"just text", []) == ({}, b"just text")
    assert split({}, b"just text") == (b"just text", [])


@pytest.mark.parametrize(
    "headers, length, why",
    [
        ({"Attachments": "0"}, 0, "1 to"),
        ({"Attachments": "x"}, 0, "1 to"),
        ({"Attachments": str(MAX_ATTACHMENTS + 1)}, 0, "1 to"),
        ({"Attachments": "2", "Attachment-1": "1 a/b n"}, 5, "no Attachment-2"),
        ({"Attachment-1": "1 a/b n"}, 5, "without Attachments"),
        ({"Attachments": "1", "Attachment-1": "big a/b n"}, 5, "whole number"),
        ({"Attachments": "1", "Attachment-1": "1 notatype n"}, 5, "type/subtype"),
        ({"Attachments": "1", "Attachment-1": "1 a/b"}, 5, "1 to"),
        ({"Attachments": "1", "Attachment-1": "9 a/b n"}, 5, "larger than"),
        (
            {"Attachments": "1", "Attachment-1": "1 a/b n", "Attachment-2": "1 a/b n"},
            5,
            "beyond",
        ),
    ],
)
def test_malformed_tables_are_refused(headers, length, why) -> None:
    with pytest.raises(InvalidObject, match=why):
        check(headers, length)
    with pytest.raises(InvalidObject):
        split(headers, b"x" * length)


def test_bad_names_and_types_are_not_sent() -> None:
    for bad in (
        Attachment("", "text/plain", b""),
        Attachment("two\nlines", "text/plain", b""),
        Attachment("a", "text", b""),
    ):
        with pytest.raises(InvalidObject):
            attach(b"", [bad])
    with pytest.raises(InvalidObject, match="at most"):
        attach(b"", [Attachment("a", "text/plain", b"")] * (MAX_ATTACHMENTS + 1))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/etc/cron.d/evil", "evil"),
        (".bashrc", "bashrc"),
        ("..", "attachment-3"),
        ("", "attachment-3"),
        ('con<>:"|?*.txt', "con.txt"),
        ("résumé.pdf", "résumé.pdf"),
    ],
)
def test_safe_names(name, expected) -> None:
    assert safe_name(name, 3) == expected
