"""
Values shared by the delivery store (L{fmtp.interfaces.IDeliveryStore}),
the code that delivers and the clients that send: a queued outbound
delivery, who an inbound object is from, and the per-recipient results of
a delivery as a reply carries them.

They live in their own small module, not in L{fmtp.store}, so that the
federation code can name them without importing every store backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from fmtp.auth.router import Event
from fmtp.errors import InvalidAddress
from fmtp.objects import FMTPObject, domain_of, normalize_address, owner_of


@dataclass(frozen=True, slots=True)
class QueuedDelivery:
    """
    One object waiting to be delivered to one destination domain.

    A message to several domains is several deliveries, one per domain, so
    that each domain is retried, delivered and bounced on its own.  The
    object itself is in the store's objects; this row names it by id.

    @ivar object_id: the id of the object to deliver.
    @ivar domain: the destination domain (IDNA A-label).
    @ivar recipients: the addresses at C{domain} to deliver to, as a
        L{tuple} (a list given is turned into one, so values stay
        hashable and compare equal whatever the caller passed).
    @ivar created: when the delivery was first queued, in seconds since
        the epoch: what the bounce-after-N-days rule measures from.
    @ivar attempts: how many attempts have failed so far.
    @ivar next_attempt: when to try next, in seconds since the epoch.
    @ivar last_error: why the last attempt failed, or L{None} before any.
    """

    object_id: str
    domain: str
    recipients: tuple[str, ...]
    created: float
    attempts: int
    next_attempt: float
    last_error: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.recipients, str):
            # tuple("a@b") would silently make a tuple of characters.
            raise TypeError("recipients must be a sequence of addresses, not a str")
        if not isinstance(self.recipients, tuple):
            object.__setattr__(self, "recipients", tuple(self.recipients))

    @classmethod
    def new(
        cls, object_id: str, domain: str, recipients: Iterable[str], now: float
    ) -> QueuedDelivery:
        """
        A delivery queued at C{now}, to be tried at once, with no attempt
        made yet.
        """
        return cls(object_id, domain, tuple(recipients), now, 0, now, None)


def sender_of(obj: FMTPObject) -> str:
    """
    The address an inbound object is from, as the confirm policy counts
    senders: its C{From} property in normal form, or, if it has none or
    one that does not parse, the address that owns its id.

    The same rule picks the domain that must have signed the object
    (L{fmtp.keys.signing.sender_domain}), except that an object with an
    unparsable C{From} fails verification there and never reaches a store.

    @raise fmtp.errors.InvalidObjectId: if the id names no owner either.
    """
    sender = obj.properties.get("From")
    if sender is not None:
        try:
            return normalize_address(sender)
        except InvalidAddress:
            pass
    return owner_of(obj.id)


def deliveries_to(
    object_id: str, recipients: Iterable[str], now: float, skip_domain: str = ""
) -> list[QueuedDelivery]:
    """
    The queue rows for sending C{object_id} to C{recipients} (normalized
    addresses): one per destination domain, so that each domain is tried,
    delivered and bounced on its own.

    @param skip_domain: a domain to leave out (this server's own, whose
        users are served without the queue).
    """
    by_domain: dict[str, list[str]] = {}
    for address in recipients:
        by_domain.setdefault(domain_of(address), []).append(address)
    by_domain.pop(skip_domain, None)
    return [
        QueuedDelivery.new(object_id, domain, addresses, now)
        for domain, addresses in by_domain.items()
    ]


@dataclass(frozen=True, slots=True)
class StoredObject:
    """
    An object as a request reads it (L{fmtp.interfaces.IDeliveryStore.read_object}):
    the object, and what decides who may still see it.

    @ivar removed: its owner deleted it, but it was sent, so it stays for
        those who hold it (its recipients, the outbound queue).
    @ivar filed: it is in the reader's inbox (not held, not removed): the
        reader holds it whatever its owner did since.
    """

    obj: FMTPObject
    removed: bool
    filed: bool


@dataclass(frozen=True, slots=True)
class SendKey:
    """
    A client's name for one SEND (its C{Idempotency-Key}), recorded with
    the message in the same durable step, so that a repeated SEND finds
    the message it already sent instead of sending it again.

    @ivar sender: the sending user's address; keys are per sender.
    @ivar key: the client's key.
    @ivar request_digest: what the request said (L{request_digest}), so a
        key reused for another message is told apart from a retry.
    @ivar created: when it was recorded, in seconds since the epoch: keys
        are forgotten after a day (L{fmtp.federation.housekeeping}).
    """

    sender: str
    key: str
    request_digest: str
    created: float


@dataclass(frozen=True, slots=True)
class SendRecord:
    """
    What a store remembers of a SEND made with an C{Idempotency-Key}.

    @ivar object_id: the message it sent.
    @ivar request_digest: see L{SendKey}.
    @ivar results: the reply's per-recipient lines, once local delivery
        finished; L{None} if the server stopped before (a retry then
        finishes it).
    """

    object_id: str
    request_digest: str
    results: str | None


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """
    The outcome for one recipient: a reply code and why.
    """

    address: str
    code: int
    text: str

    def line(self) -> str:
        return f"{self.address} {self.code} {self.text}"


def results_text(results: Sequence[RecipientResult]) -> str:
    """
    Results as a reply body carries them: C{ADDRESS SP CODE SP TEXT CRLF}
    per recipient.
    """
    return "".join(f"{result.line()}\r\n" for result in results)


def parse_results(
    text: str, malformed: Callable[[str], object] | None = None
) -> list[RecipientResult]:
    """
    The results of L{results_text}.  A line that does not parse is
    skipped, and handed to C{malformed} if given (to be logged: a peer's
    reply is not trusted to be well formed).
    """
    results = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        address, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if (
            len(code) == 3
            and code.isascii()
            and code.isdigit()
            and "2" <= code[0] <= "5"
        ):
            results.append(RecipientResult(address, int(code), reason))
        elif malformed is not None:
            malformed(line)
    return results


#: The router event kind of a message filed for a user: what the object
#: protocol pushes to a logged-in stream.
MESSAGE_EVENT = "message"


def message_event(obj: FMTPObject) -> Event:
    """
    The router event that hands a live session a message as it is filed.
    """
    return Event(MESSAGE_EVENT, obj)
