"""
The object protocol (doc/protocol.md sections 3, 4 and 8): objects,
messages and the server link, on port 7070.

It is a plugin like any other (L{plugin.ObjectProtocolPlugin}), made of
command groups: the session commands every protocol shares, and its own
object (L{commands}), messaging (L{messaging}) and server-link
(L{serverlink}) commands.  The rules of who may read and write what live
in L{service}, apart from any socket.
"""
