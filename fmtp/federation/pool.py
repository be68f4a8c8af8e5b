"""
The pool of outbound server links: one open link per destination domain,
shared, reused, opened once for concurrent callers, closed when idle.

A server that has a message for C{lost@lenore.org} needs a connection to
lenore.org's fmtp server on which lenore.org has proved who it is.  Making
one is the most expensive part of delivery (DNS, TCP, maybe TLS, two
signatures), so, as Synapse's federation client and every mail server do,
links are pooled: one open link per destination domain, shared by every
delivery, GET and CONFIRM to that domain, pipelined, and closed after it
has been idle a while.

Opening a link (L{LinkPool.link_to}) tries, in the order of DESIGN
decision 6, the recipient's own C{Route} (a C{tcp://HOST:PORT} from its
user object), then the domain's routes from DNS (SRV, MX, A: the
C{routes_for} callable), then this server's parent relay.  Each target is
tried by the L{Connector} (L{fmtp.federation.connect}).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import CancelledError, DeferredList
from twisted.logger import Logger

from fmtp.delivery import RecipientResult
from fmtp.errors import InvalidAddress
from fmtp.federation.connect import Connector
from fmtp.federation.failures import (
    LinkError,
    LinkFailed,
    LinkLost,
    LinkRefused,
    as_link_error,
    combine_failures,
)
from fmtp.federation.hello import HelloVerifier
from fmtp.federation.link import ServerLink
from fmtp.federation.targets import (
    VIA_DNS,
    VIA_PARENT,
    VIA_PREFERRED,
    LinkTarget,
    ParentRoute,
    ResolveHost,
    RoutesFor,
    preferred_routes,
)
from fmtp.federation.tls import TLS_OPPORTUNISTIC, TLSPolicy
from fmtp.interfaces import IDomainSigner
from fmtp.objects import FMTPObject, normalize_domain
from fmtp.util.hostport import ip_literal
from fmtp.util.singleflight import SingleFlight
from fmtp.util.ttlcache import TTLCache
from fmtp.wire import DEFAULT_LIMITS, Limits


class LinkPool:
    """
    The open links of this server, one per destination domain, and how to
    open more.

    @param reactor: connects sockets (C{IReactorTCP}).
    @param signer: this domain's key, for our HELLO.
    @param hello_verifier: checks HELLO answers addressed to this domain.
    @param routes_for: the domain's routes from DNS, best first (the
        C{routes_for} of L{fmtp.dns.routes.RouteResolver}).
    @param tls_policy: the default TLS policy
        (L{fmtp.federation.tls.TLS_POLICIES}).
    @param tls_policies: per-domain overrides of C{tls_policy}.
    @param tls_trust_root: what a required certificate must chain to:
        L{None} for the platform's trust store, a PEM file path, or a
        Twisted C{Certificate} / trust root.
    @param connect_timeout: seconds for one route, from connecting to the
        end of the HELLO.
    @param idle_timeout: seconds a link may sit unused before it closes
        (kept below the server side's 600 so that we, not the peer, close).
    @param parent: the parent relay, tried when every route fails: see
        L{ParentRoute.coerce}.
    @param resolve_host: host name to addresses, for routes named in user
        objects; by default C{routes_for}'s own resolver's
        C{resolve_host}, so that C{--dns} answers for those too.
    @param clock: time and timers (idle, timeouts); by default the
        reactor.
    @param request_timeout: seconds a link waits for each reply before
        taking the peer for gone (the request is then retried on a fresh
        link, later).
    @param max_failed_routes: most failed routes remembered.
    """

    _log = Logger()

    #: Seconds before a user's route that failed is tried again, by any
    #: delivery or link (doc/protocol.md 8.1).
    route_retry_after = 600.0

    def __init__(
        self,
        reactor: Any,
        signer: IDomainSigner,
        hello_verifier: HelloVerifier,
        routes_for: RoutesFor,
        tls_policy: str = TLS_OPPORTUNISTIC,
        tls_trust_root: Any = None,
        connect_timeout: float = 10.0,
        idle_timeout: float = 300.0,
        parent: Any = None,
        resolve_host: ResolveHost | None = None,
        tls_policies: Mapping[str, str] | None = None,
        clock: Any = None,
        limits: Limits = DEFAULT_LIMITS,
        request_timeout: float = 120.0,
        max_failed_routes: int = 10_000,
    ) -> None:
        self._clock = clock if clock is not None else reactor
        self._routes_for = routes_for
        if resolve_host is None:
            owner = getattr(routes_for, "__self__", None)
            resolve_host = getattr(owner, "resolve_host", None)
        self._resolve_host = resolve_host
        self._connector = Connector(
            reactor,
            self._clock,
            signer,
            hello_verifier,
            TLSPolicy(tls_policy, tls_policies, tls_trust_root),
            limits,
            connect_timeout,
            idle_timeout or None,
            request_timeout,
        )
        self.parent = ParentRoute.coerce(parent)
        #: destination domain -> the link that serves it (possibly the
        #: parent's).
        self._links: dict[str, ServerLink] = {}
        self._parent_link: ServerLink | None = None
        self._all: set[ServerLink] = set()
        #: Link attempts (and the user lookups of
        #: L{fmtp.federation.userdir.RemoteUsers}), each shared by every
        #: caller asking for the same thing meanwhile; L{close} cancels them.
        self.attempts: SingleFlight[tuple[str, str], Any] = SingleFlight()
        #: (host, port) of users' routes that failed, until they may be
        #: tried again.
        self._failed_routes: TTLCache[tuple[str, int], None] = TTLCache(
            self._clock, max_failed_routes
        )
        self._closing = False

    # -- public API ---------------------------------------------------------

    def links(self) -> list[ServerLink]:
        """
        The open links, for status pages and tests.
        """
        return [link for link in self._all if link.connected]

    def link_for(self, domain: str) -> ServerLink | None:
        """
        The open link that serves C{domain}, if any; never opens one.
        """
        link = self._links.get(normalize_domain(domain))
        return link if link is not None and link.connected else None

    async def link_to(
        self,
        domain: str,
        preferred: Iterable[str | tuple[str, int]] = (),
        allow_unverified: bool = False,
    ) -> ServerLink:
        """
        A link to C{domain}'s server: the open one, or a new one made
        through C{preferred} routes (C{tcp://HOST:PORT} strings or
        C{(host, port)}), then the domain's DNS routes, then the parent.
        Concurrent callers share one attempt.

        @param allow_unverified: accept a peer whose domain publishes no
            key (only CONFIRM may use such a link).
        @raise LinkError: 4xx temporary or 5xx permanent, naming the
            domain and what failed on each route.
        """
        domain = self._domain(domain)
        link = self.link_for(domain)
        if link is None:
            routes = preferred_routes(domain, preferred)
            link = await self.attempts.run(
                ("any", domain), lambda: self._establish(domain, routes, False)
            )
        if not link.peer.verified and not allow_unverified:
            raise LinkRefused(
                f"{link.domain} publishes no key, so its server cannot prove who "
                "it is; messages are only handed to servers that do"
            )
        return link

    async def confirm_link(self, domain: str) -> ServerLink:
        """
        A link on which to ask C{domain} to confirm a message: to its own
        server, found through DNS (never a route a payload named, never the
        parent), possibly unverified (a domain with no key is exactly the
        one that must be asked).
        """
        domain = self._domain(domain)
        link = self.link_for(domain)
        if link is not None and link.can_confirm_for(domain):
            return link
        return await self.attempts.run(
            ("direct", domain), lambda: self._establish(domain, [], True)
        )

    async def deliver(
        self,
        domain: str,
        obj: FMTPObject,
        recipients: Sequence[str],
        route_hint: str | Sequence[str] | None = None,
    ) -> list[RecipientResult]:
        """
        Deliver C{obj} to C{recipients} of C{domain} on a pooled link.

        @param route_hint: the recipient's C{Route} property (or several),
            tried first when a new link is needed.
        @raise LinkError: no link (see L{link_to}), the whole message
            refused (L{DeliveryFailed}), or the connection lost (temporary:
            the message stays queued).
        """
        hints = [route_hint] if isinstance(route_hint, str) else list(route_hint or ())
        hinted = await self._hinted_link(self._domain(domain), hints)
        if hinted is not None:
            try:
                return await hinted.deliver(obj, recipients)
            except LinkLost as e:
                self._log.info(
                    "Link to {domain} via its route lost ({why}); using the "
                    "domain's server",
                    domain=domain,
                    why=e.message,
                )
        for attempt in (1, 2):
            # Not the hints again: each was just tried, or is resting.
            link = await self.link_to(domain)
            reused = link.completed > 0
            try:
                return await link.deliver(obj, recipients)
            except LinkLost as e:
                # A link that sat idle may have been closed by the peer
                # just as we used it.  DELIVER is idempotent by id, so one
                # more try on a fresh link is safe; a fresh link that fails
                # is a real failure.
                if attempt == 2 or not reused:
                    raise
                self._log.info(
                    "Retrying {id} on a new link to {domain}: {why}",
                    id=obj.id,
                    domain=domain,
                    why=e.message,
                )
        raise AssertionError("unreachable")

    async def _hinted_link(
        self, domain: str, hints: Sequence[str]
    ) -> ServerLink | None:
        """
        A link through a recipient's own route (its C{Route} property),
        tried before the domain's server as the FMTP draft's route
        negotiation says, even when a link to the domain is already open.

        @return: the link, or L{None} to use the domain's server.
        """
        for host, port in preferred_routes(domain, hints):
            open_link = self.link_for(domain)
            if (
                open_link is not None
                and open_link.via == VIA_PREFERRED
                and (
                    open_link.target.host,
                    open_link.target.port,
                )
                == (host, port)
            ):
                return open_link
            link = await self._through_route(domain, host, port, [])
            if link is not None:
                return link
        return None

    async def _through_route(
        self,
        domain: str,
        host: str,
        port: int,
        failures: list[LinkError],
        tried: set[tuple[str | None, int]] | None = None,
    ) -> ServerLink | None:
        """
        A new link to C{domain} through one of a recipient's own routes,
        unless that route failed less than L{route_retry_after} seconds
        ago (doc/protocol.md 8.1).  Every way of opening a link with a
        route goes through here, so that an unreachable route costs one
        attempt per retry period, not one per message or per link.

        @param failures: gets what failed on this route.
        @param tried: gets the C{(address, port)} pairs tried.
        @return: the registered link, or L{None}.
        """
        if (host, port) in self._failed_routes:
            return None
        route_failures: list[LinkError] = []
        for address in await self._addresses(host, domain, route_failures):
            if tried is not None:
                tried.add((address, port))
            target = LinkTarget(VIA_PREFERRED, host, port, address)
            try:
                link = await self._connector.attempt(target, domain)
            except LinkError as e:
                route_failures.append(e)
                continue
            return self._register(domain, link)
        # Stored anew: the oldest failures are forgotten first.
        self._failed_routes.set((host, port), None, self.route_retry_after)
        self._log.info(
            "Route {host}:{port} of {domain} unreachable ({why}); not tried again "
            "for {rest:g} seconds; using the domain's server",
            host=host,
            port=port,
            domain=domain,
            why="; ".join(e.message for e in route_failures) or "no address",
            rest=self.route_retry_after,
        )
        failures.extend(route_failures)
        return None

    async def close(self) -> None:
        """
        Stop: cancel attempts in progress and close every link.
        """
        self._closing = True
        self.attempts.cancel_all()
        await DeferredList([link.close() for link in list(self._all)])

    # -- opening links ----------------------------------------------------------

    def _domain(self, domain: str) -> str:
        if self._closing:
            raise LinkFailed(f"not linking to {domain}: shutting down", 421)
        try:
            return normalize_domain(domain)
        except InvalidAddress as e:
            raise LinkRefused(f"no link to {domain!r}: {e.message}", e.code) from None

    async def _establish(
        self, domain: str, preferred: list[tuple[str, int]], direct_only: bool
    ) -> ServerLink:
        failures: list[LinkError] = []
        tried: set[tuple[str | None, int]] = set()

        async def attempt(
            target: LinkTarget, expected: str | None
        ) -> ServerLink | None:
            key = (target.address, target.port)
            if target.endpoint is None and key in tried:
                return None
            tried.add(key)
            try:
                return await self._connector.attempt(target, expected)
            except LinkError as e:
                self._log.info(
                    "Link to {domain} via {via} {target} failed: {error}",
                    domain=domain,
                    via=target.via,
                    target=target.describe(),
                    error=e.message,
                )
                failures.append(e)
                return None

        if not direct_only:
            for host, port in preferred:
                link = await self._through_route(domain, host, port, failures, tried)
                if link is not None:
                    return link

        try:
            routes = list(await self._routes_for(domain))
        except CancelledError:
            raise
        except Exception as e:
            failures.append(as_link_error(e, f"routes of {domain}"))
            routes = []
        for route in routes:
            target = LinkTarget(VIA_DNS, route.host, int(route.port), route.address)
            link = await attempt(target, domain)
            if link is not None:
                return self._register(domain, link)

        if self.parent is not None and not direct_only:
            try:
                link = await self.link_to_parent()
            except LinkError as e:
                failures.append(e)
            else:
                self._log.info(
                    "Relaying for {domain} through parent {parent}",
                    domain=domain,
                    parent=link.domain,
                )
                self._links[domain] = link
                return link

        raise combine_failures(domain, failures)

    async def link_to_parent(self) -> ServerLink:
        """
        The link to this server's parent relay: the open one, or a new one
        (whose HELLO must be signed).
        """
        link = self._parent_link
        if link is not None and link.connected:
            return link
        return await self.attempts.run(("parent", ""), self._open_parent)

    async def _open_parent(self) -> ServerLink:
        parent = self.parent
        assert parent is not None
        failures: list[LinkError] = []
        if parent.endpoint is not None:
            targets = [
                LinkTarget(VIA_PARENT, parent.domain or "", 0, endpoint=parent.endpoint)
            ]
        else:
            addresses = await self._addresses(parent.host, "the parent", failures)
            targets = [
                LinkTarget(VIA_PARENT, parent.host, parent.port, address)
                for address in addresses
            ]
        for target in targets:
            try:
                link = await self._connector.attempt(target, parent.domain)
            except LinkError as e:
                failures.append(e)
                continue
            if not link.peer.verified:
                link.close()
                failures.append(
                    LinkRefused(f"parent {link.domain} did not sign its HELLO")
                )
                continue
            self._parent_link = link
            self._track(link)
            return link
        raise combine_failures(
            "the parent", failures, prefix="parent relay unreachable"
        )

    async def _addresses(
        self, host: str, domain: str, failures: list[LinkError]
    ) -> list[str]:
        literal = ip_literal(host)
        if literal is not None:
            return [literal]
        if self._resolve_host is None:
            failures.append(
                LinkFailed(f"route {host} for {domain}: no resolver for host names")
            )
            return []
        try:
            return [str(a) for a in await self._resolve_host(host)]
        except CancelledError:
            raise
        except Exception as e:
            failures.append(as_link_error(e, f"route {host} for {domain}"))
            return []

    def _register(self, domain: str, link: ServerLink) -> ServerLink:
        self._links[domain] = link
        self._track(link)
        return link

    def _track(self, link: ServerLink) -> None:
        if link not in self._all:
            self._all.add(link)
            link.on_close(self._forget)

    def _forget(self, link: ServerLink) -> None:
        self._all.discard(link)
        for domain in [d for d, held in self._links.items() if held is link]:
            del self._links[domain]
        if self._parent_link is link:
            self._parent_link = None
