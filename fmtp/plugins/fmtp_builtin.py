"""
The protocols that ship with fmtp, registered as any plugin is.
"""

from fmtp.protocols.object.plugin import ObjectProtocolPlugin

objectProtocol = ObjectProtocolPlugin()

#: Taken before any other plugin, so none can replace them.
BUILTIN_PROTOCOLS = (objectProtocol,)
