"""
DELIVER and CONFIRM, the server-to-server verbs of messaging, as handlers
of the inbound verb registry (L{fmtp.federation.registry}): each parses
its frame, asks L{fmtp.federation.api.ServerLinks} for the decision, and
frames the answer as doc/protocol.md 8.4 and 8.5 say.

The registry dispatches only after HELLO, so each handler gets the
domain the peer proved (or, for a domain without a key, claimed: both
verbs are open to such a peer, since every message it delivers is
countersigned, and CONFIRM tells it nothing it does not hold).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from fmtp.delivery import RecipientResult, results_text
from fmtp.errors import InvalidObject
from fmtp.federation.hello import Peer
from fmtp.objects import FMTPObject
from fmtp.wire import Frame, reply

#: accept(obj, recipients, peer_domain): the per-recipient results.
Accept = Callable[[FMTPObject, Sequence[str], str], Awaitable[list[RecipientResult]]]
#: confirm(object_id, digest, peer_domain): whether this server vouches.
Confirm = Callable[[str, str, str], Awaitable[bool]]


def results_frame(tag: str, results: Sequence[RecipientResult]) -> Frame:
    """
    The C{200} reply listing one C{ADDRESS CODE TEXT} line per recipient.
    """
    body = results_text(results).encode("utf-8")
    return reply(200, tag, "per-recipient results", body=body)


class DeliveryVerbs:
    """
    The handlers of DELIVER and CONFIRM.

    @param accept: decides a DELIVER (L{ServerLinks.accept}).
    @param confirm: decides a CONFIRM (L{ServerLinks.confirm}).
    """

    def __init__(self, accept: Accept, confirm: Confirm) -> None:
        self._accept = accept
        self._confirm = confirm

    async def deliver(self, peer: Peer, frame: Frame) -> Frame:
        """
        C{DELIVER TAG ADDRESS...} with the object as headers and body.

        @raise FMTPError: for a refusal of the whole message, with its code.
        """
        recipients = frame.argument.split()
        if not recipients:
            raise InvalidObject("DELIVER needs recipients: DELIVER TAG ADDRESS...")
        obj = FMTPObject.from_headers(frame.headers, frame.body)
        results = await self._accept(obj, recipients, peer.domain)
        return results_frame(frame.tag, results)

    async def confirm(self, peer: Peer, frame: Frame) -> Frame:
        """
        C{CONFIRM TAG ID} with a C{Digest} header: the countersign.
        """
        digest = frame.headers.get("Digest", "").lower()
        object_id = frame.argument
        if not object_id or not digest:
            raise InvalidObject("CONFIRM needs an id and a Digest header")
        if not await self._confirm(object_id, digest, peer.domain):
            return reply(550, frame.tag, "not sent from here")
        return reply(200, frame.tag, "yes")
