"""
Signing and verifying: the bytes a domain signs for an object, the checks
a signature must pass against the keys its domain publishes, and
L{DomainSigner}, this server's private key at work.

Every object that crosses domains is signed by its origin domain, so that a
receiving server can tell that C{alice@example.com} really wrote it without
trusting whichever peer relayed it.  Where the keys come from (DNS, a hosts
file, this server's own) is an L{IKeyVerifier}'s business; L{verify_with}
is the one C{verify_object} of them all.

All time comes from an injected L{IReactorTime} or from the caller, never
from the system clock, so that tests can move it.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from fmtp.errors import BadSignature, InvalidAddress, InvalidObjectId
from fmtp.interfaces import IDomainSigner, IKeyVerifier
from fmtp.keys.gilsign import gil_holding_signer
from fmtp.keys.records import (
    DomainPublicKey,
    SignatureInfo,
    format_signature,
    parse_signature,
)
from fmtp.objects import (
    FMTPObject,
    domain_of,
    normalize_address,
    normalize_domain,
    owner_of,
)

#: The name of the property a signature is carried in.  It is an envelope
#: property (L{fmtp.objects.ENVELOPE_PROPERTIES}): adding it does not change
#: the digest it signs.
SIGNATURE_PROPERTY = "Signature"

#: The first line of every signing input: it names what is being signed
#: and how, so a signature can never be replayed as some other statement.
SIGNING_INPUT_PREFIX = b"fmtp-signature/1\n"


def signing_input(
    obj: FMTPObject, domain: str, fp: str, t: int, digest: str | None = None
) -> bytes:
    """
    The bytes a domain signs for C{obj}.

    The content digest already covers the id, type, body and every property
    but the envelope ones.  Sender, recipients, parent and id are still
    named outright so that the signed statement reads as what it means
    ("example.com says alice sent this to bob, in reply to that") and stays
    fixed even if what the digest covers changes.  The signer's domain, key
    and time are included so none of them can be swapped under the
    signature.

    Values cannot hold line breaks (a header value never does, and the
    domain, fingerprint and time are checked), so a line per field is
    unambiguous.

    @param digest: C{obj}'s digest, if the caller has computed it.
    """
    if digest is None:
        digest = obj.computed_digest()
    props = obj.properties
    lines = [
        f"d:{domain}",
        f"f:{fp}",
        f"t:{int(t)}",
        f"digest:{digest}",
        f"from:{props.get('From', '')}",
        f"to:{props.get('To', '')}",
        f"parent:{props.get('Parent', '')}",
        f"parent-digest:{props.get('Parent-Digest', '')}",
        f"id:{obj.id}",
    ]
    return SIGNING_INPUT_PREFIX + "".join(f"{line}\n" for line in lines).encode("utf-8")


def sender_domain(obj: FMTPObject) -> str:
    """
    The domain that must sign C{obj}: that of its C{From} address if it has
    one, else that of the address that owns its id.

    @raise BadSignature: if that address does not parse, since no domain
        can then vouch for the object.
    """
    sender = obj.properties.get("From")
    try:
        if sender is not None:
            return domain_of(normalize_address(sender))
        return domain_of(owner_of(obj.id))
    except (InvalidAddress, InvalidObjectId) as e:
        raise BadSignature(f"no sender domain to check the signature: {e.message}")


def signature_of(obj: FMTPObject) -> SignatureInfo:
    """
    Parse the signature of C{obj} and check that it is made by the domain
    the object comes from: the first half of verifying an object, which
    needs no key.

    @raise BadSignature: if the object is unsigned, the signature is
        malformed, or it is signed by some other domain.
    """
    value = obj.properties.get(SIGNATURE_PROPERTY)
    if value is None:
        raise BadSignature("unsigned")
    info = parse_signature(value)
    expected = sender_domain(obj)
    if info.domain != expected:
        raise BadSignature(f"signed by {info.domain} for a sender at {expected}")
    return info


def check_signature(
    obj: FMTPObject,
    info: SignatureInfo,
    keys: Iterable[DomainPublicKey],
    now: float,
) -> DomainPublicKey:
    """
    The second half of verifying an object: check its signature C{info}
    against the C{keys} its domain publishes.

    @param now: the current time, in seconds since the epoch.
    @return: the key that verified the signature.
    @raise BadSignature: if the key is revoked, expired or unknown, or the
        signature does not verify.
    """
    data = signing_input(obj, info.domain, info.fingerprint, info.time)
    return check_signed_bytes(data, info, keys, now)


def check_signed_bytes(
    data: bytes,
    info: SignatureInfo,
    keys: Iterable[DomainPublicKey],
    now: float,
) -> DomainPublicKey:
    """
    Check that C{info} signs C{data} with one of C{keys}: the one rule for
    objects and handshakes alike.

    A revocation of the signing key wins over any record still publishing
    it, so that a domain can revoke a key before every cache has dropped
    the old record.

    @raise BadSignature: if the key is revoked, expired or unknown, or the
        signature does not verify.
    """
    matching = [key for key in keys if key.fingerprint == info.fingerprint]
    if any(key.revoked for key in matching):
        raise BadSignature("key revoked")
    if not matching:
        raise BadSignature("unknown key")
    current = [key for key in matching if not key.expired(now)]
    if not current:
        raise BadSignature("key expired")
    for key in current:
        if key.verify(info.signature, data):
            return key
    raise BadSignature("signature does not verify")


def verify_with(
    verifier: IKeyVerifier, obj: FMTPObject, clock: IReactorTime
) -> Deferred[DomainPublicKey]:
    """
    Verify C{obj} against the keys C{verifier} finds for its signing
    domain: the one C{verify_object} of every L{IKeyVerifier}, whatever
    it looks keys up in.
    """
    try:
        info = signature_of(obj)
    except BadSignature:
        return fail()
    d = verifier.keys_for_domain(info.domain)
    d.addCallback(lambda keys: check_signature(obj, info, keys, clock.seconds()))
    return d


def verify_signed_by(
    verifier: IKeyVerifier, obj: FMTPObject, domain: str, clock: IReactorTime
) -> Deferred[DomainPublicKey]:
    """
    Verify that C{domain}, whatever C{obj}'s sender, signed C{obj}: what
    a room's home does for every entry of its history, the lines of
    other domains' users too (doc/protocol.md 10.9).
    """
    value = obj.properties.get(SIGNATURE_PROPERTY)
    try:
        if value is None:
            raise BadSignature("unsigned")
        info = parse_signature(value)
        if info.domain != domain:
            raise BadSignature(f"signed by {info.domain}, not {domain}")
    except BadSignature:
        return fail()
    d = verifier.keys_for_domain(domain)
    d.addCallback(lambda keys: check_signature(obj, info, keys, clock.seconds()))
    return d


@implementer(IDomainSigner)
class DomainSigner:
    """
    This server's domain private key, signing objects as its domain.

    @ivar domain: the domain signed for (IDNA A-label).
    @ivar fingerprint: the fingerprint of the public key.
    """

    def __init__(self, private_key: Ed25519PrivateKey, domain: str) -> None:
        self._private_key = private_key
        self.domain = normalize_domain(domain)
        self._public_key = DomainPublicKey.from_public_key(
            self.domain, private_key.public_key()
        )
        self.fingerprint = self._public_key.fingerprint
        self._sign = gil_holding_signer(private_key) or private_key.sign

    def __repr__(self) -> str:
        # Never show the private key, not even by accident in a log.
        return f"<DomainSigner {self.domain} {self.fingerprint}>"

    def public_key(self) -> DomainPublicKey:
        """
        The key record to publish at C{fmtpkey.<domain>}.
        """
        return self._public_key

    def sign_bytes(self, data: bytes, now: float) -> SignatureInfo:
        """
        Sign C{data} as this domain at time C{now}.  The caller must make
        C{data} name its purpose, so that a signature made for one thing
        (a handshake) can never pass for another (an object).
        """
        return SignatureInfo(self.domain, self.fingerprint, int(now), self._sign(data))

    def sign_object(self, obj: FMTPObject, now: float) -> FMTPObject:
        """
        A copy of C{obj} signed by this domain at time C{now}, replacing any
        signature it had.  C{obj} itself is left alone: it may be the stored
        copy, or shared with another delivery.
        """
        digest = obj.computed_digest()
        data = signing_input(obj, self.domain, self.fingerprint, int(now), digest)
        info = self.sign_bytes(data, now)
        properties = dict(obj.properties)
        properties[SIGNATURE_PROPERTY] = format_signature(info)
        # The signature is an envelope property: the digest stays.
        return obj.with_digest(properties, digest)


def generate_private_key() -> Ed25519PrivateKey:
    """
    A new random domain private key.
    """
    return Ed25519PrivateKey.generate()
