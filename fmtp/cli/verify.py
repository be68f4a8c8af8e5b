"""
Who signed a message, and what the signature was checked against, said
precisely: for C{fmtp read}.

The order of the checks:

  1. the signature must name the sender's domain (L{signature_of});
  2. the key comes from the hosts file C{--hosts-file} names, if it has
     keys for the domain (as it does for C{twistd fmtp --hosts-file}, on a
     private network without DNS); else from DNS, C{fmtpkey.<domain>},
     asked through the resolver C{--dns} names (as C{check-dns} and the
     server do), except for C{localhost}, which publishes nothing (RFC
     6761);
  3. only if DNS publishes no key for it, and only for the home server's
     own domain (the C{Domain} of its CAPA), the key record the server
     announces in C{Domain-Key} (doc/protocol.md 4.1): a private or
     embedded server has no DNS record, and the server one is logged in
     to is trusted with the user's mail anyway.  The key of any other
     domain comes from DNS only.

A signature that does not verify against the key found is reported as
such, never "retried" with another source.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fmtp.errors import BadSignature, InvalidKeyRecord, KeyLookupFailed, NoKeyPublished
from fmtp.keys.records import parse_key_record
from fmtp.keys.signing import check_signature, signature_of
from fmtp.objects import FMTPObject

VERIFIED = "verified"
UNSIGNED = "unsigned"
#: The signature is wrong, or made with a key its domain does not (or no
#: longer) publish: the message is not what its sender's domain signed.
BAD = "bad"
#: No key could be found to check it with (none in DNS for another
#: domain, or DNS failed).
UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class Verdict:
    """
    What the check of a message's signature found.

    @ivar status: L{VERIFIED}, L{UNSIGNED}, L{BAD} or L{UNCHECKED}.
    @ivar text: one sentence saying who signed and what was checked.
    @ivar domain: the signing domain, if the signature names one.
    @ivar key: the fingerprint of the signing key, if named.
    @ivar source: C{"hosts"}, C{"dns"} or C{"server"}: where the key that
        verified it (or failed to) came from.
    """

    status: str
    text: str
    domain: str | None = None
    key: str | None = None
    source: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "domain": self.domain,
            "key": self.key,
            "source": self.source,
            "text": self.text,
        }


def is_localhost(domain: str) -> bool:
    """
    Whether C{domain} is C{localhost} or under it: such names have no
    records but loopback addresses (RFC 6761, 6.3), so no key is asked of
    DNS for them, which may not answer on a machine offline.
    """
    return domain == "localhost" or domain.endswith(".localhost")


async def verify_message(
    reactor: Any,
    message: FMTPObject,
    nameservers: Sequence[tuple[str, int]],
    timeout: float,
    server_capa: Callable[[], Awaitable[dict[str, str]]],
    hosts_keys: Mapping[str, Sequence[str]] | None = None,
    hosts_file: str = "",
) -> Verdict:
    """
    Check C{message}'s signature, in the order the module docstring says.

    @param server_capa: asks the home server's CAPA, only if needed.
    @param hosts_keys: the key records of a hosts file, by domain
        (L{fmtp.dns.hostsfile.HostsFile.keys}).
    @param hosts_file: that file's name, for the verdict.
    """
    # DNS is the slowest import: only read needs it.
    from fmtp.dns.keyverifier import DNSKeyVerifier
    from fmtp.dns.resolver import DNSResolver

    try:
        info = signature_of(message)
    except BadSignature as e:
        if e.message == "unsigned":
            return Verdict(UNSIGNED, "unsigned: nothing shows who wrote it")
        return Verdict(BAD, f"the signature does not verify: {e.message}")
    domain, key = info.domain, info.fingerprint
    signed = f"Signed by {domain} (key {key})"
    resolver = DNSResolver(reactor, list(nameservers) or None, timeout)
    now = reactor.seconds()
    hosts_keys = hosts_keys or {}
    in_hosts = domain in hosts_keys
    try:
        if is_localhost(domain) and not in_hosts:
            raise NoKeyPublished(f"{domain} is a loopback name")
        verifier = DNSKeyVerifier(resolver, reactor, hosts_keys)
        keys = await verifier.keys_for_domain(domain)
    except KeyLookupFailed as e:
        return Verdict(UNCHECKED, f"{signed}, not verified: {e.message}", domain, key)
    except NoKeyPublished:
        if in_hosts:
            return Verdict(
                UNCHECKED,
                f"{signed}, not verified: the hosts file {hosts_file} has no "
                f"usable key for {domain}",
                domain,
                key,
            )
        capa = await server_capa()
        record = capa.get("Domain-Key")
        if capa.get("Domain", "").lower() != domain or not record:
            return Verdict(
                UNCHECKED,
                f"{signed}, not verified: {domain} publishes no key in DNS",
                domain,
                key,
            )
        try:
            keys = [parse_key_record(domain, record)]
        except InvalidKeyRecord as e:
            return Verdict(
                UNCHECKED,
                f"{signed}, not verified: {domain} publishes no key in DNS, and "
                f"the key your server announces does not parse ({e})",
                domain,
                key,
            )
        where, source = "with the key your server announces", "server"
        why = f"; {domain} publishes no key in DNS"
    else:
        if in_hosts:
            where, source, why = f"against the hosts file {hosts_file}", "hosts", ""
        else:
            where, source, why = "against DNS", "dns", ""
    try:
        check_signature(message, info, keys, now)
    except BadSignature as e:
        return Verdict(
            BAD,
            f"{signed}, but the signature does not verify {where}: {e.message}{why}",
            domain,
            key,
            source,
        )
    return Verdict(VERIFIED, f"{signed}, verified {where}{why}", domain, key, source)
