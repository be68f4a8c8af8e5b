"""
Domain keys from DNS: L{DNSKeyVerifier}, an L{IKeyVerifier} over the TXT
records at C{fmtpkey.<domain>}, cached by TTL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from fmtp.dns.cache import DEFAULT_CACHE_SIZE, LookupCache, NegativeAnswer
from fmtp.dns.resolver import (
    DNSAnswer,
    DNSFailure,
    NoSuchRecords,
    QueryResolver,
    txt_record_text,
)
from fmtp.errors import InvalidAddress, KeyLookupFailed, NoKeyPublished
from fmtp.interfaces import IDomainSigner, IKeyVerifier
from fmtp.keys.records import DomainPublicKey, key_record_name, usable_keys
from fmtp.keys.signing import verify_with
from fmtp.keys.static import StaticKeyVerifier
from fmtp.objects import FMTPObject, normalize_domain

__all__ = [
    "DNSKeyVerifier",
]


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
            L{fmtp.dns.hostsfile.load_hosts_file}.
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
            raise NegativeAnswer(
                NoKeyPublished(f"no usable key record at {name}"), answer.ttl
            )
        return tuple(keys), answer.ttl

    def _lookup_failed(self, failure: Failure, domain: str, name: str) -> None:
        if failure.check(NoSuchRecords):
            raise NegativeAnswer(
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
