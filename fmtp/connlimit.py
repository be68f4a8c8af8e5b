"""
The open streams of one server: how many it admits, from whom, and how
they are closed when it stops.

Every connection holds a file descriptor, and a process has a limited
number of them (C{ulimit -n}, often 1,024).  A server that accepts until
it runs out cannot open its store, its outbound links or its log, and
new clients are closed without a word.  So every stream listener of a
server admits connections through one L{Connections}: within a total
below the file limit, keeping a reserve for outbound server links, the
store, DNS and logs, and within a cap per source address so that one
host cannot take them all.  Trusted sources (an admin's network, the
machine itself) are exempt from the per-source cap and may use part of
the reserve, so an admin can always get in.
"""

from __future__ import annotations

import ipaddress
import resource
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fmtp.ratelimit import LogLimiter

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Sources trusted unless the admin names others: the machine itself.
LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)

#: File descriptors kept out of reach of untrusted connections: at least
#: this many, or an eighth of the limit if that is more.
MIN_RESERVE = 64
#: File descriptors not even trusted connections may take: the store, its
#: journal, the log, the listening sockets.
HARD_RESERVE = 32
#: Connections one untrusted source may hold by default.
DEFAULT_PER_SOURCE = 64
#: The file limit assumed when the process has none.
UNLIMITED_FILES = 1 << 20


@dataclass(frozen=True)
class ConnectionLimits:
    """
    @ivar max_total: streams open at once from untrusted sources (all
        sources count towards it).
    @ivar max_per_source: streams open at once from one untrusted source
        (an IPv4 address, or an IPv6 /64: one host's usual allocation).
    @ivar max_trusted: streams open at once, counting all, beyond which
        even a trusted source is refused.
    @ivar trusted: networks exempt from the per-source cap, which may
        also open streams beyond C{max_total}, up to C{max_trusted}.
    """

    max_total: int
    max_per_source: int
    max_trusted: int
    trusted: tuple[Network, ...] = LOOPBACK


def open_file_limit() -> int:
    """
    This process's soft limit on open files.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return UNLIMITED_FILES
    return soft


def default_limits(
    open_files: int | None = None,
    max_total: int | None = None,
    max_per_source: int | None = None,
    trusted: Iterable[Network] | None = None,
) -> ConnectionLimits:
    """
    Limits below C{open_files} (this process's limit if L{None}): a
    reserve of an eighth (at least L{MIN_RESERVE}) for what the server
    opens itself and for trusted sources, of which L{HARD_RESERVE} is
    kept from everyone.  The admin's values, when given, replace the
    derived ones but never reach into the hard reserve.
    """
    files = open_files if open_files is not None else open_file_limit()
    ceiling = max(1, files - HARD_RESERVE)
    derived = max(1, files - max(MIN_RESERVE, files // 8))
    total = min(max_total if max_total is not None else derived, ceiling)
    per_source = max_per_source if max_per_source is not None else DEFAULT_PER_SOURCE
    return ConnectionLimits(
        max_total=total,
        max_per_source=min(per_source, total),
        max_trusted=max(total, ceiling),
        trusted=LOOPBACK if trusted is None else tuple(trusted),
    )


def parse_networks(texts: Sequence[str]) -> tuple[Network, ...]:
    """
    @raise ValueError: naming a text that is not an address or a CIDR
        network.
    """
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an address or a network (CIDR)")
    return tuple(networks)


def source_of(host: str) -> tuple[object, ipaddress._BaseAddress | None]:
    """
    The key a host's connections are counted under, and its address.

    An IPv6 host is counted by its /64, since it can pick any address in
    it; an IPv4-mapped IPv6 address is its IPv4 address.  A host that is
    not an IP address (a UNIX socket) is its own key.
    """
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host, None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        else:
            return ipaddress.ip_network(f"{address}/64", strict=False), address
    return address, address


class Stream(typing.Protocol):
    """
    What L{Connections} needs of an open stream (the type of
    L{fmtp.protocols.framing.FrameStreamProtocol}, as seen from here).
    """

    def shut_down(self) -> None:
        """
        Finish the requests in progress, answer no new ones, then close.
        """

    def abort(self) -> None:
        """
        Close at once.
        """


class Connections:
    """
    The open streams of one server, shared by all its stream listeners.

    A stream asks L{admit} when it opens and calls L{release} when it
    closes; L{shut_down} closes them all when the server stops.
    """

    _log = Logger()

    def __init__(self, limits: ConnectionLimits, clock: IReactorTime) -> None:
        self.limits = limits
        self._clock = clock
        self._streams: dict[Stream, object] = {}
        self._per_source: dict[object, int] = {}
        # One line per source per minute about refusals, and one per
        # minute about the server being full, whoever is refused.
        self._log_limiter = LogLimiter(clock, rate=1 / 60, burst=1)
        self._idle: list[Deferred[None]] = []

    def __len__(self) -> int:
        return len(self._streams)

    def streams(self) -> list[Stream]:
        return list(self._streams)

    def count_from(self, host: str) -> int:
        """
        How many open streams are counted against C{host}'s source.
        """
        return self._per_source.get(source_of(host)[0], 0)

    def admit(self, stream: Stream, host: str) -> str | None:
        """
        Count a new stream from C{host} if the limits allow it.

        @return: L{None} if admitted, else why not, for the one line the
            refused client is sent (it has been logged).
        """
        key, address = source_of(host)
        limits = self.limits
        trusted = address is not None and any(
            address in network for network in limits.trusted
        )
        total = len(self._streams)
        refusal = None
        if total >= limits.max_trusted or (not trusted and total >= limits.max_total):
            refusal, log_key = "too many connections, try again later", "full"
        elif not trusted and self._per_source.get(key, 0) >= limits.max_per_source:
            refusal, log_key = "too many connections from your address", key
        if refusal is not None:
            self._log_limiter.emit(
                self._log,
                log_key,
                "Refused a connection from {host}: {reason} ({total} open, "
                "{from_source} from its address)",
                level="warn",
                host=host,
                reason=refusal,
                total=total,
                from_source=self._per_source.get(key, 0),
            )
            return refusal
        self._streams[stream] = key
        self._per_source[key] = self._per_source.get(key, 0) + 1
        return None

    def release(self, stream: Stream) -> None:
        """
        Forget a stream that closed (one never admitted is ignored).
        """
        key = self._streams.pop(stream, None)
        if key is None:
            return
        left = self._per_source[key] - 1
        if left:
            self._per_source[key] = left
        else:
            del self._per_source[key]
        if not self._streams:
            idle, self._idle = self._idle, []
            for waiter in idle:
                waiter.callback(None)

    def shut_down(self, timeout: float) -> Deferred[None]:
        """
        Ask every open stream to finish and close; abort those still open
        after C{timeout} seconds.

        @return: a L{Deferred} that fires once none is open.
        """
        if not self._streams:
            return succeed(None)
        self._log.info("Closing {count} open connections", count=len(self._streams))
        waiter: Deferred[None] = Deferred()
        self._idle.append(waiter)
        for stream in self.streams():
            stream.shut_down()
        if self._streams:
            deadline = self._clock.callLater(timeout, self._abort_all)
            waiter.addBoth(_cancel, deadline)
        return waiter

    def _abort_all(self) -> None:
        self._log.warn(
            "{count} connections did not finish in time; closing them",
            count=len(self._streams),
        )
        for stream in self.streams():
            stream.abort()


def _cancel(result, call):
    if call.active():
        call.cancel()
    return result
