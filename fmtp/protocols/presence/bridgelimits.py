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
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from fmtp.interfaces import IDatagramLimiter
from fmtp.protocols.presence.bridges import BRIDGE_CACHE_SECONDS
from fmtp.ratelimit import SourceRateLimiter
from fmtp.store.bridges import Bridge

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class BridgeNetwork:
    network: Network
    bridge: str
    rate: int


def bridge_networks(bridges: list[Bridge]) -> list[BridgeNetwork]:
    """
    The source networks of C{bridges}, in the order a source is looked up:
    the most specific network first (the longest prefix, as a routing
    table), and of two bridges with the same network, the first by name.
    A network the store holds malformed is skipped.
    """
    found = []
    for bridge in bridges:
        for text in bridge.sources:
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                continue
            found.append(BridgeNetwork(network, bridge.name, bridge.rate))
    found.sort(key=lambda n: (-n.network.prefixlen, n.bridge))
    return found


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

    The bridges are read from the store (L{fmtp.interfaces.IBridgeStore})
    at the first datagram and again once L{BRIDGE_CACHE_SECONDS} old, as
    L{fmtp.protocols.presence.bridges.BridgePublishing} reads them, so
    C{fmtp bridge set} takes effect on a running server that soon; until
    the first read completes every source is an ordinary one.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store,
        per_source: SourceRateLimiter | None = None,
    ) -> None:
        self._clock = clock
        self._store = store
        self.per_source = per_source or SourceRateLimiter(clock)
        self.refusals = SourceRateLimiter(
            clock, self.per_source.rate, self.per_source.burst
        )
        self._networks: list[BridgeNetwork] = []
        self._buckets: dict[str, SourceRateLimiter] = {}
        self._read_at: float | None = None
        self._reading = False

    def _refresh(self) -> None:
        now = self._clock.seconds()
        if self._reading or (
            self._read_at is not None and now - self._read_at < BRIDGE_CACHE_SECONDS
        ):
            return
        self._reading = True
        self._read_at = now
        d = self._store.list_bridges()
        d.addCallback(self._read)
        d.addErrback(lambda f: self._log.failure("reading the bridges' networks", f))
        d.addBoth(self._done_reading)

    def _done_reading(self, _) -> None:
        self._reading = False

    def _read(self, bridges: list[Bridge]) -> None:
        self._networks = bridge_networks(bridges)
        rates = {n.bridge: n.rate for n in self._networks}
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
        self._refresh()
        if not self._networks:
            return None
        address = source_address(host)
        if address is None:
            return None
        for entry in self._networks:
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
