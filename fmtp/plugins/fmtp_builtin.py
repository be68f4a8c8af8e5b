"""
The protocols that ship with fmtp, registered as any plugin is.
"""

from fmtp.protocols.chat.plugin import ChatProtocolPlugin
from fmtp.protocols.object.plugin import ObjectProtocolPlugin
from fmtp.protocols.presence.plugin import PresenceProtocolPlugin

objectProtocol = ObjectProtocolPlugin()
presenceProtocol = PresenceProtocolPlugin()
chatProtocol = ChatProtocolPlugin()

#: Taken before any other plugin, so none can replace them.
BUILTIN_PROTOCOLS = (objectProtocol, presenceProtocol, chatProtocol)
