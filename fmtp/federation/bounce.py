"""
Bounces: telling a local sender, from this domain's postmaster, that a
message will not reach some of its recipients.

A bounce answers the original in its thread, says for each failed
recipient what went wrong (quoting the peer's reason, cleaned and cut),
and has an id derived from what failed, so that one filed again after a
crash reaches the sender once.  Only this server's own users get
bounces, and a postmaster's message is never bounced, so two servers
never bounce a bounce back and forth.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fmtp.delivery import QueuedDelivery, RecipientResult, sender_of
from fmtp.errors import InvalidObjectId
from fmtp.interfaces import IDomainSigner
from fmtp.objects import FMTPObject, domain_of

#: The local part of the address bounces come from.  A message from any
#: postmaster is never bounced, so two servers can never bounce a bounce
#: back and forth.
POSTMASTER = "postmaster"

#: The type of a bounce: an ordinary message in the sender's inbox.
BOUNCE_TYPE = "message"

#: The longest reason a bounce quotes for one recipient: the reason comes
#: from the peer, which should not be able to fill the sender's inbox.
MAX_REASON = 300

#: Files a bounce in a local user's inbox and pushes it to the user.
DeliverLocal = Callable[[str, FMTPObject], Awaitable[object]]


def is_success(code: int) -> bool:
    """
    Whether a reply code says "done" (2xx).
    """
    return 200 <= code < 300


def clean_reason(text: str) -> str:
    """
    A peer's reason, fit to quote on one line of a bounce: whitespace runs
    (line breaks included) become one space, and it is cut at
    L{MAX_REASON} characters.
    """
    reason = " ".join(str(text).split())
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 3] + "..."
    return reason or "no reason given"


def summarize(failures: Sequence[RecipientResult]) -> str:
    """
    Why an attempt failed, as kept in a row's C{last_error}: one
    C{address code reason} per recipient, or just C{code reason} when every
    recipient failed alike (the whole message was refused, or the link
    failed).
    """
    reasons = {(f.code, clean_reason(f.text)) for f in failures}
    if len(reasons) == 1:
        code, reason = reasons.pop()
        return f"{code} {reason}"
    return "; ".join(f"{f.address} {f.code} {clean_reason(f.text)}" for f in failures)


def bounce_id(delivery: QueuedDelivery, failed: Sequence[str], domain: str) -> str:
    """
    The id of the bounce for the recipients C{failed} of C{delivery}.

    It is derived from what failed rather than drawn at random, so that a
    bounce filed again (the server stopped after filing it but before
    removing the queue row) is recognised by the inbox as one already
    there instead of reaching the sender twice.  Its timestamp is the time
    the message was queued, which the failed delivery fixes.
    """
    key = "\n".join([delivery.object_id, delivery.domain, *sorted(failed)])
    nonce = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
    return f"{int(delivery.created * 1000)}.{nonce}.{POSTMASTER}@{domain}"


def make_bounce(
    original: FMTPObject,
    delivery: QueuedDelivery,
    failures: Sequence[RecipientResult],
    attempts: int,
    domain: str,
) -> FMTPObject:
    """
    The unsigned bounce telling the sender of C{original} that
    C{failures} will not get it.

    It answers the original in its thread (C{Parent}, C{Parent-Digest},
    C{Top}), so a client shows it next to what failed and the digest
    proves which message that was; the body is plain text, readable in any
    client.

    @param attempts: how many attempts were made, the last one included.
    @param domain: this server's domain, whose postmaster sends it.
    """
    sender = sender_of(original)
    subject = original.properties.get("Subject") or original.id
    lines = [
        f"This is the postmaster at {domain}.",
        "",
        f"Your message could not be delivered to these recipients at "
        f"{delivery.domain}:",
        "",
    ]
    lines += [f"  {f.address}: {f.code} {clean_reason(f.text)}" for f in failures]
    times = "attempt" if attempts == 1 else "attempts"
    lines += [
        "",
        f"No further attempts will be made ({attempts} {times}).",
        "",
        f"Message: {original.id}",
        f"Subject: {subject}",
        "",
    ]
    properties = {
        "From": f"{POSTMASTER}@{domain}",
        "To": sender,
        "Subject": f"Undeliverable: {subject}",
        "Parent": original.id,
        "Parent-Digest": original.digest(),
        "Top": original.properties.get("Top", original.id),
    }
    failed = [f.address for f in failures]
    return FMTPObject(
        bounce_id(delivery, failed, domain),
        BOUNCE_TYPE,
        properties,
        "\n".join(lines).encode("utf-8"),
    )


class Bouncer:
    """
    Files the bounces of this server's outbound queue.

    @param domain: this server's domain, whose postmaster sends bounces
        and whose users alone get them.
    @param signer: signs bounces as this domain.
    @param deliver_local: C{deliver_local(recipient, bounce)} files a
        bounce in a local user's inbox and pushes it to the user's
        sessions (L{fmtp.federation.inbound.DeliveryReceiver.file_bounce}).
    """

    _log = Logger()

    def __init__(
        self,
        domain: str,
        signer: IDomainSigner,
        clock: IReactorTime,
        deliver_local: DeliverLocal,
    ) -> None:
        self.domain = domain
        self._signer = signer
        self._clock = clock
        self._deliver_local = deliver_local

    async def bounce(
        self,
        row: QueuedDelivery,
        obj: FMTPObject,
        failures: list[RecipientResult],
        attempts: int,
    ) -> None:
        """
        Tell the sender of C{obj} that C{failures} will not get it, if the
        sender is one of our users and not a postmaster.

        A sender at another domain cannot have sent through this queue
        (we sign and queue only our users' messages); rather than sending a
        bounce out to it, the failure is logged.
        """
        failed = ", ".join(f.address for f in failures)
        try:
            sender = sender_of(obj)
        except InvalidObjectId:
            self._log.warn(
                "Not bouncing {id} (failed for {failed}): it names no sender",
                id=obj.id,
                failed=failed,
            )
            return
        if sender.partition("@")[0] == POSTMASTER:
            self._log.warn(
                "Dropping undeliverable {id} from {sender} (failed for {failed}): "
                "a bounce is never bounced",
                id=obj.id,
                sender=sender,
                failed=failed,
            )
            return
        if domain_of(sender) != self.domain:
            self._log.warn(
                "Not bouncing {id} (failed for {failed}): its sender {sender} "
                "is not a user of {domain}",
                id=obj.id,
                sender=sender,
                failed=failed,
                domain=self.domain,
            )
            return
        bounce = make_bounce(obj, row, failures, attempts, self.domain)
        bounce = self._signer.sign_object(bounce, self._clock.seconds())
        filed = await maybeDeferred(self._deliver_local, sender, bounce)
        refused = [
            r
            for r in (filed if isinstance(filed, list) else [])
            if isinstance(r, RecipientResult) and not is_success(r.code)
        ]
        if refused:
            # A deliver_local that runs the recipient's policy can refuse
            # the bounce; then the sender will not hear of the failure.
            self._log.warn(
                "Bounce {bounce_id} of {id} was refused for {sender}: {error}",
                bounce_id=bounce.id,
                id=obj.id,
                sender=sender,
                error=summarize(refused),
            )
            return
        self._log.info(
            "Bounced {id} to {sender} as {bounce_id}: failed for {failed}",
            id=obj.id,
            sender=sender,
            bounce_id=bounce.id,
            failed=failed,
        )
