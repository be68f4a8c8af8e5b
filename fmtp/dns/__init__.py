"""
DNS for fmtp: domain keys and routes to other domains' servers.

Servers find each other through DNS as mail servers do (DESIGN, decision
5) and prove who they are with keys published in DNS as DKIM does
(decision 3).  This package holds the layers of that:

  - L{fmtp.dns.resolver}: L{DNSResolver<fmtp.dns.resolver.DNSResolver>}
    asks DNS one question at a time, without blocking the reactor, and
    tells a permanent "there is nothing" from a temporary failure.

  - L{fmtp.dns.cache}: L{LookupCache<fmtp.dns.cache.LookupCache>} keeps
    what was learned for its TTL, refreshes hot entries before they
    expire, shares a lookup among every caller waiting for it, and serves
    a stale answer while DNS is down (RFC 8767).

  - L{fmtp.dns.keyverifier} (an L{IKeyVerifier} over C{fmtpkey.<domain>}
    TXT records) and L{fmtp.dns.routes} (SRV, then MX, then the domain's
    own address) are built on both.

  - L{fmtp.dns.hostsfile}: static keys, routes and addresses, which win
    over DNS for the domains and hosts they name: that is how a private
    network, or the embedded default, runs with no DNS at all.

Nothing is imported here, so that reading a hosts file does not load
dnspython.
"""
