"""
Source cookies for datagram listeners, in the manner of DNS cookies.

A datagram's source address can be forged, so the first reply to an
unverified source is only a small cookie: a keyed hash of its address and
the time.  A source that echoes the cookie has shown it receives at that
address, and only then may it get replies larger than its requests.  No
state is kept per source; the secret lives in memory and rotates with each
restart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from twisted.internet.interfaces import IReactorTime


class SourceCookies:
    """
    Mints and checks cookies bound to a source host and a time window.

    A cookie is valid in the window it was made in and the next one, so a
    client that got one just before a window ends still has a full window
    to use it.
    """

    #: Hex digits in a cookie: 64 bits, far beyond guessing within a window.
    length = 16
    #: Most hosts whose checked cookie is remembered.
    max_checked = 4096

    def __init__(
        self, clock: IReactorTime, window: float = 300.0, secret: bytes | None = None
    ) -> None:
        self._clock = clock
        self._window = window
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        # The cookies checked lately, by host, with the window they were
        # checked in: a source that echoes its cookie in every datagram is
        # checked with a dictionary look-up, not two keyed hashes.
        # Bounded: emptied when full, and when the window changes.
        self._checked: dict[str, str] = {}
        self._checked_window: int | None = None

    def _mint(self, host: str, window_index: int) -> str:
        message = f"{host}|{window_index}".encode()
        mac = hmac.new(self._secret, message, hashlib.sha256).hexdigest()
        return mac[: self.length]

    def _window_index(self) -> int:
        return int(self._clock.seconds() // self._window)

    def cookie_for(self, host: str) -> str:
        """
        The cookie to hand C{host} now.
        """
        return self._mint(host, self._window_index())

    def is_valid(self, host: str, cookie: str | None) -> bool:
        """
        Whether C{cookie} was minted for C{host} in this window or the last.
        """
        if not cookie or len(cookie) != self.length:
            return False
        now = self._window_index()
        checked = self._checked
        if now != self._checked_window:
            checked.clear()
            self._checked_window = now
        known = checked.get(host)
        if known is not None and hmac.compare_digest(cookie, known):
            return True
        valid = any(
            hmac.compare_digest(cookie, self._mint(host, index))
            for index in (now, now - 1)
        )
        if valid:
            if len(checked) >= self.max_checked:
                checked.clear()
            checked[host] = cookie
        return valid
