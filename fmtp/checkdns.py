"""
C{fmtp check-dns DOMAIN}: what other servers will find in DNS for a domain.

Federation fails in ways an admin cannot see from their own server: a key
record with a typo is skipped by every peer, a revoked key still signs
here, an SRV target has no address.  This check looks the domain up the
way a peer would (through the same L{fmtp.dns} code) and says, one
sentence a finding, what is right and what is wrong, and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from twisted.internet.interfaces import IReactorTime

from fmtp.dns.resolver import (
    DNSAnswer,
    DNSFailure,
    NoSuchRecords,
    QueryResolver,
    txt_record_text,
)
from fmtp.dns.routes import SRV_SERVICE_LABEL, NoRoute, RouteLookupFailed, RouteResolver
from fmtp.errors import InvalidAddress, InvalidKeyRecord
from fmtp.keys.records import (
    DomainPublicKey,
    key_record_name,
    parse_key_record,
    zone_line,
)
from fmtp.objects import normalize_domain

__all__ = ["ERROR", "OK", "WARN", "Finding", "check_dns", "format_findings"]

OK = "ok"
WARN = "warn"
ERROR = "error"

#: A key that expires sooner than this is worth a warning: its successor
#: must be published before it goes, and DNS takes a TTL to spread.
EXPIRY_WARNING = 7 * 86400


@dataclass(frozen=True, slots=True)
class Finding:
    """
    One thing C{check-dns} found.

    @ivar level: L{OK}, L{WARN} (works, but should be fixed) or L{ERROR}
        (other servers will refuse or fail to reach this domain).
    @ivar message: one or two sentences for an admin.
    """

    level: str
    message: str


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _publish_hint(domain: str, key: DomainPublicKey | None) -> str:
    if key is None:
        return " Publish the record `fmtp keygen` printed."
    return f" Publish this record:  {zone_line(domain, key)}"


async def _check_keys(
    resolver: QueryResolver,
    domain: str,
    local_key: DomainPublicKey | None,
    now: float,
) -> list[Finding]:
    findings: list[Finding] = []
    name = key_record_name(domain)
    try:
        answer: DNSAnswer = await resolver.query(name, "TXT")
    except NoSuchRecords as e:
        what = "does not exist" if e.nxdomain else "has no TXT records"
        findings.append(
            Finding(
                ERROR,
                f"{name} {what}, so {domain} publishes no key: other servers "
                f"cannot verify its messages and will refuse them or ask back "
                f"for each one.{_publish_hint(domain, local_key)}",
            )
        )
        return findings
    except DNSFailure as e:
        findings.append(
            Finding(
                ERROR,
                f"Could not look up the key records at {name}: {e.message}. "
                "Other servers will defer messages from this domain until "
                "their lookup succeeds.",
            )
        )
        return findings

    count = len(answer.rdata)
    findings.append(
        Finding(
            OK,
            f"{name} has {count} TXT record{'s' if count != 1 else ''} "
            f"(TTL {answer.ttl:.0f} s).",
        )
    )
    keys: list[DomainPublicKey] = []
    for rdata in answer.rdata:
        text = txt_record_text(rdata)
        if not text.lstrip(" \t").startswith("v="):
            findings.append(
                Finding(
                    WARN,
                    f"Ignoring a TXT record at {name} that is not a key "
                    f"record: {text!r}.",
                )
            )
            continue
        try:
            keys.append(parse_key_record(domain, text))
        except InvalidKeyRecord as e:
            findings.append(
                Finding(
                    ERROR,
                    f"A key record at {name} does not parse and every server "
                    f"skips it: {e}. The record: {text!r}.",
                )
            )
    revoked = {key.fingerprint for key in keys if key.revoked}
    usable: set[str] = set()
    for key in keys:
        fp = key.fingerprint
        if key.revoked:
            findings.append(
                Finding(OK, f"Key {fp} is revoked: signatures by it are refused.")
            )
        elif fp in revoked:
            findings.append(
                Finding(
                    WARN,
                    f"Key {fp} is published and revoked at once, so it is "
                    "refused; remove the record that publishes it.",
                )
            )
        elif key.expired(now):
            findings.append(
                Finding(
                    WARN,
                    f"Key {fp} expired on {_when(key.not_after or 0)}: "
                    "signatures by it are refused; remove its record.",
                )
            )
        elif key.not_after is not None and key.not_after - now < EXPIRY_WARNING:
            usable.add(fp)
            findings.append(
                Finding(
                    WARN,
                    f"Key {fp} is published but expires soon, on "
                    f"{_when(key.not_after)}: publish its successor now.",
                )
            )
        else:
            usable.add(fp)
            until = f" until {_when(key.not_after)}" if key.not_after else ""
            findings.append(Finding(OK, f"Key {fp} is published{until}."))
    if not usable:
        findings.append(
            Finding(
                ERROR,
                f"{domain} publishes no usable key: other servers will refuse "
                f"its messages.{_publish_hint(domain, local_key)}",
            )
        )

    if local_key is not None:
        fp = local_key.fingerprint
        if fp in revoked:
            findings.append(
                Finding(
                    ERROR,
                    f"This server's key {fp} is revoked in DNS: every message "
                    "it signs will be refused. Generate a new key with "
                    "`fmtp keygen` and publish its record.",
                )
            )
        elif fp in usable:
            findings.append(Finding(OK, f"This server's key {fp} is published."))
        elif any(key.fingerprint == fp for key in keys):
            findings.append(
                Finding(
                    ERROR,
                    f"This server's key {fp} is published but expired: every "
                    "message it signs will be refused. Publish it again "
                    "without x=, or with a later one.",
                )
            )
        elif usable:
            findings.append(
                Finding(
                    ERROR,
                    f"This server's key {fp} is not among the published keys: "
                    "other servers will refuse what it signs."
                    f"{_publish_hint(domain, local_key)}",
                )
            )
    return findings


def _route_text(host: str, port: int, addresses: list[str]) -> str:
    return f"{host} port {port} ({', '.join(addresses)})"


async def _check_target(
    routes: RouteResolver, kind: str, host: str, port: int, extra: str
) -> Finding:
    try:
        addresses = await routes.resolve_host(host)
    except NoRoute:
        return Finding(
            ERROR,
            f"{kind} target {host}{extra} has no A or AAAA record: no server "
            "can connect to it.",
        )
    except RouteLookupFailed as e:
        return Finding(
            WARN, f"Could not look up the address of {kind} target {host}: {e.message}."
        )
    return Finding(OK, f"{kind} target {_route_text(host, port, addresses)}{extra}.")


async def _check_routes(
    resolver: QueryResolver, routes: RouteResolver, domain: str
) -> list[Finding]:
    findings: list[Finding] = []
    srv_name = f"{SRV_SERVICE_LABEL}.{domain}"
    try:
        srv = await resolver.query(srv_name, "SRV")
    except NoSuchRecords:
        findings.append(
            Finding(OK, f"No SRV record at {srv_name}; servers will use MX next.")
        )
    except DNSFailure as e:
        findings.append(Finding(ERROR, f"Could not look up {srv_name}: {e.message}."))
        return findings
    else:
        targets = [r for r in srv.rdata if str(r.target) != "."]
        if not targets:
            findings.append(
                Finding(
                    ERROR,
                    f"The SRV record at {srv_name} has target '.': {domain} says "
                    "it offers no fmtp service, and no server will try it.",
                )
            )
            return findings
        if len(targets) != len(srv.rdata):
            findings.append(
                Finding(
                    WARN,
                    f"{srv_name} mixes an SRV record with target '.' and "
                    "others; the '.' one is ignored, remove it.",
                )
            )
        for r in sorted(targets, key=lambda r: (r.priority, -r.weight)):
            host = str(r.target).rstrip(".").lower()
            extra = f" (priority {r.priority}, weight {r.weight})"
            findings.append(await _check_target(routes, "SRV", host, r.port, extra))
        return findings

    try:
        mx = await resolver.query(domain, "MX")
    except NoSuchRecords as e:
        if e.nxdomain:
            findings.append(Finding(ERROR, f"{domain} does not exist in DNS."))
            return findings
        findings.append(
            Finding(OK, f"No MX record for {domain}; servers will use its own address.")
        )
    except DNSFailure as e:
        findings.append(
            Finding(ERROR, f"Could not look up the MX of {domain}: {e.message}.")
        )
        return findings
    else:
        targets = [r for r in mx.rdata if str(r.exchange) != "."]
        if not targets:
            findings.append(
                Finding(
                    ERROR,
                    f"{domain} has a null MX (RFC 7505): it says it accepts no "
                    "mail, and no server will try to reach it. Publish an SRV "
                    f"record at {srv_name} to receive fmtp.",
                )
            )
            return findings
        for r in sorted(targets, key=lambda r: r.preference):
            host = str(r.exchange).rstrip(".").lower()
            findings.append(
                await _check_target(
                    routes,
                    "MX",
                    host,
                    routes.default_port,
                    f" (preference {r.preference})",
                )
            )
        return findings

    try:
        addresses = await routes.resolve_host(domain)
    except NoRoute:
        findings.append(
            Finding(
                ERROR,
                f"{domain} has no SRV, MX, A or AAAA record: no server can "
                f"reach it. Publish an SRV record at {srv_name}.",
            )
        )
    except RouteLookupFailed as e:
        findings.append(
            Finding(ERROR, f"Could not look up the address of {domain}: {e.message}.")
        )
    else:
        findings.append(
            Finding(
                OK,
                f"{domain} itself has address {', '.join(addresses)}; servers "
                f"will connect to port {routes.default_port} there.",
            )
        )
    return findings


async def _check_verdict(routes: RouteResolver, domain: str) -> Finding:
    try:
        found = await routes.routes_for(domain)
    except NoRoute as e:
        return Finding(ERROR, f"Other servers cannot reach {domain}: {e.message}.")
    except RouteLookupFailed as e:
        return Finding(
            ERROR, f"Other servers cannot find {domain}'s server now: {e.message}."
        )
    listed = ", ".join(f"{r.host}:{r.port} ({r.address})" for r in found)
    return Finding(OK, f"Other servers will connect to {domain} at: {listed}.")


async def check_dns(
    resolver: QueryResolver,
    domain: str,
    local_public_key: DomainPublicKey | None = None,
    clock: IReactorTime | None = None,
) -> list[Finding]:
    """
    Check what DNS says of C{domain}, as another fmtp server would see it.

    @param resolver: asks DNS (a L{fmtp.dns.resolver.DNSResolver}, for C{--dns}).
    @param domain: the domain to check.
    @param local_public_key: this server's public key, to say whether it is
        the one published.
    @param clock: the source of the current time, for key expiry; the
        global reactor if not given.
    @return: the findings, keys first, then routes.
    """
    if clock is None:
        from twisted.internet import reactor

        clock = reactor  # type: ignore[assignment]
    assert clock is not None
    try:
        domain = normalize_domain(domain)
    except InvalidAddress as e:
        return [Finding(ERROR, f"{e.message}.")]
    routes = RouteResolver(resolver, clock)
    findings = await _check_keys(resolver, domain, local_public_key, clock.seconds())
    findings.extend(await _check_routes(resolver, routes, domain))
    findings.append(await _check_verdict(routes, domain))
    return findings


_LABELS = {OK: "ok   ", WARN: "WARN ", ERROR: "ERROR"}


def format_findings(findings: list[Finding]) -> str:
    """
    The findings as text for a terminal: one a line, marked C{ok}, C{WARN}
    or C{ERROR}, then a count.
    """
    lines = [f"{_LABELS.get(f.level, f.level)} {f.message}" for f in findings]
    errors = sum(1 for f in findings if f.level == ERROR)
    warnings = sum(1 for f in findings if f.level == WARN)
    if errors or warnings:
        lines.append(
            f"{errors} error{'s' if errors != 1 else ''}, "
            f"{warnings} warning{'s' if warnings != 1 else ''}."
        )
    else:
        lines.append("All good.")
    return "\n".join(lines) + "\n"
