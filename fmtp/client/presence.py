"""
The presence protocol from Python (doc/protocol.md section 9): a typed
call for each command, and the pushes as events.

    client = await Client.connect(reactor, "tcp:mail.poe.net:7071")
    await client.login("edgar@poe.net", password)
    presence = Presence(client)
    mine = await presence.status("away", note="at lunch")
    await presence.subscribe("annabel@poe.net")        # "pending-out"
    async for event in presence.events():
        print(event)

L{Presence} wraps a logged-in L{Client} connected to the presence port
(7071 by default) rather than extending it: the presence protocol has
its own C{APPROVE}, which is not the object protocol's.  Refusals raise
L{ReplyError} as every L{Client} call does (C{554} for a contact of
another domain, while presence does not federate).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fmtp.client.api import Client
from fmtp.client.protocol import ProtocolError
from fmtp.objects import is_ascii_digits
from fmtp.wire import Frame

#: The subscription states a reply names (doc/protocol.md 9.3), each
#: said in words, from the user's side.
SUBSCRIPTION_STATES = {
    "none": "neither of you sees the other",
    "pending-out": "you asked to see them; waiting for their answer",
    "pending-in": "they asked to see you; waiting for your answer",
    "pending-out+in": "each of you asked to see the other",
    "to": "you see them",
    "to+pending-in": "you see them; they asked to see you",
    "from": "they see you",
    "from+pending-out": "they see you; you asked to see them",
    "both": "you see each other",
}

#: The pushes of the presence protocol (doc/protocol.md 9.4): 252
#: presence, 253 subscription request, 254 subscription.
PRESENCE_PUSH_CODES = frozenset({252, 253, 254})


@dataclass(frozen=True, slots=True)
class SessionStatus:
    """
    A STATUS reply: this session's presence, and what subscribers see.

    @ivar status: the session's (C{offline} before its first STATUS).
    @ivar priority: L{None} until the session is available.
    @ivar resource: L{None} until the session is available.
    @ivar user_status: what approved subscribers see of the user now.
    """

    status: str
    priority: int | None
    resource: str | None
    user_status: str


@dataclass(frozen=True, slots=True)
class Buddy:
    """
    One line of BUDDIES: a contact, how the user stands with them, and
    what the user sees of them (C{offline}, no note, when not allowed).
    """

    address: str
    subscription: str
    status: str
    note: str


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """
    C{252}: what the user now sees of a buddy.
    """

    address: str
    status: str
    note: str


@dataclass(frozen=True, slots=True)
class SubscriptionRequested:
    """
    C{253}: C{address} asks to see the user's presence.
    """

    address: str


@dataclass(frozen=True, slots=True)
class SubscriptionChanged:
    """
    C{254}: C{address} approved the user's request or removed their
    subscription; C{subscription} is how they now stand.
    """

    address: str
    subscription: str


@dataclass(frozen=True, slots=True)
class PushesDropped:
    """
    C{251}: the server dropped C{count} pushes while this client was not
    reading; what they said is read again with L{Presence.buddies}.
    """

    count: int


PresenceEvent = (
    PresenceChanged | SubscriptionRequested | SubscriptionChanged | PushesDropped
)


def _header(frame: Frame, name: str) -> str:
    try:
        return frame.headers[name]
    except KeyError:
        raise ProtocolError(f"{frame.code} {frame.argument}: no {name}") from None


def parse_buddies(body: bytes) -> list[Buddy]:
    """
    The lines of a BUDDIES reply: C{ADDRESS STATE STATUS [NOTE]}.

    @raise ProtocolError: for a line that is not one.
    """
    buddies = []
    # Split on CRLF and LF only: a note may hold other Unicode breaks'
    # look-alikes, never a line break (the server refuses them).
    for line in body.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        parts = line.split(" ", 3)
        if len(parts) < 3:
            raise ProtocolError(f"bad BUDDIES line: {line!r}")
        buddies.append(Buddy(parts[0], parts[1], parts[2], "".join(parts[3:])))
    return buddies


def parse_event(frame: Frame) -> PresenceEvent | None:
    """
    The event a pushed frame carries, or L{None} for a push that is not
    one of presence (a C{250} message, on a connection that gets both).

    @raise ProtocolError: for a presence push without its headers.
    """
    if frame.code == 252:
        return PresenceChanged(
            _header(frame, "From"),
            _header(frame, "Status"),
            frame.headers.get("Note", ""),
        )
    if frame.code == 253:
        return SubscriptionRequested(_header(frame, "From"))
    if frame.code == 254:
        return SubscriptionChanged(
            _header(frame, "From"), _header(frame, "Subscription")
        )
    if frame.code == 251:
        count = _header(frame, "Dropped")
        if not is_ascii_digits(count):
            raise ProtocolError(f"251 with Dropped: {count[:20]!r}")
        return PushesDropped(int(count))
    return None


class Presence:
    """
    The presence commands, on a L{Client} logged in to a presence port.

    Wrapping the client queues the presence pushes with its messages
    (in C{client.protocol.pushes}), where L{next_event} reads them.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        protocol = client.protocol
        protocol.push_codes = protocol.push_codes | PRESENCE_PUSH_CODES

    async def status(
        self,
        status: str | None = None,
        *,
        note: str | None = None,
        priority: int | None = None,
        resource: str | None = None,
    ) -> SessionStatus:
        """
        Set this session's presence (C{online}, C{away}, C{busy} or
        C{invisible}); the first call makes the session available, so
        that it counts and receives pushes.  With no C{status}, change
        nothing and read it.

        @raise ReplyError: 501 for a bad word, note, priority or resource;
            429 for too many changes.
        """
        headers: dict[str, str] = {}
        if note is not None:
            headers["Note"] = note
        if priority is not None:
            headers["Priority"] = str(priority)
        if resource is not None:
            headers["Resource"] = resource
        answer = await self.client.call("STATUS", status or "", headers)
        priority_text = answer.headers.get("Priority")
        try:
            priority_value = None if priority_text is None else int(priority_text)
        except ValueError:
            raise ProtocolError(f"STATUS: bad Priority {priority_text!r}") from None
        return SessionStatus(
            _header(answer, "Status"),
            priority_value,
            answer.headers.get("Resource"),
            _header(answer, "User-Status"),
        )

    async def _subscription(self, verb: str, address: str) -> str:
        return _header(await self.client.call(verb, address), "Subscription")

    async def subscribe(self, address: str) -> str:
        """
        Ask to see C{address}'s presence.

        @return: how the user and C{address} now stand (a key of
            L{SUBSCRIPTION_STATES}).
        """
        return await self._subscription("SUBSCRIBE", address)

    async def unsubscribe(self, address: str) -> str:
        """
        Stop seeing C{address}, or withdraw a request.
        """
        return await self._subscription("UNSUBSCRIBE", address)

    async def approve(self, address: str) -> str:
        """
        Approve C{address}'s request, or pre-approve one to come.
        """
        return await self._subscription("APPROVE", address)

    async def deny(self, address: str) -> str:
        """
        Deny C{address}'s request, cancel their subscription, or withdraw
        a pre-approval.
        """
        return await self._subscription("DENY", address)

    async def buddies(self) -> list[Buddy]:
        """
        The user's own list: each contact, the state, and their presence.
        """
        return parse_buddies((await self.client.call("BUDDIES")).body)

    async def next_event(self) -> PresenceEvent | None:
        """
        The next presence event pushed to this session (once available:
        after a L{status} call), or L{None} once the connection has
        closed.
        """
        return await self.client.next_push(parse_event)

    async def events(self) -> AsyncIterator[PresenceEvent]:
        """
        The presence events pushed to this session, as they arrive, until
        the connection closes.
        """
        while (event := await self.next_event()) is not None:
            yield event
