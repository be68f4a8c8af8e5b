"""
What chat commands carry, checked here once: a room's address, the flags
and texts of its configuration, roles; and the one frame an entry of a
room's history travels in, pushed live or paged by HISTORY (with its
reading back, for clients and tests).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fmtp.errors import Forbidden, InvalidObject
from fmtp.objects import FMTPObject, domain_of, is_ascii_digits, normalize_address
from fmtp.protocols.chat.events import MemberChanged
from fmtp.protocols.presence.status import NOT_IN_A_LINE
from fmtp.store.rooms import HistoryEntry, Member, Role, RoomConfig
from fmtp.wire import DEFAULT_LIMITS, UNSOLICITED_TAG, Frame, FrameParser, reply

#: The code of a pushed (or paged) entry of a room's history.
LINE_CODE = 256
#: The type of a line, a topic change and a retraction.
LINE_TYPE = "message"
TOPIC_TYPE = "room-topic"
RETRACTION_TYPE = "retraction"
#: The property of a line posted by a user of another domain: that
#: domain's signature of the line as posted (L{posted_line}).
POSTER_SIGNATURE = "Poster-Signature"
#: The longest room name and topic, in characters.
MAX_NAME = 100
MAX_TOPIC = 500
MAX_REASON = 200
#: The roles ROLE may give.
SETTABLE_ROLES = {r.value: r for r in (Role.OWNER, Role.MODERATOR, Role.MEMBER)}


def parse_room(argument: str, domain: str | None = None) -> str:
    """
    The room a command names, in normal form (of C{domain}, if given).

    @raise InvalidObject: if there is none.
    @raise fmtp.errors.InvalidAddress: if it is not an address (553).
    @raise Forbidden: if it is not a room of C{domain}.
    """
    if not argument:
        raise InvalidObject("name the room: VERB TAG room@domain")
    room = normalize_address(argument)
    if domain is not None and domain_of(room) != domain:
        raise Forbidden(f"{room} is not a room of {domain}")
    return room


def parse_flag(headers: Mapping[str, str], name: str) -> bool | None:
    """
    A C{yes}/C{no} header, or L{None} when absent.

    @raise InvalidObject: for any other value.
    """
    value = headers.get(name)
    if value is None:
        return None
    word = value.lower()
    if word not in ("yes", "no"):
        raise InvalidObject(f"{name} must be yes or no")
    return word == "yes"


def parse_count(headers: Mapping[str, str], name: str, high: int) -> int | None:
    """
    A whole number from 0 to C{high}, or L{None} when absent.

    @raise InvalidObject: for anything else.
    """
    value = headers.get(name)
    if value is None:
        return None
    if not is_ascii_digits(value) or len(value) > 12 or int(value) > high:
        raise InvalidObject(f"{name} must be a whole number from 0 to {high}")
    return int(value)


def parse_text(value: str, name: str, longest: int) -> str:
    """
    One line of text in NFC, of at most C{longest} characters.

    @raise InvalidObject: if it is longer or holds control or format
        characters (which would make it read otherwise than it is).
    """
    text = unicodedata.normalize("NFC", value)
    if len(text) > longest:
        raise InvalidObject(f"{name} is longer than {longest} characters")
    if not (text.isascii() and text.isprintable()) and any(
        unicodedata.category(c) in NOT_IN_A_LINE for c in text
    ):
        raise InvalidObject(f"{name} must be one line, without control characters")
    return text


def parse_role(word: str) -> Role:
    """
    @raise InvalidObject: unless C{word} names a role ROLE may give.
    """
    role = SETTABLE_ROLES.get(word.lower())
    if role is None:
        raise InvalidObject("Role must be owner, moderator or member")
    return role


def parse_address(
    headers: Mapping[str, str], normalize: Callable[[str], str] = normalize_address
) -> str:
    """
    The C{Address} header, in normal form.

    @param normalize: what makes it so (for BAN and UNBAN,
        L{fmtp.store.rooms.normalize_ban_address}, which takes a whole
        domain's C{*@DOMAIN} too).
    @raise InvalidObject: without one; L{fmtp.errors.InvalidAddress} if
        it is not an address.
    """
    value = headers.get("Address")
    if not value:
        raise InvalidObject("name the member: Address: user@domain")
    return normalize(value)


def member_line(member: Member) -> str:
    """
    One line of WHO: C{ADDRESS SP ROLE SP VOICE CRLF}.
    """
    return (
        f"{member.address} {member.role.value} {'voice' if member.voice else '-'}\r\n"
    )


def entry_frame(room: str, entry: HistoryEntry) -> Frame:
    """
    The frame an entry travels in (doc/protocol.md 10.5): its place and
    link, then the object it holds, unless retracted.
    """
    headers = {"Room": room, "Seq": str(entry.seq)}
    body = b""
    if entry.obj is not None:
        headers.update(entry.obj.to_headers())
        body = entry.obj.body
    headers["Digest"] = entry.digest
    if entry.parent_digest:
        headers["Parent-Digest"] = entry.parent_digest
    if entry.retracted_by is not None:
        headers["Retracted-By"] = str(entry.retracted_by)
    headers["Appended"] = f"{entry.appended:.3f}"
    return reply(LINE_CODE, UNSOLICITED_TAG, "room line", headers, body)


def member_headers(changed: MemberChanged) -> dict[str, str]:
    """
    What a member's change says (C{257}, and a C{member} push between
    domains): C{Address}, C{Role}, C{Voice}, and C{By} and C{Reason} when
    there are.
    """
    headers = {
        "Address": changed.address,
        "Role": changed.role,
        "Voice": "yes" if changed.voice else "no",
    }
    if changed.actor is not None:
        headers["By"] = changed.actor
    if changed.reason:
        headers["Reason"] = changed.reason
    return headers


def entry_reply(tag: str, entry: HistoryEntry) -> Frame:
    """
    The reply to a command that appended C{entry} (SAY, TOPIC, RETRACT).
    """
    return reply(
        201,
        tag,
        headers={"Seq": str(entry.seq), "Id": entry.obj.id, "Digest": entry.digest},
    )


def parse_format(headers: Mapping[str, str]) -> str | None:
    """
    A line's C{Format}, in lower case, if given.

    @raise InvalidObject: for a format that is not offered.
    """
    fmt = headers.get("Format")
    if fmt is None:
        return None
    if fmt.lower() not in ("plain", "bbcode", "markdown"):
        raise InvalidObject("Format must be plain, bbcode or markdown")
    return fmt.lower()


def entry_of_frame(frame: Frame) -> tuple[str, HistoryEntry]:
    """
    The room and entry a frame of L{entry_frame} carries, as a member
    reads it to check the chain (L{fmtp.store.rooms.verify_chain}).

    @raise ValueError: if it is not such a frame.
    """
    headers = dict(frame.headers)
    try:
        room = headers.pop("Room")
        seq = int(headers.pop("Seq"))
        digest = headers.pop("Digest")
        appended = float(headers.pop("Appended"))
    except (KeyError, ValueError) as e:
        raise ValueError(f"not a room line: {e}") from None
    parent = headers.get("Parent-Digest", "")
    retracted = headers.pop("Retracted-By", None)
    obj = None
    if "Id" in headers:
        obj = FMTPObject.from_headers(headers, frame.body)
    retracts = obj.properties.get("Retracts") if obj is not None else None
    entry = HistoryEntry(
        seq,
        digest,
        parent,
        obj,
        appended,
        retracts=int(retracts) if retracts else None,
        retracted_by=int(retracted) if retracted else None,
    )
    return room, entry


def entries_of(body: bytes) -> list[tuple[str, HistoryEntry]]:
    """
    The rooms and entries of a HISTORY reply's body: the entries' frames,
    one after the other.

    @raise ValueError: for a body that is not such frames.
    """
    entries = []
    for item in FrameParser(DEFAULT_LIMITS).feed(body):
        if isinstance(item, Exception):
            raise ValueError(f"not a frame: {item}")
        entries.append(entry_of_frame(item))
    return entries


def posted_line(
    object_id: str,
    user: str,
    room: str,
    fmt: str | None,
    body: bytes,
    signature: str | None = None,
) -> FMTPObject:
    """
    A line as the server of a poster of another domain signs it: what the
    poster said, without the C{Parent-Digest} that only the room's home
    can give it (with C{signature}, if given, as its C{Signature}).  The
    home links it into its history with the signature as
    C{Poster-Signature} (L{as_posted} gives it back).
    """
    properties = {"From": user, "To": room}
    if fmt:
        properties["Format"] = fmt
    if signature is not None:
        properties["Signature"] = signature
    return FMTPObject(object_id, LINE_TYPE, properties, body)


def as_posted(obj: FMTPObject) -> FMTPObject | None:
    """
    The line an entry's object holds as its poster's domain signed it, to
    check that signature (L{fmtp.keys.signing.verify_with}); L{None} for
    an entry that carries none (a line of the home's own users, whose
    signature is the entry's own).
    """
    signature = obj.properties.get(POSTER_SIGNATURE)
    if signature is None or obj.type != LINE_TYPE:
        return None
    props = obj.properties
    return posted_line(
        obj.id,
        props.get("From", ""),
        props.get("To", ""),
        props.get("Format"),
        obj.body,
        signature,
    )


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """
    What CREATE or CONFIG sets of a room's configuration: L{None} leaves
    a setting as it is.  C{password} is the password itself, hashed by
    the service before anything keeps it; C{clear_password} removes it.
    """

    name: str | None = None
    topic: str | None = None
    public: bool | None = None
    members_only: bool | None = None
    moderated: bool | None = None
    max_members: int | None = None
    password: str | None = None
    clear_password: bool = False

    def is_empty(self) -> bool:
        return self == ConfigChange()


#: The headers CREATE and CONFIG take.
CONFIG_HEADERS = (
    "Name",
    "Topic",
    "Public",
    "Members-Only",
    "Moderated",
    "Max-Members",
    "Password",
    "Clear-Password",
)


def parse_config(headers: Mapping[str, str]) -> ConfigChange:
    """
    The configuration a CREATE or CONFIG sets.

    @raise InvalidObject: naming the header that is wrong.
    """
    name = headers.get("Name")
    topic = headers.get("Topic")
    password = headers.get("Password")
    if password is not None and not 1 <= len(password) <= 128:
        raise InvalidObject("Password must be 1 to 128 characters")
    clear = parse_flag(headers, "Clear-Password") or False
    if clear and password is not None:
        raise InvalidObject("send Password or Clear-Password, not both")
    return ConfigChange(
        name=None if name is None else parse_text(name, "Name", MAX_NAME),
        topic=None if topic is None else parse_text(topic, "Topic", MAX_TOPIC),
        public=parse_flag(headers, "Public"),
        members_only=parse_flag(headers, "Members-Only"),
        moderated=parse_flag(headers, "Moderated"),
        max_members=parse_count(headers, "Max-Members", 10**9),
        password=password,
        clear_password=clear,
    )


def config_headers(config: RoomConfig) -> dict[str, str]:
    """
    The headers that show a room's configuration (never its password,
    only whether it has one).
    """

    def flag(value: bool) -> str:
        return "yes" if value else "no"

    return {
        "Name": config.name,
        "Topic": config.topic,
        "Public": flag(config.public),
        "Members-Only": flag(config.members_only),
        "Moderated": flag(config.moderated),
        "Max-Members": str(config.max_members),
        "Password-Protected": flag(config.password_hash is not None),
    }
