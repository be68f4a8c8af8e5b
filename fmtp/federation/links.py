"""
Temporary: what C{fmtp/tap.py} imports from here, until the wiring of
issue 8 imports it from L{fmtp.federation.tls} and deletes this module.

The link machinery that was here is now in L{fmtp.federation.targets},
L{fmtp.federation.failures}, L{fmtp.federation.link},
L{fmtp.federation.tls}, L{fmtp.federation.connect},
L{fmtp.federation.pool} and L{fmtp.federation.userdir}.
"""

from fmtp.federation.tls import TLS_POLICIES, load_trust_root

__all__ = ["TLS_POLICIES", "load_trust_root"]
