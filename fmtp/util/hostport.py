"""
Hosts and ports: fmtp's well-known ports, and the one parser of C{HOST:PORT}
text, whoever writes it (an admin's C{--parent}, C{--dns} or hosts file, a
client's C{--server udp:HOST:PORT}, a user's C{Route} property).

One parser means one answer to "is C{[::1]} a host?", "is port 0 a port?"
and "is C{Lost.Lenore.org.} the same host as C{lost.lenore.org}?"
everywhere; each caller only words its own error.
"""

from __future__ import annotations

import ipaddress

from fmtp.errors import InvalidAddress
from fmtp.objects import is_ascii_digits, normalize_domain

__all__ = [
    "CHAT_PORT",
    "DEFAULT_FMTP_PORT",
    "OBJECT_PORT",
    "PRESENCE_PORT",
    "ip_literal",
    "parse_host_port",
    "parse_port",
]

#: The default port of each built-in protocol (DESIGN, decision 13).
OBJECT_PORT = 7070
PRESENCE_PORT = 7071
CHAT_PORT = 7072

#: The port of a domain's fmtp server when nothing names one (an MX
#: target, a domain's own address, a route or parent written without a
#: port): the object protocol's, which server links speak
#: (doc/protocol.md 8.1).
DEFAULT_FMTP_PORT = OBJECT_PORT


def parse_port(text: str, minimum: int = 1) -> int:
    """
    A port number written in ASCII digits, from C{minimum} (0 where the
    system may choose, as a listener's C{udp:0}) to 65535.

    @raise ValueError: saying what is wrong, for the caller to prefix.
    """
    if not is_ascii_digits(text):
        raise ValueError(f"port {text!r} is not a number")
    port = int(text)
    if not minimum <= port < 65536:
        raise ValueError(f"port {port} is out of range")
    return port


def parse_host_port(
    text: str, default_port: int | None = None, names: bool = True
) -> tuple[str, int]:
    """
    Split C{HOST:PORT}, where C{HOST} is a name, an IPv4 address, or an
    IPv6 address in brackets (C{[2001:db8::1]:53}), as in URLs.  A bare
    IPv6 address without a port is accepted too.

    @param default_port: the port when none is written, or L{None} to
        require one.
    @param names: whether C{HOST} may be a name rather than an address.
    @return: the host (lower-case name or address, without brackets) and
        the port.
    @raise ValueError: saying what is wrong.
    """
    original = text
    text = text.strip()
    port_text: str | None = None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ValueError(f"{original!r}: missing ] after the IPv6 address")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{original!r}: expected :PORT after ]")
            port_text = rest[1:]
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{original!r}: only an IPv6 address goes in brackets"
            ) from None
    elif text.count(":") > 1:
        # More than one colon and no brackets: a bare IPv6 address, which
        # cannot carry a port (where would it start?).
        host = text
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"{original!r}: write an IPv6 address with a port as [ADDRESS]:PORT"
            ) from None
    else:
        host, colon, port_text = text.partition(":")
        if not colon:
            port_text = None
    if not host:
        raise ValueError(f"{original!r}: missing host")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{original!r}: missing :PORT")
        port = default_port
    else:
        try:
            port = parse_port(port_text)
        except ValueError as e:
            raise ValueError(f"{original!r}: {e}") from None
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if not names:
            raise ValueError(
                f"{original!r}: {host!r} is not an IP address (a name server "
                "must be given by address: finding it by name would need DNS)"
            ) from None
        try:
            host = normalize_domain(host.rstrip(".") if host != "." else host)
        except InvalidAddress as e:
            raise ValueError(f"{original!r}: {e.message}") from None
    return host, port


def ip_literal(host: str) -> str | None:
    """
    The normal form of C{host} if it is an IP address (an IPv6 one possibly
    in brackets), else L{None}: a host that needs no DNS lookup.
    """
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None
