"""
TLS on server links (DESIGN decision 14): the policy per destination,
the trust root a required certificate must chain to, and the STARTTLS
step of the handshake that applies them.

  - C{"require"}: the peer must offer STARTTLS and present a certificate
    for the route's host name that verifies against the trust root (the
    platform's, or a CA given for a private network).  Any failure is
    temporary: the link is not used, and the admin may fix it.
  - C{"opportunistic"}: TLS whenever offered, certificate not checked.
    The signed HELLO already authenticates the domain; TLS adds
    confidentiality against passive listeners.
  - C{"off"}: never TLS (tests, loopback).

After STARTTLS, TLS starts from the very next byte: anything the peer
sent in clear after its C{220} is discarded, so nothing injected before
the handshake is ever taken as sent under TLS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.defer import CancelledError
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    trustRootFromCertificates,
)

from fmtp.federation.failures import LinkFailed, failure_reason
from fmtp.federation.link import LinkProtocol
from fmtp.federation.targets import LinkTarget
from fmtp.objects import normalize_domain
from fmtp.wire import Frame

TLS_REQUIRE = "require"
TLS_OPPORTUNISTIC = "opportunistic"
TLS_OFF = "off"
TLS_POLICIES = frozenset({TLS_REQUIRE, TLS_OPPORTUNISTIC, TLS_OFF})


def check_policy(policy: str) -> str:
    """
    @return: C{policy}, if it is one of L{TLS_POLICIES}.
    @raise ValueError: if not.
    """
    if policy not in TLS_POLICIES:
        raise ValueError(
            f"TLS policy must be one of {', '.join(sorted(TLS_POLICIES))}, "
            f"not {policy!r}"
        )
    return policy


def load_trust_root(path: str | os.PathLike[str]) -> Any:
    """
    A trust root from a PEM file of one or more CA certificates (the
    C{--tls-ca} of a private network).
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ValueError(f"{path}: no PEM certificate could be read: {e}") from None
    return trustRootFromCertificates(
        [
            Certificate.loadPEM(cert.public_bytes(serialization.Encoding.PEM))
            for cert in found
        ]
    )


class TLSPolicy:
    """
    Which TLS policy applies to each destination, and what a required
    certificate must chain to.

    @param default: the policy of every domain not in C{per_domain}
        (L{TLS_POLICIES}).
    @param per_domain: overrides of C{default}, by domain.
    @param trust_root: what a required certificate must chain to: L{None}
        for the platform's trust store, a PEM file path, or a Twisted
        C{Certificate} / trust root.
    """

    def __init__(
        self,
        default: str = TLS_OPPORTUNISTIC,
        per_domain: Mapping[str, str] | None = None,
        trust_root: Any = None,
    ) -> None:
        self.default = check_policy(default)
        self._per_domain = {
            normalize_domain(domain): check_policy(policy)
            for domain, policy in (per_domain or {}).items()
        }
        if isinstance(trust_root, str | os.PathLike):
            trust_root = load_trust_root(trust_root)
        #: None means the platform's trust store (optionsForClientTLS's
        #: default).
        self._trust_root = trust_root

    def policy_for(self, domain: str | None) -> str:
        """
        The policy for links to C{domain} (the default for L{None}).
        """
        if domain is not None:
            return self._per_domain.get(domain, self.default)
        return self.default

    async def negotiate(
        self, protocol: LinkProtocol, target: LinkTarget, domain: str, capa: Frame
    ) -> str:
        """
        Apply the TLS policy for C{domain} to a connection just past its
        C{CAPA}, which says whether the peer offers STARTTLS.

        @return: C{"verified"}, C{"unverified"} or C{"none"}.
        """
        policy = self.policy_for(domain)
        where = target.describe()
        offered = "STARTTLS" in capa.headers.get("Commands", "").upper().split()
        if policy == TLS_OFF:
            return "none"
        if not offered:
            if policy == TLS_REQUIRE:
                raise LinkFailed(
                    f"{where} does not offer STARTTLS, and TLS is required for {domain}"
                )
            return "none"
        if policy == TLS_REQUIRE:
            if not target.host:
                raise LinkFailed(
                    "TLS is required but the parent's name is not configured, so "
                    "its certificate cannot be checked"
                )
            options = optionsForClientTLS(target.host, trustRoot=self._trust_root)
        else:
            options = CertificateOptions()
        answer = await protocol.start_tls(options)
        if answer.code != 220:
            if policy == TLS_REQUIRE:
                raise LinkFailed(
                    f"{where} refused STARTTLS ({answer.verb} {answer.argument}), "
                    f"and TLS is required for {domain}"
                )
            return "none"
        try:
            await protocol.tls_ready
        except CancelledError:
            raise
        except Exception as e:
            raise LinkFailed(f"TLS with {where} failed: {failure_reason(e)}") from None
        return "verified" if policy == TLS_REQUIRE else "unverified"
