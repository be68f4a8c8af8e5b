"""
C{fmtp check-dns DOMAIN}: the command around L{fmtp.checkdns}, which
looks a domain up the way a peer would.
"""

from __future__ import annotations

from typing import Any

from fmtp.cli.admin import parse_domain
from fmtp.cli.options import CommandOptions
from fmtp.cli.runner import run_on_reactor
from fmtp.cli.status import EXIT_OK, EXIT_REFUSED, BadUsage
from fmtp.keys.keyfile import KeyFileError, load_private_key
from fmtp.keys.signing import DomainSigner
from fmtp.options import DNSOption


class CheckDNSOptions(DNSOption, CommandOptions):
    synopsis = "[--dns HOST:PORT] [--key-file PATH] DOMAIN"
    longdesc = (
        "Say whether DOMAIN's key and route records are published and "
        "consistent with the local key, as needed before going live."
    )
    examples = (
        "fmtp check-dns poe.net --key-file /var/lib/fmtp/domain.key",
        "fmtp check-dns poe.net --dns 127.0.0.1:5353",
    )
    optParameters = [
        ["key-file", "k", None, "This server's key file, to check it is published."],
    ]

    def parseArgs(self, domain: str) -> None:
        self["domain"] = parse_domain(domain)


async def check(reactor: Any, options: CheckDNSOptions, local_key) -> int:
    # Imported here: DNS is the slowest import, and only check-dns needs it.
    from fmtp.checkdns import ERROR, check_dns, format_findings
    from fmtp.dns.resolver import DNSResolver

    resolver = DNSResolver(reactor, options["dns"] or None)
    findings = await check_dns(resolver, options["domain"], local_key, reactor)
    print(format_findings(findings), end="")
    if any(finding.level == ERROR for finding in findings):
        return EXIT_REFUSED
    return EXIT_OK


def check_dns_command(options: CheckDNSOptions) -> int:
    local_key = None
    if options["key-file"]:
        try:
            private_key = load_private_key(options["key-file"])
        except (OSError, KeyFileError) as e:
            raise BadUsage(f"--key-file: {e}")
        local_key = DomainSigner(private_key, options["domain"]).public_key()
    return run_on_reactor(lambda reactor: check(reactor, options, local_key))
