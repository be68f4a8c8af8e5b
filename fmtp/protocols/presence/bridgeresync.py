"""
RESYNC (doc/protocol.md 9.8): over TCP, a bridge that lost notifications
reads the current state of the subscriptions of the users it publishes
for, and where the server's count of its notifications stands.

It is signed and numbered as a PUBLISH is, in the same window: a RESYNC
captured (on a stream without TLS) cannot be sent again, since its
answer is the bridge's users' private lists.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from fmtp.auth.replay import Seen, SeqRefused
from fmtp.auth.router import sign_frame
from fmtp.errors import TooManyRequests
from fmtp.objects import normalize_address
from fmtp.policy import matches
from fmtp.protocols.presence.bridgenotify import BridgeNotifier
from fmtp.protocols.presence.bridges import BridgePublishing
from fmtp.protocols.presence.service import PresenceService
from fmtp.protocols.presence.status import buddy_line
from fmtp.ratelimit import SourceRateLimiter
from fmtp.wire import Frame, reply, request, serialize

#: Most users one RESYNC answers for; C{Next} names where the next starts.
MAX_RESYNC_USERS = 200
#: RESYNCs a second per bridge, after a burst of L{RESYNC_BURST}.
RESYNC_RATE = 1.0
RESYNC_BURST = 10.0


class BridgeResync:
    """
    Answers the RESYNC of the server's bridges.

    @param page_users: most users in one answer (L{MAX_RESYNC_USERS}).
    """

    def __init__(
        self,
        clock: IReactorTime,
        publishing: BridgePublishing,
        presence: PresenceService,
        notifier: BridgeNotifier,
        page_users: int = MAX_RESYNC_USERS,
    ) -> None:
        self._clock = clock
        self._publishing = publishing
        self._presence = presence
        self._notifier = notifier
        self._page_users = page_users
        self._rate = SourceRateLimiter(clock, RESYNC_RATE, RESYNC_BURST)

    async def resync(self, frame: Frame) -> Frame:
        """
        Answer one RESYNC, received on a stream.

        Its MAC covers the request as the server writes it (L{serialize}:
        canonical header names, C{Name: value}, CRLF), which is how a
        bridge writes it.

        @raise FMTPError: C{501}, C{535} or C{503} as for a PUBLISH (a
            C{Seq} used before is refused whatever its bytes), C{429}
            beyond the bridge's RESYNC rate.
        """
        after = frame.headers.get("After")
        if after is not None:
            after = normalize_address(after)
        signed = await self._publishing.authenticate(frame, serialize(frame))
        bridge, state, seq = signed.bridge, signed.state, signed.seq
        if signed.seen is Seen.USED:
            raise SeqRefused(f"Seq {seq} was used already")
        state.window.accept(seq)
        if not self._rate.allow(bridge.name):
            raise TooManyRequests("too many RESYNCs, slow down")
        # Read before the state: each notification numbered up to it is
        # in the answer, each after it is as new or newer.
        notify_seq = self._notifier.last_seq(bridge)
        users = [
            user
            for user in state.published_at(self._clock.seconds())
            if (after is None or user > after) and matches(user, bridge.users)
        ]
        page = users[: self._page_users]
        lines = []
        for user in page:
            for contact, token, shown in await self._presence.buddies(user):
                lines.append(f"{user} {buddy_line(contact, token, shown)}")
        headers = {"Notify-Seq": str(notify_seq), "Users": str(len(page))}
        if len(users) > len(page):
            headers["Next"] = page[-1]
        return reply(200, frame.tag, headers=headers, body="".join(lines).encode())


def signed_resync(
    bridge: str, secret: str, seq: int, tag: str = "1", after: str | None = None
) -> bytes:
    """
    A RESYNC request as a bridge sends it (for tests and bridges written
    in Python), signed as a PUBLISH is.
    """
    headers = {"Bridge": bridge, "Seq": str(seq)}
    if after is not None:
        headers["After"] = after
    return sign_frame(request("RESYNC", tag, headers=headers), secret)
