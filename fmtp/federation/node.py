"""
Assembling one server's federation: DNS, the link pool, the receiver, the
sender, the queue and relaying for children, around its shared services.

Everything here is wiring; each piece's rules live in its own module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from fmtp.dns import DEFAULT_FMTP_PORT
from fmtp.federation.countersign import Countersigner
from fmtp.federation.hello import HelloVerifier
from fmtp.federation.pool import LinkPool
from fmtp.federation.queue import OutboundQueue
from fmtp.federation.settle import DEFAULT_RETRY_WINDOW, DEFAULT_SCHEDULE
from fmtp.federation.userdir import RemoteUsers
from fmtp.housekeeping import Housekeeping
from fmtp.objects import FMTPObject
from fmtp.protocols.messaging import Federation
from fmtp.services import SharedServices

log = Logger()


@dataclass(frozen=True)
class FederationSettings:
    """
    What an admin chooses about federation (see C{twistd fmtp --help}).
    """

    tls_policy: str = "opportunistic"
    tls_trust_root: object = None
    parent: tuple[str, int] | None = None
    relay_for: frozenset[str] = frozenset()
    always_countersign: bool = False
    retry_window: float = DEFAULT_RETRY_WINDOW
    retry_schedule: Sequence[float] = DEFAULT_SCHEDULE
    connect_timeout: float = 10.0
    #: The port of a domain's server found through its MX records or its
    #: own address, where DNS names no port (7070, doc/protocol.md 8.1).
    #: Not an admin's option: tests, and private networks whose servers
    #: all listen elsewhere, change it.
    default_port: int = DEFAULT_FMTP_PORT


class LinkPoolService(Service):
    """
    Closes every server link when the server stops.
    """

    def __init__(self, pool: LinkPool) -> None:
        self.pool = pool

    def stopService(self) -> Deferred:
        super().stopService()
        return Deferred.fromCoroutine(self.pool.close())


def build_federation(
    services: SharedServices, routes, settings: FederationSettings
) -> tuple[Federation, list[Service]]:
    """
    Build the federation of one server.

    @param routes: the L{fmtp.dns.RouteResolver} for this server.
    @return: the L{Federation} for the protocols, and the services to run
        (the queue, the link pool, the store's housekeeping), in the order
        to start them.
    """
    store, clock = services.store, services.reactor
    hello = HelloVerifier(services.keys, clock, services.domain)
    pool = LinkPool(
        clock,
        services.signer,
        hello,
        routes.routes_for,
        tls_policy=settings.tls_policy,
        tls_trust_root=settings.tls_trust_root,
        connect_timeout=settings.connect_timeout,
        parent=settings.parent,
        resolve_host=routes.resolve_host,
        limits=services.limits,
    )
    countersigner = Countersigner(pool)
    users = RemoteUsers(pool, clock)

    async def file_bounce(recipient: str, obj: FMTPObject) -> None:
        # A bounce goes to the sender whatever their policy says: it is
        # this server telling its own user that a message failed.
        if await store.deliver_local(recipient, obj, False) is not None:
            services.sessions.push(recipient, obj)

    queue = OutboundQueue(
        store,
        users.deliver,
        clock,
        services.domain,
        services.signer,
        file_bounce,
        retry_schedule=settings.retry_schedule,
        retry_window=settings.retry_window,
    )

    federation = Federation.build(
        services,
        hello=hello,
        countersign=countersigner.confirm,
        always_countersign=settings.always_countersign,
        kick=queue.kick,
        relay_for=settings.relay_for,
        lookup=users.lookup,
    )
    return federation, [queue, LinkPoolService(pool), Housekeeping(store, clock)]


DEFAULT_FEDERATION = FederationSettings()
