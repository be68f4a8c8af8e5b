"""
A real DNS server on loopback for tests: Twisted Names serving zones
written at test time, on UDP and TCP of one port of 127.0.0.1.

    server = start_dns_server({"poe.net": fmtp_zone("poe.net", "127.0.0.2", 7070)})
    resolver = server.resolver(reactor)          # a DNSResolver, 0.5 s timeout
    ...
    server.set_zone("poe.net", new_text)         # change records mid-test
    await server.stop()

Why not L{twisted.names.authority.BindAuthority}: it strips comments at
the first C{;} and splits lines on white space without regard for quotes,
so it cannot read the TXT record C{"v=FMTP1; k=ed25519; p=..."} every
fmtp domain publishes.  Zone texts are parsed by dnspython (a complete
RFC 1035 master file parser) instead, and served by a
L{twisted.names.authority.FileAuthority} holding the records, which can
be replaced while the server runs.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping

import dns.name
import dns.rdatatype
import dns.zone
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.names import common, server
from twisted.names import dns as tdns
from twisted.names.authority import FileAuthority

from fmtp.dns.resolver import DNSResolver
from fmtp.keys.records import DomainPublicKey, format_key_record

__all__ = [
    "DEFAULT_TTL",
    "RunningDNSServer",
    "ZoneAuthority",
    "fmtp_zone",
    "key_txt",
    "silent_dns_server",
    "start_dns_server",
    "zone_text",
]

#: The TTL of test records unless a test says otherwise.
DEFAULT_TTL = 300

#: How long a test resolver waits for an answer: loopback answers in
#: microseconds, and a test of a dead server should not wait long.
TEST_TIMEOUT = 0.5


class ZoneAuthority(FileAuthority):
    """
    An authority for one zone whose records come from a zone text, and can
    be replaced with L{set_zone} while the server runs.
    """

    def __init__(self, origin: str, text: str) -> None:
        # FileAuthority.__init__ would read a file; there is none.
        common.ResolverBase.__init__(self)
        self._cache = {}
        self.origin = origin
        self.set_zone(text)

    def loadFile(self, filename):
        raise NotImplementedError("a ZoneAuthority is built from text")

    def set_zone(self, text: str) -> None:
        """
        Serve the records of C{text} (a master file, RFC 1035 section 5,
        with C{$ORIGIN} defaulting to the zone's origin) from now on.

        @raise dns.exception.DNSException: if C{text} does not parse or has
            no SOA at its origin.
        """
        zone = dns.zone.from_text(
            text, origin=self.origin, relativize=False, check_origin=True
        )
        records: dict[bytes, list] = {}
        soa = None
        message = tdns.Message()
        for name, node in zone.nodes.items():
            owner = name.to_text(omit_final_dot=True).lower().encode("ascii")
            for rdataset in node.rdatasets:
                record_class = message.lookupRecordType(rdataset.rdtype)
                for rdata in rdataset:
                    # Through the wire format: one conversion for every
                    # type both libraries know.
                    wire = rdata.to_wire()
                    record = record_class()
                    record.decode(io.BytesIO(wire), len(wire))
                    record.ttl = rdataset.ttl
                    records.setdefault(owner, []).append(record)
                    if rdataset.rdtype == dns.rdatatype.SOA:
                        soa = (owner, record)
        self.records = records
        self.soa = soa

    def contains(self, name: bytes) -> bool:
        """
        Whether C{name} is in this zone.
        """
        return tdns._isSubdomainOf(name, self.soa[0])


class _Factory(server.DNSServerFactory):
    """
    A DNS server factory that behaves as real authoritative servers do
    where Twisted Names does not: NXDOMAIN carries the zone's SOA in the
    authority section (RFC 2308), so resolvers take the negative TTL from
    it, and UDP answers over 512 bytes are truncated.
    """

    def __init__(self, zones: list[ZoneAuthority]) -> None:
        super().__init__(authorities=zones)
        self.zones = zones
        #: Set to answer every query REFUSED, as a misconfigured server
        #: does.
        self.refusing = False
        #: Set to answer every query SERVFAIL, as a broken server does.
        self.failing = False
        #: How many TCP connections clients made (after a truncated answer).
        self.tcp_connections = 0

    def connectionMade(self, protocol):
        self.tcp_connections += 1
        super().connectionMade(protocol)

    def sendReply(self, protocol, message, address):
        # Twisted Names sends UDP answers of any size to a client without
        # EDNS; a real server truncates them at 512 bytes (RFC 1035) and
        # the client asks again over TCP.  Do the same, so that path is
        # tested.
        if address is not None:
            message.maxSize = 512
        super().sendReply(protocol, message, address)

    def handleQuery(self, message, protocol, address):
        if self.failing:
            response = self._responseFromMessage(message=message, rCode=tdns.ESERVER)
            self.sendReply(protocol, response, address)
            return
        super().handleQuery(message, protocol, address)

    def allowQuery(self, message, protocol, address):
        return not self.refusing and super().allowQuery(message, protocol, address)

    def gotResolverError(self, failure, protocol, message, address):
        if failure.check(tdns.AuthoritativeDomainError) and message.queries:
            name = message.queries[0].name.name
            for zone in self.zones:
                if zone.contains(name):
                    soa_name, soa = zone.soa
                    authority = [
                        tdns.RRHeader(soa_name, tdns.SOA, tdns.IN, soa.ttl, soa, True)
                    ]
                    response = self._responseFromMessage(
                        message=message, rCode=tdns.ENAME, authority=authority
                    )
                    self.sendReply(protocol, response, address)
                    return
        super().gotResolverError(failure, protocol, message, address)


def _listen_same_port(reactor, factory, interface: str, attempts: int = 20):
    """
    Listen on UDP port 0, then on TCP on the port the kernel picked: DNS
    clients retry over TCP on the same port when an answer is truncated.
    Another process may hold that TCP port; then try another one.
    """
    for _ in range(attempts):
        udp = reactor.listenUDP(
            0, tdns.DNSDatagramProtocol(factory), interface=interface
        )
        port = udp.getHost().port
        try:
            tcp = reactor.listenTCP(port, factory, interface=interface)
        except CannotListenError:
            udp.stopListening()
            continue
        return udp, tcp
    raise CannotListenError(interface, 0, "no port free for both UDP and TCP")


class RunningDNSServer:
    """
    A DNS server listening on C{host}:C{port} (UDP and TCP) for the zones
    it was started with.  Unpacks as C{host, port, stop}.
    """

    def __init__(self, reactor, zones: Mapping[str, str], host: str) -> None:
        self._reactor = reactor
        self.zones = {
            origin: ZoneAuthority(origin, text) for origin, text in zones.items()
        }
        self.factory = _Factory(list(self.zones.values()))
        self._udp, self._tcp = _listen_same_port(reactor, self.factory, host)
        self.host = host
        self.port = self._udp.getHost().port

    def __iter__(self) -> Iterator:
        return iter((self.host, self.port, self.stop))

    @property
    def nameserver(self) -> tuple[str, int]:
        """
        C{(host, port)}, as L{fmtp.dns.resolver.DNSResolver} takes it.
        """
        return (self.host, self.port)

    @property
    def dns_option(self) -> str:
        """
        The C{--dns} option value that names this server.
        """
        return f"{self.host}:{self.port}"

    def resolver(self, reactor=None, timeout: float = TEST_TIMEOUT) -> DNSResolver:
        """
        A L{DNSResolver} asking this server only.
        """
        return DNSResolver(reactor or self._reactor, [self.nameserver], timeout)

    def set_zone(self, origin: str, text: str) -> None:
        """
        Serve C{text} for zone C{origin} from now on, replacing its records
        or adding the zone.
        """
        if origin in self.zones:
            self.zones[origin].set_zone(text)
        else:
            zone = ZoneAuthority(origin, text)
            self.zones[origin] = zone
            self.factory.zones.append(zone)
            self.factory.resolver.resolvers.append(zone)

    def stop(self) -> defer.Deferred:
        """
        Stop listening and drop TCP connections still open.
        """
        for protocol in list(self.factory.connections):
            protocol.transport.abortConnection()
        return defer.gatherResults(
            [
                defer.maybeDeferred(self._udp.stopListening),
                defer.maybeDeferred(self._tcp.stopListening),
            ]
        )


def start_dns_server(
    zones: Mapping[str, str], reactor=None, host: str = "127.0.0.1"
) -> RunningDNSServer:
    """
    Start a DNS server for C{zones} (origin to zone text, see
    L{zone_text} and L{fmtp_zone}) on a free port of C{host}.
    """
    if reactor is None:
        from twisted.internet import reactor
    return RunningDNSServer(reactor, zones, host)


class _Silent(DatagramProtocol):
    """
    Drops every datagram: a name server that does not answer.
    """

    def datagramReceived(self, data, addr):
        pass


def silent_dns_server(reactor=None, host: str = "127.0.0.1"):
    """
    A UDP port that swallows queries, to test time-outs.

    @return: the listening port; its C{getHost().port} is the port to ask,
        and its C{stopListening} must be called at the end of the test.
    """
    if reactor is None:
        from twisted.internet import reactor
    return reactor.listenUDP(0, _Silent(), interface=host)


def zone_text(
    origin: str,
    records: Iterable[str] = (),
    ttl: int = DEFAULT_TTL,
    negative_ttl: int = DEFAULT_TTL,
) -> str:
    """
    A zone text for C{origin}: C{$ORIGIN}, C{$TTL}, an SOA whose minimum is
    C{negative_ttl} (RFC 2308), an NS, then C{records} (master file lines,
    names relative to C{origin}).
    """
    origin = origin.rstrip(".") + "."
    head = [
        f"$ORIGIN {origin}",
        f"$TTL {ttl}",
        f"@ IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 {negative_ttl}",
        f"@ IN NS ns.{origin}",
        "ns IN A 127.0.0.1",
    ]
    return "\n".join([*head, *records]) + "\n"


def key_txt(
    key: DomainPublicKey | str, name: str = "fmtpkey", ttl: int | None = None
) -> str:
    """
    A master file line publishing C{key} (a key, or a record text) at
    C{name}.
    """
    text = key if isinstance(key, str) else format_key_record(key)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    fields = [name] + ([] if ttl is None else [str(ttl)])
    return " ".join([*fields, "IN", "TXT", f'"{escaped}"'])


def fmtp_zone(
    domain: str,
    address: str,
    port: int,
    keys: Iterable[DomainPublicKey | str] = (),
    host: str = "fmtp",
    srv: bool = True,
    mx: bool = False,
    ttl: int = DEFAULT_TTL,
    negative_ttl: int = DEFAULT_TTL,
    extra: Iterable[str] = (),
) -> str:
    """
    The zone of an fmtp domain served at C{address}:C{port}: the host
    C{<host>.<domain>} at C{address}, an SRV record pointing at it (if
    C{srv}), an MX naming it (if C{mx}), and C{keys} at C{fmtpkey}.  For
    the two-server federation tests::

        fmtp_zone("poe.net", "127.0.0.2", poe_port, [poe_signer.public_key()])
        fmtp_zone("lenore.org", "127.0.0.3", lenore_port, [lenore_key])
    """
    records = [f"{host} IN A {address}", f"@ IN A {address}"]
    if srv:
        records.append(f"_fmtp._tcp IN SRV 10 10 {port} {host}")
    if mx:
        records.append(f"@ IN MX 10 {host}")
    records.extend(key_txt(key) for key in keys)
    records.extend(extra)
    return zone_text(domain, records, ttl, negative_ttl)
