"""
The framework's ceiling: a bare Twisted line relay, as little as a server
can do on this reactor.  Every line one connection sends is written, as
is, to every other connection open, so a burst of frames from A reaches B
byte for byte.  No parsing, no store, no signing: what fmtp adds to a
message costs whatever separates its figures from this one's.

    python -m bench.relay [HOST]   # prints "listening PORT"
"""

import sys

from twisted.internet import protocol, reactor
from twisted.protocols.basic import LineReceiver


class Relay(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.factory.peers.append(self)

    def connectionLost(self, reason) -> None:
        self.factory.peers.remove(self)

    def lineReceived(self, line: bytes) -> None:
        for peer in self.factory.peers:
            if peer is not self:
                peer.transport.write(line + b"\n")


def main() -> None:
    factory = protocol.Factory.forProtocol(Relay)
    factory.peers = []
    port = reactor.listenTCP(0, factory, interface=(sys.argv[1:] or ["127.0.0.1"])[0])
    print(f"listening {port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
