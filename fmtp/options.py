"""
Command-line options shared by C{twistd fmtp} and the C{fmtp} command.
"""

from __future__ import annotations

from twisted.python import usage


class DNSOption:
    """
    Mixin for L{usage.Options}: a repeatable C{--dns HOST:PORT}, collected
    as C{(host, port)} pairs in C{self["dns"]} (empty: the system's).
    """

    def __init__(self) -> None:
        super().__init__()
        self["dns"] = []

    def opt_dns(self, nameserver: str) -> None:
        """
        Use this DNS resolver (HOST:PORT) instead of the system's; repeatable.
        """
        # Imported here: dnspython is slow to import, and most fmtp
        # commands never need it.
        from fmtp.dns.resolver import parse_nameserver

        try:
            self["dns"].append(parse_nameserver(nameserver))
        except ValueError as e:
            raise usage.UsageError(f"--dns {nameserver}: {e}")
