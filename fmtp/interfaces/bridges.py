"""
The store of ISP bridges: the systems an admin allows to publish the
presence of some of the server's users over datagrams
(L{fmtp.protocols.presence.bridges}).
"""

from __future__ import annotations

from zope.interface import Interface


class IBridgeStore(Interface):
    """
    Durable storage of bridges (L{fmtp.store.bridges.Bridge}), by name.

    A bridge's secret is the key of an HMAC the server checks, so it is
    kept as it is (unlike a password, it cannot be kept as a hash); the
    store is as secret as the data directory holding it.  Every method
    returns a L{Deferred}; a write fires once it is durable.
    """

    def add_bridge(bridge):
        """
        Keep a new bridge.

        @param bridge: a L{fmtp.store.bridges.Bridge}.
        @return: a L{Deferred} that fires with C{True} once it is durable,
            or C{False} (and nothing changes) if a bridge of that name
            exists.
        """

    def update_bridge(bridge):
        """
        Replace what is kept of the bridge of C{bridge.name} (its users,
        source networks and rate, as C{fmtp bridge set} changes them).

        @return: a L{Deferred} that fires with C{True} once it is durable,
            or C{False} (and nothing changes) if there is no bridge of
            that name.
        """

    def get_bridge(name):
        """
        The bridge of a name.

        @return: a L{Deferred} that fires with the
            L{fmtp.store.bridges.Bridge}, or L{None} if there is none.
        """

    def list_bridges():
        """
        Every bridge.

        @return: a L{Deferred} that fires with a list of
            L{fmtp.store.bridges.Bridge}, by name.
        """

    def remove_bridge(name):
        """
        Forget a bridge: its datagrams are refused from then on.

        @return: a L{Deferred} that fires with C{True} once it is gone, or
            C{False} if there was none.
        """
