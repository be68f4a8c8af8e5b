"""
ISP bridges in memory (L{fmtp.interfaces.IBridgeStore}).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from fmtp.store.bridges import Bridge
from fmtp.store.memory.base import MemoryBase


class MemoryBridges(MemoryBase):
    """
    L{fmtp.interfaces.IBridgeStore}'s methods, over a L{dict} by name.
    """

    def __init__(self) -> None:
        super().__init__()
        self._bridges: dict[str, Bridge] = {}

    def add_bridge(self, bridge: Bridge) -> Deferred[bool]:
        return self._call(self._add_bridge, bridge)

    def _add_bridge(self, bridge: Bridge) -> bool:
        if bridge.name in self._bridges:
            return False
        self._bridges[bridge.name] = bridge
        return True

    def update_bridge(self, bridge: Bridge) -> Deferred[bool]:
        return self._call(self._update_bridge, bridge)

    def _update_bridge(self, bridge: Bridge) -> bool:
        if bridge.name not in self._bridges:
            return False
        self._bridges[bridge.name] = bridge
        return True

    def get_bridge(self, name: str) -> Deferred[Bridge | None]:
        return self._call(self._bridges.get, name)

    def list_bridges(self) -> Deferred[list[Bridge]]:
        return self._call(lambda: [self._bridges[n] for n in sorted(self._bridges)])

    def remove_bridge(self, name: str) -> Deferred[bool]:
        return self._call(lambda: self._bridges.pop(name, None) is not None)
