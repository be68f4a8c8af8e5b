"""
The fmtp object model: typed property maps with a body.

A user, a message, a public post and a room are all objects.  An object is
named by an id of the form C{<unix-ms>.<nonce>.<user@domain>}, unique without
coordination; a user object is named by its address alone.  Threads are
hash-linked: a reply names its C{Parent}, the thread's C{Top}, and the
SHA-256 digest of its parent (C{Parent-Digest}), so holding a message proves
what it answered.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import idna

from fmtp.errors import InvalidAddress, InvalidObject, InvalidObjectId
from fmtp.util.randbuf import default_buffer

#: Header names that frame or seal an object rather than describe it: they
#: are not part of its digest, so that a relay can re-frame or countersign
#: an object without changing what it proves.
ENVELOPE_PROPERTIES = frozenset({"Length", "Digest", "Signature"})

#: Headers that describe one transfer of an object (its framing and the
#: digest a server announces), never stored with it.
TRANSFER_HEADERS = frozenset({"Length", "Digest"})

#: Names a client may not set as ordinary properties: the object's identity
#: and its envelope.
RESERVED_PROPERTIES = frozenset({"Id", "Type"}) | ENVELOPE_PROPERTIES

#: Properties of a user object anyone may read.  The rest (Blacklist,
#: Whitelist, Policy, Status...) would reveal the user's contacts or habits,
#: which no request may (doc/protocol.md, Privacy).
PUBLIC_USER_PROPERTIES = frozenset(
    {
        "Address",
        "Given-Name",
        "Family-Name",
        "Route",
        "Format",
        "Encrypt-Policy",
        "Encrypt-Method",
    }
)

USER_TYPE = "user"
MESSAGE_TYPE = "message"

_LOCAL_PART = re.compile(r"[\w.+-]{1,64}")
_TYPE = re.compile(r"[a-z][a-z0-9-]{0,31}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")

#: Spellings of addresses and domains whose normal form is remembered.
#: Normalizing is pure but costly (IDNA's tables, ~15 µs), and a server
#: sees the same few addresses on every message: its users, their
#: correspondents.  Bounded, so a peer naming endless addresses only
#: evicts entries (and pays the full cost, as it would without a cache).
NORMALIZE_CACHE_SIZE = 4096


def is_ascii_digits(text: str) -> bool:
    """
    Whether C{text} is a non-empty run of the digits 0 to 9.

    C{str.isdigit} also accepts digits C{int} cannot read (C{"²"}), so a
    peer could turn a validated number into an exception.
    """
    return text.isascii() and text.isdigit()


def canonical_name(name: str) -> str:
    """
    The one spelling of a header or property name: C{given-NAME} becomes
    C{Given-Name}.  Names are case-insensitive on the wire; storing one
    spelling makes lookups and digests independent of how a peer wrote it.
    """
    return "-".join(part.capitalize() for part in name.split("-"))


def is_valid_name(name: str) -> bool:
    """
    Whether C{name} may be a header or property name.
    """
    return _NAME.fullmatch(name) is not None


def normalize_domain(domain: str) -> str:
    """
    Turn a domain into its lower-case IDNA A-label form, the form DNS and
    signatures use.

    @raise InvalidAddress: if it is not a valid domain name.
    """
    if not isinstance(domain, str):
        raise InvalidAddress(f"bad domain: {domain!r}")
    return _normalize_domain(domain)


@lru_cache(maxsize=NORMALIZE_CACHE_SIZE)
def _normalize_domain(domain: str) -> str:
    # A refusal raises, and is not cached.
    if not domain or domain.endswith(".") or len(domain) > 253:
        raise InvalidAddress(f"bad domain: {domain!r}")
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as e:
        raise InvalidAddress(f"bad domain {domain!r}: {e}") from None
    return ascii_domain.lower()


def normalize_address(address: str) -> str:
    """
    Validate a C{user@domain} address and return its one normal form:
    the user part in NFC and lower case, the domain as an IDNA A-label.

    @raise InvalidAddress: with a message that says what is wrong.
    """
    if not isinstance(address, str):
        raise InvalidAddress(f"bad address {address!r}: expected user@domain")
    return _normalize_address(address)


@lru_cache(maxsize=NORMALIZE_CACHE_SIZE)
def _normalize_address(address: str) -> str:
    # A refusal raises, and is not cached.
    if address.count("@") != 1:
        raise InvalidAddress(f"bad address {address!r}: expected user@domain")
    user, domain = address.split("@")
    user = unicodedata.normalize("NFC", user).lower()
    if not _LOCAL_PART.fullmatch(user) or user.startswith(".") or ".." in user:
        raise InvalidAddress(
            f"bad address {address!r}: the user part must be 1 to 64 letters, "
            "digits or . _ + -"
        )
    return f"{user}@{normalize_domain(domain)}"


def addresses_in(value: str) -> list[str]:
    """
    The valid addresses in a C{To} property (separated by spaces or
    commas), normalized, in order, without repeats.
    """
    found: list[str] = []
    for part in value.replace(",", " ").split():
        try:
            address = normalize_address(part)
        except InvalidAddress:
            continue
        if address not in found:
            found.append(address)
    return found


def domain_of(address: str) -> str:
    """
    The domain part of a normalized address.
    """
    return address.rpartition("@")[2]


def new_object_id(owner: str, now: float) -> str:
    """
    Make a fresh object id for C{owner} at time C{now} (seconds since the
    epoch).  The millisecond timestamp orders ids roughly by creation; the
    random nonce (48 bits from the OS's CSPRNG, taken from a buffer of
    them: L{fmtp.util.randbuf}) makes them unique without coordination.
    """
    return f"{int(now * 1000)}.{default_buffer.token_hex(6)}.{owner}"


def parse_object_id(object_id: str) -> tuple[int | None, str]:
    """
    Split an object id into its millisecond timestamp and owner.

    A user object's id is its address alone, and has no timestamp.

    @return: C{(ms or None, owner address)}.
    @raise InvalidObjectId: if the id is neither form.
    """
    if not isinstance(object_id, str) or len(object_id) > 512:
        raise InvalidObjectId(f"bad object id {object_id!r}")
    parts = object_id.split(".", 2)
    if len(parts) == 3 and is_ascii_digits(parts[0]) and _NONCE.fullmatch(parts[1]):
        ms, owner = int(parts[0]), parts[2]
    else:
        ms, owner = None, object_id
    try:
        normal = normalize_address(owner)
    except InvalidAddress as e:
        raise InvalidObjectId(f"bad object id {object_id!r}: {e.message}") from None
    if normal != owner:
        raise InvalidObjectId(
            f"bad object id {object_id!r}: its address must be written {normal!r}"
        )
    return ms, owner


def owner_of(object_id: str) -> str:
    """
    The address that owns an object id.
    """
    return parse_object_id(object_id)[1]


@dataclass(frozen=True, slots=True)
class ObjectSummary:
    """
    What a listing says of an object: enough to decide whether to GET it.
    """

    id: str
    type: str
    digest: str


@dataclass(slots=True)
class FMTPObject:
    """
    A typed property map with a binary body.

    C{properties} maps canonical names (see L{canonical_name}) to values;
    it never holds C{Id}, C{Type} or C{Length}, which are fields or framing.
    """

    id: str
    type: str
    properties: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # The digest, when whoever made this object knows it (L{with_digest}):
    # not a field of the value, and not copied by C{dataclasses.replace}.
    _digest: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def owner(self) -> str:
        """
        The address that owns this object (the last part of its id).
        """
        return owner_of(self.id)

    @property
    def public(self) -> bool:
        """
        Whether anyone may read this object (C{Public: yes}).
        """
        return self.properties.get("Public", "").strip().lower() == "yes"

    def canonical_bytes(self) -> bytes:
        """
        The form the digest covers: id, type, every property but the
        envelope ones (lower-cased names, sorted), then the body.

        Values may not hold line breaks (no header can), which makes a
        line per property unambiguous; the body comes last and runs to the
        end.

        @raise InvalidObject: if a value holds a line break, or text that
            is not Unicode (a lone surrogate), which no peer could decode.
        """
        lines = [f"fmtp-object/1\nid:{self.id}\ntype:{self.type}\n"]
        for name in sorted(self.properties, key=str.lower):
            if name not in ENVELOPE_PROPERTIES:
                value = self.properties[name]
                if "\n" in value or "\r" in value:
                    raise InvalidObject(f"property {name} holds a line break")
                lines.append(f"{name.lower()}:{value}\n")
        lines.append("\n")
        try:
            text = "".join(lines).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidObject("a property holds text that is not Unicode") from None
        return text + self.body

    def digest(self) -> str:
        """
        The lower-case hex SHA-256 of L{canonical_bytes}: what
        C{Parent-Digest} names and what a signature covers.

        Computed each time, unless this object was made by L{with_digest}.
        """
        if self._digest is not None:
            return self._digest
        return self.computed_digest()

    def computed_digest(self) -> str:
        """
        L{digest}, always computed from what the object holds now: for
        checking a signature, which must never trust a remembered value.
        """
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    def with_digest(self, properties: dict[str, str], digest: str) -> FMTPObject:
        """
        A copy of this object with C{properties}, which differ from its
        own only in envelope properties (L{ENVELOPE_PROPERTIES}), and so
        has the same C{digest}, remembered.

        The copy is a sealed value (a signed message on its way to the
        store, its sender and its recipients): it must not be changed in
        place, only copied (C{dataclasses.replace}, which forgets the
        digest).  Computing the digest once instead of once per use (the
        signature, the stored row, the reply, each push) saves a SHA-256
        of the whole message each time.
        """
        copy = FMTPObject(self.id, self.type, properties, self.body)
        copy._digest = digest
        return copy

    def summary(self) -> ObjectSummary:
        return ObjectSummary(self.id, self.type, self.digest())

    def to_headers(self) -> dict[str, str]:
        """
        The headers that carry this object in a frame: C{Id} and C{Type}
        first, then its properties.
        """
        headers = {"Id": self.id, "Type": self.type}
        headers.update(self.properties)
        return headers

    def public_view(self) -> FMTPObject:
        """
        The object as someone other than its owner may see it.

        For a user object that is its public profile only
        (L{PUBLIC_USER_PROPERTIES}); other objects are shown whole.
        """
        if self.type != USER_TYPE:
            return self
        visible = {
            k: v for k, v in self.properties.items() if k in PUBLIC_USER_PROPERTIES
        }
        return FMTPObject(self.id, self.type, visible, b"")

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], body: bytes = b"") -> FMTPObject:
        """
        Build an object from frame headers (canonical names): C{Id} and
        C{Type} become fields, the L{TRANSFER_HEADERS} are dropped, the rest
        become properties.

        @raise InvalidObject: if C{Id} or C{Type} is missing or malformed.
        """
        if "Id" not in headers:
            raise InvalidObject("missing header: Id")
        object_id = headers["Id"]
        parse_object_id(object_id)
        object_type = check_type(headers.get("Type", ""))
        properties = {
            name: value
            for name, value in headers.items()
            if name not in ("Id", "Type") and name not in TRANSFER_HEADERS
        }
        return cls(object_id, object_type, properties, bytes(body))


def check_type(object_type: str) -> str:
    """
    Validate an object type (C{user}, C{message}, C{post}, C{room}...).

    @raise InvalidObject: if it is not 1 to 32 lower-case letters, digits
        or dashes, starting with a letter.
    """
    if not _TYPE.fullmatch(object_type):
        raise InvalidObject(
            f"bad type {object_type!r}: 1 to 32 lower-case letters, digits or "
            "dashes, starting with a letter"
        )
    return object_type


def check_property_names(names: Iterable[str]) -> None:
    """
    Refuse reserved property names in a client's object.

    @raise InvalidObject: naming the first reserved name found.
    """
    for name in names:
        if name in ENVELOPE_PROPERTIES:
            raise InvalidObject(f"property {name} is set by the server")


def user_object(address: str) -> FMTPObject:
    """
    The initial object of a new account: its id is its address.
    """
    return FMTPObject(address, USER_TYPE, {"Address": address})
