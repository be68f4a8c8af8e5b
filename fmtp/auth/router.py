"""
The router: this server's live sessions, and typed events delivered to
them (L{fmtp.interfaces.IRouter}).

Every protocol logs users in through the router and receives what is
meant for them through it: a message filed for an address reaches the
object-protocol streams of that address, a presence change its presence
sessions, a room line its chat sessions, a plugin's own event its
plugin's sessions, and nothing else.  The router decides nothing about
who may receive what (that is each protocol's domain code, which calls
L{Router.deliver} or L{Router.fan_out}); it only finds the sinks.

A session's key is the PAME session key LOGIN hands out: random, secret,
held only in this process's memory.  Over UDP a client names its session
by its public id (L{session_id}), never by the key, and proves it holds
the key with an HMAC of the datagram keyed by it (L{datagram_mac}),
checked in constant time by L{Router.verify_datagram}.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from fmtp.interfaces import IRouter, ISession
from fmtp.wire import Frame, serialize

#: What a session's public id is the HMAC of (L{session_id}).
SESSION_ID_LABEL = b"fmtp session id"
#: The key a MAC is checked with for an unknown session id.
_NO_KEY = "0" * 43


@dataclass(frozen=True, slots=True)
class Event:
    """
    Something for a user's live sessions: a C{kind} that says which
    sessions take it (C{message}, C{presence}, C{room}, a plugin's own
    kind) and what it carries.
    """

    kind: str
    payload: object


#: An event's sink: the session's protocol renders it for its client.
Sink = Callable[[Event], object]


@implementer(ISession)
@dataclass(eq=False, slots=True)
class Session:
    """
    One login of one address on one protocol.
    """

    key: str = field(repr=False)
    address: str
    protocol: str
    kinds: frozenset[str]
    opened: float
    sink: Sink = field(repr=False)

    @property
    def id(self) -> str:
        """
        The public id datagrams name it by (L{session_id}): computed when
        asked, not kept, so that the sessions of protocols that take no
        datagrams cost nothing more.
        """
        return session_id(self.key)


def datagram_mac(key: str, data: bytes) -> str:
    """
    The HMAC-SHA256, in lower-case hex, that proves a datagram was sent by
    the holder of session key C{key}.
    """
    return hmac.new(key.encode("ascii"), data, hashlib.sha256).hexdigest()


def session_id(key: str) -> str:
    """
    The public id of the session of key C{key}: what a datagram names its
    session by, so that it never carries the key.  Derived from the key
    (the first 32 hex digits of its HMAC-SHA256 of C{fmtp session id}), so
    that a client computes it, and nothing but the key's holder can tell
    which id goes with which key.
    """
    return datagram_mac(key, SESSION_ID_LABEL)[:32]


def sign_frame(frame: Frame, key: str) -> bytes:
    """
    C{frame} serialized and signed with C{key}: with a first header
    C{Mac}, the L{datagram_mac} of the bytes without that line (what
    L{unsigned_bytes} gives back).  How an ISP bridge signs its requests
    and the server its notifications to it, and a light chat client its
    datagrams and the server its pushes to it.
    """
    unsigned = serialize(frame)
    mac = datagram_mac(key, unsigned)
    command_end = unsigned.index(b"\r\n") + 2
    return unsigned[:command_end] + f"Mac: {mac}\r\n".encode() + unsigned[command_end:]


def unsigned_bytes(data: bytes) -> bytes:
    """
    The bytes a datagram's C{Mac} covers: the datagram exactly as sent,
    without its C{Mac} header line (from the line's start through its line
    ending).  A datagram without one is returned whole.
    """
    start = data.find(b"\n") + 1
    while 0 < start < len(data):
        end = data.find(b"\n", start)
        if end < 0:
            break
        line = data[start:end]
        if not line.strip():
            break
        name = line.split(b":", 1)[0]
        if name.strip().lower() == b"mac":
            return data[:start] + data[end + 1 :]
        start = end + 1
    return data


@implementer(IRouter)
class Router:
    """
    L{IRouter} in memory.

    @param clock: when sessions open (for status pages and expiry by the
        protocols that need it).
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._by_key: dict[str, Session] = {}
        self._by_id: dict[str, Session] = {}
        #: The protocols whose sessions datagrams may name (L{by_id}).
        self._named: set[str] = set()
        self._by_address: dict[str, dict[str, Session]] = {}

    def open(
        self, address: str, protocol: str, sink: Sink, kinds: Iterable[str]
    ) -> Session:
        session = Session(
            secrets.token_urlsafe(32),
            address,
            protocol,
            frozenset(kinds),
            self._clock.seconds(),
            sink,
        )
        self._by_key[session.key] = session
        if protocol in self._named:
            self._by_id[session.id] = session
        self._by_address.setdefault(address, {})[session.key] = session
        return session

    def close(self, session: Session) -> None:
        if self._by_key.pop(session.key, None) is None:
            return
        if session.protocol in self._named:
            self._by_id.pop(session.id, None)
        sessions = self._by_address.get(session.address)
        if sessions is not None:
            sessions.pop(session.key, None)
            if not sessions:
                del self._by_address[session.address]

    def deliver(self, address: str, event: Event) -> int:
        # A sink may close its session (a stream that drops): iterate over
        # a copy.
        reached = 0
        for session in list(self._by_address.get(address, {}).values()):
            if event.kind in session.kinds:
                session.sink(event)
                reached += 1
        return reached

    def deliver_to(self, session: Session, event: Event) -> bool:
        if self._by_key.get(session.key) is not session:
            return False
        if event.kind not in session.kinds:
            return False
        session.sink(event)
        return True

    def fan_out(self, addresses: Iterable[str], event: Event) -> int:
        return sum(self.deliver(address, event) for address in dict.fromkeys(addresses))

    def online(self, address: str) -> frozenset[str]:
        return frozenset(s.protocol for s in self._by_address.get(address, {}).values())

    def sessions(self, address: str, protocol: str | None = None) -> list[Session]:
        return [
            s
            for s in self._by_address.get(address, {}).values()
            if protocol is None or s.protocol == protocol
        ]

    def session_for_key(self, key: str) -> Session | None:
        return self._by_key.get(key)

    def by_id(self, protocol: str) -> None:
        self._named.add(protocol)

    def verify_datagram(self, id: str, data: bytes, mac: str) -> Session | None:
        session = self._by_id.get(id)
        # An unknown id costs the same HMAC as a known one: timing tells
        # nothing of which ids are open.
        key = session.key if session is not None else _NO_KEY
        expected = datagram_mac(key, data)
        if not hmac.compare_digest(expected.encode(), mac.lower().encode()):
            return None
        return session

    def __len__(self) -> int:
        return len(self._by_key)
