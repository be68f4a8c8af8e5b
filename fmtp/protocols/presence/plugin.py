"""
The presence protocol's plugin: registered through L{twisted.plugin}
exactly as a third-party protocol is (L{fmtp.plugins.fmtp_builtin}).
"""

from __future__ import annotations

from functools import partial

from twisted.plugin import IPlugin
from zope.interface import implementer

from fmtp.framing.plugin import FramedProtocolPlugin
from fmtp.framing.session import SessionCommands
from fmtp.interfaces import IProtocolPlugin
from fmtp.protocols.presence.bridgelimits import BridgeSourceLimiter
from fmtp.protocols.presence.commands import PresenceCommands
from fmtp.protocols.presence.service import PresenceSettings
from fmtp.util.hostport import PRESENCE_PORT


@implementer(IPlugin, IProtocolPlugin)
class PresenceProtocolPlugin(FramedProtocolPlugin):
    """
    The presence protocol, on streams, and on datagrams for the ISP
    bridges' PUBLISH.

    @param settings: the grace period and limits; by default the
        server's (C{--presence-grace}, C{--presence-max-pending},
        C{--presence-request-days}).
    """

    name = "presence"
    description = "presence: status, subscriptions with consent, live pushes"
    default_listeners = (
        f"tcp:{PRESENCE_PORT}:interface=127.0.0.1",
        f"udp:{PRESENCE_PORT}:interface=127.0.0.1",
    )

    def __init__(self, settings: PresenceSettings | None = None) -> None:
        self.groups = (SessionCommands, partial(PresenceCommands, settings=settings))

    def datagram_limiter(self, services) -> BridgeSourceLimiter:
        """
        Per-source limits, except that the bridges' source networks send
        at their bridge's rate (doc/protocol.md 9.6).
        """
        commands = next(
            group
            for group in self.handler(services).groups
            if isinstance(group, PresenceCommands)
        )
        return BridgeSourceLimiter(services.reactor, commands.bridge_directory)
