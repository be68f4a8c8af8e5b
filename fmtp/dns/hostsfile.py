"""
The hosts file: keys, routes and addresses given by hand instead of DNS.

A private network (a lab, a company's closed federation) may have no DNS
zone to publish keys and routes in, and the embedded default (DESIGN,
decision 13: C{twistd -n fmtp} with no options) must run with none.  The
C{--hosts-file} option names a file of such entries; what it names wins
over DNS (see L{fmtp.dns.keyverifier} and L{fmtp.dns.routes}).  One entry
a line, C{#} starts a comment::

    # Keys, as published at fmtpkey.<domain> (quotes optional).
    key lenore.org "v=FMTP1; k=ed25519; p=..."
    # Where a domain's server is, tried in order (port 7070 if omitted).
    route lenore.org lost.lenore.org:8000 10.0.0.3:7070 [fd00::3]:7070
    # The addresses of a host name, as /etc/hosts would say.
    address lost.lenore.org 10.0.0.3 fd00::3

Key records are kept as text and parsed when used, like records found in
DNS (see L{fmtp.keys.static.StaticKeyVerifier}): a bad one is skipped and
logged rather than stop the server.  Everything else is checked here, and
an error names the file and the line.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from fmtp.errors import InvalidAddress
from fmtp.objects import normalize_domain
from fmtp.util.hostport import DEFAULT_FMTP_PORT, parse_host_port

__all__ = [
    "DEFAULT_HOSTS",
    "HostsFile",
    "HostsFileError",
    "load_hosts_file",
    "parse_hosts",
]

#: The entries the embedded default runs on: C{localhost} is served on
#: loopback.  Its key is the server's own, known without any file (see
#: L{fmtp.dns.keyverifier.DNSKeyVerifier.add_signer}).
DEFAULT_HOSTS = f"""\
route localhost localhost:{DEFAULT_FMTP_PORT}
address localhost 127.0.0.1 ::1
"""

# What DKIM calls folding white space: str.split() and str.strip() with no
# argument would also take Unicode spaces, which no entry may hold.
_WHITESPACE = " \t\r\n"


class HostsFileError(ValueError):
    """
    A hosts file that cannot be used; the message names the file and line.
    """


@dataclass(slots=True)
class HostsFile:
    """
    The entries of a hosts file.

    @ivar keys: normalized domain to key record texts, in file order: the
        C{static} argument of L{fmtp.dns.keyverifier.DNSKeyVerifier}, or
        the records of a L{fmtp.keys.static.StaticKeyVerifier}.
    @ivar routes: normalized domain to C{(host, port)} pairs, in order: the
        C{static_routes} of L{fmtp.dns.routes.RouteResolver}.
    @ivar addresses: host name to IP addresses: the C{static_addresses} of
        L{fmtp.dns.routes.RouteResolver}.
    """

    keys: dict[str, list[str]] = field(default_factory=dict)
    routes: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    addresses: dict[str, list[str]] = field(default_factory=dict)

    def update(self, other: HostsFile) -> None:
        """
        Add the entries of C{other} after these (for the embedded default
        plus a file).
        """
        for mine, theirs in (
            (self.keys, other.keys),
            (self.routes, other.routes),
            (self.addresses, other.addresses),
        ):
            for name, values in theirs.items():
                mine.setdefault(name, []).extend(values)  # type: ignore[arg-type]


def _split(line: str) -> list[str]:
    return [word for word in line.split(" ") if word]


def _strip_comment(line: str) -> str:
    # A "#" inside a quoted key record is part of the record (base64 has
    # none, but a later tag might); elsewhere it starts a comment.
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == "#" and not quoted:
            return line[:index]
    return line


def parse_hosts(lines: Iterable[str], source: str = "<hosts>") -> HostsFile:
    """
    Parse hosts file entries.

    @param lines: the lines of the file.
    @param source: the file name, for error messages.
    @raise HostsFileError: naming C{source} and the line of the first bad
        entry.
    """
    hosts = HostsFile()
    for number, raw in enumerate(lines, 1):
        # A tab is a space, even inside a key record, whose tags may be
        # surrounded by either.
        line = _strip_comment(raw).replace("\t", " ").strip(_WHITESPACE)
        if not line:
            continue
        where = f"{source}:{number}"
        kind, _, rest = line.partition(" ")
        rest = rest.strip(_WHITESPACE)
        kind = kind.lower()
        try:
            if kind == "key":
                domain, _, record = rest.partition(" ")
                record = record.strip(_WHITESPACE)
                if len(record) >= 2 and record[0] == record[-1] == '"':
                    record = record[1:-1]
                if not domain or not record:
                    raise ValueError("expected: key DOMAIN RECORD")
                if '"' in record:
                    raise ValueError("unbalanced quotes around the key record")
                hosts.keys.setdefault(_domain(domain), []).append(record)
            elif kind == "route":
                words = _split(rest)
                if len(words) < 2:
                    raise ValueError("expected: route DOMAIN HOST:PORT [HOST:PORT...]")
                routes = hosts.routes.setdefault(_domain(words[0]), [])
                routes.extend(parse_host_port(w, DEFAULT_FMTP_PORT) for w in words[1:])
            elif kind == "address":
                words = _split(rest)
                if len(words) < 2:
                    raise ValueError("expected: address HOST IP [IP...]")
                host = _domain(words[0])
                found = hosts.addresses.setdefault(host, [])
                for word in words[1:]:
                    try:
                        found.append(str(ipaddress.ip_address(word)))
                    except ValueError:
                        raise ValueError(f"{word!r} is not an IP address") from None
            else:
                raise ValueError(
                    f"unknown entry {kind!r}: expected key, route or address"
                )
        except ValueError as e:
            raise HostsFileError(f"{where}: {e}") from None
    return hosts


def _domain(text: str) -> str:
    try:
        return normalize_domain(text.rstrip(".") if text != "." else text)
    except InvalidAddress as e:
        raise ValueError(e.message) from None


def load_hosts_file(path: str | os.PathLike[str]) -> HostsFile:
    """
    Read the hosts file at C{path} (the C{--hosts-file} option).

    @raise HostsFileError: naming the file and line of a bad entry.
    @raise OSError: if the file cannot be read.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        try:
            return parse_hosts(f, path)
        except UnicodeDecodeError as e:
            raise HostsFileError(f"{path}: not UTF-8 ({e.reason})") from None
