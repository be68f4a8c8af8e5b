"""
L{fmtp.cookies.SourceCookies}: what a cookie proves, and for how long, also
once it is remembered as checked.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from fmtp.cookies import SourceCookies


def make() -> tuple[SourceCookies, Clock]:
    clock = Clock()
    return SourceCookies(clock, window=300.0, secret=b"k" * 32), clock


def test_a_cookie_is_valid_for_its_host_only() -> None:
    cookies, _ = make()
    cookie = cookies.cookie_for("192.0.2.1")
    for _ in range(2):
        assert cookies.is_valid("192.0.2.1", cookie)
        assert not cookies.is_valid("192.0.2.2", cookie)
    assert not cookies.is_valid("192.0.2.1", "0" * cookies.length)
    assert not cookies.is_valid("192.0.2.1", None)


def test_a_remembered_cookie_still_expires() -> None:
    cookies, clock = make()
    cookie = cookies.cookie_for("192.0.2.1")
    assert cookies.is_valid("192.0.2.1", cookie)
    clock.advance(300)
    assert cookies.is_valid("192.0.2.1", cookie)
    clock.advance(300)
    assert not cookies.is_valid("192.0.2.1", cookie)


def test_a_new_cookie_replaces_the_remembered_one() -> None:
    cookies, clock = make()
    old = cookies.cookie_for("192.0.2.1")
    assert cookies.is_valid("192.0.2.1", old)
    clock.advance(300)
    new = cookies.cookie_for("192.0.2.1")
    assert cookies.is_valid("192.0.2.1", new)
    assert cookies.is_valid("192.0.2.1", old)


def test_what_is_remembered_is_bounded() -> None:
    cookies, _ = make()
    cookies.max_checked = 8
    for n in range(20):
        host = f"192.0.2.{n}"
        assert cookies.is_valid(host, cookies.cookie_for(host))
    assert len(cookies._checked) <= 8
    assert cookies.is_valid("192.0.2.0", cookies.cookie_for("192.0.2.0"))


def test_never_more_than_the_bound() -> None:
    cookies, _ = make()
    cookies.max_checked = 8
    for n in range(9):
        host = f"192.0.2.{n}"
        assert cookies.is_valid(host, cookies.cookie_for(host))
        assert len(cookies._checked) <= 8


def test_a_remembered_cookie_is_checked_without_hashing() -> None:
    """
    A source that echoes its cookie in every datagram costs a look-up, not
    two keyed hashes, for as long as the window lasts; another host's
    cookie is not taken for it.
    """
    cookies, clock = make()
    minted: list[str] = []
    mint = cookies._mint
    cookies._mint = lambda host, index: minted.append(host) or mint(host, index)
    first, second = cookies.cookie_for("192.0.2.1"), cookies.cookie_for("192.0.2.2")
    assert cookies.is_valid("192.0.2.1", first)
    assert cookies.is_valid("192.0.2.2", second)
    del minted[:]
    for _ in range(3):
        assert cookies.is_valid("192.0.2.1", first)
        assert cookies.is_valid("192.0.2.2", second)
    assert minted == []
    clock.advance(300)
    assert cookies.is_valid("192.0.2.1", first)
    assert minted == ["192.0.2.1", "192.0.2.1"]
