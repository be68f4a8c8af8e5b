"""
Tests for L{fmtp.checkdns}, against a real DNS server on loopback.
"""

from __future__ import annotations

import dataclasses

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import Clock

from fmtp.checkdns import ERROR, OK, WARN, Finding, check_dns, format_findings
from fmtp.dns.resolver import DNSResolver
from fmtp.keys.records import DomainPublicKey, zone_line
from fmtp.keys.signing import DomainSigner, generate_private_key
from tests.dnsserver import (
    fmtp_zone,
    silent_dns_server,
    start_dns_server,
    zone_text,
)

NOW = 1_700_000_000


@pytest.fixture
def dns_server():
    server = start_dns_server({"poe.net": zone_text("poe.net")})
    yield server
    pytest_twisted.blockon(server.stop())


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


@pytest.fixture
def signer() -> DomainSigner:
    return DomainSigner(generate_private_key(), "poe.net")


def levels(findings: list[Finding], level: str) -> list[str]:
    return [f.message for f in findings if f.level == level]


def one(findings: list[Finding], level: str, words: str) -> str:
    found = [m for m in levels(findings, level) if words in m]
    assert len(found) == 1, (level, words, findings)
    return found[0]


@pytest_twisted.ensureDeferred
async def test_all_good(dns_server, clock, signer) -> None:
    dns_server.set_zone(
        "poe.net", fmtp_zone("poe.net", "127.0.0.2", 7070, [signer.public_key()])
    )
    findings = await check_dns(
        dns_server.resolver(), "Poe.NET", signer.public_key(), clock
    )
    assert levels(findings, ERROR) == [] and levels(findings, WARN) == []
    one(findings, OK, "fmtpkey.poe.net has 1 TXT record (TTL 300 s)")
    one(findings, OK, f"Key {signer.fingerprint} is published.")
    one(findings, OK, f"This server's key {signer.fingerprint} is published")
    one(findings, OK, "SRV target fmtp.poe.net port 7070 (127.0.0.2)")
    one(findings, OK, "will connect to poe.net at: fmtp.poe.net:7070 (127.0.0.2)")
    text = format_findings(findings)
    assert text.endswith("All good.\n")
    assert text.startswith("ok    fmtpkey.poe.net has 1 TXT record")


@pytest_twisted.ensureDeferred
async def test_no_key(dns_server, clock, signer) -> None:
    """
    With no record, the admin is told what to publish.
    """
    dns_server.set_zone("poe.net", fmtp_zone("poe.net", "127.0.0.2", 7070))
    findings = await check_dns(
        dns_server.resolver(), "poe.net", signer.public_key(), clock
    )
    message = one(findings, ERROR, "fmtpkey.poe.net does not exist")
    assert zone_line("poe.net", signer.public_key()) in message
    # The routes are still checked.
    one(findings, OK, "SRV target fmtp.poe.net")
    assert format_findings(findings).endswith("1 error, 0 warnings.\n")


@pytest_twisted.ensureDeferred
async def test_key_problems(dns_server, clock, signer) -> None:
    """
    Records that do not parse, are not key records, are revoked, expired
    or expiring soon are each named; the local key being revoked is an
    error.
    """
    expiring = DomainPublicKey.from_public_key(
        "poe.net", generate_private_key().public_key(), not_after=NOW + 86400
    )
    expired = DomainPublicKey.from_public_key(
        "poe.net", generate_private_key().public_key(), not_after=NOW - 1
    )
    revocation = DomainPublicKey.revocation("poe.net", signer.fingerprint)
    dns_server.set_zone(
        "poe.net",
        fmtp_zone(
            "poe.net",
            "127.0.0.2",
            7070,
            [
                signer.public_key(),
                revocation,
                expiring,
                expired,
                "v=FMTP1; k=rsa; p=AAAA",
                "site-verification=1234",
            ],
        ),
    )
    findings = await check_dns(
        dns_server.resolver(), "poe.net", signer.public_key(), clock
    )
    one(findings, OK, "has 6 TXT records")
    one(findings, ERROR, "unsupported key type k=rsa")
    one(findings, WARN, "not a key record: 'site-verification=1234'")
    one(findings, OK, f"Key {signer.fingerprint} is revoked")
    one(findings, WARN, f"Key {signer.fingerprint} is published and revoked")
    one(findings, WARN, f"Key {expiring.fingerprint} is published but expires soon")
    one(findings, WARN, f"Key {expired.fingerprint} expired on 2023-11-14 22:13 UTC")
    one(findings, ERROR, f"This server's key {signer.fingerprint} is revoked")


