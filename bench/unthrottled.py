"""
C{twistd}, with the per-source datagram rate limit lifted:

    python -m bench.unthrottled -n fmtp ...

A server lets each source send 20 datagrams a second (bursts of 40) and
drops the rest (doc/protocol.md, Datagrams).  A benchmark has one source,
so over UDP it would measure that limit; this entry point gives every
datagram listener a limiter that allows everything, and changes nothing
else.  For benchmarks only.
"""

from twisted.scripts.twistd import run

from fmtp.framing import plugin
from fmtp.ratelimit import SourceRateLimiter

_datagram_protocol = plugin.FramedProtocolPlugin.datagram_protocol


def unthrottled_datagram_protocol(self, services):
    protocol = _datagram_protocol(self, services)
    if protocol is not None:
        protocol.limiter = SourceRateLimiter(services.reactor, rate=1e12, burst=1e12)
    return protocol


plugin.FramedProtocolPlugin.datagram_protocol = unthrottled_datagram_protocol

if __name__ == "__main__":
    run()
