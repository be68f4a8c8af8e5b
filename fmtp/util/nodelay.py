"""
Small frames go out at once: every fmtp stream sets C{TCP_NODELAY}.

A reply or a push is one small write, and the peer waits for it before it
sends the next request: with Nagle's algorithm on, such a write waits for
the ACK of the previous one, which the peer delays (up to 40 ms on Linux).
That made a message's round trip 48 ms on loopback.  fmtp writes each frame
in one C{write}, so turning Nagle off sends no more packets than frames.
"""

from __future__ import annotations


def set_no_delay(transport: object) -> None:
    """
    Turn Nagle's algorithm off on C{transport}'s TCP socket.

    A TLS transport (L{twisted.protocols.tls.TLSMemoryBIOProtocol}, a
    protocol wrapper) passes the call to the TCP transport under it; a
    transport that is not TCP (a UNIX socket, a test's
    C{StringTransport}) is left as it is.
    """
    set_option = getattr(transport, "setTcpNoDelay", None)
    if set_option is None:
        return
    try:
        set_option(True)
    except OSError:
        # Not a TCP socket (a UNIX socket's transport is a tcp.Server too).
        pass
