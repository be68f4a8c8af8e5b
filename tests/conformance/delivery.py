"""
The contract every L{IDeliveryStore} keeps, as one suite run against each
store.

A test module subclasses L{DeliveryConformance} and provides two fixtures
(see C{tests/conformance/test_stores.py}):

  - C{store}: an opened, empty store, closed afterwards;
  - C{reopen}: an async function that closes C{store} and returns the
    same data opened again as a store (for a file store, a new store
    object on the same file, as after a restart), closed afterwards.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from fmtp.delivery import (
    QueuedDelivery,
    RecipientResult,
    SendKey,
    SendRecord,
    choose_filing,
    results_text,
    sender_of,
)
from fmtp.errors import (
    InvalidObject,
    InvalidObjectId,
    ObjectSealed,
    SendKeyUsed,
    StoreUnavailable,
)
from fmtp.interfaces import IDeliveryStore
from fmtp.objects import FMTPObject, user_object
from tests.conformance.object_store import make

EDGAR = "edgar@poe.net"
POE = "poe@poe.net"
LOST = "lost@lenore.org"
RAVEN = "raven@lenore.org"
ANNABEL = "annabel@kingdom.example"

#: A time with a fraction, to check that times round trip exactly.
T0 = 1700000000.123456


def message(n: int, sender: str = EDGAR, **properties: str) -> FMTPObject:
    """
    A private message from C{sender} (its id is owned by C{sender}, and it
    says C{From: sender}) with a distinct id; C{n} is its timestamp.
    """
    props = {"From": sender, "To": LOST, "Subject": f"message {n}"}
    props.update(properties)
    return make(n, sender, "message", False, f"body {n}".encode(), **props)


#: The types a protocol sends and receivers hand to handlers, as
#: C{forget_delivered} is given them.
PUSH_TYPES = ["room-push", "subscription"]


def push(n: int) -> FMTPObject:
    """
    A room's push to a member of another domain: a protocol's object,
    nobody's mail.
    """
    room = "lobby@poe.net"
    return make(n, room, "room-push", False, b"line", From=room, To=LOST)


def queued(
    obj: FMTPObject,
    domain: str = "lenore.org",
    next_attempt: float = T0,
    created: float = T0,
    recipients: tuple[str, ...] = (LOST,),
    attempts: int = 0,
    last_error: str | None = None,
) -> QueuedDelivery:
    return QueuedDelivery(
        obj.id, domain, recipients, created, attempts, next_attempt, last_error
    )


def keys(deliveries: list[QueuedDelivery]) -> list[tuple[str, str]]:
    return [(d.object_id, d.domain) for d in deliveries]


def seqs_and_ids(entries: list[tuple[int, FMTPObject]]) -> list[tuple[int, str]]:
    return [(seq, obj.id) for seq, obj in entries]


class DeliveryConformance:
    """
    Tests every L{IDeliveryStore} must pass.
    """

    def test_provides_interface(self, store) -> None:
        assert verifyObject(IDeliveryStore, store)

    # Enqueue

    @pytest_twisted.ensureDeferred
    async def test_enqueue_stores_object_and_rows(self, store) -> None:
        obj = message(1)
        to_lenore = queued(obj, recipients=(LOST, RAVEN))
        to_kingdom = queued(obj, "kingdom.example", T0 + 1, recipients=(ANNABEL,))
        assert await store.enqueue(obj, [to_lenore, to_kingdom]) is None

        assert await store.get_object(obj.id) == obj
        assert await store.has_object(obj.id) is True
        assert await store.queued_for("lenore.org") == [to_lenore]
        assert await store.queued_for("kingdom.example") == [to_kingdom]
        assert await store.due_deliveries(T0 + 1, 10) == [to_lenore, to_kingdom]

    @pytest_twisted.ensureDeferred
    async def test_values_round_trip(self, store) -> None:
        """
        Times keep their fraction, recipients come back as a tuple, and an
        error that was recorded comes back as it was.
        """
        obj = message(1)
        delivery = QueuedDelivery(
            obj.id,
            "lenore.org",
            [LOST, "josé@lenore.org"],  # type: ignore[arg-type]
            T0,
            3,
            T0 + 0.5,
            "451 try later — ünïcode",
        )
        assert delivery.recipients == (LOST, "josé@lenore.org")
        await store.enqueue(obj, [delivery])
        (fetched,) = await store.queued_for("lenore.org")
        assert fetched == delivery
        assert type(fetched.recipients) is tuple
        assert type(fetched.created) is float
        assert type(fetched.attempts) is int

    @pytest_twisted.ensureDeferred
    async def test_enqueue_without_deliveries_stores_object(self, store) -> None:
        obj = message(1)
        await store.enqueue(obj, [])
        assert await store.get_object(obj.id) == obj
        assert await store.next_due_time() is None

    @pytest_twisted.ensureDeferred
    async def test_enqueue_replaces_stored_object(self, store) -> None:
        """
        The copy enqueued (signed) replaces a draft stored before.
        """
        draft = message(1)
        signed = message(1, Signature="d=poe.net; f=abc; t=1; s=xyz")
        await store.put_object(draft)
        await store.enqueue(signed, [queued(signed)])
        assert await store.get_object(draft.id) == signed

    @pytest.mark.parametrize(
        "bad",
        [
            FMTPObject("1.x.not-an-address", "message"),
            message(1, Subject="two\nlines"),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_enqueue_bad_object_stores_nothing(self, store, bad) -> None:
        with pytest.raises((InvalidObjectId, InvalidObject)):
            await store.enqueue(bad, [queued(bad)])
        assert await store.has_object(bad.id) is False
        assert await store.queued_for("lenore.org") == []
        assert await store.next_due_time() is None

    @pytest_twisted.ensureDeferred
    async def test_enqueue_delivery_for_other_object_stores_nothing(
        self, store
    ) -> None:
        """
        Enqueue is one step: a delivery that cannot be filed keeps the
        object from being stored too, though it came first.
        """
        obj, other = message(1), message(2)
        with pytest.raises(ValueError, match="not for the object enqueued"):
            await store.enqueue(obj, [queued(obj), queued(other, "kingdom.example")])
        with pytest.raises(ValueError, match="^not a QueuedDelivery: 'row'$"):
            await store.enqueue(obj, [queued(obj), "row"])
        assert await store.has_object(obj.id) is False
        assert await store.queued_for("lenore.org") == []
        assert await store.queued_for("kingdom.example") == []

    @pytest_twisted.ensureDeferred
    async def test_duplicate_enqueue_keeps_first_row(self, store) -> None:
        obj = message(1)
        first = queued(obj, next_attempt=T0)
        await store.enqueue(obj, [first])
        await store.reschedule(obj.id, "lenore.org", T0 + 60, "timed out")

        again = queued(obj, next_attempt=T0 + 5, recipients=(RAVEN,))
        added = queued(obj, "kingdom.example", recipients=(ANNABEL,))
        await store.enqueue(obj, [again, added])

        assert await store.queued_for("lenore.org") == [
            queued(obj, next_attempt=T0 + 60, attempts=1, last_error="timed out")
        ]
        assert await store.queued_for("kingdom.example") == [added]

    @pytest_twisted.ensureDeferred
    async def test_domain_twice_in_one_enqueue_keeps_first(self, store) -> None:
        obj = message(1)
        first = queued(obj, recipients=(LOST,))
        second = queued(obj, recipients=(RAVEN,), next_attempt=T0 - 100)
        await store.enqueue(obj, [first, second])
        assert await store.queued_for("lenore.org") == [first]

    # Due deliveries

    @pytest_twisted.ensureDeferred
    async def test_due_ordering_and_limit(self, store) -> None:
        a, b, c, d = message(1), message(2), message(3), message(4)
        # Enqueued out of order; due order is next_attempt, then id, then
        # domain.
        await store.enqueue(c, [queued(c, next_attempt=T0 + 30)])
        await store.enqueue(
            b,
            [
                queued(b, "lenore.org", next_attempt=T0 + 10),
                queued(b, "kingdom.example", next_attempt=T0 + 10),
            ],
        )
        await store.enqueue(a, [queued(a, next_attempt=T0 + 10)])
        await store.enqueue(d, [queued(d, next_attempt=T0 + 99)])

        expected = [
            (a.id, "lenore.org"),
            (b.id, "kingdom.example"),
            (b.id, "lenore.org"),
            (c.id, "lenore.org"),
        ]
        assert keys(await store.due_deliveries(T0 + 30, 10)) == expected
        assert keys(await store.due_deliveries(T0 + 30, 2)) == expected[:2]
        assert keys(await store.due_deliveries(T0 + 29.9, 10)) == expected[:3]
        assert await store.due_deliveries(T0 + 9, 10) == []
        assert await store.due_deliveries(T0 + 30, 0) == []
        assert len(await store.due_deliveries(T0 + 1000, 2**64)) == 5
        # Rows the caller holds are skipped, and not counted.
        held = {expected[0], expected[2]}
        assert keys(await store.due_deliveries(T0 + 30, 10, held)) == [
            expected[1],
            expected[3],
        ]
        assert keys(await store.due_deliveries(T0 + 30, 1, held)) == [expected[1]]
        assert await store.due_deliveries(T0 + 30, 0, held) == []
        assert len(await store.due_deliveries(T0 + 1000, 2**64, held)) == 3

    @pytest.mark.parametrize("limit", [-1, 1.5, "10", None, True])
    @pytest_twisted.ensureDeferred
    async def test_due_bad_limit(self, store, limit) -> None:
        with pytest.raises(ValueError):
            await store.due_deliveries(T0, limit)

    @pytest_twisted.ensureDeferred
    async def test_next_due_time(self, store) -> None:
        assert await store.next_due_time() is None
        a, b = message(1), message(2)
        await store.enqueue(a, [queued(a, next_attempt=T0 + 50)])
        assert await store.next_due_time() == T0 + 50
        await store.enqueue(b, [queued(b, next_attempt=T0 + 20)])
        assert await store.next_due_time() == T0 + 20
        await store.reschedule(b.id, "lenore.org", T0 + 70, "refused")
        assert await store.next_due_time() == T0 + 50
        await store.finish_delivery(a.id, "lenore.org")
        assert await store.next_due_time() == T0 + 70
        await store.finish_delivery(b.id, "lenore.org")
        assert await store.next_due_time() is None

    # Reschedule and finish

    @pytest_twisted.ensureDeferred
    async def test_reschedule(self, store) -> None:
        obj = message(1)
        other = queued(obj, "kingdom.example", recipients=(ANNABEL,))
        await store.enqueue(obj, [queued(obj), other])

        assert await store.reschedule(obj.id, "lenore.org", T0 + 60, "timeout")
        assert await store.queued_for("lenore.org") == [
            queued(obj, next_attempt=T0 + 60, attempts=1, last_error="timeout")
        ]
        assert await store.reschedule(obj.id, "lenore.org", T0 + 300, "451 busy")
        (row,) = await store.queued_for("lenore.org")
        assert (row.attempts, row.next_attempt, row.last_error) == (
            2,
            T0 + 300,
            "451 busy",
        )
        assert row.created == T0
        # The other domain's row is its own.
        assert await store.queued_for("kingdom.example") == [other]
        # Not due before its new time.
        assert keys(await store.due_deliveries(T0 + 299, 10)) == [
            (obj.id, "kingdom.example")
        ]

    @pytest_twisted.ensureDeferred
    async def test_reschedule_missing(self, store) -> None:
        obj = message(1)
        assert await store.reschedule(obj.id, "lenore.org", T0, "x") is False
        await store.enqueue(obj, [queued(obj)])
        assert await store.reschedule(obj.id, "kingdom.example", T0, "x") is False

    @pytest_twisted.ensureDeferred
    async def test_finish(self, store) -> None:
        obj = message(1)
        other = queued(obj, "kingdom.example", recipients=(ANNABEL,))
        await store.enqueue(obj, [queued(obj), other])
        assert await store.finish_delivery(obj.id, "lenore.org") is True
        assert await store.finish_delivery(obj.id, "lenore.org") is False
        assert await store.queued_for("lenore.org") == []
        assert await store.due_deliveries(T0, 10) == [other]
        # The object is the sender's copy, and stays.
        assert await store.get_object(obj.id) == obj

    @pytest_twisted.ensureDeferred
    async def test_finish_deliveries(self, store) -> None:
        """
        Many rows are removed in one call, each as C{finish_delivery}.
        """
        first, second = message(1), message(2)
        await store.enqueue(first, [queued(first), queued(first, "kingdom.example")])
        await store.enqueue(second, [queued(second)])
        done = await store.finish_deliveries(
            [(first.id, "lenore.org"), (second.id, "lenore.org"), (first.id, "x.org")]
        )
        assert done == [True, True, False]
        assert keys(await store.due_deliveries(T0, 10)) == [
            (first.id, "kingdom.example")
        ]
        assert await store.finish_deliveries([]) == []
        # The objects stay: they are the sender's copies.
        assert await store.get_object(first.id) == first

    @pytest_twisted.ensureDeferred
    async def test_queued_objects(self, store) -> None:
        first, second = message(1), message(2)
        await store.enqueue(first, [queued(first)])
        await store.enqueue(second, [queued(second)])
        found = await store.queued_objects([second.id, "missing", first.id])
        assert found == [second, None, first]
        assert await store.queued_objects([]) == []

    @pytest_twisted.ensureDeferred
    async def test_make_due(self, store) -> None:
        """
        An admin's "retry now" brings later deliveries forward, keeping
        their attempts and last error; what is already due stays as it is.
        """
        a, b, c = message(1), message(2), message(3)
        await store.enqueue(a, [queued(a, next_attempt=T0 + 100)])
        await store.enqueue(b, [queued(b, "kingdom.example", T0 + 200)])
        await store.enqueue(c, [queued(c, next_attempt=T0 - 5)])
        await store.reschedule(a.id, "lenore.org", T0 + 100, "451 busy")

        assert await store.make_due(T0, "lenore.org") == 1
        (row,) = [
            r for r in await store.queued_for("lenore.org") if r.object_id == a.id
        ]
        assert (row.next_attempt, row.attempts, row.last_error) == (T0, 1, "451 busy")
        assert keys(await store.due_deliveries(T0, 10)) == [
            (c.id, "lenore.org"),
            (a.id, "lenore.org"),
        ]
        assert await store.make_due(T0) == 1
        assert len(await store.due_deliveries(T0, 10)) == 3
        assert await store.next_due_time() == T0 - 5
        assert await store.make_due(T0) == 0

    @pytest_twisted.ensureDeferred
    async def test_deleting_an_account(self, store) -> None:
        """
        A deleted account's inbox is emptied (its entries kept, unlisted,
        so a replay is not filed again), its approvals go, and what it
        sent stays for its recipients and the queue, hidden from whoever
        gets the address next.
        """
        await store.add_account(POE, "hash")
        received, held = message(1, EDGAR), message(2, RAVEN)
        await store.deliver_local(POE, received, False)
        await store.deliver_local(ANNABEL, received, False)
        await store.deliver_local(POE, held, True)
        await store.approve_sender(POE, EDGAR)
        sent = message(3, POE)
        await store.enqueue(sent, [queued(sent)])
        draft = message(4, POE)
        await store.put_object(draft)

        assert await store.delete_account(POE) is True
        assert await store.inbox(POE, 0, 10) == []
        assert await store.held_senders(POE) == []
        assert await store.is_approved(POE, EDGAR) is False
        assert await store.deliver_local(POE, received, False) is None
        assert seqs_and_ids(await store.inbox(ANNABEL, 0, 10))[0][1] == received.id
        assert keys(await store.queued_for("lenore.org")) == [(sent.id, "lenore.org")]
        found = await store.read_object(sent.id, POE)
        assert (found.obj, found.removed) == (sent, True)
        assert await store.get_object(draft.id) is None
        await store.add_account(POE, "new hash")
        assert await store.inbox(POE, 0, 10) == []

    @pytest_twisted.ensureDeferred
    async def test_queued_for(self, store) -> None:
        a, b, c = message(1), message(2), message(3)
        await store.enqueue(c, [queued(c, created=T0 + 3, next_attempt=T0)])
        await store.enqueue(a, [queued(a, created=T0 + 1, next_attempt=T0 + 9)])
        await store.enqueue(
            b,
            [
                queued(b, "kingdom.example", recipients=(ANNABEL,)),
                queued(b, created=T0 + 1, next_attempt=T0 + 5),
            ],
        )
        # Oldest first, due or not; ties by id.
        assert keys(await store.queued_for("lenore.org")) == [
            (a.id, "lenore.org"),
            (b.id, "lenore.org"),
            (c.id, "lenore.org"),
        ]
        assert keys(await store.queued_for("kingdom.example")) == [
            (b.id, "kingdom.example")
        ]
        assert await store.queued_for("nowhere.example") == []

    @pytest_twisted.ensureDeferred
    async def test_deleting_a_sent_object_keeps_its_deliveries(self, store) -> None:
        """
        A message once sent is not only its sender's: deleting it hides
        it from its owner and from listings, and the queue still sends it.
        """
        obj = message(1, Public="yes")
        rows = [queued(obj), queued(obj, "kingdom.example")]
        await store.enqueue(obj, rows)
        assert await store.delete_object(obj.id) is True
        assert await store.delete_object(obj.id) is False
        assert await store.queued_for("kingdom.example") == [rows[1]]
        assert sorted(keys(await store.due_deliveries(T0, 10))) == sorted(keys(rows))
        assert await store.get_object(obj.id) == obj
        assert await store.has_object(obj.id) is True
        assert await store.list_objects(0, 10, public_only=False) == []
        found = await store.read_object(obj.id, EDGAR)
        assert (found.obj, found.removed, found.filed) == (obj, True, False)
        with pytest.raises(ObjectSealed):
            await store.put_object(message(1, Subject="rewritten"))
        assert await store.get_object(obj.id) == obj

    @pytest_twisted.ensureDeferred
    async def test_deleting_a_draft_removes_it(self, store) -> None:
        draft, sent = message(1), message(2)
        await store.put_object(draft)
        await store.enqueue(sent, [queued(sent)])
        assert await store.delete_object(draft.id) is True
        assert await store.read_object(draft.id, EDGAR) is None
        assert await store.has_object(draft.id) is False
        assert await store.delete_object(draft.id) is False
        # Another object's deliveries stay.
        assert keys(await store.queued_for("lenore.org")) == [(sent.id, "lenore.org")]

    # Sealing: what was sent or filed never changes

    @pytest_twisted.ensureDeferred
    async def test_sent_and_filed_objects_are_sealed(self, store) -> None:
        sent, filed = message(1), message(2)
        await store.enqueue(sent, [])
        await store.deliver_local(LOST, filed, False)
        for obj in (sent, filed):
            with pytest.raises(ObjectSealed):
                await store.put_object(message(int(obj.id[:1]), Subject="other"))
            with pytest.raises(ObjectSealed) as caught:
                await store.put_object(obj)
            assert caught.value.message == f"{obj.id} was sent and cannot be changed"
            assert await store.get_object(obj.id) == obj

    @pytest_twisted.ensureDeferred
    async def test_enqueue_over_sealed_object(self, store) -> None:
        """
        Queueing the same message again (a relay, a retry) is harmless;
        queueing other content under its id stores nothing.
        """
        obj = message(1)
        await store.deliver_local(LOST, obj, False)
        await store.enqueue(obj, [queued(obj)])
        assert keys(await store.queued_for("lenore.org")) == [(obj.id, "lenore.org")]
        other = message(1, Subject="other")
        with pytest.raises(ObjectSealed) as caught:
            await store.enqueue(other, [queued(other, "kingdom.example")])
        assert caught.value.message == f"{obj.id} is already held with other content"
        assert await store.queued_for("kingdom.example") == []
        assert await store.get_object(obj.id) == obj
        assert await store.was_sent(obj.id, "kingdom.example", other.digest()) is False

    @pytest_twisted.ensureDeferred
    async def test_deliver_local_refuses_other_content(self, store) -> None:
        """
        An inbound copy never replaces an object already stored, and one
        with other content is not filed either.
        """
        stored = message(1)
        await store.put_object(stored)
        with pytest.raises(ObjectSealed) as caught:
            await store.deliver_local(LOST, message(1, Subject="other"), False)
        assert caught.value.message == (
            f"{stored.id} is already held with other content"
        )
        assert await store.get_object(stored.id) == stored
        assert await store.inbox(LOST, 0, 10) == []
        # The same content is filed, and the stored object is then sealed.
        seq = await store.deliver_local(LOST, stored, False)
        assert await store.inbox(LOST, 0, 10) == [(seq, stored)]
        with pytest.raises(ObjectSealed):
            await store.put_object(stored)

    # What was sent, for the countersign

    @pytest_twisted.ensureDeferred
    async def test_was_sent(self, store) -> None:
        obj = message(1)
        assert await store.was_sent(obj.id, "lenore.org", obj.digest()) is False
        await store.enqueue(obj, [queued(obj, created=T0)])
        assert await store.was_sent(obj.id, "lenore.org", obj.digest()) is True
        assert await store.was_sent(obj.id, "kingdom.example", obj.digest()) is False
        assert await store.was_sent(obj.id, "lenore.org", "0" * 64) is False
        # Delivered and deleted by its sender, it was still sent.
        await store.finish_delivery(obj.id, "lenore.org")
        await store.delete_object(obj.id)
        assert await store.was_sent(obj.id, "lenore.org", obj.digest()) is True
        # Only what was queued counts, not what was stored or filed.
        stored, filed = message(2), message(3)
        await store.put_object(stored)
        await store.deliver_local(LOST, filed, False)
        assert await store.was_sent(stored.id, "lenore.org", stored.digest()) is False
        assert await store.was_sent(filed.id, "lenore.org", filed.digest()) is False

    @pytest_twisted.ensureDeferred
    async def test_forget_sent(self, store) -> None:
        old, new = message(1), message(2)
        await store.enqueue(old, [queued(old, created=T0)])
        await store.enqueue(new, [queued(new, created=T0 + 10)])
        assert await store.forget_sent(T0 + 5) == 1
        assert await store.was_sent(old.id, "lenore.org", old.digest()) is False
        assert await store.was_sent(new.id, "lenore.org", new.digest()) is True
        assert await store.forget_sent(T0 + 10) == 0
        assert await store.was_sent(new.id, "lenore.org", new.digest()) is True
        # The queue is not the record: the old delivery is still queued.
        assert len(await store.queued_for("lenore.org")) == 2

    # Idempotency keys

    @pytest_twisted.ensureDeferred
    async def test_send_keys(self, store) -> None:
        obj = message(1)
        key = SendKey(EDGAR, "k-1", "d" * 64, T0)
        assert await store.find_send(EDGAR, "k-1") is None
        await store.enqueue(obj, [], send_key=key)
        assert await store.find_send(EDGAR, "k-1") == SendRecord(obj.id, "d" * 64, None)
        assert (
            await store.finish_send(EDGAR, "k-1", "lost@lenore.org 201 x\r\n") is None
        )
        assert await store.find_send(EDGAR, "k-1") == SendRecord(
            obj.id, "d" * 64, "lost@lenore.org 201 x\r\n"
        )
        # Keys are per sender.
        assert await store.find_send(POE, "k-1") is None
        await store.enqueue(message(5, POE), [], send_key=SendKey(POE, "k-1", "e", T0))
        # A key used again stores nothing of the second message.
        other = message(2)
        with pytest.raises(SendKeyUsed):
            await store.enqueue(other, [queued(other)], send_key=key)
        assert await store.has_object(other.id) is False
        assert await store.queued_for("lenore.org") == []
        assert (await store.find_send(EDGAR, "k-1")).object_id == obj.id

    # One SEND, one call

    @pytest_twisted.ensureDeferred
    async def test_send_message_is_enqueue_and_filing(self, store) -> None:
        """
        One call stores and queues the message, files it for each local
        recipient by their policy (read in the same call), and records the
        results with the key.
        """
        held_for = user_object(RAVEN)
        held_for.properties["Policy"] = "confirm"
        await store.put_object(user_object(LOST))
        await store.put_object(held_for)
        obj = message(1, To=f"{LOST} {RAVEN} nobody@lenore.org {ANNABEL}")
        key = SendKey(EDGAR, "k-1", "d" * 64, T0)
        to_kingdom = queued(obj, "kingdom.example", recipients=(ANNABEL,))
        local = [LOST, RAVEN, "nobody@lenore.org"]
        filings = await store.send_message(obj, [to_kingdom], key, local, choose_filing)

        assert [f.result for f in filings] == [
            RecipientResult(LOST, 201, "delivered"),
            RecipientResult(RAVEN, 201, "held until the recipient approves"),
            RecipientResult("nobody@lenore.org", 550, "no such user"),
        ]
        assert [f.pushed for f in filings] == [True, False, False]
        assert await store.get_object(obj.id) == obj
        assert await store.queued_for("kingdom.example") == [to_kingdom]
        assert await store.was_sent(obj.id, "kingdom.example", obj.digest()) is True
        assert seqs_and_ids(await store.inbox(LOST, 0, 10))[0][1] == obj.id
        assert await store.held_senders(RAVEN) == [EDGAR]
        record = await store.find_send(EDGAR, "k-1")
        assert record.object_id == obj.id
        assert record.results == results_text([f.result for f in filings])

    @pytest_twisted.ensureDeferred
    async def test_send_message_reads_approvals_and_replays(self, store) -> None:
        """
        An approved sender is not held; a recipient who already has the id
        gets it once.
        """
        confirming = user_object(LOST)
        confirming.properties["Policy"] = "confirm"
        await store.put_object(confirming)
        await store.approve_sender(LOST, EDGAR)
        obj = message(1)
        await store.deliver_local(LOST, obj, False)
        [filing] = await store.send_message(obj, [], None, [LOST], choose_filing)
        assert filing.result == RecipientResult(LOST, 201, "already delivered")
        assert not filing.pushed
        [filing] = await store.send_message(message(2), [], None, [LOST], choose_filing)
        assert filing.result == RecipientResult(LOST, 201, "delivered")
        assert len(await store.inbox(LOST, 0, 10)) == 2

    @pytest_twisted.ensureDeferred
    async def test_send_message_with_a_used_key_stores_nothing(self, store) -> None:
        await store.put_object(user_object(LOST))
        key = SendKey(EDGAR, "k-1", "d" * 64, T0)
        await store.send_message(message(1), [], key, [LOST], choose_filing)
        other = message(2)
        with pytest.raises(SendKeyUsed):
            await store.send_message(other, [queued(other)], key, [LOST], choose_filing)
        assert await store.has_object(other.id) is False
        assert await store.queued_for("lenore.org") == []
        assert len(await store.inbox(LOST, 0, 10)) == 1

    # One DELIVER, one call

    @pytest_twisted.ensureDeferred
    async def test_receive_message_files_by_policy(self, store) -> None:
        """
        One call files a delivered message for each local recipient by
        their policy, read in the same call; a recipient who already has
        the id gets it once.
        """
        held_for = user_object(RAVEN)
        held_for.properties["Policy"] = "confirm"
        await store.put_object(user_object(LOST))
        await store.put_object(held_for)
        obj = message(1, sender=ANNABEL, To=f"{LOST} {RAVEN} nobody@lenore.org")
        local = [LOST, RAVEN, "nobody@lenore.org"]
        filings = await store.receive_message(obj, local, choose_filing)
        assert [f.result for f in filings] == [
            RecipientResult(LOST, 201, "delivered"),
            RecipientResult(RAVEN, 201, "held until the recipient approves"),
            RecipientResult("nobody@lenore.org", 550, "no such user"),
        ]
        assert [f.pushed for f in filings] == [True, False, False]
        assert await store.get_object(obj.id) == obj
        assert seqs_and_ids(await store.inbox(LOST, 0, 10))[0][1] == obj.id
        assert await store.held_senders(RAVEN) == [ANNABEL]
        with pytest.raises(ObjectSealed):
            await store.put_object(obj)
        [again] = await store.receive_message(obj, [LOST], choose_filing)
        assert again.result == RecipientResult(LOST, 201, "already delivered")
        assert not again.pushed
        assert len(await store.inbox(LOST, 0, 10)) == 1

    @pytest_twisted.ensureDeferred
    async def test_receive_message_refuses_other_content(self, store) -> None:
        """
        An id held with other content is refused, even for recipients who
        would not file it, and nothing changes.
        """
        await store.put_object(user_object(LOST))
        stored = message(1)
        await store.put_object(stored)
        other = message(1, Subject="other")
        for local in ([LOST], ["nobody@lenore.org"]):
            with pytest.raises(ObjectSealed):
                await store.receive_message(other, local, choose_filing)
        assert await store.get_object(stored.id) == stored
        assert await store.inbox(LOST, 0, 10) == []

    @pytest_twisted.ensureDeferred
    async def test_forget_send_keys(self, store) -> None:
        await store.enqueue(message(1), [], send_key=SendKey(EDGAR, "a", "d", T0))
        await store.enqueue(message(2), [], send_key=SendKey(EDGAR, "b", "d", T0 + 9))
        assert await store.forget_send_keys(T0 + 5) == 1
        assert await store.find_send(EDGAR, "a") is None
        assert await store.find_send(EDGAR, "b") is not None
        # Only keys recorded before the time go, not one recorded at it.
        assert await store.forget_send_keys(T0 + 9) == 0
        assert await store.find_send(EDGAR, "b") is not None
        # The message itself stays.
        assert await store.has_object(message(1).id) is True

    # Protocol objects, once delivered

    @pytest_twisted.ensureDeferred
    async def test_forget_delivered(self, store) -> None:
        """
        A protocol's object goes once no row of it is queued and it was
        queued before the time; one still queued, one queued since, a
        user's message and a draft stay.
        """
        done, waiting, recent = push(1), push(2), push(3)
        mail = message(4)
        for obj, created in ((done, T0), (waiting, T0), (recent, T0 + 10), (mail, T0)):
            await store.enqueue(obj, [queued(obj, created=created)])
        for obj in (done, recent, mail):
            await store.finish_delivery(obj.id, "lenore.org")
        draft = push(5)
        await store.put_object(draft)

        assert await store.forget_delivered(PUSH_TYPES, T0 + 10) == 1
        assert await store.has_object(done.id) is False
        for kept in (waiting, recent, mail, draft):
            assert await store.get_object(kept.id) == kept
        # The record of its sending is forget_sent's to forget.
        assert await store.was_sent(done.id, "lenore.org", done.digest()) is True
        # Queued at the time is not before it; a moment later it goes.
        assert await store.forget_delivered(PUSH_TYPES, T0 + 10) == 0
        assert await store.forget_delivered(PUSH_TYPES, T0 + 11) == 1
        assert await store.has_object(recent.id) is False
        # No types, nothing forgotten; the queue is untouched.
        assert await store.forget_delivered([], T0 + 100) == 0
        assert await store.queued_for("lenore.org") == [queued(waiting)]
        assert await store.get_object(mail.id) == mail

    @pytest_twisted.ensureDeferred
    async def test_forget_delivered_waits_for_every_domain(self, store) -> None:
        """
        An object queued for two domains stays until both rows are gone;
        one whose records of sending are already forgotten is old.
        """
        obj = push(1)
        to_kingdom = queued(obj, "kingdom.example", recipients=(ANNABEL,))
        await store.enqueue(obj, [queued(obj), to_kingdom])
        await store.finish_delivery(obj.id, "lenore.org")
        assert await store.forget_delivered(PUSH_TYPES, T0 + 1) == 0
        await store.finish_delivery(obj.id, "kingdom.example")
        assert await store.forget_sent(T0 + 1) == 2
        assert await store.forget_delivered(PUSH_TYPES, T0 - 1) == 1
        assert await store.has_object(obj.id) is False

    # Inbox

    @pytest_twisted.ensureDeferred
    async def test_deliver_local(self, store) -> None:
        obj = message(1)
        seq = await store.deliver_local(LOST, obj, False)
        assert type(seq) is int
        assert await store.get_object(obj.id) == obj
        assert await store.has_object(obj.id) is True
        assert await store.inbox(LOST, 0, 10) == [(seq, obj)]
        assert await store.inbox(RAVEN, 0, 10) == []

    @pytest_twisted.ensureDeferred
    async def test_deliver_local_is_idempotent(self, store) -> None:
        obj = message(1)
        seq = await store.deliver_local(LOST, obj, False)
        assert await store.deliver_local(LOST, obj, False) is None
        # Even a replay that asks to hold, or carries other content.
        assert await store.deliver_local(LOST, obj, True) is None
        changed = message(1, Subject="changed")
        assert await store.deliver_local(LOST, changed, False) is None
        assert await store.inbox(LOST, 0, 10) == [(seq, obj)]
        assert await store.get_object(obj.id) == obj

    @pytest_twisted.ensureDeferred
    async def test_sequence_numbers_grow_across_recipients(self, store) -> None:
        obj, other = message(1), message(2)
        s1 = await store.deliver_local(LOST, obj, False)
        s2 = await store.deliver_local(RAVEN, obj, False)
        s3 = await store.deliver_local(LOST, other, True)
        s4 = await store.deliver_local(LOST, message(3), False)
        assert s1 < s2 < s3 < s4
        # One object, two inboxes.
        assert await store.inbox(RAVEN, 0, 10) == [(s2, obj)]
        assert seqs_and_ids(await store.inbox(LOST, 0, 10)) == [
            (s1, obj.id),
            (s4, message(3).id),
        ]

    @pytest.mark.parametrize(
        "bad",
        [
            FMTPObject("1.x.not-an-address", "message"),
            message(1, Subject="two\nlines"),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_deliver_local_bad_object_stores_nothing(self, store, bad) -> None:
        with pytest.raises((InvalidObjectId, InvalidObject)):
            await store.deliver_local(LOST, bad, False)
        assert await store.has_object(bad.id) is False
        assert await store.inbox(LOST, 0, 10) == []
        # Nothing was recorded, so a good copy is not taken for a replay.
        assert await store.deliver_local(LOST, message(1), False) is not None

    @pytest_twisted.ensureDeferred
    async def test_inbox_paging(self, store) -> None:
        objects = [message(n) for n in range(7)]
        seqs = []
        for obj in objects:
            seqs.append(await store.deliver_local(LOST, obj, False))
            # Interleaved mail for someone else does not show.
            await store.deliver_local(RAVEN, message(100 + len(seqs)), False)
        everything = list(zip(seqs, objects, strict=True))

        assert await store.inbox(LOST, 0, 100) == everything
        pages = []
        since = 0
        while page := await store.inbox(LOST, since, 3):
            assert len(page) <= 3
            pages += page
            since = page[-1][0]
        assert pages == everything

        assert await store.inbox(LOST, seqs[2], 2) == everything[3:5]
        assert await store.inbox(LOST, seqs[-1], 10) == []
        assert await store.inbox(LOST, 0, 0) == []
        assert await store.inbox(LOST, 2**64, 10) == []
        assert await store.inbox(LOST, 0, 2**64) == everything

    @pytest.mark.parametrize(
        "since, limit", [(-1, 10), (0, -1), (1.5, 10), (0, "10"), (True, 10), (0, None)]
    )
    @pytest_twisted.ensureDeferred
    async def test_inbox_bad_page(self, store, since, limit) -> None:
        with pytest.raises(ValueError):
            await store.inbox(LOST, since, limit)

    @pytest_twisted.ensureDeferred
    async def test_inbox_objects_are_copies(self, store) -> None:
        obj = message(1)
        seq = await store.deliver_local(LOST, obj, False)
        ((_, fetched),) = await store.inbox(LOST, 0, 10)
        fetched.properties["Subject"] = "changed"
        fetched.body = b"changed"
        assert await store.inbox(LOST, 0, 10) == [(seq, obj)]

    @pytest_twisted.ensureDeferred
    async def test_inbox_keeps_what_the_owner_removed(self, store) -> None:
        """
        Once filed, a message is the recipient's: its sender deleting it
        does not take it out of the inbox.
        """
        obj = message(1)
        seq = await store.deliver_local(LOST, obj, False)
        assert await store.delete_object(obj.id) is True
        assert await store.inbox(LOST, 0, 10) == [(seq, obj)]
        found = await store.read_object(obj.id, LOST)
        assert (found.obj, found.removed, found.filed) == (obj, True, True)

    @pytest_twisted.ensureDeferred
    async def test_remove_from_inbox(self, store) -> None:
        """
        Only the recipient removes an entry; a removed entry is not
        listed, and still de-duplicates its id: a replay is not filed
        again.
        """
        gone, kept = message(1), message(2)
        await store.deliver_local(LOST, gone, False)
        await store.deliver_local(RAVEN, gone, False)
        kept_seq = await store.deliver_local(LOST, kept, False)
        assert await store.remove_from_inbox(LOST, gone.id) is True
        assert await store.remove_from_inbox(LOST, gone.id) is False
        assert await store.remove_from_inbox(ANNABEL, gone.id) is False
        assert await store.inbox(LOST, 0, 10) == [(kept_seq, kept)]
        # The limit counts listed entries only.
        assert await store.inbox(LOST, 0, 1) == [(kept_seq, kept)]
        assert await store.deliver_local(LOST, gone, False) is None
        assert (await store.read_object(gone.id, LOST)).filed is False
        # Another recipient's copy and the object are untouched.
        assert seqs_and_ids(await store.inbox(RAVEN, 0, 10))[0][1] == gone.id
        assert await store.get_object(gone.id) == gone

    @pytest_twisted.ensureDeferred
    async def test_read_object(self, store) -> None:
        filed, held = message(1), message(2, ANNABEL)
        await store.deliver_local(LOST, filed, False)
        await store.deliver_local(LOST, held, True)
        assert await store.read_object("1.x.nobody@poe.net", LOST) is None
        found = await store.read_object(filed.id, LOST)
        assert (found.obj, found.removed, found.filed) == (filed, False, True)
        assert (await store.read_object(filed.id, RAVEN)).filed is False
        assert (await store.read_object(filed.id, None)).filed is False
        assert (await store.read_object(held.id, LOST)).filed is False
        await store.release_held(LOST, ANNABEL)
        assert (await store.read_object(held.id, LOST)).filed is True

    # Held entries and approvals

    @pytest_twisted.ensureDeferred
    async def test_held_entries_are_hidden(self, store) -> None:
        known = await store.deliver_local(LOST, message(1, POE), False)
        await store.deliver_local(LOST, message(2, EDGAR), True)
        await store.deliver_local(LOST, message(3, ANNABEL), True)
        await store.deliver_local(LOST, message(4, EDGAR), True)
        assert seqs_and_ids(await store.inbox(LOST, 0, 10)) == [
            (known, message(1, POE).id)
        ]
        # Distinct, in the order of each one's first held entry.
        assert await store.held_senders(LOST) == [EDGAR, ANNABEL]
        assert await store.held_senders(RAVEN) == []

    @pytest_twisted.ensureDeferred
    async def test_held_senders_use_from(self, store) -> None:
        """
        The sender is the object's From, in normal form; the owner of its
        id if it has no From, or one that does not parse.
        """
        relayed = make(1, POE, "message", False, From="Edgar@POE.net")
        no_from = make(2, ANNABEL, "message", False)
        bad_from = make(3, RAVEN, "message", False, From="not an address")
        for obj in (relayed, no_from, bad_from):
            await store.deliver_local(LOST, obj, True)
        assert await store.held_senders(LOST) == [EDGAR, ANNABEL, RAVEN]
        assert [sender_of(o) for o in (relayed, no_from, bad_from)] == [
            EDGAR,
            ANNABEL,
            RAVEN,
        ]

    @pytest_twisted.ensureDeferred
    async def test_release_held(self, store) -> None:
        s1 = await store.deliver_local(LOST, message(1, EDGAR), True)
        s2 = await store.deliver_local(LOST, message(2, POE), False)
        s3 = await store.deliver_local(LOST, message(3, ANNABEL), True)
        s4 = await store.deliver_local(LOST, message(4, EDGAR), True)
        await store.deliver_local(RAVEN, message(5, EDGAR), True)

        read_up_to = s4
        assert await store.release_held(LOST, EDGAR) == 2
        # Released entries come after everything already there, in their
        # original order, so a device that read up to s4 still finds them.
        inbox = seqs_and_ids(await store.inbox(LOST, 0, 10))
        assert [object_id for _, object_id in inbox] == [
            message(2, POE).id,
            message(1, EDGAR).id,
            message(4, EDGAR).id,
        ]
        assert inbox[0][0] == s2
        assert s1 not in [seq for seq, _ in inbox]
        assert [
            i for _, i in seqs_and_ids(await store.inbox(LOST, read_up_to, 10))
        ] == [
            message(1, EDGAR).id,
            message(4, EDGAR).id,
        ]
        assert await store.held_senders(LOST) == [ANNABEL]
        # Another recipient's held entries from the same sender stay held.
        assert await store.held_senders(RAVEN) == [EDGAR]
        assert await store.release_held(LOST, EDGAR) == 0
        assert await store.release_held(LOST, "nobody@nowhere.example") == 0
        assert s3 not in [seq for seq, _ in await store.inbox(LOST, 0, 10)]

    @pytest_twisted.ensureDeferred
    async def test_drop_held(self, store) -> None:
        await store.deliver_local(LOST, message(1, EDGAR), True)
        kept = await store.deliver_local(LOST, message(2, EDGAR), False)
        await store.deliver_local(LOST, message(3, ANNABEL), True)
        await store.deliver_local(LOST, message(4, EDGAR), True)

        assert await store.drop_held(LOST, EDGAR) == 2
        assert await store.held_senders(LOST) == [ANNABEL]
        # Unheld entries from the same sender stay.
        assert seqs_and_ids(await store.inbox(LOST, 0, 10)) == [
            (kept, message(2, EDGAR).id)
        ]
        assert await store.drop_held(LOST, EDGAR) == 0
        assert await store.release_held(LOST, EDGAR) == 0
        # The objects stay in the store, and so do the entries, unlisted:
        # the same id delivered again is not held again.
        assert await store.has_object(message(1, EDGAR).id) is True
        assert await store.deliver_local(LOST, message(1, EDGAR), True) is None

    @pytest_twisted.ensureDeferred
    async def test_held_of_a_recipient_with_no_inbox(self, store) -> None:
        """
        Releasing or dropping for a recipient who never had an inbox
        entry is no error: nothing was held.
        """
        assert await store.release_held(LOST, EDGAR) == 0
        assert await store.drop_held(LOST, EDGAR) == 0
        assert await store.held_senders(LOST) == []

    @pytest_twisted.ensureDeferred
    async def test_held_entries_the_recipient_removed(self, store) -> None:
        gone, kept = message(1, EDGAR), message(2, EDGAR)
        await store.deliver_local(LOST, gone, True)
        await store.deliver_local(LOST, message(3, ANNABEL), True)
        await store.remove_from_inbox(LOST, message(3, ANNABEL).id)
        await store.deliver_local(LOST, kept, True)
        await store.remove_from_inbox(LOST, gone.id)
        # A sender deleting their copy changes nothing for the recipient.
        await store.delete_object(kept.id)
        assert await store.held_senders(LOST) == [EDGAR]
        # Only what the user could see is counted, and released.
        assert await store.release_held(LOST, EDGAR) == 1
        assert await store.drop_held(LOST, ANNABEL) == 0
        assert seqs_and_ids(await store.inbox(LOST, 0, 10)) == [
            (seqs_and_ids(await store.inbox(LOST, 0, 10))[0][0], kept.id)
        ]

    @pytest_twisted.ensureDeferred
    async def test_approvals(self, store) -> None:
        assert await store.is_approved(LOST, EDGAR) is False
        assert await store.approve_sender(LOST, EDGAR) is None
        assert await store.is_approved(LOST, EDGAR) is True
        await store.approve_sender(LOST, EDGAR)  # Twice is harmless.
        assert await store.is_approved(LOST, EDGAR) is True
        # Per recipient, and not symmetric.
        assert await store.is_approved(RAVEN, EDGAR) is False
        assert await store.is_approved(EDGAR, LOST) is False

    @pytest_twisted.ensureDeferred
    async def test_has_object(self, store) -> None:
        obj = message(1)
        assert await store.has_object(obj.id) is False
        assert await store.has_object("not an id") is False
        await store.put_object(obj)
        assert await store.has_object(obj.id) is True
        await store.delete_object(obj.id)
        assert await store.has_object(obj.id) is False
        # A sent object its owner deleted is still held.
        await store.enqueue(obj, [])
        await store.delete_object(obj.id)
        assert await store.has_object(obj.id) is True

    # Durability

    @pytest_twisted.ensureDeferred
    async def test_survives_reopen(self, store, reopen) -> None:
        out, held, seen = message(1), message(2, ANNABEL), message(3)
        await store.enqueue(
            out,
            [
                queued(out, recipients=(LOST, RAVEN)),
                queued(out, "kingdom.example", recipients=(ANNABEL,)),
            ],
        )
        await store.reschedule(out.id, "lenore.org", T0 + 60, "timed out")
        s_held = await store.deliver_local(LOST, held, True)
        s_seen = await store.deliver_local(LOST, seen, False)
        await store.approve_sender(LOST, EDGAR)
        removed, sealed = message(5), message(6)
        await store.enqueue(sealed, [], send_key=SendKey(EDGAR, "k", "d", T0))
        await store.finish_send(EDGAR, "k", "results")
        await store.deliver_local(LOST, removed, False)
        await store.remove_from_inbox(LOST, removed.id)
        await store.delete_object(sealed.id)

        store = await reopen()

        assert await store.was_sent(out.id, "kingdom.example", out.digest()) is True
        assert await store.find_send(EDGAR, "k") == SendRecord(
            sealed.id, "d", "results"
        )
        assert (await store.read_object(sealed.id, EDGAR)).removed is True
        with pytest.raises(ObjectSealed):
            await store.put_object(removed)
        assert await store.deliver_local(LOST, removed, False) is None

        assert await store.get_object(out.id) == out
        assert await store.queued_for("lenore.org") == [
            queued(
                out,
                next_attempt=T0 + 60,
                recipients=(LOST, RAVEN),
                attempts=1,
                last_error="timed out",
            )
        ]
        assert keys(await store.due_deliveries(T0, 10)) == [(out.id, "kingdom.example")]
        assert await store.next_due_time() == T0
        assert await store.inbox(LOST, 0, 10) == [(s_seen, seen)]
        assert await store.held_senders(LOST) == [ANNABEL]
        assert await store.is_approved(LOST, EDGAR) is True
        # Still idempotent, and numbers keep growing.
        assert await store.deliver_local(LOST, seen, False) is None
        assert await store.deliver_local(LOST, message(4), False) > s_seen
        assert await store.release_held(LOST, ANNABEL) == 1
        inbox = seqs_and_ids(await store.inbox(LOST, 0, 10))
        assert [object_id for _, object_id in inbox] == [
            seen.id,
            message(4).id,
            held.id,
        ]
        assert inbox[0][0] == s_seen and inbox[2][0] > max(s_seen, s_held)

    # Closing

    @pytest_twisted.ensureDeferred
    async def test_delivery_calls_after_close_fail(self, store) -> None:
        obj = message(1)
        await store.close()
        calls = [
            lambda: store.enqueue(obj, [queued(obj)]),
            lambda: store.due_deliveries(T0, 10),
            lambda: store.next_due_time(),
            lambda: store.reschedule(obj.id, "lenore.org", T0, "x"),
            lambda: store.finish_delivery(obj.id, "lenore.org"),
            lambda: store.queued_for("lenore.org"),
            lambda: store.make_due(T0),
            lambda: store.deliver_local(LOST, obj, False),
            lambda: store.inbox(LOST, 0, 10),
            lambda: store.held_senders(LOST),
            lambda: store.release_held(LOST, EDGAR),
            lambda: store.drop_held(LOST, EDGAR),
            lambda: store.has_object(obj.id),
            lambda: store.approve_sender(LOST, EDGAR),
            lambda: store.is_approved(LOST, EDGAR),
            lambda: store.read_object(obj.id, LOST),
            lambda: store.remove_from_inbox(LOST, obj.id),
            lambda: store.was_sent(obj.id, "lenore.org", obj.digest()),
            lambda: store.forget_sent(T0),
            lambda: store.find_send(EDGAR, "k"),
            lambda: store.finish_send(EDGAR, "k", ""),
            lambda: store.forget_send_keys(T0),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable):
                await call()


class RescheduleRecipients:
    """
    A partial retry keeps only the recipients still to deliver to, in the
    same write as the attempt count.
    """

    @pytest_twisted.ensureDeferred
    async def test_reschedule_keeps_several_recipients(self, store) -> None:
        obj = FMTPObject("1700000000000.aa.edgar@poe.net", "message", {}, b"")
        addresses = ["a@lenore.org", "b@lenore.org", "c@lenore.org"]
        await store.enqueue(
            obj, [QueuedDelivery.new(obj.id, "lenore.org", addresses, 1)]
        )
        assert await store.reschedule(
            obj.id, "lenore.org", 200.0, "451 later", recipients=addresses[1:]
        )
        [row] = await store.queued_for("lenore.org")
        assert row.recipients == tuple(addresses[1:])

    @pytest_twisted.ensureDeferred
    async def test_reschedule_replaces_recipients(self, store) -> None:
        obj = FMTPObject("1700000000000.aa.edgar@poe.net", "message", {}, b"")
        delivery = QueuedDelivery.new(
            obj.id, "lenore.org", ["a@lenore.org", "b@lenore.org"], 100.0
        )
        await store.enqueue(obj, [delivery])
        assert await store.reschedule(
            obj.id, "lenore.org", 200.0, "451 later", recipients=["b@lenore.org"]
        )
        [row] = await store.queued_for("lenore.org")
        assert (row.recipients, row.attempts, row.last_error) == (
            ("b@lenore.org",),
            1,
            "451 later",
        )
        assert await store.reschedule(obj.id, "lenore.org", 300.0, "again")
        [row] = await store.queued_for("lenore.org")
        assert (row.recipients, row.attempts) == (("b@lenore.org",), 2)
