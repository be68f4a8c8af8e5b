"""
The server's ISP bridges as the presence protocol reads them: one list
from the store (L{fmtp.interfaces.IBridgeStore.list_bridges}), read again
once L{BRIDGE_CACHE_SECONDS} old, so that C{fmtp bridge add}, C{set} and
C{remove} take effect on a running server that soon.

Everything that needs a bridge reads it here: the datagram listener's
limiter (which bridge a source belongs to, without waiting), the
authentication of PUBLISH and RESYNC (waiting for a read under way), and
the notifications (which forget a removed bridge at the next read).  One
read of the whole list, never one per name, so a sender cycling through
names it makes up costs no store read at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fmtp.store.bridges import Bridge
from fmtp.util.singleflight import SingleFlight

#: Seconds the list read from the store is trusted before it is read again.
BRIDGE_CACHE_SECONDS = 5.0

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


class BridgeDirectory:
    """
    The bridges of one server, by name, and their source networks.

    @param store: provides L{fmtp.interfaces.IBridgeStore}.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime, store) -> None:
        self._clock = clock
        self._store = store
        self._by_name: dict[str, Bridge] = {}
        #: The source networks, most specific first (L{bridge_networks}).
        self.networks: list[BridgeNetwork] = []
        self._read_at: float | None = None
        #: The read under way, shared by all who wait for it.
        self._reads: SingleFlight[None, None] = SingleFlight()
        self._observers: list[Callable[[dict[str, Bridge]], object]] = []

    def observe(self, callback: Callable[[dict[str, Bridge]], object]) -> None:
        """
        Call C{callback(bridges_by_name)} after each read: who keeps
        something per bridge forgets a removed one.
        """
        self._observers.append(callback)

    def refresh(self) -> None:
        """
        Read the list again if it is older than L{BRIDGE_CACHE_SECONDS} and
        no read is under way; return at once (what is known now stands
        until the read is done).
        """
        now = self._clock.seconds()
        if None in self._reads:
            return
        if self._read_at is not None and now - self._read_at < BRIDGE_CACHE_SECONDS:
            return
        self._read_at = now
        self._reads.start(None, self._read)

    async def _read(self) -> None:
        try:
            bridges = await self._store.list_bridges()
        except Exception:
            self._log.failure("Reading the bridges failed")
            return
        self._by_name = {bridge.name: bridge for bridge in bridges}
        self.networks = bridge_networks(bridges)
        for callback in self._observers:
            callback(self._by_name)

    async def get(self, name: str) -> Bridge | None:
        """
        The bridge C{name}, as the store says it at most
        L{BRIDGE_CACHE_SECONDS} ago, or L{None}.
        """
        self.refresh()
        if None in self._reads:
            await self._reads.run(None, self._read)
        return self._by_name.get(name)
