"""
The base of a protocol plugin made of command groups.

A hobbyist's protocol, and each built-in one, is a subclass naming its
groups; everything else (the stream factory, the datagram listener, one
shared handler per server) comes from here::

    @implementer(IPlugin, IProtocolPlugin)
    class TimeProtocolPlugin(FramedProtocolPlugin):
        name = "time"
        description = "the server's clock: TIME"
        default_listeners = ("tcp:7079:interface=127.0.0.1",)
        groups = (SessionCommands, TimeCommands)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from fmtp.framing.datagram import FrameDatagramProtocol
from fmtp.framing.handler import CommandGroup, HandlerCollection
from fmtp.framing.stream import FrameStreamFactory

if TYPE_CHECKING:
    from fmtp.interfaces import IDatagramLimiter
    from fmtp.services import SharedServices


class FramedProtocolPlugin:
    """
    An L{fmtp.interfaces.IProtocolPlugin} whose protocol is a
    L{HandlerCollection} of L{groups}, served over streams and, if any
    group offers datagram commands, over datagrams.

    Subclasses set L{name}, L{description}, L{default_listeners} and
    L{groups}, and declare C{@implementer(IPlugin, IProtocolPlugin)}.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    default_listeners: ClassVar[tuple[str, ...]] = ()
    groups: ClassVar[tuple[type[CommandGroup], ...]] = ()

    def handler(self, services: SharedServices) -> HandlerCollection:
        """
        The protocol's commands on this server: built once per server and
        shared by its stream and datagram listeners.
        """
        handlers = services.protocol_handlers
        if self.name not in handlers:
            handlers[self.name] = HandlerCollection(self.name, services, self.groups)
        return handlers[self.name]

    def stream_factory(self, services: SharedServices) -> FrameStreamFactory:
        return FrameStreamFactory(self.handler(services))

    def datagram_limiter(self, services: SharedServices) -> IDatagramLimiter | None:
        """
        The rate limiter of the datagram listener: by default (L{None})
        the listener's own, per source.  A protocol whose clients send
        from known networks at a rate of their own gives its own here.
        """
        return None

    def datagram_protocol(
        self, services: SharedServices
    ) -> FrameDatagramProtocol | None:
        """
        The datagram listener, if a group offers a command over datagrams
        besides the shared CAPA: a protocol that offers nothing else is
        served over streams only (a C{udp:} listener for it is refused).
        """
        handler = self.handler(services)
        if not handler.datagram_commands - {"CAPA"}:
            return None
        return FrameDatagramProtocol(handler, self.datagram_limiter(services))
