"""
Relaying for children: a parent server takes its children's messages for
other domains and queues them onward (the FMTP draft's parent relay).

A parent is no open relay: it relays only for the child domains its admin
named (C{--relay-for}), proved by their HELLO, and only messages their
origin proves (L{DeliveryReceiver.check_origin}: a signature, since the
parent cannot vouch for a child's users) for recipients the message
itself names, so a child cannot replay another domain's message to
recipients of its choosing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fmtp.delivery import RecipientResult, deliveries_to
from fmtp.federation.inbound import DeliveryReceiver, DeliveryRefused, named_recipients
from fmtp.interfaces import IDeliveryStore
from fmtp.objects import FMTPObject


class ChildRelay:
    """
    Takes messages from child servers for other domains.

    @param relay_for: the child domains this server relays for.
    @param kick: called once onward deliveries are queued.
    """

    _log = Logger()

    def __init__(
        self,
        store: IDeliveryStore,
        receiver: DeliveryReceiver,
        clock: IReactorTime,
        relay_for: frozenset[str],
        kick: Callable[[], object] = lambda: None,
    ) -> None:
        self._store = store
        self._receiver = receiver
        self._clock = clock
        self.relay_for = relay_for
        self._kick = kick

    def relays_for(self, peer_domain: str | None) -> bool:
        """
        Whether the peer, as its HELLO proved it, is a child of this
        server.
        """
        return peer_domain is not None and peer_domain in self.relay_for

    async def relay(
        self, obj: FMTPObject, recipients: Sequence[str], peer_domain: str
    ) -> list[RecipientResult]:
        """
        Check a child's message and queue it for C{recipients}, all of
        other domains, in one durable step.

        @raise DeliveryRefused: if the peer is not a child, a recipient is
            malformed or not named by the message, or the origin does not
            prove it (or as L{DeliveryReceiver.check_origin} does).
        @return: one C{201 queued for relay} result per recipient.
        """
        if not self.relays_for(peer_domain):
            raise DeliveryRefused(
                f"{recipients[0]} is not served here; this server does not relay"
            )
        addresses = named_recipients(obj, recipients)
        await self._receiver.check_origin(obj, peer_domain, for_relay=True)
        deliveries = deliveries_to(obj.id, addresses, self._clock.seconds())
        await self._store.enqueue(obj, deliveries)
        self._kick()
        self._log.info(
            "Relaying {id} from {peer} to {domains}",
            id=obj.id,
            peer=peer_domain,
            domains=sorted(d.domain for d in deliveries),
        )
        return [RecipientResult(a, 201, "queued for relay") for a in addresses]
