"""
Domain keys and domain signatures.

Every object that crosses domains is signed by its origin domain, so that a
receiving server can tell that C{alice@example.com} really wrote it without
trusting whichever peer relayed it.  A domain publishes its Ed25519 public
keys in DNS as TXT records at C{fmtpkey.<domain>}::

    v=FMTP1; k=ed25519; p=<base64 public key>[; x=<not after>]

The format follows DKIM: a C{;}-separated tag list starting with the
version.  A domain may publish several records at once, which is how it
rotates keys: a signature names the key that made it by fingerprint, so old
and new keys verify side by side until the old one is withdrawn.  A record
with an empty C{p=} and an C{f=<fingerprint>} revokes the key with that
fingerprint, and a record's C{x=} ends its key's life at a given time.

This module holds the record format, signing, and verification against a
static set of records (a mapping, or a file); looking the records up in DNS
is done elsewhere, through the same L{IKeyVerifier} interface and the
helpers L{signature_of} and L{check_signature} this module exports.

All time comes from an injected L{IReactorTime} or from the caller, never
from the system clock, so that tests can move it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import errno
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from fmtp.errors import (
    BadSignature,
    InvalidAddress,
    InvalidKeyRecord,
    InvalidObjectId,
    NoKeyPublished,
)
from fmtp.interfaces import IDomainSigner, IKeyVerifier
from fmtp.objects import (
    FMTPObject,
    domain_of,
    normalize_address,
    normalize_domain,
    owner_of,
)

#: The label under a domain where its key records live.
KEY_RECORD_LABEL = "fmtpkey"

#: The version tag value every key record starts with.
KEY_RECORD_VERSION = "FMTP1"

#: The only key type so far.
KEY_TYPE_ED25519 = "ed25519"

#: The version tag value of a C{Signature} property.
SIGNATURE_VERSION = "1"

#: The name of the property a signature is carried in.  It is an envelope
#: property (L{fmtp.objects.ENVELOPE_PROPERTIES}): adding it does not change
#: the digest it signs.
SIGNATURE_PROPERTY = "Signature"

#: The first line of every signing input: it names what is being signed
#: and how, so a signature can never be replayed as some other statement.
SIGNING_INPUT_PREFIX = b"fmtp-signature/1\n"

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


class KeyFileError(ValueError):
    """
    A key file (a private key, or a file of key records) cannot be used.
    """


class InsecureKeyFileError(KeyFileError):
    """
    A private key file is readable or writable by users other than its
    owner.  As ssh does, such a key is refused rather than used: it may
    already have been copied.
    """


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
    A hosts-file line (L{fmtp.hostsfile}) naming C{key} for C{domain}: what
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


def signing_input(obj: FMTPObject, domain: str, fp: str, t: int) -> bytes:
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
    """
    props = obj.properties
    lines = [
        f"d:{domain}",
        f"f:{fp}",
        f"t:{int(t)}",
        f"digest:{obj.digest()}",
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
        return SignatureInfo(
            self.domain, self.fingerprint, int(now), self._private_key.sign(data)
        )

    def sign_object(self, obj: FMTPObject, now: float) -> FMTPObject:
        """
        A copy of C{obj} signed by this domain at time C{now}, replacing any
        signature it had.  C{obj} itself is left alone: it may be the stored
        copy, or shared with another delivery.
        """
        data = signing_input(obj, self.domain, self.fingerprint, int(now))
        info = self.sign_bytes(data, now)
        properties = dict(obj.properties)
        properties[SIGNATURE_PROPERTY] = format_signature(info)
        return dataclasses.replace(obj, properties=properties)


def generate_private_key() -> Ed25519PrivateKey:
    """
    A new random domain private key.
    """
    return Ed25519PrivateKey.generate()


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_fd(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: str) -> None:
    # Make the new directory entry durable, so that a crash right after
    # does not lose the key that was just published.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_private_key(
    path: str | os.PathLike[str], key: Ed25519PrivateKey, overwrite: bool = False
) -> None:
    """
    Save a private key as unencrypted PKCS#8 PEM, readable by its owner
    only.

    The file is created with mode 0600 from the start, never created first
    and restricted after, so there is no moment when another user could
    open it.  A missing parent directory is created with mode 0700.

    @param overwrite: replace an existing file.  The new key is written to
        a temporary file beside it and renamed over it, so the file always
        holds either the old key or the new one, whole.  Without it an
        existing file is an error: losing a domain key means re-publishing
        DNS records, so it is never done by accident.
    @raise FileExistsError: if the file exists and C{overwrite} is false.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    data = _pem(key)
    if not overwrite:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            raise FileExistsError(
                errno.EEXIST,
                "refusing to overwrite an existing key file "
                "(losing a domain key means publishing a new one)",
                path,
            ) from None
        # The umask can only have removed bits; make it exactly 0600.
        os.fchmod(fd, 0o600)
        _write_fd(fd, data)
    else:
        # mkstemp creates the file with mode 0600 and O_EXCL.
        fd, temporary = tempfile.mkstemp(
            prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory
        )
        try:
            os.fchmod(fd, 0o600)
            _write_fd(fd, data)
            os.replace(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
    _fsync_dir(directory)


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """
    Read a private key written by L{write_private_key}.

    @raise InsecureKeyFileError: if the file's mode lets its group or
        others read or write it.  Like ssh, this refuses a key that may
        already have been copied rather than quietly use it.
    @raise KeyFileError: if the file is not an unencrypted Ed25519 PEM key.
    @raise OSError: if the file cannot be read.
    """
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        # fstat on the open file: checking the name and then opening it
        # would check one file and read another if it were swapped between.
        mode = os.fstat(f.fileno()).st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureKeyFileError(
                f"{path}: permissions {stat.S_IMODE(mode):04o} are too open; "
                f"the domain private key must be readable by its owner only: "
                f"run chmod 600 {path}"
            )
        data = f.read()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyFileError(
            f"{path}: not an unencrypted PEM private key ({e})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(
            f"{path}: a {type(key).__name__}, but a domain key must be Ed25519"
        )
    return key


def load_or_create_signer(
    path: str | os.PathLike[str], domain: str
) -> tuple[DomainSigner, bool]:
    """
    The signer of C{domain} with the key at C{path}, generating and saving
    a new key if there is none yet (a server's first start).

    @return: the signer, and whether its key was just created (in which
        case its record must be published: see L{zone_line}).
    """
    try:
        return DomainSigner(load_private_key(path), domain), False
    except FileNotFoundError:
        pass
    key = generate_private_key()
    try:
        write_private_key(path, key)
    except FileExistsError:
        # Another process created it between our two calls: use theirs.
        return DomainSigner(load_private_key(path), domain), False
    return DomainSigner(key, domain), True


@implementer(IKeyVerifier)
class StaticKeyVerifier:
    """
    A key verifier whose records are given up front instead of looked up
    in DNS: for tests, closed federations, and a server's own key.

    Records are kept as text and parsed at each lookup, exactly as records
    fetched from DNS would be, so both verifiers treat a bad record alike.
    """

    _log = Logger()

    def __init__(
        self, records: Mapping[str, Sequence[str]], clock: IReactorTime
    ) -> None:
        """
        @param records: domain to the texts of its key records.
        @param clock: the source of the current time, for expiry.
        """
        self._clock = clock
        self._records: dict[str, list[str]] = {}
        for domain, texts in records.items():
            self.add_records(domain, texts)

    def add_records(self, domain: str, texts: Iterable[str]) -> None:
        """
        Add key records for C{domain}, after any it has.
        """
        if isinstance(texts, str):
            # A lone string would otherwise be taken for a list of
            # one-character records.
            raise TypeError("records must be a sequence of strings, not a string")
        self._records.setdefault(normalize_domain(domain), []).extend(texts)

    def add_signer(self, signer: IDomainSigner) -> None:
        """
        Publish C{signer}'s own key, so that a server can always verify
        what it signed itself, whatever its key file or DNS says.
        """
        self.add_records(signer.domain, [format_key_record(signer.public_key())])

    def _keys(self, domain: str) -> list[DomainPublicKey]:
        try:
            domain = normalize_domain(domain)
        except InvalidAddress as e:
            raise NoKeyPublished(f"no key published: {e.message}") from None
        keys = usable_keys(domain, self._records.get(domain, ()), self._log)
        if not keys:
            raise NoKeyPublished(f"no key published for {domain}")
        return keys

    def keys_for_domain(self, domain: str) -> Deferred[list[DomainPublicKey]]:
        """
        See L{IKeyVerifier.keys_for_domain}.
        """
        try:
            return succeed(self._keys(domain))
        except NoKeyPublished:
            return fail()

    def verify_object(self, obj: FMTPObject) -> Deferred[DomainPublicKey]:
        """
        See L{IKeyVerifier.verify_object}.
        """
        return verify_with(self, obj, self._clock)