@pytest_twisted.ensureDeferred
async def test_local_key_missing_or_expired(dns_server, clock, signer) -> None:
    other = DomainSigner(generate_private_key(), "poe.net")
    dns_server.set_zone(
        "poe.net", fmtp_zone("poe.net", "127.0.0.2", 7070, [other.public_key()])
    )
    resolver = dns_server.resolver()
    findings = await check_dns(resolver, "poe.net", signer.public_key(), clock)
    message = one(findings, ERROR, "is not among the published keys")
    assert zone_line("poe.net", signer.public_key()) in message

    expired = dataclasses.replace(signer.public_key(), not_after=NOW - 10)
    dns_server.set_zone(
        "poe.net",
        fmtp_zone("poe.net", "127.0.0.2", 7070, [other.public_key(), expired]),
    )
    findings = await check_dns(resolver, "poe.net", signer.public_key(), clock)
    one(findings, ERROR, f"This server's key {signer.fingerprint} is published but")


@pytest_twisted.ensureDeferred
async def test_no_usable_key(dns_server, clock) -> None:
    dns_server.set_zone(
        "poe.net",
        fmtp_zone("poe.net", "127.0.0.2", 7070, ["v=FMTP1; k=ed25519; p=bad"]),
    )
    findings = await check_dns(dns_server.resolver(), "poe.net", clock=clock)
    one(findings, ERROR, "publishes no usable key")
    one(findings, ERROR, "does not parse")


@pytest_twisted.ensureDeferred
async def test_routes_by_mx(dns_server, clock) -> None:
    dns_server.set_zone(
        "poe.net",
        zone_text(
            "poe.net",
            ["@ IN MX 20 backup", "@ IN MX 10 mail", "mail IN A 127.0.0.2"],
        ),
    )
    findings = await check_dns(dns_server.resolver(), "poe.net", clock=clock)
    one(findings, OK, "No SRV record at _fmtp._tcp.poe.net")
    one(findings, OK, "MX target mail.poe.net port 7070 (127.0.0.2) (preference 10)")
    one(findings, ERROR, "MX target backup.poe.net (preference 20) has no A or AAAA")
    one(findings, OK, "will connect to poe.net at: mail.poe.net:7070 (127.0.0.2)")


@pytest_twisted.ensureDeferred
async def test_routes_by_address(dns_server, clock) -> None:
    dns_server.set_zone("poe.net", zone_text("poe.net", ["@ IN AAAA ::1"]))
    findings = await check_dns(dns_server.resolver(), "poe.net", clock=clock)
    one(findings, OK, "No MX record for poe.net")
    one(findings, OK, "poe.net itself has address ::1; servers will connect to port")
    dns_server.set_zone("poe.net", zone_text("poe.net"))
    findings = await check_dns(dns_server.resolver(), "poe.net", clock=clock)
    one(findings, ERROR, "poe.net has no SRV, MX, A or AAAA record")
    one(findings, ERROR, "Other servers cannot reach poe.net")


