"""
Small building blocks that packages share without importing each other:
C{HOST:PORT} text and fmtp's ports (L{fmtp.util.hostport}), work shared by
concurrent callers (L{fmtp.util.singleflight}), and a bounded cache whose
entries expire (L{fmtp.util.ttlcache}).

Nothing here imports from fmtp's other packages, so any of them (DNS,
federation, protocols, the command line) can use it.
"""
