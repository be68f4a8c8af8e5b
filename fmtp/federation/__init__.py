"""
Server-to-server federation: the handshake, links, delivery and its queue.

  - L{api}: L{ServerLinks<api.ServerLinks>}, what protocols and plugins use
    (L{fmtp.interfaces.IServerLinks}); L{node} builds it.
  - Inbound: L{hello} (the handshake), L{registry} (verbs answered after
    HELLO), L{serververbs} (DELIVER, CONFIRM), L{inbound} (receiving a
    message), L{relay} (for child domains), L{countersign}.
  - Outbound links: L{pool} (one per domain, reused), L{connect} (one
    attempt and its handshake), L{tls}, L{targets} (where to try),
    L{link} (one open link), L{failures}, L{userdir} (other domains'
    users, route negotiation).
  - Sending: L{sending} (a user's SEND), L{queue} (the durable queue's
    worker), L{settle} (one row's outcome), L{bounce}, L{volatile}
    (coalesced, short-lived updates).
"""
