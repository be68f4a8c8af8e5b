"""
The value the bridge store keeps (L{fmtp.interfaces.IBridgeStore}): one
ISP bridge that publishes presence over datagrams for the users its
pattern allows (doc/protocol.md 9.6).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: What a bridge's name may be: it is the resource of the presence it
#: publishes, and a word on the command line.
BRIDGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Datagrams a second a bridge with source networks may send, by default:
#: the networks share it (bursts of twice as many).
DEFAULT_BRIDGE_RATE = 5000
#: The most a bridge's rate may be set to.
MAX_BRIDGE_RATE = 1_000_000


@dataclass(frozen=True, slots=True)
class Bridge:
    """
    One bridge, as the admin added it.

    @ivar name: its name (L{BRIDGE_NAME}), which its datagrams carry.
    @ivar users: the space-separated patterns (as L{fmtp.policy.matches}
        reads them) of the users it may publish for.
    @ivar secret: the key of the HMAC its datagrams carry, as it was
        printed once to the admin (64 hex digits); never logged, and kept
        out of C{repr}.
    @ivar created: when it was added, in POSIX seconds.
    @ivar sources: the networks (CIDR, as L{ipaddress.ip_network} writes
        them) its datagrams come from; their datagrams are counted against
        its C{rate} rather than the per-source limit.  None: its datagrams
        are limited as any source's.
    @ivar rate: datagrams a second its C{sources} may send, all together.
    """

    name: str
    users: str
    secret: str = field(repr=False)
    created: float = 0.0
    sources: tuple[str, ...] = ()
    rate: int = DEFAULT_BRIDGE_RATE
