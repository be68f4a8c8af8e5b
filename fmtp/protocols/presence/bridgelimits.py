"""
The rate limit of the presence protocol's datagram listener: a bridge
the admin gave source networks (C{fmtp bridge add NAME --source CIDR
--rate N}) sends from them at its own rate, shared by all of them, rather
than at an ordinary source's 20 datagrams a second (doc/protocol.md 5 and
9.6).

A source address is not proven by a datagram, so everything a spoofer of
a bridge's networks can make the server do is bounded by the bridge's own
rate (which the bridge's real datagrams share: a spoofer can crowd out
the bridge, as on any shared link, but can make the server do no more),
and what it can make the server send back is bounded tighter: refusals to
a bridge's networks (a 432 for a missing cookie, a 535 for a bad MAC)
are at most an ordinary source's rate for the whole bridge, and never
larger than their request, so the bridge cannot be flooded through the
server.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from fmtp.interfaces import IDatagramLimiter
from fmtp.protocols.presence.bridgedir import BridgeDirectory
from fmtp.ratelimit import SourceRateLimiter
from fmtp.store.bridges import Bridge


def source_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """
    The address of a datagram's source; an IPv4 address as an IPv6
    listener sees it (C{::ffff:192.0.2.7}) is the IPv4 address.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


@implementer(IDatagramLimiter)
class BridgeSourceLimiter:
    """
    Per-source limits, except for the bridges' networks: one token bucket
    per bridge (its C{rate} a second, bursts of twice as many) shared by
    every address of its networks, and one bucket of refusals per bridge
    at an ordinary source's rate.

    The bridges and their networks are the server's L{BridgeDirectory},
    which PUBLISH's authentication reads too: C{fmtp bridge set} takes
    effect on a running server within its few seconds; until its first
    read completes every source is an ordinary one.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        directory: BridgeDirectory,
        per_source: SourceRateLimiter | None = None,
    ) -> None:
        self._clock = clock
        self._directory = directory
        self.per_source = per_source or SourceRateLimiter(clock)
        self.refusals = SourceRateLimiter(
            clock, self.per_source.rate, self.per_source.burst
        )
        self._buckets: dict[str, SourceRateLimiter] = {}
        directory.observe(self._read)

    def _read(self, bridges: dict[str, Bridge]) -> None:
        """
        The bridges were read: a bucket for each with networks, kept for
        one whose rate did not change.
        """
        rates = {n.bridge: n.rate for n in self._directory.networks}
        kept = {
            name: bucket
            for name, bucket in self._buckets.items()
            if rates.get(name) == bucket.rate
        }
        for name, rate in rates.items():
            if name not in kept:
                kept[name] = SourceRateLimiter(self._clock, rate, 2 * rate, 1)
        self._buckets = kept

    def bridge_of(self, host: str) -> str | None:
        """
        The name of the bridge whose networks C{host} is in, if any.
        """
        self._directory.refresh()
        networks = self._directory.networks
        if not networks:
            return None
        address = source_address(host)
        if address is None:
            return None
        for entry in networks:
            if address.version == entry.network.version and address in entry.network:
                return entry.bridge
        return None

    def allow(self, source: str) -> bool:
        bridge = self.bridge_of(source)
        if bridge is None:
            return self.per_source.allow(source)
        return self._buckets[bridge].allow(bridge)

    def allow_refusal(self, source: str, size: int, request_size: int) -> bool:
        bridge = self.bridge_of(source)
        if bridge is None:
            return self.per_source.allow_refusal(source, size, request_size)
        return size <= request_size and self.refusals.allow(bridge)
