"""
This server's links to other domains as protocols and plugins use them
(L{fmtp.interfaces.IServerLinks}): requests on verified, pooled links;
handlers for inbound server-to-server verbs; durable items for the
outbound queue; volatile, coalesced updates.

It also holds the rules of the object protocol's server side that no
protocol should hold: what a DELIVER does (local recipients filed, those
of other domains relayed for children only), what a CONFIRM answers, the
answer to a HELLO, and which GET a parent answers for a child.  DELIVER
and CONFIRM are registered here as handlers, as any plugin's verb is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from fmtp.delivery import RecipientResult, deliveries_to
from fmtp.errors import FMTPError
from fmtp.federation.countersign import vouches_for
from fmtp.federation.failures import LinkFailed, LinkRefused
from fmtp.federation.hello import HelloVerifier, Peer, make_hello
from fmtp.federation.inbound import DeliveryReceiver, ObjectHandler
from fmtp.federation.link import ServerLink
from fmtp.federation.pool import LinkPool
from fmtp.federation.registry import Handler, VerbRegistry
from fmtp.federation.relay import ChildRelay
from fmtp.federation.sending import MessageSender
from fmtp.federation.serververbs import DeliveryVerbs
from fmtp.federation.userdir import RemoteUsers
from fmtp.federation.volatile import VolatileQueue
from fmtp.interfaces import IDeliveryStore, IDomainSigner, IServerLinks
from fmtp.objects import FMTPObject, domain_of, normalize_address, normalize_domain
from fmtp.wire import Frame


def _no_queue() -> None:
    """
    The C{kick} of a server without an outbound queue: what is queued
    waits.
    """


@implementer(IServerLinks)
class ServerLinks:
    """
    The server links of one server, built once (by
    L{fmtp.federation.node.build_server_links}) and shared by every
    protocol.

    Without a C{pool} it links to no other domain: local delivery works,
    remote recipients wait in the queue that nothing drains, and
    L{request} and L{notify} fail (unit tests, a server built without
    federation).

    @ivar receiver: files messages for local users
        (L{DeliveryReceiver}), what SEND and DELIVER use.
    @ivar sender: turns a user's SEND into a signed message, filed and
        queued (L{MessageSender}).
    @ivar hello: checks peers' HELLOs (L{HelloVerifier}).
    @ivar relay: takes child domains' messages for other domains
        (L{ChildRelay}).
    @ivar pool: the outbound links (L{LinkPool}), or L{None}.
    @ivar users: other domains' user objects (L{RemoteUsers}), or L{None}.
    @ivar lookup: C{lookup(address, cache_only)}, a user object of another
        domain for a child (L{RemoteUsers.lookup}), or L{None}.
    @ivar volatile: the volatile updates (L{VolatileQueue}), or L{None}.
    @ivar registry: the inbound verbs (L{VerbRegistry}).
    """

    _log = Logger()

    def __init__(
        self,
        domain: str,
        store: IDeliveryStore,
        clock: IReactorTime,
        signer: IDomainSigner,
        hello: HelloVerifier,
        receiver: DeliveryReceiver,
        *,
        pool: LinkPool | None = None,
        users: RemoteUsers | None = None,
        kick: Callable[[], object] | None = None,
        peer_connected: Callable[[str], object] | None = None,
        relay_for: frozenset[str] = frozenset(),
        volatile: VolatileQueue | None = None,
    ) -> None:
        """
        @param kick: called once deliveries are queued (the outbound
            queue's C{kick}); L{None} without a queue.
        @param peer_connected: called with the domain of a peer whose
            HELLO proved it (the outbound queue's C{peer_connected}: it is
            back, so what waits for it goes at once); L{None} without a
            queue.
        @param relay_for: the child domains this server relays for.
        """
        self.domain = domain
        self._store = store
        self._clock = clock
        self._signer = signer
        kick = kick or _no_queue
        self._kick = kick
        self._peer_connected = peer_connected
        self.hello = hello
        self.receiver = receiver
        self.pool = pool
        self.users = users
        self.lookup = users.lookup if users is not None else None
        self.relay = ChildRelay(store, receiver, clock, relay_for, kick)
        self.sender = MessageSender(
            domain,
            store,
            signer,
            clock,
            receiver,
            kick,
            reserved_types=lambda: receiver.handled_types,
        )
        if volatile is None and pool is not None:
            volatile = VolatileQueue(self._own_server_link, clock)
        self.volatile = volatile
        self.registry = VerbRegistry()
        self._peer_observers: list[Callable[[str], object]] = []
        messaging = DeliveryVerbs(self.accept, self.confirm)
        self.register("DELIVER", messaging.deliver, unverified=True)
        self.register("CONFIRM", messaging.confirm, unverified=True)

    # -- IServerLinks ---------------------------------------------------------

    def request(
        self,
        domain: str,
        verb: str,
        argument: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> Deferred:
        """
        Send one request to C{domain}'s server on a verified, pooled link
        and return its reply, whatever its code.  Never through this
        server's parent relay: a parent relays messages only, and its
        reply would pass for the domain's (L{_own_server_link}).

        @return: a L{Deferred} of the reply L{Frame}, or failing with
            L{fmtp.federation.failures.LinkError} (4xx temporary, 5xx
            permanent); after a L{fmtp.federation.failures.LinkLost} the
            request may or may not have been carried out.
        """
        return Deferred.fromCoroutine(
            self._request(domain, verb, argument, headers, body)
        )

    async def _request(
        self,
        domain: str,
        verb: str,
        argument: str,
        headers: Mapping[str, str] | None,
        body: bytes,
    ) -> Frame:
        link = await self._own_server_link(domain)
        return await link.request(verb, argument, dict(headers or {}), body)

    async def _own_server_link(self, domain: str) -> ServerLink:
        """
        The pooled link to C{domain}'s own server, for a request or an
        update only that domain may answer or take: the pool falls back on
        the parent relay for a domain it cannot reach, which relays
        DELIVERs, not other verbs, and would answer for that domain
        (a presence probe) or swallow what was meant for it.

        The domain's own server is found as for a countersign
        (L{LinkPool.confirm_link}): a domain reachable only through the
        parent is away.

        @raise LinkError: if no verified link to it can be had.
        """
        if self.pool is None:
            raise LinkFailed(f"no link to {domain}: this server links to no domain")
        link = self.pool.link_for(domain)
        if link is None or not link.can_confirm_for(normalize_domain(domain)):
            link = await self.pool.confirm_link(domain)
        if not link.peer.verified:
            raise LinkRefused(
                f"{link.domain} publishes no key, so its server cannot prove who it is"
            )
        return link

    def register(self, verb: str, handler: Handler, unverified: bool = False) -> None:
        """
        Answer C{verb} from other servers with C{handler(peer, frame)},
        once their HELLO is done (see L{VerbRegistry.register}).

        @param unverified: also for peers whose domain publishes no key.
        @raise KeyError: if C{verb} already has a handler.
        """
        self.registry.register(verb, handler, unverified)

    def verbs(self) -> frozenset[str]:
        """
        The inbound verbs registered, for C{CAPA}.
        """
        return self.registry.verbs()

    def dispatch(self, verb: str, peer: Peer, frame: Frame) -> Deferred:
        """
        Answer a request of a peer whose HELLO is done (what the
        server-link command group calls; see L{VerbRegistry.dispatch}).

        @return: a L{Deferred} of the reply L{Frame}.
        """
        return Deferred.fromCoroutine(self.registry.dispatch(verb, peer, frame))

    def enqueue(self, obj: FMTPObject, recipients: Sequence[str]) -> Deferred:
        """
        Queue C{obj} durably for C{recipients}, all of other domains (one
        queue row per domain), and start delivering at once.  The object
        should carry this domain's signature (C{signer.sign_object}): a
        receiver checks it, or asks this server to confirm it, which it
        does for what was queued here.

        @return: a L{Deferred} that fires once the rows are durable, or
            fails with L{ValueError} for a recipient of this domain (they
            are served without the queue) or none, with
            L{fmtp.errors.InvalidAddress}, or as
            L{IDeliveryStore.enqueue} does.
        """
        return Deferred.fromCoroutine(self._enqueue(obj, recipients))

    async def _enqueue(self, obj: FMTPObject, recipients: Sequence[str]) -> None:
        if isinstance(recipients, str):
            raise TypeError("recipients must be a sequence of addresses, not a str")
        addresses = [normalize_address(recipient) for recipient in recipients]
        if not addresses:
            raise ValueError("no recipients")
        for address in addresses:
            if domain_of(address) == self.domain:
                raise ValueError(f"{address} is served here, not queued")
        deliveries = deliveries_to(obj.id, addresses, self._clock.seconds())
        await self._store.enqueue(obj, deliveries)
        self._kick()

    def notify(
        self,
        domain: str,
        key: str,
        verb: str,
        argument: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        lifetime: float = 60.0,
    ) -> None:
        """
        Send a volatile update to C{domain}, coalesced by C{key}, within
        C{lifetime} seconds or never (see L{VolatileQueue.notify}).

        @raise LinkFailed: on a server that links to no domain.
        """
        if self.volatile is None:
            raise LinkFailed(f"no link to {domain}: this server links to no domain")
        self.volatile.notify(domain, key, verb, argument, headers, body, lifetime)

    def register_object_type(self, object_type: str, handler: ObjectHandler) -> None:
        """
        Hand inbound objects of C{object_type} to C{handler} rather than
        to inboxes (see L{IServerLinks.register_object_type}).
        """
        self.receiver.register_object_type(object_type, handler)

    def observe_peers(self, callback: Callable[[str], object]) -> None:
        """
        Call C{callback(domain)} for each peer that proves its domain.
        """
        self._peer_observers.append(callback)

    def _peer_proved(self, domain: str) -> None:
        if self._peer_connected is not None:
            self._peer_connected(domain)
        for callback in self._peer_observers:
            try:
                callback(domain)
            except Exception:
                self._log.failure(
                    "Server links: an observer of {domain} coming back failed",
                    domain=domain,
                )

    # -- the object protocol's server side ------------------------------------

    async def accept(
        self, obj: FMTPObject, recipients: Sequence[str], peer_domain: str
    ) -> list[RecipientResult]:
        """
        What a DELIVER from C{peer_domain} does: file C{obj} for the
        recipients of this domain, and relay it for those of other
        domains if the peer is a child this server relays for (else the
        whole message is refused: no open relay).

        @return: one result per recipient, those relayed first.
        @raise FMTPError: for a refusal of the whole message, with its
            code (a malformed address, a peer that is no child, a message
            its origin does not prove...).
        """
        local, remote = [], []
        for recipient in recipients:
            address = normalize_address(recipient)
            mine = domain_of(address) == self.domain
            (local if mine else remote).append(address)
        results: list[RecipientResult] = []
        if remote:
            results += await self.relay.relay(obj, remote, peer_domain)
        if local:
            results += await self.receiver.receive(obj, local, peer_domain)
        return results

    async def confirm(self, object_id: str, digest: str, peer_domain: str) -> bool:
        """
        What a CONFIRM from C{peer_domain} answers: whether this server
        sent its domain the object with this id and digest (doc/protocol.md
        8.5; L{vouches_for}).
        """
        return await vouches_for(
            self._store, self.domain, peer_domain, object_id, digest
        )

    async def answer_hello(
        self, headers: Mapping[str, str]
    ) -> tuple[Peer, dict[str, str]]:
        """
        Check a peer's HELLO and make this server's signed answer, which
        names the peer's nonce.  A peer that proved its domain is back:
        the outbound queue sends what waits for it at once.

        @return: the peer and the headers of the answer.
        @raise FMTPError: as L{HelloVerifier.verify} does.
        """
        peer = await self.hello.verify(headers)
        if peer.verified:
            # Not waited for: the answer goes at once, and the queue
            # sends what waits for the peer beside it.
            self._peer_proved(peer.domain)
        answer = make_hello(
            self._signer, peer.domain, self._clock.seconds(), in_reply_to=peer.nonce
        )
        return peer, answer

    def address_for_child(self, peer_domain: str | None, object_id: str) -> str | None:
        """
        The draft's parent lookup: the address of another domain's user
        that a child's C{GET} asks this parent to look up (with
        L{lookup}), or L{None} for an ordinary GET.  Only children this
        server relays for are answered so, so that no server becomes an
        open lookup proxy.
        """
        if self.lookup is None or not self.relay.relays_for(peer_domain):
            return None
        try:
            address = normalize_address(object_id)
        except FMTPError:
            return None
        if domain_of(address) == self.domain:
            return None
        return address
