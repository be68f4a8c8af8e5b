"""
The presence protocol (doc/protocol.md section 9): status, subscriptions
with consent and live pushes, on port 7071.

It is a plugin like any other (L{plugin.PresenceProtocolPlugin}) made of
the session commands every protocol shares and its own
(L{commands}).  The rules live apart from any socket: the values and the
priority rule in L{status}, requests under policy in L{subscriptions},
the table of sessions, grace periods and coalesced pushes in L{service}.
"""
