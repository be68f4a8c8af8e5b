"""
Assembling one server's federation: the link pool, the receiver, the
queue, the volatile updates and relaying for children, around the
server's store, keys and clock (L{build_server_links}).

Everything here is wiring; each piece's rules live in its own module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fmtp.federation.api import ServerLinks
from fmtp.federation.countersign import Countersigner
from fmtp.federation.hello import HelloVerifier
from fmtp.federation.housekeeping import Housekeeping
from fmtp.federation.inbound import DeliveryReceiver
from fmtp.federation.pool import LinkPool
from fmtp.federation.queue import OutboundQueue
from fmtp.federation.settle import DEFAULT_RETRY_WINDOW, DEFAULT_SCHEDULE
from fmtp.federation.userdir import RemoteUsers
from fmtp.federation.volatile import VolatileQueue
from fmtp.interfaces import IDeliveryStore, IDomainSigner, IKeyVerifier
from fmtp.objects import FMTPObject
from fmtp.util.hostport import DEFAULT_FMTP_PORT
from fmtp.wire import DEFAULT_LIMITS, Limits

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


DEFAULT_FEDERATION = FederationSettings()


class ServerLinksService(Service):
    """
    Stops the volatile updates and closes every server link when the
    server stops.
    """

    def __init__(self, pool: LinkPool, volatile: VolatileQueue) -> None:
        self.pool = pool
        self.volatile = volatile

    def stopService(self) -> Deferred:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        # The senders end as the pool closes the links they wait on.
        stopped = self.volatile.close()
        await self.pool.close()
        await stopped


def build_server_links(
    domain: str,
    store: IDeliveryStore,
    keys: IKeyVerifier,
    signer: IDomainSigner,
    clock: IReactorTime,
    push: Callable[[str, FMTPObject], object],
    routes: Any = None,
    settings: FederationSettings = DEFAULT_FEDERATION,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[ServerLinks, list[Service]]:
    """
    Build the server links of one server.

    @param clock: the reactor (it connects sockets too, when C{routes} is
        given).
    @param push: C{push(address, obj)} hands a message just filed to the
        address's live sessions.
    @param routes: the L{fmtp.dns.routes.RouteResolver} for this server; without
        it, links to no other domain (see L{ServerLinks}).
    @return: the L{ServerLinks} for the protocols, and the services to run
        (the queue, the links, the store's housekeeping), in the order to
        start them; none without C{routes}.
    """
    hello = HelloVerifier(keys, clock, domain)
    pool = users = volatile = countersign = None
    if routes is not None:
        pool = LinkPool(
            clock,
            signer,
            hello,
            routes.routes_for,
            tls_policy=settings.tls_policy,
            tls_trust_root=settings.tls_trust_root,
            connect_timeout=settings.connect_timeout,
            parent=settings.parent,
            resolve_host=routes.resolve_host,
            limits=limits,
        )
        users = RemoteUsers(pool, clock)
        countersign = Countersigner(pool).confirm
        volatile = VolatileQueue(pool.link_to, clock)
    receiver = DeliveryReceiver(
        domain,
        store,
        keys,
        clock,
        push,
        countersign=countersign,
        always_countersign=settings.always_countersign,
    )
    kick = peer_connected = None
    running: list[Service] = []
    if pool is not None:
        queue = OutboundQueue(
            store,
            users.deliver,
            clock,
            domain,
            signer,
            receiver.file_bounce,
            retry_schedule=settings.retry_schedule,
            retry_window=settings.retry_window,
        )
        kick = queue.kick
        peer_connected = queue.peer_connected
        stop_links = ServerLinksService(pool, volatile)
        housekeeping = Housekeeping(
            store, clock, protocol_types=lambda: receiver.handled_types
        )
        running = [queue, stop_links, housekeeping]
    links = ServerLinks(
        domain,
        store,
        clock,
        signer,
        hello,
        receiver,
        pool=pool,
        users=users,
        kick=kick,
        peer_connected=peer_connected,
        relay_for=settings.relay_for,
        volatile=volatile,
    )
    return links, running
