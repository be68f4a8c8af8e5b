"""
Where a domain's fmtp server is: L{RouteResolver} asks for SRV, then MX,
then the domain's own address (DESIGN, decision 5), as mail servers do,
and caches the answers by TTL.
"""

from __future__ import annotations

import ipaddress
import random as _random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from fmtp.dns.cache import (
    DEFAULT_CACHE_SIZE,
    MAX_TTL,
    MIN_TTL,
    LookupCache,
    NegativeAnswer,
    error_text,
)
from fmtp.dns.resolver import DNSFailure, NoSuchRecords, QueryResolver
from fmtp.errors import FMTPError, InvalidAddress
from fmtp.objects import normalize_domain
from fmtp.util.hostport import DEFAULT_FMTP_PORT, ip_literal

__all__ = [
    "NoRoute",
    "Route",
    "RouteLookupFailed",
    "RouteResolver",
    "SRV_SERVICE_LABEL",
    "order_mx",
    "order_srv",
]

#: The service and protocol labels of fmtp SRV records (RFC 2782):
#: C{_fmtp._tcp.<domain>}.
SRV_SERVICE_LABEL = "_fmtp._tcp"


class NoRoute(FMTPError):
    """
    The domain offers no fmtp server: it does not exist, has no address,
    or says so itself with a null MX (RFC 7505) or an SRV record whose
    target is C{.} (RFC 2782).  Permanent.
    """

    code = 554
    default_message = "no route to domain"


class RouteLookupFailed(FMTPError):
    """
    The routes of a domain could not be looked up now: temporary.
    """

    code = 451
    default_message = "route lookup failed, try again later"


def _is_root(name: Any) -> bool:
    # The "." target of a null MX or an SRV record saying "no service".
    return str(name) == "."


def _host_name(name: Any) -> str:
    return str(name).rstrip(".").lower()


class Route(NamedTuple):
    """
    One way to reach a domain's fmtp server: connect to C{address} port
    C{port}, and expect the server to be C{host} (for TLS).
    """

    host: str
    port: int
    address: str


@dataclass(frozen=True, slots=True)
class _Target:
    priority: int
    weight: int
    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _RoutePlan:
    """
    What DNS says of a domain's routes, cached: the targets with their
    addresses, and how they came (C{"srv"}, C{"mx"}, C{"a"}).  The order
    is drawn anew at each use, since SRV weights and equal MX preferences
    call for a random order that should not stay fixed for a whole TTL.
    """

    kind: str
    targets: tuple[_Target, ...]


class _Prioritized(Protocol):
    @property
    def priority(self) -> int: ...


class _Weighted(Protocol):
    @property
    def priority(self) -> int: ...

    @property
    def weight(self) -> int: ...


P = TypeVar("P", bound=_Prioritized)
W = TypeVar("W", bound=_Weighted)


def order_srv(records: Sequence[W], rng: _random.Random | None = None) -> list[W]:
    """
    Order SRV records (or anything with C{priority} and C{weight}) as RFC
    2782 says: by priority ascending, and within a priority by weighted
    random choice, a record of weight 0 being chosen only rarely.
    """
    rng = rng if rng is not None else _random.Random()
    ordered: list[W] = []
    for priority in sorted({r.priority for r in records}):
        # Weight 0 first, as the RFC's algorithm asks, so that such a
        # record is picked only when the draw is exactly 0.
        remaining = sorted(
            (r for r in records if r.priority == priority), key=lambda r: r.weight != 0
        )
        while remaining:
            draw = rng.randint(0, sum(r.weight for r in remaining))
            running = 0
            for index, record in enumerate(remaining):
                running += record.weight
                if running >= draw:
                    ordered.append(remaining.pop(index))
                    break
    return ordered


def order_mx(records: Sequence[P], rng: _random.Random | None = None) -> list[P]:
    """
    Order MX targets (anything with a C{priority}: the preference) by
    preference, shuffling those of equal preference to spread the load,
    as RFC 5321 (section 5.1) asks.
    """
    rng = rng if rng is not None else _random.Random()
    shuffled = list(records)
    rng.shuffle(shuffled)
    return sorted(shuffled, key=lambda r: r.priority)


