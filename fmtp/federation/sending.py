"""
Sending a message: from a logged-in user's SEND to filed-or-queued.

The message gets its id, sender and thread links here, is signed by this
domain, and then, in one durable step per destination domain, is queued
for every remote recipient before the sender hears 2xx; local recipients
get it at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from twisted.internet.interfaces import IReactorTime

from fmtp.delivery import deliveries_to
from fmtp.errors import InvalidAddress, InvalidObject
from fmtp.federation.inbound import DeliveryReceiver, RecipientResult
from fmtp.interfaces import IDeliveryStore, IDomainSigner
from fmtp.objects import (
    MESSAGE_TYPE,
    FMTPObject,
    check_property_names,
    check_type,
    domain_of,
    new_object_id,
    normalize_address,
)
from fmtp.objectservice import ObjectService

#: Most recipients one message may name.
MAX_RECIPIENTS = 100


class MessageSender:
    """
    Turns a user's request into a signed message, delivered locally and
    queued for other domains.

    @param kick: called after remote deliveries are queued, so the queue
        tries them at once rather than at its next timer.
    """

    def __init__(
        self,
        domain: str,
        store: IDeliveryStore,
        signer: IDomainSigner,
        clock: IReactorTime,
        receiver: DeliveryReceiver,
        objects: ObjectService,
        kick: Callable[[], object] = lambda: None,
    ) -> None:
        self.domain = domain
        self._store = store
        self._signer = signer
        self._clock = clock
        self._receiver = receiver
        self._objects = objects
        self._kick = kick

    async def send(
        self, user: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[FMTPObject, list[RecipientResult]]:
        """
        Send a message from C{user} to the addresses in its C{To} header.

        @return: the signed message and the outcome for each local
            recipient (remote ones are queued).
        @raise InvalidObject: for a message without valid recipients.
        @raise InvalidAddress: naming a malformed recipient.
        """
        properties = {k: v for k, v in headers.items() if k not in ("Id", "Type")}
        check_property_names(properties)
        if "From" in properties and properties["From"] != user:
            raise InvalidObject("From is set by the server: it is you")
        object_type = check_type(headers.get("Type", MESSAGE_TYPE))
        recipients = self._recipients(properties.get("To", ""))
        properties["From"] = user
        properties["To"] = " ".join(recipients)
        await self._objects.link_to_parent(user, properties)
        now = self._clock.seconds()
        obj = FMTPObject(new_object_id(user, now), object_type, properties, bytes(body))
        obj = self._signer.sign_object(obj, now)

        local = [a for a in recipients if domain_of(a) == self.domain]
        remote = deliveries_to(obj.id, recipients, now, skip_domain=self.domain)
        if remote:
            await self._store.enqueue(obj, remote)
            self._kick()
        else:
            await self._store.put_object(obj)
        results = await self._receiver.receive_local(obj, local) if local else []
        return obj, results

    def _recipients(self, to: str) -> list[str]:
        parts = to.replace(",", " ").split()
        if not parts:
            raise InvalidObject("a message needs a To header")
        if len(parts) > MAX_RECIPIENTS:
            raise InvalidObject(f"at most {MAX_RECIPIENTS} recipients")
        recipients: list[str] = []
        for part in parts:
            try:
                address = normalize_address(part)
            except InvalidAddress as e:
                raise InvalidAddress(f"To: {e.message}") from None
            if address not in recipients:
                recipients.append(address)
        return recipients
