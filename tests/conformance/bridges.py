"""
The contract every L{IBridgeStore} keeps, as one suite run against each
store by C{tests/conformance/test_stores.py} (fixtures C{store} and
C{reopen}).
"""

from __future__ import annotations

from dataclasses import replace

import pytest_twisted
from zope.interface.verify import verifyObject

from fmtp.interfaces import IBridgeStore
from fmtp.store.bridges import DEFAULT_BRIDGE_RATE, Bridge

ISP = Bridge("isp", "*@poe.net", "ab" * 32, 1700000000.5)
DSL = Bridge("dsl", "dsl-*@poe.net edgar@poe.net", "cd" * 32, 1700000001.0)


class BridgeConformance:
    def test_provides(self, store) -> None:
        verifyObject(IBridgeStore, store)

    @pytest_twisted.ensureDeferred
    async def test_added_bridges_are_found_and_listed_by_name(self, store) -> None:
        assert await store.list_bridges() == []
        assert await store.add_bridge(ISP) is True
        assert await store.add_bridge(DSL) is True
        assert await store.get_bridge("isp") == ISP
        assert await store.get_bridge("nope") is None
        assert await store.list_bridges() == [DSL, ISP]

    @pytest_twisted.ensureDeferred
    async def test_a_name_is_added_once(self, store) -> None:
        await store.add_bridge(ISP)
        other = Bridge("isp", "*@lenore.org", "ef" * 32, 5.0)
        assert await store.add_bridge(other) is False
        assert await store.get_bridge("isp") == ISP

    @pytest_twisted.ensureDeferred
    async def test_sources_and_rate_are_kept_and_updated(self, store, reopen) -> None:
        """
        A bridge added without sources has none and the default rate; its
        sources (IPv4 and IPv6) and rate can be set later, and last.
        """
        await store.add_bridge(ISP)
        assert (await store.get_bridge("isp")).sources == ()
        assert (await store.get_bridge("isp")).rate == DEFAULT_BRIDGE_RATE
        sourced = replace(ISP, sources=("192.0.2.0/24", "2001:db8::/32"), rate=900)
        assert await store.update_bridge(sourced) is True
        assert await store.get_bridge("isp") == sourced
        assert await store.list_bridges() == [sourced]
        assert await store.update_bridge(replace(DSL, rate=1)) is False
        assert await store.get_bridge("dsl") is None
        again = await reopen()
        assert await again.get_bridge("isp") == sourced

    @pytest_twisted.ensureDeferred
    async def test_remove(self, store) -> None:
        await store.add_bridge(ISP)
        assert await store.remove_bridge("isp") is True
        assert await store.remove_bridge("isp") is False
        assert await store.get_bridge("isp") is None
        assert await store.list_bridges() == []

    @pytest_twisted.ensureDeferred
    async def test_bridges_survive_a_restart(self, store, reopen) -> None:
        await store.add_bridge(ISP)
        again = await reopen()
        assert await again.get_bridge("isp") == ISP

    def test_the_secret_is_not_in_repr(self) -> None:
        assert ISP.secret not in repr(ISP)
