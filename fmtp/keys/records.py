"""
Key records and signatures as text: what a domain publishes in DNS, and
what a C{Signature} property says.

A domain publishes its Ed25519 public keys as TXT records at
C{fmtpkey.<domain>}::

    v=FMTP1; k=ed25519; p=<base64 public key>[; x=<not after>]

The format follows DKIM: a C{;}-separated tag list starting with the
version.  A domain may publish several records at once, which is how it
rotates keys: a signature names the key that made it by fingerprint, so old
and new keys verify side by side until the old one is withdrawn.  A record
with an empty C{p=} and an C{f=<fingerprint>} revokes the key with that
fingerprint, and a record's C{x=} ends its key's life at a given time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from twisted.logger import Logger

from fmtp.errors import BadSignature, InvalidAddress, InvalidKeyRecord
from fmtp.objects import normalize_domain

#: The label under a domain where its key records live.
KEY_RECORD_LABEL = "fmtpkey"

#: The version tag value every key record starts with.
KEY_RECORD_VERSION = "FMTP1"

#: The only key type so far.
KEY_TYPE_ED25519 = "ed25519"

#: The version tag value of a C{Signature} property.
SIGNATURE_VERSION = "1"

_PUBLIC_KEY_LENGTH = 32
_SIGNATURE_LENGTH = 64
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# ASCII digits only: str.isdigit() and \d accept digits int() cannot read,
# and an unbounded number of digits would let a record make int() slow.
_SECONDS = re.compile(r"[0-9]{1,19}")
# What DKIM calls folding white space, and nothing more: str.strip() with
# no argument would also strip Unicode spaces a record may not contain.
_WHITESPACE = " \t\r\n"


def fingerprint(raw_public_key: bytes) -> str:
    """
    The name of a public key in signatures and revocation records: the
    lower-case hex of the first 8 bytes of the SHA-256 of the raw 32-byte
    key.

    Eight bytes are plenty because a fingerprint only has to tell apart the
    few keys one domain publishes at once; it is not what makes a signature
    unforgeable (the key is).

    @param raw_public_key: the raw Ed25519 public key.
    @return: 16 lower-case hex digits.
    """
    return hashlib.sha256(raw_public_key).digest()[:8].hex()


def _raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


@dataclass(frozen=True, slots=True)
class DomainPublicKey:
    """
    One key record of a domain, parsed: a public key, or the revocation of
    one.

    @ivar domain: the domain that publishes it (IDNA A-label).
    @ivar raw_key: the raw 32-byte Ed25519 public key, or C{b""} for a
        revocation.
    @ivar fingerprint: the L{fingerprint} of the key (of the revoked key,
        for a revocation).
    @ivar not_after: the last second, since the epoch, at which the key may
        be used, or L{None} if it does not expire.
    @ivar revoked: whether this record revokes the key.
    """

    domain: str
    raw_key: bytes
    fingerprint: str
    not_after: int | None = None
    revoked: bool = False

    def __post_init__(self) -> None:
        # A key whose fingerprint does not name it would let a signature be
        # checked against the wrong key; refuse to build one.
        if not _FINGERPRINT.fullmatch(self.fingerprint):
            raise ValueError(f"bad fingerprint {self.fingerprint!r}")
        if self.revoked:
            if self.raw_key:
                raise ValueError("a revocation carries no key")
        elif len(self.raw_key) != _PUBLIC_KEY_LENGTH:
            raise ValueError(f"an Ed25519 key is {_PUBLIC_KEY_LENGTH} bytes")
        elif fingerprint(self.raw_key) != self.fingerprint:
            raise ValueError("the fingerprint does not match the key")

    @classmethod
    def from_public_key(
        cls, domain: str, public_key: Ed25519PublicKey, not_after: int | None = None
    ) -> DomainPublicKey:
        """
        The record that publishes C{public_key} for C{domain}.
        """
        raw = _raw_public_key(public_key)
        return cls(normalize_domain(domain), raw, fingerprint(raw), not_after)

    @classmethod
    def revocation(cls, domain: str, key_fingerprint: str) -> DomainPublicKey:
        """
        The record that revokes the key named C{key_fingerprint}.
        """
        return cls(normalize_domain(domain), b"", key_fingerprint, None, True)

    def expired(self, now: float) -> bool:
        """
        Whether the key is past its C{x=} time at C{now}.
        """
        return self.not_after is not None and self.not_after < now

    def verify(self, signature: bytes, data: bytes) -> bool:
        """
        Check an Ed25519 signature over C{data}.

        This checks the mathematics only; whether the key may still be used
        (revoked, expired) is the caller's question, except that a
        revocation, having no key, verifies nothing.

        @return: C{True} if C{signature} is this key's signature of C{data}.
        """
        if self.revoked:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.raw_key).verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


def _parse_tags(
    text: str, what: str, version: str, error: type[Exception]
) -> dict[str, str]:
    """
    Split a DKIM-style tag list (C{v=<version>; name=value; ...}) into a
    dict that keeps the order the tags were written in.

    The version tag is checked before anything else is read, so that some
    other TXT record at the same name, or a later version whose syntax this
    code does not know, is refused for what it is rather than for a syntax
    error further on.  White space around names and values is ignored, and
    so are empty entries (a trailing C{;}).  A tag may appear only once:
    two values for one tag leave no way to know which was meant.

    @param what: what the text is, for error messages.
    @param version: the value the leading C{v=} tag must have.
    @param error: the exception class to raise.
    """
    tags: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip(_WHITESPACE)
        if not part:
            continue
        name, equals, value = part.partition("=")
        name = name.strip(_WHITESPACE)
        value = value.strip(_WHITESPACE)
        if not tags:
            if name != "v" or not equals:
                raise error(f"bad {what}: must begin with v={version}")
            if value != version:
                raise error(f"bad {what}: unsupported version v={value}")
        if not equals or not _TAG_NAME.fullmatch(name):
            raise error(f"bad {what}: {part!r} is not a name=value tag")
        if name in tags:
            raise error(f"bad {what}: duplicate tag {name}=")
        tags[name] = value
    if not tags:
        raise error(f"bad {what}: must begin with v={version}")
    return tags


def _decode_base64(value: str, length: int, what: str, error: type[Exception]) -> bytes:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise error(f"bad {what}: not standard base64") from None
    if len(raw) != length:
        raise error(f"bad {what}: {len(raw)} bytes instead of {length}")
    return raw


def parse_key_record(domain: str, text: str) -> DomainPublicKey:
    """
    Parse one key record, as found in a TXT record at C{fmtpkey.<domain>}.

    Tags may come in any order after C{v=FMTP1}, which must come first so
    that a TXT record of some other kind at the same name is told apart at
    once (as DKIM does with C{v=DKIM1}).  C{k=} defaults to C{ed25519}.
    C{p=} is required; empty, it makes the record a revocation, which must
    then name the key it revokes with C{f=}.  With a key, an C{f=} tag is
    optional but must match the key.  Unknown tags are ignored, so that a
    later version can add tags old servers skip.

    @param domain: the domain the record was published for.
    @param text: the record text (the TXT strings joined).
    @raise InvalidKeyRecord: saying what is wrong with the record.
    """
    domain = normalize_domain(domain)
    tags = _parse_tags(text, "key record", KEY_RECORD_VERSION, InvalidKeyRecord)
    key_type = tags.get("k", KEY_TYPE_ED25519)
    if key_type.lower() != KEY_TYPE_ED25519:
        raise InvalidKeyRecord(f"bad key record: unsupported key type k={key_type}")
    if "p" not in tags:
        raise InvalidKeyRecord("bad key record: missing p= (the public key)")

    not_after = None
    if "x" in tags:
        if not _SECONDS.fullmatch(tags["x"]):
            raise InvalidKeyRecord(
                f"bad key record: x={tags['x']} is not a whole number of seconds"
            )
        not_after = int(tags["x"])

    named = None
    if "f" in tags:
        named = tags["f"].lower()
        if not _FINGERPRINT.fullmatch(named):
            raise InvalidKeyRecord(
                f"bad key record: f={tags['f']} is not 16 hex digits"
            )

    if not tags["p"]:
        if named is None:
            raise InvalidKeyRecord(
                "bad key record: a revocation (empty p=) must name the key it "
                "revokes with f="
            )
        return DomainPublicKey(domain, b"", named, not_after, revoked=True)

    raw = _decode_base64(
        tags["p"], _PUBLIC_KEY_LENGTH, "key record p=", InvalidKeyRecord
    )
    actual = fingerprint(raw)
    if named is not None and named != actual:
        raise InvalidKeyRecord(
            f"bad key record: f={named} does not match the key's fingerprint {actual}"
        )
    return DomainPublicKey(domain, raw, actual, not_after)


def format_key_record(key: DomainPublicKey) -> str:
    """
    The TXT record text that publishes (or revokes) C{key}; the inverse of
    L{parse_key_record}.
    """
    parts = [f"v={KEY_RECORD_VERSION}", f"k={KEY_TYPE_ED25519}"]
    parts.append("p=" + base64.b64encode(key.raw_key).decode("ascii"))
    if key.revoked:
        parts.append(f"f={key.fingerprint}")
    if key.not_after is not None:
        parts.append(f"x={key.not_after}")
    return "; ".join(parts)


def key_record_name(domain: str) -> str:
    """
    The DNS name (without the final dot) where C{domain} publishes its key
    records.
    """
    return f"{KEY_RECORD_LABEL}.{normalize_domain(domain)}"


def zone_line(domain: str, key: DomainPublicKey) -> str:
    """
    A zone-file line publishing C{key}, for an administrator to paste into
    the zone of C{domain}.

    A TXT string holds at most 255 bytes.  A record is about 70 bytes (44
    of them the base64 key, then at most a 16-digit fingerprint and a
    19-digit time), so it always fits one string and needs no splitting;
    nor does it ever hold a C{"} or C{\\} that would need escaping.
    """
    record = format_key_record(key)
    assert len(record) <= 255 and '"' not in record and "\\" not in record
    return f'{key_record_name(domain)}. IN TXT "{record}"'


def hosts_entry(domain: str, key: DomainPublicKey) -> str:
    """
    A hosts-file line (L{fmtp.dns.hostsfile}) naming C{key} for C{domain}: what
    a private network without DNS gives its servers instead of the record
    L{zone_line} publishes.
    """
    return f'key {domain} "{format_key_record(key)}"'


@dataclass(frozen=True, slots=True)
class SignatureInfo:
    """
    A parsed C{Signature} property.

    @ivar domain: the signing domain (IDNA A-label).
    @ivar fingerprint: the fingerprint of the signing key.
    @ivar time: when it was signed, in whole seconds since the epoch.
    @ivar signature: the 64-byte Ed25519 signature.
    """

    domain: str
    fingerprint: str
    time: int
    signature: bytes


def format_signature(info: SignatureInfo) -> str:
    """
    The C{Signature} property value for C{info}; the inverse of
    L{parse_signature}.
    """
    encoded = base64.b64encode(info.signature).decode("ascii")
    return (
        f"v={SIGNATURE_VERSION}; d={info.domain}; f={info.fingerprint}; "
        f"t={info.time}; s={encoded}"
    )


def parse_signature(value: str) -> SignatureInfo:
    """
    Parse a C{Signature} property value,
    C{v=1; d=<domain>; f=<fingerprint>; t=<seconds>; s=<base64>}.

    The domain must already be in its normal form (lower-case A-label): it
    is part of the signed text, so a signer that wrote another spelling
    signed something no verifier would rebuild.  Unknown tags are ignored,
    as in key records.

    @raise BadSignature: saying what is malformed.
    """
    tags = _parse_tags(value, "signature", SIGNATURE_VERSION, BadSignature)
    for name in ("d", "f", "t", "s"):
        if name not in tags:
            raise BadSignature(f"bad signature: missing {name}=")
    domain = tags["d"]
    try:
        normal = normalize_domain(domain)
    except InvalidAddress:
        raise BadSignature(f"bad signature: d={domain} is not a domain") from None
    if normal != domain:
        raise BadSignature(f"bad signature: d={domain} must be written {normal}")
    if not _FINGERPRINT.fullmatch(tags["f"]):
        raise BadSignature(f"bad signature: f={tags['f']} is not 16 hex digits")
    if not _SECONDS.fullmatch(tags["t"]):
        raise BadSignature(
            f"bad signature: t={tags['t']} is not a whole number of seconds"
        )
    raw = _decode_base64(tags["s"], _SIGNATURE_LENGTH, "signature s=", BadSignature)
    return SignatureInfo(domain, tags["f"], int(tags["t"]), raw)


def usable_keys(
    domain: str, texts: Iterable[str], log: Logger
) -> list[DomainPublicKey]:
    """
    The keys among a domain's record texts.  A record that does not parse
    is skipped with a log line, so one typo cannot hide the good records.
    """
    keys = []
    for text in texts:
        try:
            keys.append(parse_key_record(domain, text))
        except InvalidKeyRecord as e:
            log.warn(
                "Skipping key record {record!r} of {domain}: {error}",
                record=text,
                domain=domain,
                error=str(e),
            )
    return keys
