"""
Receiving a message from another domain: every check between "a peer
handed us an object" and "it is in the recipient's inbox".

In order: the recipients must be ours (no open relay) and named by the
message itself (no replay to other recipients); the object must be a
message of its origin domain (a timestamped id, a C{From} that is its
owner, another domain than ours), and that domain must prove it: its
signature against its DNS key, or, for a domain that publishes no key, a
countersign.  A peer speaks for its own domain; for another it is a relay,
and then only a signature proves the message.  The signature must be
recent; an id already held is acknowledged again without filing twice,
and one held with other content is refused; a reply's C{Parent-Digest}
must match the parent held here; then each recipient's policy decides.
Protocols only frame: the rules live here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from twisted.logger import Logger

from fmtp.delivery import RecipientResult, choose_filing, log_refusal, sender_of
from fmtp.errors import (
    BadSignature,
    FMTPError,
    InvalidAddress,
    NoKeyPublished,
    ObjectSealed,
)
from fmtp.interfaces import IDeliveryStore, IKeyVerifier
from fmtp.keys.signing import signature_of
from fmtp.objects import (
    USER_TYPE,
    FMTPObject,
    addresses_in,
    check_type,
    domain_of,
    normalize_address,
    parse_object_id,
)

#: How old a signature may be when it arrives: the sender's queue retries
#: for up to five days, and a little more covers clock skew.
MAX_SIGNATURE_AGE = 6 * 86400.0
#: How far in the future a signature's time may be (clock skew).
MAX_CLOCK_SKEW = 300.0

Countersign = Callable[[str, FMTPObject], Awaitable[bool]]
#: handler(obj, recipients, origin): what a protocol does with an object
#: of its type that another domain delivered (L{DeliveryReceiver.register_object_type}).
ObjectHandler = Callable[[FMTPObject, list[str], str], Awaitable[list[RecipientResult]]]


class DeliveryRefused(FMTPError):
    code = 554
    default_message = "delivery refused"


def named_recipients(obj: FMTPObject, recipients: Sequence[str]) -> list[str]:
    """
    The recipients a message is handed for, normalized, each of which the
    message must name in its C{To}: a signed message cannot be replayed to
    recipients of the sender's choosing.

    @raise DeliveryRefused: for a malformed or unnamed recipient, or none.
    """
    named = set(addresses_in(obj.properties.get("To", "")))
    addresses = []
    for recipient in recipients:
        try:
            address = normalize_address(recipient)
        except InvalidAddress as e:
            raise DeliveryRefused(e.message) from None
        if address not in named:
            raise DeliveryRefused(f"{address} is not a recipient of this message")
        addresses.append(address)
    if not addresses:
        raise DeliveryRefused("no recipients")
    return addresses


class DeliveryReceiver:
    """
    Files messages for local users, from peers or from local senders.

    @param countersign: asks the origin domain, found through DNS on its
        own, whether it sent this object; required for a domain that
        publishes no key, and for every message if C{always_countersign}.
    """

    _log = Logger()

    def __init__(
        self,
        domain: str,
        store: IDeliveryStore,
        keys: IKeyVerifier,
        clock,
        push: Callable[[str, FMTPObject], object],
        countersign: Countersign | None = None,
        always_countersign: bool = False,
    ) -> None:
        self.domain = domain
        self._store = store
        self._keys = keys
        self._clock = clock
        self._push = push
        self._countersign = countersign
        self._always_countersign = always_countersign
        self._object_handlers: dict[str, ObjectHandler] = {}

    @property
    def handled_types(self) -> frozenset[str]:
        """
        The object types a protocol takes instead of inboxes: users may
        not send them.
        """
        return frozenset(self._object_handlers)

    def register_object_type(self, object_type: str, handler: ObjectHandler) -> None:
        """
        Hand the objects of C{object_type} that pass every check of
        L{receive} to C{handler} rather than to the recipients' inboxes.

        @raise KeyError: if C{object_type} already has a handler.
        """
        check_type(object_type)
        if object_type in self._object_handlers:
            raise KeyError(f"objects of type {object_type} already have a handler")
        self._object_handlers[object_type] = handler

    async def receive(
        self, obj: FMTPObject, recipients: Sequence[str], peer_domain: str
    ) -> list[RecipientResult]:
        """
        Check and file C{obj} for C{recipients}, all of this domain.

        @param peer_domain: the domain the link proved (or claimed, for a
            domain without a key).
        @raise FMTPError: for a refusal of the whole message (bad or missing
            signature, stale, forged sender, no relaying...), with its code:
            permanent or, for a failed DNS lookup, temporary.
        @return: one result per recipient.
        """
        local = self._check_recipients(obj, recipients)
        origin = await self.check_origin(obj, peer_domain)
        handler = self._object_handlers.get(obj.type)
        if handler is not None:
            return await handler(obj, local, origin)
        await self._check_parent(obj)
        # One trip to the store: the id checked, each recipient's policy
        # read and the message filed, in one transaction.
        try:
            filings = await self._store.receive_message(obj, local, choose_filing)
        except ObjectSealed:
            raise DeliveryRefused(
                f"{obj.id} is already held with other content"
            ) from None
        for filing in filings:
            log_refusal(self._log, obj, filing)
            if filing.pushed:
                self._push(filing.result.address, obj)
        return [filing.result for filing in filings]

    async def receive_local(
        self, obj: FMTPObject, recipients: Sequence[str]
    ) -> list[RecipientResult]:
        """
        File a message this server made itself (a local sender's, or a
        bounce): its origin needs no proof, but recipients and their
        policies are checked as for any other.
        """
        local = self._check_recipients(obj, recipients)
        await self._check_parent(obj)
        return [await self._file(obj, address) for address in local]

    async def file_bounce(self, recipient: str, bounce: FMTPObject) -> None:
        """
        File a bounce from this server's postmaster for one of its users
        and push it to the user's sessions: whatever the user's policy
        says, since it is this server telling its own user that a message
        failed.  Filing is idempotent by id, so a bounce filed again
        (after a crash) is not pushed twice.

        A sender that is no user (a room, whose pushes a domain refused
        for good: its members read HISTORY) gets none, or a domain that
        refuses every push would fill an inbox nobody reads.
        """
        profile = await self._store.get_object(recipient)
        if profile is None or profile.type != USER_TYPE:
            self._log.warn(
                "Not filing bounce {id}: {recipient} is no user of this server",
                id=bounce.id,
                recipient=recipient,
            )
            return
        if await self._store.deliver_local(recipient, bounce, False) is not None:
            self._push(recipient, bounce)

    def _check_recipients(
        self, obj: FMTPObject, recipients: Sequence[str]
    ) -> list[str]:
        local = named_recipients(obj, recipients)
        for address in local:
            if domain_of(address) != self.domain:
                raise DeliveryRefused(
                    f"{address} is not served here; this server does not relay"
                )
        return local

    def origin_of(self, obj: FMTPObject) -> str:
        """
        The domain an inbound object speaks for: that of the address that
        owns its id, which its C{From} (if any) must be.  Only messages
        cross domains, never a user object (whose id is an address), and
        never one that claims to come from this domain.

        @raise DeliveryRefused: for an object that is none of this.
        """
        ms, owner = parse_object_id(obj.id)
        if ms is None:
            raise DeliveryRefused(
                f"{obj.id} is a user object's id: only messages are delivered"
            )
        claimed = obj.properties.get("From")
        if claimed is not None:
            try:
                sender = normalize_address(claimed)
            except InvalidAddress as e:
                raise DeliveryRefused(f"bad From: {e.message}") from None
            if sender != owner:
                raise DeliveryRefused(f"From {sender} is not the owner of {obj.id}")
        origin = domain_of(owner)
        if origin == self.domain:
            raise DeliveryRefused(
                f"{obj.id} claims to come from {origin}: only this server speaks for it"
            )
        return origin

    async def check_origin(
        self, obj: FMTPObject, peer_domain: str, for_relay: bool = False
    ) -> str:
        """
        Check that C{obj}'s origin domain sent it.  A peer speaks for its
        own domain (proved by HELLO, or for a domain without a key claimed,
        and then checked by countersign); for any other it is relaying, and
        only the origin's signature proves the message.

        @param peer_domain: the domain the link proved (or claimed).
        @param for_relay: whether this server is to relay C{obj} onward,
            when only the origin's signature will do, even from the origin
            itself: a countersign convinces this server only, not the
            domains it relays to.
        @return: the origin domain.
        @raise FMTPError: why not, with its code (451 when a key or a
            countersign cannot be had now).
        """
        origin = self.origin_of(obj)
        relayed = for_relay or origin != peer_domain
        try:
            info = signature_of(obj)
        except BadSignature as e:
            if e.message != "unsigned":
                raise
            info = None
        if info is None:
            if relayed:
                raise DeliveryRefused(
                    f"{obj.id} from {origin} came through {peer_domain} unsigned: "
                    "a relayed message must carry its origin's signature"
                )
            if await self._publishes_key(origin):
                raise BadSignature(
                    f"unsigned, but {origin} publishes a key: its messages "
                    "must be signed"
                )
            await self._confirm(obj, origin, "unsigned")
            return origin
        now = self._clock.seconds()
        if info.time > now + MAX_CLOCK_SKEW:
            raise BadSignature("signature time is in the future; check clocks")
        if info.time < now - MAX_SIGNATURE_AGE:
            raise BadSignature("signature too old: a replayed or long-delayed message")
        try:
            await self._keys.verify_object(obj)
        except NoKeyPublished:
            if relayed:
                raise DeliveryRefused(
                    f"{origin} publishes no key, so its message cannot be "
                    f"relayed by {peer_domain}"
                ) from None
            await self._confirm(obj, origin, "its domain publishes no key")
            return origin
        if self._always_countersign:
            await self._confirm(obj, origin, "countersign required")
        return origin

    async def _publishes_key(self, domain: str) -> bool:
        try:
            await self._keys.keys_for_domain(domain)
        except NoKeyPublished:
            return False
        return True

    async def _confirm(self, obj: FMTPObject, origin: str, why: str) -> None:
        """
        Ask the origin domain itself whether it sent C{obj}; the only proof
        for a domain without a key.
        """
        if self._countersign is None:
            raise BadSignature(f"{why}, and countersigning is not available")
        if not await self._countersign(origin, obj):
            raise DeliveryRefused(f"{origin} does not confirm sending {obj.id}")

    async def _check_parent(self, obj: FMTPObject) -> None:
        parent_id = obj.properties.get("Parent")
        if parent_id is None:
            return
        parent = await self._store.get_object(parent_id)
        if parent is None:
            return
        claimed = obj.properties.get("Parent-Digest", "").lower()
        if claimed != parent.digest():
            raise DeliveryRefused(f"Parent-Digest does not match {parent_id}")

    def push(self, address: str, obj: FMTPObject) -> None:
        """
        Tell C{address}'s sessions of C{obj}, just filed in their inbox
        (not held): for a sender that filed it itself
        (L{fmtp.interfaces.IDeliveryStore.send_message}).
        """
        self._push(address, obj)

    async def _file(self, obj: FMTPObject, address: str) -> RecipientResult:
        profile = await self._store.get_object(address)
        approved = profile is not None and await self._store.is_approved(
            address, sender_of(obj)
        )
        filing = choose_filing(address, profile, obj, approved)
        log_refusal(self._log, obj, filing)
        if filing.file:
            filing = filing.followed(
                await self._store.deliver_local(address, obj, filing.held)
            )
        if filing.pushed:
            self._push(address, obj)
        return filing.result
