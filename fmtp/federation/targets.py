"""
Where a server link is tried: a recipient's own C{Route}, the domain's
routes from DNS, or this server's parent relay (DESIGN decision 6), and
the values that name each place (L{LinkTarget}, L{ParentRoute}).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger

from fmtp.objects import normalize_domain
from fmtp.util.hostport import DEFAULT_FMTP_PORT, parse_host_port

log = Logger()

#: How a link came to be: a recipient's C{Route}, the domain's DNS routes,
#: or the parent relay.
VIA_PREFERRED = "preferred"
VIA_DNS = "dns"
VIA_PARENT = "parent"

#: routes_for: domain -> Deferred (or awaitable) of routes, each with
#: C{host}, C{port} and C{address} (L{fmtp.dns.routes.Route}); fails with an
#: FMTPError whose code says permanent (NoRoute, 554) or temporary (451).
RoutesFor = Callable[[str], Awaitable[Sequence[Any]]]
#: resolve_host: host name -> Deferred (or awaitable) of IP addresses.
ResolveHost = Callable[[str], Awaitable[Sequence[str]]]


def parse_route(value: str, default_port: int = DEFAULT_FMTP_PORT) -> tuple[str, int]:
    """
    Parse a user's C{Route} property: C{tcp://HOST[:PORT]}, HOST a name, an
    IPv4 address or a bracketed IPv6 address, read by
    L{fmtp.util.hostport.parse_host_port} as every C{HOST:PORT} is.

    @return: C{(host, port)}, the host lower-cased and without brackets.
    @raise ValueError: for anything else (another scheme, a path, a bad
        port).
    """
    scheme, separator, rest = value.strip().partition("://")
    if not separator or scheme.lower() != "tcp":
        raise ValueError(f"bad route {value!r}: only tcp://HOST:PORT is supported")
    try:
        return parse_host_port(rest.removesuffix("/"), default_port)
    except ValueError as e:
        raise ValueError(
            f"bad route {value!r}: expected tcp://HOST:PORT ({e})"
        ) from None


def preferred_routes(
    domain: str, preferred: Iterable[str | tuple[str, int]]
) -> list[tuple[str, int]]:
    """
    The routes a caller prefers for C{domain} (C{tcp://HOST:PORT} strings,
    as a user object's C{Route}, or C{(host, port)}) as C{(host, port)},
    leaving out, with a log line, those that are malformed.
    """
    routes = []
    for route in preferred:
        try:
            if isinstance(route, str):
                routes.append(parse_route(route))
            else:
                host, port = route
                routes.append((str(host).lower(), int(port)))
        except (TypeError, ValueError) as e:
            log.info(
                "Ignoring route {route!r} for {domain}: {error}",
                route=route,
                domain=domain,
                error=str(e),
            )
    return routes


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """
    One place a link is tried: connect to C{address} port C{port} (or
    through C{endpoint}), expecting a server named C{host} there, which is
    the name a required TLS certificate must carry.
    """

    via: str
    host: str
    port: int
    address: str | None = None
    endpoint: Any = None

    def describe(self) -> str:
        if self.endpoint is not None:
            return f"{self.host or 'parent'} ({self.endpoint!r})"
        host = f"[{self.host}]" if ":" in self.host else self.host
        shown = f"{host}:{self.port}"
        if self.address and self.address != self.host:
            shown += f" ({self.address})"
        return shown


@dataclass(frozen=True, slots=True)
class ParentRoute:
    """
    Where this server's parent relay listens.

    @ivar domain: the parent's domain, which its HELLO must prove; if
        L{None}, the domain it names in its C{CAPA} reply is taken (and
        then proved by its HELLO all the same).
    @ivar endpoint: an C{IStreamClientEndpoint} to use instead of
        C{host}/C{port}.
    """

    host: str = ""
    port: int = DEFAULT_FMTP_PORT
    domain: str | None = None
    endpoint: Any = None

    @classmethod
    def coerce(cls, value: Any) -> ParentRoute | None:
        """
        Accept C{None}, a L{ParentRoute}, C{(host, port)}, C{(host, port,
        domain)}, a C{tcp://HOST:PORT} string or a client endpoint.
        """
        if value is None or isinstance(value, ParentRoute):
            return value
        if IStreamClientEndpoint.providedBy(value):
            return cls(endpoint=value)
        if isinstance(value, str):
            host, port = parse_route(value)
            return cls(host, port)
        host, port, *rest = value
        domain = normalize_domain(rest[0]) if rest and rest[0] else None
        return cls(str(host), int(port), domain)
