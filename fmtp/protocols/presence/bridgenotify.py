"""
Notifications to ISP bridges (doc/protocol.md 9.8): the presence events
of a user a bridge publishes for, sent to the bridge in datagrams.

A notification is the push a session of the user would get (9.4), one a
datagram, with the bridge's name, this server's own count of what it sent
the bridge (C{Seq}, from 1 each run, so that the bridge sees a gap) and
the user it is for, signed with the bridge's secret as the bridge signs
its PUBLISH.  It goes only where the bridge last sent a fresh PUBLISH
from: an address that echoed a cookie and proved the secret, never one
taken from a payload.  A notification is not a reply, so the rule that
no reply is larger than its request does not bound it: the bridge's own
rate does (C{fmtp bridge --rate}), beyond which notifications are dropped,
counted and logged, and still numbered, so that the bridge sees the gap
and asks for a RESYNC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fmtp.auth.router import Event, sign_frame
from fmtp.framing.handler import Renderer
from fmtp.ratelimit import LogLimiter, SourceRateLimiter
from fmtp.store.bridges import Bridge
from fmtp.wire import Frame

#: Sends a datagram to where a bridge's last fresh PUBLISH came from;
#: whether it was sent (L{fmtp.framing.session.Session.send_to_source}).
SendToSource = Callable[[bytes], bool]


@dataclass
class Outbox:
    """
    Where one bridge's notifications go, and how many it was meant: the
    number of the last (L{seq}), and of those dropped at its rate.
    """

    secret: str = field(repr=False)
    send: SendToSource = field(repr=False)
    rate: SourceRateLimiter = field(repr=False)
    seq: int = 0
    dropped: int = 0


class BridgeNotifier:
    """
    Sends the presence events of bridged users to their bridges.

    L{notify} is the seam L{fmtp.protocols.presence.service.PresenceService}
    calls (its C{bridge_notify}) for each event it pushes to a user with a
    session a bridge published; L{heard_from} is told where each bridge's
    fresh PUBLISH came from.

    @param renderers: the frame of each event kind, as pushed to a session
        (L{fmtp.protocols.presence.commands.PresenceCommands.renderers}).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        renderers: Mapping[str, Renderer],
    ) -> None:
        self._clock = clock
        self._renderers = renderers
        self._outboxes: dict[str, Outbox] = {}
        self._log_limiter = LogLimiter(clock, rate=0.1, burst=1)

    def heard_from(self, bridge: Bridge, send: SendToSource) -> None:
        """
        A fresh, authenticated PUBLISH of C{bridge} came from where
        C{send} sends: its notifications go there from now on, at its
        rate (C{rate} a second, bursts of twice as many).  A bridge added
        again with a new secret starts counting from 1 again.
        """
        outbox = self._outboxes.get(bridge.name)
        if outbox is None or outbox.secret != bridge.secret:
            self._outboxes[bridge.name] = Outbox(
                bridge.secret, send, self._rate(bridge.rate)
            )
            return
        outbox.send = send
        if outbox.rate.rate != bridge.rate:
            outbox.rate = self._rate(bridge.rate)

    def _rate(self, rate: int) -> SourceRateLimiter:
        return SourceRateLimiter(self._clock, rate, 2 * rate, max_sources=1)

    def forget_all_but(self, bridges: Mapping[str, Bridge]) -> None:
        """
        The bridges are now C{bridges}: send nothing more to one removed,
        nor to one whose secret changed until it publishes again.
        """
        for name, outbox in list(self._outboxes.items()):
            bridge = bridges.get(name)
            if bridge is None or bridge.secret != outbox.secret:
                del self._outboxes[name]

    def last_seq(self, bridge: Bridge) -> int:
        """
        The C{Seq} of the last notification meant for C{bridge} (sent or
        not), 0 if none yet.
        """
        outbox = self._outboxes.get(bridge.name)
        if outbox is None or outbox.secret != bridge.secret:
            return 0
        return outbox.seq

    def notify(self, bridge: str, address: str, event: Event) -> None:
        """
        C{event} for C{address}, whose presence C{bridge} publishes: sent
        to the bridge, if it has published from an address yet and is
        within its rate.  Every notification meant for a bridge that has
        an address is numbered, whether sent or dropped.
        """
        outbox = self._outboxes.get(bridge)
        if outbox is None:
            return
        outbox.seq += 1
        if not outbox.rate.allow(bridge):
            outbox.dropped += 1
            self._note(
                bridge,
                "notifications over its rate, dropped ({dropped} so far)",
                dropped=outbox.dropped,
            )
            return
        frame = self.notification(bridge, outbox.seq, address, event)
        data = sign_frame(frame, outbox.secret)
        if not outbox.send(data):
            outbox.dropped += 1
            self._note(
                bridge,
                "notification {seq} of {size} bytes not sent: too large, or "
                "the listener stopped",
                seq=outbox.seq,
                size=len(data),
            )

    def notification(self, bridge: str, seq: int, address: str, event: Event) -> Frame:
        """
        The frame of a notification, unsigned: the push of C{event}, with
        C{Bridge}, C{Seq} and C{To} first.
        """
        pushed = self._renderers[event.kind](event)
        headers = {"Bridge": bridge, "Seq": str(seq), "To": address, **pushed.headers}
        return Frame(pushed.verb, pushed.tag, pushed.argument, headers)

    def _note(self, bridge: str, message: str, **kw) -> None:
        self._log_limiter.emit(
            self._log,
            bridge,
            "bridge {bridge}: " + message,
            level="warn",
            bridge=bridge,
            **kw,
        )