class RouteResolver:
    """
    Finds where a domain's fmtp server is, in the order of DESIGN decision
    5: the SRV records at C{_fmtp._tcp.<domain>} (RFC 2782), else its MX
    records (on L{DEFAULT_FMTP_PORT}), else the domain's own address.

    Every host name is resolved (A, then AAAA) through the same resolver,
    never the system's: a C{--dns} server must answer for everything, so
    a private network needs nothing in C{/etc/hosts}.  Static routes and
    addresses (a hosts file) win over DNS for what they name.

    Answers are cached by TTL in L{LookupCache}s, as keys are.
    """

    _log = Logger()

    def __init__(
        self,
        resolver: QueryResolver,
        clock: IReactorTime,
        static_routes: Mapping[str, Sequence[tuple[str, int]]] | None = None,
        default_port: int = DEFAULT_FMTP_PORT,
        static_addresses: Mapping[str, Sequence[str]] | None = None,
        rng: _random.Random | None = None,
        max_entries: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        """
        @param resolver: asks DNS (a L{DNSResolver}).
        @param clock: the source of time, for TTLs.
        @param static_routes: domain to C{(host, port)} pairs, tried in
            that order instead of DNS (the C{route} lines of a hosts file).
        @param default_port: the port of MX targets and of a domain's own
            address.
        @param static_addresses: host name to addresses, used instead of
            DNS (the C{address} lines of a hosts file).
        @param rng: the random source for SRV weights and MX ties.
        @param max_entries: how many domains, and how many hosts, to keep
            in the caches.
        """
        self._resolver = resolver
        self._clock = clock
        self.default_port = default_port
        self._rng = rng if rng is not None else _random.Random()
        self._static_routes = {
            normalize_domain(domain): [(_host_name(h), int(p)) for h, p in routes]
            for domain, routes in (static_routes or {}).items()
        }
        self._static_addresses = {
            _host_name(host): [str(ipaddress.ip_address(a)) for a in addresses]
            for host, addresses in (static_addresses or {}).items()
        }
        self._routes: LookupCache[str, _RoutePlan] = LookupCache(
            clock, self._lookup_routes, name="route", max_entries=max_entries
        )
        self._hosts: LookupCache[str, tuple[str, ...]] = LookupCache(
            clock, self._lookup_host, name="address", max_entries=max_entries
        )

    def routes_for(self, domain: str) -> Deferred[list[Route]]:
        """
        The routes to C{domain}'s fmtp server, best first.

        @return: a L{Deferred} that fires with a non-empty L{list} of
            L{Route}, or fails with L{NoRoute} (permanent) or
            L{RouteLookupFailed} (temporary).
        """
        try:
            domain = normalize_domain(domain)
        except InvalidAddress as e:
            return fail(NoRoute(f"no route: {e.message}"))
        if domain in self._static_routes:
            return ensureDeferred(self._static(domain))
        d = self._routes.get(domain)
        d.addCallback(self._order)
        return d

    def resolve_host(self, host: str) -> Deferred[list[str]]:
        """
        The addresses of C{host}: IPv4 then IPv6, from the hosts file or
        DNS (cached).  An IP address is its own answer.

        @return: a L{Deferred} that fires with a non-empty L{list} of
            addresses, or fails with L{NoRoute} (the host has no address)
            or L{RouteLookupFailed}.
        """
        literal = ip_literal(host)
        if literal is not None:
            return succeed([literal])
        d = self._hosts.get(_host_name(host))
        d.addCallback(list)
        return d

    def _order(self, plan: _RoutePlan) -> list[Route]:
        if plan.kind == "srv":
            targets = order_srv(plan.targets, self._rng)
        elif plan.kind == "mx":
            targets = order_mx(plan.targets, self._rng)
        else:
            targets = list(plan.targets)
        return [
            Route(target.host, target.port, address)
            for target in targets
            for address in target.addresses
        ]

    async def _static(self, domain: str) -> list[Route]:
        routes: list[Route] = []
        errors: list[FMTPError] = []
        for host, port in self._static_routes[domain]:
            try:
                addresses = await self.resolve_host(host)
            except (NoRoute, RouteLookupFailed) as e:
                errors.append(e)
                continue
            routes.extend(Route(host, port, address) for address in addresses)
        if routes:
            return routes
        if any(isinstance(e, RouteLookupFailed) for e in errors):
            raise RouteLookupFailed(
                f"route lookup for {domain} failed: {errors[0].message}"
            )
        raise NoRoute(f"no route to {domain}: {errors[0].message}")

    def _lookup_host(self, host: str) -> Deferred[tuple[tuple[str, ...], float]]:
        if host in self._static_addresses:
            return succeed((tuple(self._static_addresses[host]), MAX_TTL))
        return ensureDeferred(self._query_addresses(host))

    async def _query_addresses(self, host: str) -> tuple[tuple[str, ...], float]:
        results = await DeferredList(
            [self._resolver.query(host, "A"), self._resolver.query(host, "AAAA")],
            consumeErrors=True,
        )
        addresses: list[str] = []
        ttls: list[float] = []
        negative_ttls: list[float] = []
        failures: list[Failure] = []
        for ok, result in results:
            if ok:
                addresses.extend(str(r.address) for r in result.rdata)
                ttls.append(result.ttl)
            elif result.check(NoSuchRecords):
                negative_ttls.append(result.value.negative_ttl)
            else:
                failures.append(result)
        if addresses:
            return tuple(addresses), min(ttls)
        if failures:
            raise RouteLookupFailed(
                f"address lookup of {host} failed: {error_text(failures[0])}"
            )
        raise NegativeAnswer(
            NoRoute(f"{host} has no address"), min(negative_ttls, default=MIN_TTL)
        )

    async def _resolve_targets(
        self, hosts: Iterable[str]
    ) -> dict[str, tuple[tuple[str, ...], float] | Exception]:
        # Every target at once; each ends with its addresses or its error.
        unique = list(dict.fromkeys(hosts))
        found: dict[str, tuple[tuple[str, ...], float] | Exception] = {}
        for host in unique:
            literal = ip_literal(host)
            if literal is not None:
                found[host] = ((literal,), MAX_TTL)
        pending = [h for h in unique if h not in found]
        results = await DeferredList(
            [self._lookup_host(h) for h in pending], consumeErrors=True
        )
        for host, (ok, result) in zip(pending, results, strict=True):
            if ok:
                found[host] = result
            elif result.check(NegativeAnswer, RouteLookupFailed):
                found[host] = result.value
            else:
                self._log.failure(
                    "Unexpected error resolving {host}", result, host=host
                )
                found[host] = RouteLookupFailed(f"address lookup of {host} failed")
        return found

    async def _plan(
        self,
        domain: str,
        kind: str,
        candidates: list[tuple[int, int, str, int]],
        ttl: float,
    ) -> tuple[_RoutePlan, float]:
        resolved = await self._resolve_targets(host for _, _, host, _ in candidates)
        targets = []
        temporary: list[Exception] = []
        negative_ttls: list[float] = []
        for priority, weight, host, port in candidates:
            result = resolved[host]
            if isinstance(result, tuple):
                addresses, host_ttl = result
                ttl = min(ttl, host_ttl)
                targets.append(_Target(priority, weight, host, port, addresses))
            elif isinstance(result, NegativeAnswer):
                negative_ttls.append(result.ttl)
                self._log.info(
                    "{kind} target {host} of {domain} has no address",
                    kind=kind.upper(),
                    host=host,
                    domain=domain,
                )
            else:
                temporary.append(result)
        if targets:
            if temporary:
                # Some targets could not be resolved now: use the others,
                # but look again soon.
                ttl = MIN_TTL
            return _RoutePlan(kind, tuple(targets)), ttl
        if temporary:
            raise RouteLookupFailed(
                f"route lookup for {domain} failed: {error_text(temporary[0])}"
            )
        if kind == "a":
            reason = "it has no SRV, MX, A or AAAA record"
        else:
            reason = f"no {kind.upper()} target has an address"
        raise NegativeAnswer(
            NoRoute(f"no route to {domain}: {reason}"), min([ttl, *negative_ttls])
        )

    def _lookup_routes(self, domain: str) -> Deferred[tuple[_RoutePlan, float]]:
        return ensureDeferred(self._find_routes(domain))

    async def _find_routes(self, domain: str) -> tuple[_RoutePlan, float]:
        try:
            srv = await self._resolver.query(f"{SRV_SERVICE_LABEL}.{domain}", "SRV")
        except NoSuchRecords:
            pass
        except DNSFailure as e:
            # Not a reason to fall back to MX: the domain may well have SRV
            # records we could not see, and would not want MX used.
            raise RouteLookupFailed(f"route lookup for {domain} failed: {e.message}")
        else:
            records = [r for r in srv.rdata if not _is_root(r.target)]
            if not records:
                raise NegativeAnswer(
                    NoRoute(
                        f"{domain} offers no fmtp service (its SRV record at "
                        f"{SRV_SERVICE_LABEL}.{domain} has target '.')"
                    ),
                    srv.ttl,
                )
            candidates = [
                (r.priority, r.weight, _host_name(r.target), r.port) for r in records
            ]
            return await self._plan(domain, "srv", candidates, srv.ttl)

        try:
            mx = await self._resolver.query(domain, "MX")
        except NoSuchRecords as e:
            if e.nxdomain:
                raise NegativeAnswer(
                    NoRoute(f"{domain} does not exist"), e.negative_ttl
                )
        except DNSFailure as e:
            raise RouteLookupFailed(f"route lookup for {domain} failed: {e.message}")
        else:
            records = [r for r in mx.rdata if not _is_root(r.exchange)]
            if not records:
                raise NegativeAnswer(
                    NoRoute(f"{domain} accepts no mail or fmtp (null MX, RFC 7505)"),
                    mx.ttl,
                )
            candidates = [
                (r.preference, 0, _host_name(r.exchange), self.default_port)
                for r in records
            ]
            return await self._plan(domain, "mx", candidates, mx.ttl)

        return await self._plan(
            domain, "a", [(0, 0, domain, self.default_port)], MAX_TTL
        )
