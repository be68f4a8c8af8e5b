"""
Domain keys: finding and checking other domains' keys, and signing as this
one.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IKeyVerifier(Interface):
    """
    Finds the public keys a domain publishes and checks signatures made with
    them.

    Failures are told apart because they call for different replies: a
    domain that publishes no key (permanent), a lookup that failed
    (temporary: retry later), and a signature that does not verify
    (reject).
    """

    def keys_for_domain(domain):
        """
        Find the keys a domain publishes, including revoked and expired
        ones (so a verifier can say why a signature is refused).

        @param domain: the domain, as an IDNA A-label string.
        @return: a L{Deferred} that fires with a L{list} of
            L{fmtp.keys.records.DomainPublicKey}, or fails with
            L{fmtp.errors.NoKeyPublished} or L{fmtp.errors.KeyLookupFailed}.
        """

    def verify_object(obj):
        """
        Check the C{Signature} property of an object against the keys its
        signing domain publishes.

        @param obj: a signed L{fmtp.objects.FMTPObject}.
        @return: a L{Deferred} that fires with the
            L{fmtp.keys.records.DomainPublicKey} that verified it, or fails with
            L{fmtp.errors.BadSignature}, L{fmtp.errors.NoKeyPublished} or
            L{fmtp.errors.KeyLookupFailed}.
        """


class IDomainSigner(Interface):
    """
    Holds this server's domain private key and signs objects with it.
    """

    domain = Attribute("The domain this signer signs for (IDNA A-label).")
    fingerprint = Attribute("The fingerprint that names the public key.")

    def public_key():
        """
        @return: the L{fmtp.keys.records.DomainPublicKey} to publish in DNS.
        """

    def sign_bytes(data, now):
        """
        Sign arbitrary bytes as this domain, for a handshake.  C{data} must
        begin with a label naming its purpose, so that no signature made
        for one purpose verifies for another.

        @param now: the signing time, in seconds since the epoch.
        @return: a L{fmtp.keys.records.SignatureInfo}.
        """

    def sign_object(obj, now):
        """
        Sign an object as this domain.

        @param obj: the L{fmtp.objects.FMTPObject} to sign.
        @param now: the signing time, in seconds since the epoch.
        @return: a copy of C{obj} carrying a C{Signature} property.
        """
