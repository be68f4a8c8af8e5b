"""
The chat protocol (doc/protocol.md section 10): rooms at C{room@domain}
on their home server, persistent membership with roles, moderation, a
hash-linked history, and live room lines on port 7072.

It is a plugin like any other (L{plugin.ChatProtocolPlugin}) made of the
session commands every protocol shares and its own (L{commands}).  The
rules live apart from any socket: the values a command carries in
L{lines}, who may do what to whom in L{rules}, the sessions that entered
a room and the no-gap, no-duplicate catch-up in L{live}, and the rooms'
logic, on an injected clock, in L{service}.
"""