@pytest_twisted.ensureDeferred
async def test_no_service(dns_server, clock) -> None:
    dns_server.set_zone("poe.net", zone_text("poe.net", ["_fmtp._tcp IN SRV 0 0 0 ."]))
    findings = await check_dns(dns_server.resolver(), "poe.net", clock=clock)
    one(findings, ERROR, "The SRV record at _fmtp._tcp.poe.net has target '.'")
    dns_server.set_zone("poe.net", zone_text("poe.net", ["@ IN MX 0 ."]))
    findings = await check_dns(dns_server.resolver(), "poe.net", clock=clock)
    one(findings, ERROR, "poe.net has a null MX")


@pytest_twisted.ensureDeferred
async def test_srv_problems(dns_server, clock) -> None:
    dns_server.set_zone(
        "poe.net",
        zone_text(
            "poe.net",
            ["_fmtp._tcp IN SRV 10 5 8000 gone", "_fmtp._tcp IN SRV 0 0 0 ."],
        ),
    )
    findings = await check_dns(dns_server.resolver(), "poe.net", clock=clock)
    one(findings, WARN, "mixes an SRV record with target '.'")
    one(findings, ERROR, "SRV target gone.poe.net (priority 10, weight 5) has no")


@pytest_twisted.ensureDeferred
async def test_nonexistent_domain(dns_server, clock) -> None:
    findings = await check_dns(dns_server.resolver(), "nowhere.poe.net", clock=clock)
    one(findings, ERROR, "fmtpkey.nowhere.poe.net does not exist")
    one(findings, ERROR, "nowhere.poe.net does not exist in DNS")


@pytest_twisted.ensureDeferred
async def test_dns_not_answering(clock) -> None:
    port = silent_dns_server()
    try:
        resolver = DNSResolver(reactor, [("127.0.0.1", port.getHost().port)], 0.2)
        findings = await check_dns(resolver, "poe.net", clock=clock)
    finally:
        await port.stopListening()
    one(findings, ERROR, "Could not look up the key records at fmtpkey.poe.net")
    one(findings, ERROR, "Could not look up _fmtp._tcp.poe.net")
    one(findings, ERROR, "cannot find poe.net's server now")


@pytest_twisted.ensureDeferred
async def test_bad_domain(clock) -> None:
    findings = await check_dns(
        DNSResolver(reactor, [("127.0.0.1", 9)]), "a..b", clock=clock
    )
    assert [f.level for f in findings] == [ERROR]
    assert "bad domain" in findings[0].message


def test_format_findings() -> None:
    text = format_findings(
        [Finding(OK, "fine"), Finding(WARN, "hmm"), Finding(ERROR, "broken")]
    )
    assert text == "ok    fine\nWARN  hmm\nERROR broken\n1 error, 1 warning.\n"


@pytest_twisted.ensureDeferred
async def test_command(dns_server, tmp_path) -> None:
    """
    C{fmtp check-dns} as an admin runs it: a real process asking the
    loopback DNS server, exiting 1 when something is wrong.
    """
    import os
    import sys

    from twisted.internet.utils import getProcessOutputAndValue

    from fmtp.keys.keyfile import write_private_key

    key = generate_private_key()
    key_file = tmp_path / "domain.key"
    write_private_key(key_file, key)
    signer = DomainSigner(key, "poe.net")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    args = ["-m", "fmtp", "check-dns", "--dns", dns_server.dns_option]
    args += ["--key-file", str(key_file), "poe.net"]

    dns_server.set_zone("poe.net", fmtp_zone("poe.net", "127.0.0.2", 7070))
    out, err, code = await getProcessOutputAndValue(sys.executable, args, env=env)
    assert code == 1, err
    assert b"fmtpkey.poe.net does not exist" in out

    dns_server.set_zone(
        "poe.net", fmtp_zone("poe.net", "127.0.0.2", 7070, [signer.public_key()])
    )
    out, err, code = await getProcessOutputAndValue(sys.executable, args, env=env)
    assert code == 0, (out, err)
    assert out.decode().endswith("All good.\n")
