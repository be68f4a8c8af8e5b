"""
Sending a message: from a logged-in user's SEND to filed-or-queued.

The message gets its id, sender and thread links here, is signed by this
domain, and then, in one durable step, is sealed, queued for every remote
domain, recorded as sent to each (what the countersign vouches for) and
filed for the local recipients by their policies, before the sender hears
2xx: one call to the store (L{IDeliveryStore.send_message}), which reads
what the policies need in the same transaction, so a message to a local
user costs one trip to the store's thread, shared with other messages by
group commit.

A client may name its send with an C{Idempotency-Key}: the key is
recorded in that same durable step, so a SEND repeated after a lost reply
(or a crash) answers with the message already sent instead of sending a
second one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fmtp import attachments
from fmtp.access import check_parent_digest, link_to_parent
from fmtp.delivery import (
    RecipientResult,
    SendKey,
    SendRecord,
    choose_filing,
    deliveries_to,
    log_refusal,
    parse_results,
    results_text,
)
from fmtp.errors import InvalidAddress, InvalidObject, SendKeyUsed
from fmtp.federation.inbound import DeliveryReceiver
from fmtp.interfaces import IDeliveryStore, IDomainSigner
from fmtp.objects import (
    MESSAGE_TYPE,
    FMTPObject,
    addresses_in,
    check_property_names,
    check_type,
    domain_of,
    new_object_id,
    normalize_address,
)

#: Most recipients one message may name.
MAX_RECIPIENTS = 100

#: The request header that names a send, and what it may hold.
IDEMPOTENCY_KEY = "Idempotency-Key"
_KEY = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def check_send_key(key: str) -> str:
    """
    @raise InvalidObject: if C{key} is not 1 to 64 letters, digits or
        C{. _ : -}.
    """
    if not _KEY.fullmatch(key):
        raise InvalidObject(
            f"{IDEMPOTENCY_KEY} must be 1 to 64 letters, digits or . _ : -"
        )
    return key


def request_digest(headers: Mapping[str, str], body: bytes) -> str:
    """
    What a SEND asked for, as a digest: a retry repeats its request
    unchanged, so a key that comes back with another digest names another
    message.
    """
    h = hashlib.sha256()
    for name in sorted(headers):
        if name != IDEMPOTENCY_KEY:
            h.update(f"{name}:{headers[name]}\n".encode("utf-8", "surrogatepass"))
    h.update(b"\n")
    h.update(body)
    return h.hexdigest()


class MessageSender:
    """
    Turns a user's request into a signed message, delivered locally and
    queued for other domains.

    @param kick: called after remote deliveries are queued, so the queue
        tries them at once rather than at its next timer.
    """

    _log = Logger()

    def __init__(
        self,
        domain: str,
        store: IDeliveryStore,
        signer: IDomainSigner,
        clock: IReactorTime,
        receiver: DeliveryReceiver,
        kick: Callable[[], object] = lambda: None,
        reserved_types: Callable[[], frozenset[str]] = frozenset,
    ) -> None:
        """
        @param reserved_types: reads the object types only the server
            makes (L{DeliveryReceiver.handled_types}), registered after
            this sender is built.
        """
        self.domain = domain
        self._reserved_types = reserved_types
        self._store = store
        self._signer = signer
        self._clock = clock
        self._receiver = receiver
        self._kick = kick

    async def send(
        self,
        user: str,
        headers: Mapping[str, str],
        body: bytes,
        key: str | None = None,
    ) -> tuple[FMTPObject, list[RecipientResult]]:
        """
        Send a message from C{user} to the addresses in its C{To} header.

        @param key: the client's C{Idempotency-Key} for this send, if any.
        @return: the signed message and the outcome for each local
            recipient (remote ones are queued).
        @raise InvalidObject: for a message without valid recipients, or a
            malformed C{key}.
        @raise InvalidAddress: naming a malformed recipient.
        @raise SendKeyUsed: if C{key} already named another message.
        """
        send_key = None
        if key is not None:
            check_send_key(key)
            # A key seen before is found by send_message, which refuses to
            # record it twice: a first send pays no extra read.
            send_key = SendKey(
                user, key, request_digest(headers, body), self._clock.seconds()
            )
        properties = {
            k: v for k, v in headers.items() if k not in ("Id", "Type", IDEMPOTENCY_KEY)
        }
        check_property_names(properties)
        if "From" in properties and properties["From"] != user:
            raise InvalidObject("From is set by the server: it is you")
        object_type = check_type(headers.get("Type", MESSAGE_TYPE))
        if object_type in self._reserved_types():
            raise InvalidObject(f"objects of type {object_type} are made by the server")
        attachments.check(properties, len(body))
        recipients = self._recipients(properties.get("To", ""))
        properties["From"] = user
        properties["To"] = " ".join(recipients)
        parent = await link_to_parent(self._store, user, properties)
        if parent is not None:
            check_parent_digest(parent, properties)
        now = self._clock.seconds()
        obj = FMTPObject(new_object_id(user, now), object_type, properties, bytes(body))
        obj = self._signer.sign_object(obj, now)

        remote = deliveries_to(obj.id, recipients, now, skip_domain=self.domain)
        local = [a for a in recipients if domain_of(a) == self.domain]
        try:
            filings = await self._store.send_message(
                obj, remote, send_key, local, choose_filing
            )
        except SendKeyUsed:
            # The key was used before: by this very request, retried after
            # a lost reply or twice in flight, or by another one.
            record = await self._store.find_send(user, key)
            if record is None:
                raise
            return await self._repeat(user, key, send_key.request_digest, record)
        if remote:
            self._kick()
        for filing in filings:
            log_refusal(self._log, obj, filing)
            if filing.pushed:
                self._receiver.push(filing.result.address, obj)
        return obj, [filing.result for filing in filings]

    async def _file_locally(
        self, user: str, key: str | None, obj: FMTPObject
    ) -> list[RecipientResult]:
        """
        File a sent message for its local recipients (filing is idempotent
        per recipient), and remember the results with its key: what is
        left to do of a send that a crash interrupted before it was all
        done (by a store older than L{IDeliveryStore.send_message}).
        """
        recipients = addresses_in(obj.properties.get("To", ""))
        local = [a for a in recipients if domain_of(a) == self.domain]
        results = await self._receiver.receive_local(obj, local) if local else []
        if key is not None:
            await self._store.finish_send(user, key, results_text(results))
        return results

    async def _repeat(
        self, user: str, key: str, digest: str, record: SendRecord
    ) -> tuple[FMTPObject, list[RecipientResult]]:
        """
        Answer a SEND whose key was seen: with the first answer, or, if
        the server stopped before local delivery finished, by finishing it
        now.
        """
        if record.request_digest != digest:
            raise SendKeyUsed(
                f"{IDEMPOTENCY_KEY} {key} was used for another message, "
                f"{record.object_id}"
            )
        obj = await self._store.get_object(record.object_id)
        if obj is None:
            raise SendKeyUsed(f"{IDEMPOTENCY_KEY} {key} names a message now gone")
        if record.results is not None:
            return obj, parse_results(record.results)
        return obj, await self._file_locally(user, key, obj)

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
