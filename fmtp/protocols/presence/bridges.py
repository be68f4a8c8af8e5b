"""
ISP bridges: PUBLISH, the datagram by which a bridge the admin added
(C{fmtp bridge add}) sets the presence of the users its pattern allows
(doc/protocol.md 9.6).

A PUBLISH is authenticated by an HMAC-SHA256 keyed by the bridge's secret
over the datagram without its C{Mac} header, and numbered by C{Seq}: a
sliding window of the last L{WINDOW} numbers, as IPsec's and DTLS's
anti-replay windows, refuses a number used before with other bytes or
older than the window, and answers a repeat of an accepted datagram as
the first time without applying it again.  Within the window datagrams
may arrive in any order: a user's presence is set only by a newer number
than the one that last set it.

The same authentication, and the same window, serve the bridge's RESYNC
over TCP (L{fmtp.protocols.presence.bridgeresync}); a fresh PUBLISH also
tells the L{BridgeNotifier} where the bridge's notifications go.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fmtp.auth.replay import WINDOW, ReplayWindow, Seen, SeqRefused
from fmtp.auth.router import datagram_mac, sign_frame, unsigned_bytes
from fmtp.errors import FMTPError, Forbidden, InvalidObject
from fmtp.objects import domain_of, normalize_address
from fmtp.policy import matches
from fmtp.protocols.presence.bridgedir import BridgeDirectory
from fmtp.protocols.presence.service import PresenceService
from fmtp.protocols.presence.status import (
    OFFLINE,
    parse_note,
    parse_priority,
    parse_status,
)
from fmtp.ratelimit import LogLimiter
from fmtp.store.bridges import Bridge
from fmtp.wire import Frame, reply, request

if TYPE_CHECKING:
    from fmtp.protocols.presence.bridgenotify import BridgeNotifier

#: The largest C{Seq}: a 64-bit counter.
MAX_SEQ = 2**64 - 1
#: Seconds a published presence lasts without a C{Ttl} header, and the
#: most a C{Ttl} may ask.
DEFAULT_TTL = 300
MAX_TTL = 3600

_DIGITS = re.compile(r"[0-9]{1,20}")
#: The key a MAC is checked with when the bridge is unknown, so that an
#: unknown name and a bad MAC take the same work and get the same answer.
_NO_KEY = "0" * 64


class BridgeRefused(FMTPError):
    """
    Unknown bridge or bad MAC: one answer for both, so that names cannot
    be probed.
    """

    code = 535
    default_message = "bridge authentication failed"


@dataclass
class BridgeState:
    """
    What the server remembers of one bridge between its datagrams: its
    window, the answers of the datagrams in it (by number, with the
    datagram's digest), and the number that last set each user; all of
    it for the bridge of one C{secret} (a bridge removed and added again
    under its name starts afresh).
    """

    secret: str = field(repr=False)
    window: ReplayWindow = field(default_factory=ReplayWindow)
    answers: dict[int, tuple[bytes, Frame]] = field(default_factory=dict)
    set_by: dict[str, int] = field(default_factory=dict)
    #: The users it publishes for now, with when their presence ends
    #: (on the clock), for its RESYNC; pruned of ended ones when it
    #: doubles (L{published_at}), so that it costs O(1) a datagram.
    published: dict[str, float] = field(default_factory=dict)
    prune_at: int = WINDOW

    def forget_old(self) -> None:
        """
        Drop what no datagram in the window can need: answers and users'
        numbers older than the window.
        """
        oldest = self.window.highest - self.window.size
        if len(self.answers) > self.window.size:
            self.answers = {s: a for s, a in self.answers.items() if s > oldest}
        if len(self.set_by) > 2 * self.window.size:
            self.set_by = {u: s for u, s in self.set_by.items() if s > oldest}

    def published_at(self, now: float) -> list[str]:
        """
        The users whose presence it published has not ended at C{now}
        (by its C{Ttl}, or C{offline}), sorted; the ended ones forgotten.
        """
        self.published = {u: end for u, end in self.published.items() if end > now}
        self.prune_at = max(WINDOW, 2 * len(self.published))
        return sorted(self.published)

    def publishing(self, address: str, status: str, now: float, ttl: int) -> None:
        """
        Remember that C{address}'s presence is now C{status}, for C{ttl}
        seconds from C{now}.
        """
        if status == OFFLINE:
            self.published.pop(address, None)
            return
        self.published[address] = now + ttl
        if len(self.published) > self.prune_at:
            self.published_at(now)


@dataclass(frozen=True, slots=True)
class Update:
    address: str
    status: str
    note: str


def _header_number(frame: Frame, name: str, default: int | None, top: int) -> int:
    text = frame.headers.get(name)
    if text is None:
        if default is None:
            raise InvalidObject(f"{frame.verb} needs a {name} header")
        return default
    if not _DIGITS.fullmatch(text) or int(text) > top:
        raise InvalidObject(f"{name} must be a whole number from 0 to {top}")
    return int(text)


@dataclass(frozen=True, slots=True)
class Authenticated:
    """
    A request a bridge signed, and where its C{Seq} stands in its window.
    """

    bridge: Bridge
    state: BridgeState
    seq: int
    seen: Seen


class BridgePublishing:
    """
    Checks and applies the PUBLISH datagrams of the server's bridges, and
    authenticates their other requests (RESYNC) the same way.

    @param directory: the server's bridges.
    @param notifier: told where each bridge sends its fresh PUBLISH from,
        which is where its notifications go.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        domain: str,
        directory: BridgeDirectory,
        presence: PresenceService,
        notifier: BridgeNotifier | None = None,
    ) -> None:
        self._clock = clock
        self._domain = domain
        self.directory = directory
        self._presence = presence
        self._notifier = notifier
        self._states: dict[str, BridgeState] = {}
        self._log_limiter = LogLimiter(clock, rate=0.1, burst=1)
        directory.observe(self._read)

    def _read(self, bridges: dict[str, Bridge]) -> None:
        """
        The bridges were read: forget the window and the notifications of
        each one removed.
        """
        for name in [name for name in self._states if name not in bridges]:
            del self._states[name]
        if self._notifier is not None:
            self._notifier.forget_all_but(bridges)

    async def authenticate(self, frame: Frame, data: bytes) -> Authenticated:
        """
        Check a bridge's signed request: its C{Bridge}, C{Seq} and C{Mac}
        headers, the MAC over C{data} without its C{Mac} line, and that
        its C{Seq} is not older than the window.  The caller decides what
        a C{Seq} used before means, and accepts the new one once served.

        @param data: the request's bytes, which its MAC covers.
        @raise FMTPError: C{501} for a missing or malformed header, C{535}
            alike for an unknown bridge and a bad MAC, C{503} for a C{Seq}
            older than the window.
        """
        name = frame.headers.get("Bridge", "")
        mac = frame.headers.get("Mac")
        if not name or mac is None:
            raise InvalidObject(f"{frame.verb} needs Bridge, Seq and Mac headers")
        seq = _header_number(frame, "Seq", None, MAX_SEQ)
        bridge = await self.directory.get(name)
        expected = datagram_mac(
            bridge.secret if bridge else _NO_KEY, unsigned_bytes(data)
        )
        if not hmac.compare_digest(expected.encode(), mac.lower().encode()):
            raise BridgeRefused()
        assert bridge is not None
        state = self._states.get(name)
        if state is None or state.secret != bridge.secret:
            state = self._states[name] = BridgeState(bridge.secret)
        seen = state.window.check(seq)
        if seen is Seen.TOO_OLD:
            raise SeqRefused(
                f"Seq {seq} is older than the last {state.window.size} seen"
            )
        return Authenticated(bridge, state, seq, seen)

    async def publish(
        self,
        frame: Frame,
        data: bytes,
        send_to_source: Callable[[bytes], bool] | None = None,
    ) -> Frame:
        """
        Check and apply one PUBLISH.

        @param data: the datagram it came in, which its MAC covers.
        @param send_to_source: sends a datagram to where it came from:
            where the bridge's notifications go once it is found fresh.
        @raise FMTPError: for a refusal of the whole datagram.
        """
        ttl = _header_number(frame, "Ttl", DEFAULT_TTL, MAX_TTL)
        if ttl == 0:
            raise InvalidObject(f"Ttl must be a whole number from 1 to {MAX_TTL}")
        priority = parse_priority(frame.headers.get("Priority", "0"))
        signed = await self.authenticate(frame, data)
        bridge, state, seq = signed.bridge, signed.state, signed.seq
        digest = hashlib.sha256(data).digest()
        if signed.seen is Seen.USED:
            earlier = state.answers.get(seq)
            if earlier is not None and earlier[0] == digest:
                return earlier[1]
            raise SeqRefused(f"Seq {seq} was used already")
        if self._notifier is not None and send_to_source is not None:
            self._notifier.heard_from(bridge, send_to_source)
        answer = self._apply(frame, bridge, state, seq, ttl, priority)
        state.window.accept(seq)
        state.answers[seq] = (digest, answer)
        state.forget_old()
        return answer

    def _apply(
        self,
        frame: Frame,
        bridge: Bridge,
        state: BridgeState,
        seq: int,
        ttl: int,
        priority: int,
    ) -> Frame:
        updates, refused = self._parse(frame.body, bridge)
        now = self._clock.seconds()
        for update in updates:
            if state.set_by.get(update.address, -1) > seq:
                continue  # a newer datagram set this user already
            state.set_by[update.address] = seq
            state.publishing(update.address, update.status, now, ttl)
            self._presence.publish(
                update.address,
                bridge.name,
                update.status,
                update.note,
                priority,
                ttl,
            )
        headers = {"Applied": str(len(updates))}
        if refused:
            headers["Refused"] = " ".join(f"{line}={code}" for line, code in refused)
            self._note(
                bridge.name,
                "refused {count} of its lines: {refused}",
                count=len(refused),
                refused=headers["Refused"],
            )
        return reply(200, frame.tag, headers=headers)

    def _parse(
        self, body: bytes, bridge: Bridge
    ) -> tuple[list[Update], list[tuple[int, int]]]:
        """
        The updates of a PUBLISH's body, one per line (C{ADDRESS SP STATUS
        [SP NOTE]}), and the lines refused, by number (from 1) with the
        code that says why.
        """
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidObject("a PUBLISH body is UTF-8 text")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if not lines:
            raise InvalidObject(
                "PUBLISH carries no update: ADDRESS SP STATUS [SP NOTE]"
            )
        updates, refused = [], []
        for number, line in enumerate(lines, 1):
            try:
                updates.append(self._update(line.removesuffix("\r"), bridge))
            except FMTPError as e:
                refused.append((number, e.code))
        return updates, refused

    def _update(self, line: str, bridge: Bridge) -> Update:
        parts = line.split(" ", 2)
        if len(parts) < 2:
            raise InvalidObject("a line is ADDRESS SP STATUS [SP NOTE]")
        address = normalize_address(parts[0])
        if domain_of(address) != self._domain or not matches(address, bridge.users):
            raise Forbidden("outside the bridge's users")
        word = parts[1].lower()
        status = OFFLINE if word == OFFLINE else parse_status(word)
        note = parse_note(parts[2]) if len(parts) == 3 else ""
        return Update(address, status, note)

    def _note(self, name: str, message: str, **kw) -> None:
        self._log_limiter.emit(
            self._log, name, "bridge {bridge}: " + message, bridge=name, **kw
        )


def signed_publish(
    bridge: str,
    secret: str,
    seq: int,
    lines: list[str],
    tag: str = "1",
    cookie: str | None = None,
    ttl: int | None = None,
) -> bytes:
    """
    A PUBLISH datagram as a bridge sends it (for tests and bridges written
    in Python): its C{Mac} header is the HMAC of the datagram without it.
    """
    headers = {"Bridge": bridge, "Seq": str(seq)}
    if ttl is not None:
        headers["Ttl"] = str(ttl)
    if cookie is not None:
        headers["Cookie"] = cookie
    body = "".join(f"{line}\r\n" for line in lines).encode()
    return sign_frame(request("PUBLISH", tag, headers=headers, body=body), secret)
