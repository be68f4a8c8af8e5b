"""
Asking DNS one question at a time.

L{DNSResolver} uses dnspython's synchronous resolver in the reactor's
thread pool, so a slow or dead name server never blocks the reactor, and
tells apart an answer that says "there is nothing" (L{NoSuchRecords}:
permanent) from no answer at all (L{DNSFailure}: temporary), because the
first may bounce a message and the second must only delay it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from fmtp.errors import FMTPError
from fmtp.util.hostport import parse_host_port

__all__ = [
    "DEFAULT_NEGATIVE_TTL",
    "DNSAnswer",
    "DNSFailure",
    "DNSResolver",
    "NoSuchRecords",
    "QueryResolver",
    "parse_nameserver",
    "txt_record_text",
]

#: The negative TTL when an answer carries no SOA to take it from: RFC
#: 2308 leaves it to the resolver; 5 minutes is what dnspython and most
#: resolvers use.
DEFAULT_NEGATIVE_TTL = 300


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


def txt_record_text(rdata: Any) -> str:
    """
    The text of one TXT record: its character-strings joined with nothing
    between them, as DKIM (RFC 6376, section 3.6.2.2) does, since one
    string holds at most 255 bytes.  Bytes that are not UTF-8 are
    replaced; such a record is not a key record anyway.
    """
    return b"".join(rdata.strings).decode("utf-8", "replace")
