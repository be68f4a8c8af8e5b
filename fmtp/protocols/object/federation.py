"""
The federation pieces the object protocol's commands use, built once per
server: the receiver and sender of messages, the HELLO verifier, the
relay for child domains, and lookups of other domains' users for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fmtp.delivery import message_event
from fmtp.federation.hello import HelloVerifier
from fmtp.federation.inbound import DeliveryReceiver
from fmtp.federation.relay import ChildRelay
from fmtp.federation.sending import MessageSender

if TYPE_CHECKING:
    from fmtp.services import SharedServices


@dataclass
class Federation:
    """
    The federation pieces one server shares between its listeners.
    """

    receiver: DeliveryReceiver
    sender: MessageSender
    hello: HelloVerifier
    #: Takes the messages of child domains for other domains.
    relay: ChildRelay
    #: Looks up a user object of another domain for a child:
    #: C{lookup(address, cache_only)}.
    lookup: object | None = None

    @classmethod
    def build(
        cls,
        services: SharedServices,
        *,
        hello: HelloVerifier | None = None,
        countersign=None,
        always_countersign: bool = False,
        kick=lambda: None,
        relay_for: frozenset[str] = frozenset(),
        lookup=None,
    ) -> Federation:
        """
        The receiver, sender and handshake of one server around its
        services.  With only C{services}, federation without links to other
        domains: local delivery works and remote recipients wait in the
        queue, which nothing drains (unit tests, servers without a link
        pool); L{fmtp.federation.node.build_federation} passes the rest.

        @param kick: called when SEND or a relay has queued deliveries.
        @param relay_for: the child domains this server relays for.
        @param lookup: looks up other domains' user objects for children.
        """
        router = services.router
        receiver = DeliveryReceiver(
            services.domain,
            services.store,
            services.keys,
            services.reactor,
            push=lambda address, obj: router.deliver(address, message_event(obj)),
            countersign=countersign,
            always_countersign=always_countersign,
        )
        sender = MessageSender(
            services.domain,
            services.store,
            services.signer,
            services.reactor,
            receiver,
            kick,
        )
        hello = hello or HelloVerifier(services.keys, services.reactor, services.domain)
        relay = ChildRelay(services.store, receiver, services.reactor, relay_for, kick)
        return cls(receiver, sender, hello, relay, lookup)
