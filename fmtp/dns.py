"""
DNS for fmtp: domain keys and routes to other domains' servers.

Servers find each other through DNS as mail servers do (DESIGN, decision
5) and prove who they are with keys published in DNS as DKIM does
(decision 3).  This module holds the three layers of that:

  - L{DNSResolver} asks DNS one question at a time.  It uses dnspython's
    synchronous resolver in the reactor's thread pool, so a slow or dead
    name server never blocks the reactor, and tells apart an answer that
    says "there is nothing" (L{NoSuchRecords}: permanent) from no answer
    at all (L{DNSFailure}: temporary), because the first may bounce a
    message and the second must only delay it.

  - L{LookupCache} keeps what was learned for its TTL, refreshes hot
    entries before they expire, shares a lookup among every caller
    waiting for it, and serves a stale answer while DNS is down (RFC 8767)
    rather than stop federation with every domain at once.

  - L{DNSKeyVerifier} (an L{IKeyVerifier} over C{fmtpkey.<domain>} TXT
    records) and L{RouteResolver} (SRV, then MX, then the domain's own
    address) are built on both.

Static records from a hosts file (L{fmtp.hostsfile}) win over DNS for the
domains and hosts they name: that is how a private network, or the
embedded default, runs with no DNS at all.

All time comes from an injected L{IReactorTime}, so tests drive the
caches with a L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import ipaddress
import random as _random
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    ensureDeferred,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from fmtp.errors import (
    FMTPError,
    InvalidAddress,
    KeyLookupFailed,
    NoKeyPublished,
)
from fmtp.interfaces import IDomainSigner, IKeyVerifier
from fmtp.keys.records import DomainPublicKey, key_record_name, usable_keys
from fmtp.keys.signing import verify_with
from fmtp.keys.static import StaticKeyVerifier
from fmtp.objects import FMTPObject, normalize_domain
from fmtp.util.hostport import DEFAULT_FMTP_PORT, ip_literal, parse_host_port
from fmtp.util.singleflight import SingleFlight
from fmtp.util.ttlcache import TTLCache

__all__ = [
    "DNSAnswer",
    "DNSFailure",
    "DNSKeyVerifier",
    "DNSResolver",
    "LookupCache",
    "NoRoute",
    "NoSuchRecords",
    "QueryResolver",
    "Route",
    "RouteLookupFailed",
    "RouteResolver",
    "SRV_SERVICE_LABEL",
    "order_mx",
    "order_srv",
    "parse_nameserver",
    "txt_record_text",
]

#: The service and protocol labels of fmtp SRV records (RFC 2782):
#: C{_fmtp._tcp.<domain>}.
SRV_SERVICE_LABEL = "_fmtp._tcp"

#: The negative TTL when an answer carries no SOA to take it from: RFC
#: 2308 leaves it to the resolver; 5 minutes is what dnspython and most
#: resolvers use.
DEFAULT_NEGATIVE_TTL = 300

#: Bounds on how long an answer is kept.  The floor stops a zone with
#: C{TTL 0} from turning every message into a DNS query; the ceiling makes
#: a key withdrawal (or a revocation) reach us within a day whatever TTL
#: the zone asked for.
MIN_TTL = 60.0
MAX_TTL = 86400.0

#: Negative answers are kept at most 3 hours, as RFC 2308 section 5
#: advises: a domain that just published its first key should not wait a
#: day to be believed.
MAX_NEGATIVE_TTL = 3 * 3600.0

#: How long past its expiry an answer may still be served while DNS fails
#: (RFC 8767 suggests one to three days).
STALE_FOR = 86400.0

#: After a failed refresh of an expired entry, serve it stale without
#: asking DNS again for this long (RFC 8767's "failure recheck timer"), so
#: that while DNS is down callers get the stale answer at once instead of
#: each waiting for a timeout first.
FAILURE_RECHECK = 30.0

#: An entry used in the last tenth of its life is refreshed in the
#: background, so a domain in steady use never sees a cache miss.
REFRESH_FRACTION = 0.1

#: Default bound on the number of entries of each cache.
DEFAULT_CACHE_SIZE = 10_000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class NoSuchRecords(FMTPError):
    """
    DNS answered that the name does not exist (NXDOMAIN) or has no records
    of the type asked for: permanent, and cacheable for C{negative_ttl}.

    @ivar negative_ttl: how long the answer may be cached, from the SOA the
        answer carried (RFC 2308), else L{DEFAULT_NEGATIVE_TTL}.
    @ivar nxdomain: whether the name itself does not exist, rather than
        having no records of that type.
    """

    code = 554
    default_message = "no such DNS records"

    def __init__(
        self,
        message: str | None = None,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        nxdomain: bool = False,
    ) -> None:
        super().__init__(message)
        self.negative_ttl = negative_ttl
        self.nxdomain = nxdomain


class DNSFailure(FMTPError):
    """
    DNS gave no usable answer (time-out, SERVFAIL, REFUSED, no name
    server configured): temporary, try again later.
    """

    code = 451
    default_message = "DNS lookup failed, try again later"


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


@dataclass(frozen=True, slots=True)
class DNSAnswer:
    """
    The records DNS gave for one question.

    @ivar rdata: the dnspython rdata of the answer (C{.strings} of a TXT,
        C{.priority}, C{.weight}, C{.port}, C{.target} of an SRV...).
    @ivar ttl: how long, in seconds, the answer may be kept: the smallest
        TTL along any CNAME chain that led to it.
    """

    rdata: tuple[Any, ...]
    ttl: float


class QueryResolver(Protocol):
    """
    What the key verifier, the route resolver and C{check-dns} need of a
    resolver: L{DNSResolver}, or a fake one in tests.
    """

    def query(self, name: str, rdtype: str) -> Deferred[DNSAnswer]:
        """
        Ask for the records of type C{rdtype} (C{"TXT"}, C{"SRV"}...) at
        C{name}; fail with L{NoSuchRecords} or L{DNSFailure}.
        """


def parse_nameserver(text: str) -> tuple[str, int]:
    """
    Parse the C{--dns} option: C{HOST[:PORT]} with C{HOST} an IPv4 address
    or a bracketed IPv6 address (C{[::1]:5353}); the port defaults to 53.

    @raise ValueError: with a message fit for the command line.
    """
    return parse_host_port(text, default_port=53, names=False)


def _negative_ttl(response: dns.message.Message | None) -> float:
    """
    The negative TTL of a response without the records asked for: the
    smaller of the SOA's TTL and its minimum field (RFC 2308, section 5),
    which dnspython works out when following the answer chain.
    """
    if response is None:
        return DEFAULT_NEGATIVE_TTL
    try:
        return float(response.resolve_chaining().minimum_ttl)
    except dns.exception.DNSException:
        return DEFAULT_NEGATIVE_TTL


class DNSResolver:
    """
    Asks DNS through dnspython's synchronous resolver, run in the
    reactor's thread pool.

    dnspython has an asynchronous API, but only for asyncio and trio; a
    thread per query in flight is what Twisted's own
    L{ThreadedResolver} does for host names, and the pool bounds it.

    dnspython's own cache is off: L{DNSKeyVerifier} and L{RouteResolver}
    cache by what an answer means, with stale serving and background
    refresh dnspython's cache does not have.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IReactorThreads,
        nameservers: Sequence[tuple[str, int]] | None = None,
        timeout: float = 5.0,
    ) -> None:
        """
        @param reactor: the reactor whose thread pool runs the queries.
        @param nameservers: C{(address, port)} of the name servers to ask
            (the C{--dns} option, see L{parse_nameserver}), or L{None} for
            the system's (C{/etc/resolv.conf}).
        @param timeout: how long, in seconds, one query may take in all,
            over every name server.
        """
        self._reactor = reactor
        self._config_error: str | None = None
        if nameservers is None:
            try:
                resolver = dns.resolver.Resolver(configure=True)
            except dns.exception.DNSException as e:
                # No resolv.conf (a container, say): fail each query as a
                # temporary failure, so the server still starts and serves
                # its local users.
                resolver = dns.resolver.Resolver(configure=False)
                self._config_error = f"no name server configured ({e})"
        else:
            if not nameservers:
                raise ValueError("at least one name server is needed")
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers
            ]
        # Share the time among the servers, so that a dead first server
        # leaves the others time to answer.
        resolver.lifetime = timeout
        resolver.timeout = timeout / max(1, min(3, len(resolver.nameservers)))
        resolver.cache = None
        self._resolver = resolver

    def __repr__(self) -> str:
        servers = ", ".join(str(ns) for ns in self._resolver.nameservers)
        return f"<DNSResolver {servers or 'unconfigured'}>"

    def query(self, name: str, rdtype: str) -> Deferred[DNSAnswer]:
        """
        Ask for the records of type C{rdtype} at C{name} (an absolute name,
        with or without the final dot; the search list is never used).

        @return: a L{Deferred} that fires with a L{DNSAnswer} holding at
            least one record, or fails with L{NoSuchRecords} or
            L{DNSFailure}.
        """
        if self._config_error is not None:
            return fail(DNSFailure(self._config_error))
        return deferToThreadPool(
            self._reactor,
            self._reactor.getThreadPool(),
            self._query_in_thread,
            name,
            rdtype,
        )

    def _query_in_thread(self, name: str, rdtype: str) -> DNSAnswer:
        # Runs in a pool thread: no logging, no reactor calls, only
        # dnspython and exceptions.
        what = f"{rdtype} {name}"
        try:
            qname = dns.name.from_text(name)
            type_ = dns.rdatatype.RdataType.make(rdtype)
        except dns.exception.DNSException as e:
            # A name that cannot be written in DNS has no records.
            raise NoSuchRecords(f"{name!r} is not a DNS name: {e}") from None
        try:
            answer = self._resolver.resolve(
                qname, type_, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as e:
            responses = list(e.responses().values())
            raise NoSuchRecords(
                f"{name} does not exist",
                _negative_ttl(responses[0] if responses else None),
                nxdomain=True,
            ) from None
        except dns.resolver.LifetimeTimeout:
            raise DNSFailure(f"DNS lookup of {what} timed out") from None
        except dns.resolver.NoNameservers as e:
            # Every server answered SERVFAIL, REFUSED or garbage.
            raise DNSFailure(f"DNS lookup of {what} failed: {e}") from None
        except dns.exception.DNSException as e:
            raise DNSFailure(f"DNS lookup of {what} failed: {e}") from None
        except OSError as e:
            raise DNSFailure(f"DNS lookup of {what} failed: {e}") from None
        if answer.rrset is None or len(answer.rrset) == 0:
            raise NoSuchRecords(
                f"no {rdtype} records at {name}", _negative_ttl(answer.response)
            )
        return DNSAnswer(tuple(answer.rrset), float(answer.chaining_result.minimum_ttl))


class _Negative(Exception):
    """
    What a lookup given to L{LookupCache} raises for a permanent answer
    that should be remembered: the error to give callers, and for how long.
    """

    def __init__(self, error: FMTPError, ttl: float) -> None:
        super().__init__(error.message)
        self.error = error
        self.ttl = ttl


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V | None
    error: FMTPError | None
    stored: float
    expires: float
    refresh_at: float
    recheck_at: float = 0.0

    def result(self) -> Deferred[V]:
        if self.error is not None:
            # A fresh exception each time: a Failure keeps a traceback,
            # and callers should not share one.
            return fail(type(self.error)(self.error.message))
        return succeed(self.value)  # type: ignore[arg-type]


class LookupCache(Generic[K, V]):
    """
    A bounded cache of DNS-derived answers, by TTL.

      - An answer is kept for its TTL, clamped to [C{min_ttl}, C{max_ttl}].
      - Used in the last L{REFRESH_FRACTION} of its life, it is looked up
        again in the background, and the caller gets the cached answer at
        once: a domain in steady use never waits for DNS.
      - Callers asking for a key whose lookup is in flight wait for that
        one lookup (no thundering herd on a cold or expired key).
      - A permanent answer (the lookup raises L{_Negative}) is cached for
        its own TTL, clamped to [C{min_ttl}, C{max_negative_ttl}].
      - A temporary failure leaves any answer in place, and one that
        expired less than C{stale_for} ago is served rather than the
        failure (RFC 8767): a DNS outage should not stop federation with
        every domain we already know.  Negative answers are not served
        stale: a stale "no key" would bounce a message for good, while the
        temporary failure only delays it.
      - At most C{max_entries} keys are kept; the least recently used go.

    The entries live in a L{TTLCache} for as long as they may be served
    (stale included), and lookups are shared through a L{SingleFlight}.

    @param lookup: given a key, returns a L{Deferred} that fires with
        C{(value, ttl)}, or fails with L{_Negative} for a cacheable
        permanent answer, or with the temporary error to give callers.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        lookup: Callable[[K], Deferred[tuple[V, float]]],
        name: str = "DNS",
        max_entries: int = DEFAULT_CACHE_SIZE,
        min_ttl: float = MIN_TTL,
        max_ttl: float = MAX_TTL,
        max_negative_ttl: float = MAX_NEGATIVE_TTL,
        stale_for: float = STALE_FOR,
        refresh_fraction: float = REFRESH_FRACTION,
        failure_recheck: float = FAILURE_RECHECK,
    ) -> None:
        self._clock = clock
        self._lookup = lookup
        self._name = name
        self._min_ttl = min_ttl
        self._max_ttl = max_ttl
        self._max_negative_ttl = max_negative_ttl
        self._stale_for = stale_for
        self._refresh_fraction = refresh_fraction
        self._failure_recheck = failure_recheck
        self._entries: TTLCache[K, _Entry[V]] = TTLCache(clock, max_entries)
        self._lookups: SingleFlight[K, _Entry[V]] = SingleFlight()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def in_flight(self) -> int:
        """
        How many lookups are running (for tests and metrics).
        """
        return len(self._lookups)

    def get(self, key: K) -> Deferred[V]:
        """
        The answer for C{key}, from the cache or from a lookup.
        """
        now = self._clock.seconds()
        entry = self._entries.get(key)
        if entry is not None:
            if now < entry.expires:
                if now >= entry.refresh_at and key not in self._lookups:
                    self._log.debug(
                        "Refreshing {cache} entry {key!r} in the background",
                        cache=self._name,
                        key=key,
                    )
                    self._lookups.start(key, lambda: self._look_up(key))
                return entry.result()
            if entry.error is None and now < entry.recheck_at:
                # Expired but not by more than stale_for (the cache would
                # have dropped it), and DNS failed a moment ago.
                return succeed(entry.value)  # type: ignore[arg-type]
        d = self._lookups.run(key, lambda: self._look_up(key))
        # Each caller gets the value, or a fresh error, from the entry.
        return d.addCallback(_Entry.result)

    def forget(self, key: K) -> None:
        """
        Drop what is known of C{key}, so the next use looks it up again.
        """
        self._entries.pop(key)

    def _look_up(self, key: K) -> Deferred[_Entry[V]]:
        return maybeDeferred(self._lookup, key).addBoth(self._finished, key)

    def _store(
        self, key: K, value: V | None, error: FMTPError | None, ttl: float
    ) -> _Entry[V]:
        now = self._clock.seconds()
        maximum = self._max_ttl if error is None else self._max_negative_ttl
        ttl = min(max(float(ttl), self._min_ttl), maximum)
        entry = _Entry(
            value, error, now, now + ttl, now + ttl * (1 - self._refresh_fraction)
        )
        # An answer may be served stale once expired; a negative one not.
        self._entries.set(key, entry, ttl + (self._stale_for if error is None else 0))
        return entry

    def _finished(
        self, result: tuple[V, float] | Failure, key: K
    ) -> _Entry[V] | Failure:
        """
        Keep what a lookup found, and say what its waiters get: an entry,
        or the failure.
        """
        now = self._clock.seconds()
        if not isinstance(result, Failure):
            value, ttl = result
            return self._store(key, value, None, ttl)
        if result.check(_Negative):
            negative = result.value
            return self._store(key, None, negative.error, negative.ttl)
        old = self._entries.peek(key)
        if old is not None and old.error is None:
            if now >= old.expires:
                self._log.warn(
                    "Serving stale {cache} entry {key!r} (expired {ago:.0f} s "
                    "ago) because the lookup failed: {error}",
                    cache=self._name,
                    key=key,
                    ago=now - old.expires,
                    error=_describe(result),
                )
                old.recheck_at = now + self._failure_recheck
            else:
                # Try again a little later, not at every use meanwhile.
                old.refresh_at = min(old.expires, now + self._failure_recheck)
                self._log.info(
                    "Background refresh of {cache} entry {key!r} failed, "
                    "keeping it: {error}",
                    cache=self._name,
                    key=key,
                    error=_describe(result),
                )
            return old
        if not self._lookups.waiting(key):
            self._log.info(
                "Background refresh of {cache} entry {key!r} failed: {error}",
                cache=self._name,
                key=key,
                error=_describe(result),
            )
        return result


def _describe(failure: Failure | BaseException) -> str:
    value = failure.value if isinstance(failure, Failure) else failure
    if isinstance(value, FMTPError):
        return value.message
    return f"{type(value).__name__}: {value}"


def txt_record_text(rdata: Any) -> str:
    """
    The text of one TXT record: its character-strings joined with nothing
    between them, as DKIM (RFC 6376, section 3.6.2.2) does, since one
    string holds at most 255 bytes.  Bytes that are not UTF-8 are
    replaced; such a record is not a key record anyway.
    """
    return b"".join(rdata.strings).decode("utf-8", "replace")


def _is_root(name: Any) -> bool:
    # The "." target of a null MX or an SRV record saying "no service".
    return str(name) == "."


def _host_name(name: Any) -> str:
    return str(name).rstrip(".").lower()


@implementer(IKeyVerifier)
class DNSKeyVerifier:
    """
    An L{IKeyVerifier} that finds a domain's keys in the TXT records at
    C{fmtpkey.<domain>}, caching them by TTL in a L{LookupCache}.

    Static records (a hosts file, this server's own key) win over DNS for
    their domains, and are read through a L{StaticKeyVerifier}, so a bad
    record is treated the same wherever it comes from.

    Failures map to the three replies L{IKeyVerifier} asks for: no record,
    or none usable, is L{NoKeyPublished} (permanent, cached for the
    negative TTL); a DNS failure with nothing to serve, even stale, is
    L{KeyLookupFailed} (temporary); a signature that does not verify is
    L{BadSignature}.
    """

    _log = Logger()

    def __init__(
        self,
        resolver: QueryResolver,
        clock: IReactorTime,
        static: Mapping[str, Sequence[str]] | None = None,
        max_entries: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        """
        @param resolver: asks DNS (a L{DNSResolver}).
        @param clock: the source of time, for TTLs and key expiry.
        @param static: domain to key record texts, as read by
            L{fmtp.hostsfile.load_hosts_file}.
        @param max_entries: how many domains to keep in the cache.
        """
        self._resolver = resolver
        self._clock = clock
        self._static = StaticKeyVerifier({}, clock)
        self._static_domains: set[str] = set()
        for domain, texts in (static or {}).items():
            self.add_static_records(domain, texts)
        self._cache: LookupCache[str, tuple[DomainPublicKey, ...]] = LookupCache(
            clock, self._lookup, name="key", max_entries=max_entries
        )

    def add_static_records(self, domain: str, texts: Iterable[str]) -> None:
        """
        Add static key records for C{domain}: from then on it is never
        looked up in DNS.
        """
        self._static.add_records(domain, texts)
        self._static_domains.add(normalize_domain(domain))

    def add_signer(self, signer: IDomainSigner) -> None:
        """
        Know C{signer}'s own key statically, so that a server can always
        verify what it signed itself, whatever DNS says or while it is
        down.  Its domain is then never looked up in DNS.
        """
        self._static.add_signer(signer)
        self._static_domains.add(signer.domain)

    def keys_for_domain(self, domain: str) -> Deferred[list[DomainPublicKey]]:
        """
        See L{IKeyVerifier.keys_for_domain}.
        """
        try:
            domain = normalize_domain(domain)
        except InvalidAddress as e:
            return fail(NoKeyPublished(f"no key published: {e.message}"))
        if domain in self._static_domains:
            return self._static.keys_for_domain(domain)
        # A list of its own for each caller: the cached tuple is shared.
        return self._cache.get(domain).addCallback(list)

    def verify_object(self, obj: FMTPObject) -> Deferred[DomainPublicKey]:
        """
        See L{IKeyVerifier.verify_object}.
        """
        return verify_with(self, obj, self._clock)

    def _lookup(
        self, domain: str
    ) -> Deferred[tuple[tuple[DomainPublicKey, ...], float]]:
        name = key_record_name(domain)
        d = self._resolver.query(name, "TXT")
        d.addCallbacks(
            self._got_records,
            self._lookup_failed,
            callbackArgs=(domain, name),
            errbackArgs=(domain, name),
        )
        return d

    def _got_records(
        self, answer: DNSAnswer, domain: str, name: str
    ) -> tuple[tuple[DomainPublicKey, ...], float]:
        texts = (txt_record_text(rdata) for rdata in answer.rdata)
        # Other TXT records at the same name are not ours to judge
        # (parse_key_record would refuse them for what they are).
        ours = [text for text in texts if text.lstrip(" \t").startswith("v=")]
        keys = usable_keys(domain, ours, self._log)
        if not keys:
            raise _Negative(
                NoKeyPublished(f"no usable key record at {name}"), answer.ttl
            )
        return tuple(keys), answer.ttl

    def _lookup_failed(self, failure: Failure, domain: str, name: str) -> None:
        if failure.check(NoSuchRecords):
            raise _Negative(
                NoKeyPublished(f"no key published for {domain} (no TXT at {name})"),
                failure.value.negative_ttl,
            )
        if failure.check(DNSFailure):
            raise KeyLookupFailed(
                f"key lookup for {domain} failed, try again later: "
                f"{failure.value.message}"
            )
        self._log.failure(
            "Unexpected error looking up keys of {domain}", failure, domain=domain
        )
        raise KeyLookupFailed(f"key lookup for {domain} failed, try again later")


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
                f"address lookup of {host} failed: {_describe(failures[0])}"
            )
        raise _Negative(
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
            elif result.check(_Negative, RouteLookupFailed):
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
            elif isinstance(result, _Negative):
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
                f"route lookup for {domain} failed: {_describe(temporary[0])}"
            )
        if kind == "a":
            reason = "it has no SRV, MX, A or AAAA record"
        else:
            reason = f"no {kind.upper()} target has an address"
        raise _Negative(
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
                raise _Negative(
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
                raise _Negative(NoRoute(f"{domain} does not exist"), e.negative_ttl)
        except DNSFailure as e:
            raise RouteLookupFailed(f"route lookup for {domain} failed: {e.message}")
        else:
            records = [r for r in mx.rdata if not _is_root(r.exchange)]
            if not records:
                raise _Negative(
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
