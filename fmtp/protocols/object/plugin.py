"""
The object protocol's plugin: registered through L{twisted.plugin} exactly
as a third-party protocol is (L{fmtp.plugins.fmtp_builtin}).
"""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import implementer

from fmtp.framing.plugin import FramedProtocolPlugin
from fmtp.framing.session import SessionCommands
from fmtp.interfaces import IProtocolPlugin
from fmtp.protocols.object.commands import ObjectCommands
from fmtp.protocols.object.messaging import MessagingCommands
from fmtp.protocols.object.serverlink import ServerLinkCommands
from fmtp.util.hostport import OBJECT_PORT


@implementer(IPlugin, IProtocolPlugin)
class ObjectProtocolPlugin(FramedProtocolPlugin):
    name = "object"
    description = "objects: get, put, list and delete users, messages, posts"
    default_listeners = (
        f"tcp:{OBJECT_PORT}:interface=127.0.0.1",
        f"udp:{OBJECT_PORT}:interface=127.0.0.1",
    )
    groups = (SessionCommands, ObjectCommands, MessagingCommands, ServerLinkCommands)
