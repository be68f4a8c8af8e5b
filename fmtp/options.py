"""
Command-line options shared by C{twistd fmtp} and the C{fmtp} command.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from twisted.python import usage

from fmtp.objects import is_ascii_digits


def whole_option(options: Mapping[str, str], name: str, low: int, high: int) -> int:
    """
    The value of option C{name} as a whole number from C{low} to C{high}.

    @raise usage.UsageError: naming the option.
    """
    value = options[name]
    if not is_ascii_digits(value) or not low <= int(value) <= high:
        raise usage.UsageError(f"--{name} must be a whole number from {low} to {high}")
    return int(value)


def seconds_option(
    options: Mapping[str, str], name: str, low: float, high: float = 86400.0
) -> float:
    """
    The value of option C{name} as a number of seconds (decimals allowed)
    from C{low} to C{high}.

    @raise usage.UsageError: naming the option.
    """
    try:
        value = float(options[name])
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise usage.UsageError(
            f"--{name} must be a number of seconds from {low:g} to {high:g}"
        )
    return value


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
