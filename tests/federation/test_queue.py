"""
Tests for L{fmtp.federation.queue}: the outbound queue's worker (with
L{fmtp.federation.settle} and L{fmtp.federation.bounce}).

Most run on a L{MemoryStore}, whose Deferreds have fired when a call
returns, and a L{Clock}, so that a whole retry schedule of five days runs
in a moment and each attempt's time can be checked to the second.  The
link pool is a fake that records each call and answers as the test
scripts it, including with Deferreds that the test fires later, to see
what runs while a delivery is in flight.  One test runs on a real SQLite
file and the real reactor, across a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from fmtp.delivery import QueuedDelivery, RecipientResult
from fmtp.errors import FMTPError, StoreUnavailable
from fmtp.federation.bounce import clean_reason, make_bounce
from fmtp.federation.queue import OutboundQueue
from fmtp.federation.settle import DEFAULT_RETRY_WINDOW, DEFAULT_SCHEDULE, retry_delay
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.keys.static import StaticKeyVerifier
from fmtp.objects import FMTPObject, domain_of, new_object_id, parse_object_id
from fmtp.store.memory import MemoryStore
from fmtp.store.sqlite import SQLiteStore

#: The schedule without its quick first retries (1, 2 and 5 s): the tests of
#: windows, bounces and put-off rows count in its round minutes.
MAIL_SCHEDULE = DEFAULT_SCHEDULE[3:]

EDGAR = "edgar@poe.net"
LOST = "lost@lenore.org"
RAVEN = "raven@lenore.org"
LENORE = "lenore@lenore.org"
ANNABEL = "annabel@kingdom.example"
USHER = "roderick@usher.example"

T0 = 1_700_000_000.0


class LinkDown(FMTPError):
    code = 421
    default_message = "connection refused"


class NoSuchDomain(FMTPError):
    code = 554
    default_message = "lenore.org does not exist"


#: A scripted answer meaning "return a Deferred the test fires itself".
PENDING = object()


def answer(delivery: QueuedDelivery, *codes: int) -> list[RecipientResult]:
    """
    One result per recipient of C{delivery}, with C{codes} in order (all
    201 if none are given).
    """
    codes = codes or (201,) * len(delivery.recipients)
    return [
        RecipientResult(address, code, "delivered" if code < 300 else f"code {code}")
        for address, code in zip(delivery.recipients, codes, strict=True)
    ]


class FakeLinks:
    """
    A fake link pool: records each call and answers from a script.

    Each script entry is used once, in order; then C{default} answers.  An
    entry is L{None} (every recipient 201), a L{tuple} of codes (one per
    recipient), an exception (the returned Deferred fails with it),
    L{PENDING} (an unfired Deferred, kept in C{pending}) or a callable
    (called with the delivery, as the link pool itself would be).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, str, tuple[str, ...]]] = []
        #: The object of each call, in order.
        self.ids: list[str] = []
        self.script: list[Any] = []
        self.default: Any = None
        self.pending: list[tuple[QueuedDelivery, Deferred[list[RecipientResult]]]] = []

    def __call__(self, delivery: QueuedDelivery, obj: FMTPObject) -> Any:
        assert obj.id == delivery.object_id
        self.calls.append(
            (self.clock.seconds() - T0, delivery.domain, delivery.recipients)
        )
        self.ids.append(obj.id)
        outcome = self.script.pop(0) if self.script else self.default
        if outcome is None:
            return succeed(answer(delivery))
        if outcome is PENDING:
            d: Deferred[list[RecipientResult]] = Deferred()
            self.pending.append((delivery, d))
            return d
        if isinstance(outcome, tuple):
            return succeed(answer(delivery, *outcome))
        if isinstance(outcome, Exception):
            return fail(outcome)
        return outcome(delivery)

    def times(self) -> list[float]:
        return [when for when, _, _ in self.calls]

    def finish(self, index: int = 0) -> QueuedDelivery:
        """
        Fire the C{index}-th pending delivery with every recipient 201.
        """
        delivery, d = self.pending.pop(index)
        d.callback(answer(delivery))
        return delivery


class QueueTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = MemoryStore()
        self.signer = DomainSigner(generate_private_key(), "poe.net")
        self.links = FakeLinks(self.clock)
        self.bounces: list[tuple[str, FMTPObject]] = []
        self.file_bounce: Callable[[str, FMTPObject], Deferred[Any]] = self._file

    def _file(self, recipient: str, obj: FMTPObject) -> Deferred[None]:
        self.bounces.append((recipient, obj))
        return succeed(None)

    def make_queue(self, **kwargs: Any) -> OutboundQueue:
        kwargs.setdefault("random", lambda: 0.5)  # no jitter
        return OutboundQueue(
            self.store,
            self.links,
            self.clock,
            "poe.net",
            self.signer,
            lambda recipient, obj: self.file_bounce(recipient, obj),
            **kwargs,
        )

    def start(self, **kwargs: Any) -> OutboundQueue:
        queue = self.make_queue(**kwargs)
        queue.startService()
        return queue

    def queue_message(
        self,
        recipients: tuple[str, ...] = (LOST,),
        sender: str = EDGAR,
        next_attempt: float | None = None,
        **properties: str,
    ) -> FMTPObject:
        """
        Store a message and its queue rows, one per domain, as the sending
        code does before its 2xx.
        """
        now = self.clock.seconds()
        props = {"From": sender, "To": " ".join(recipients), "Subject": "Nevermore"}
        props.update(properties)
        obj = FMTPObject(new_object_id(sender, now), "message", props, b"Quoth")
        by_domain: dict[str, list[str]] = {}
        for address in recipients:
            by_domain.setdefault(domain_of(address), []).append(address)
        rows = [
            QueuedDelivery.new(obj.id, domain, addresses, now)
            for domain, addresses in by_domain.items()
        ]
        if next_attempt is not None:
            rows = [
                QueuedDelivery(
                    r.object_id, r.domain, r.recipients, now, 0, next_attempt
                )
                for r in rows
            ]
        self.successResultOf(self.store.enqueue(obj, rows))
        return obj

    def send(self, queue: OutboundQueue, *args: Any, **kwargs: Any) -> FMTPObject:
        """
        Queue a message and kick the queue, as the sending code does.
        """
        obj = self.queue_message(*args, **kwargs)
        queue.kick()
        return obj

    def queued(self, domain: str = "lenore.org") -> list[QueuedDelivery]:
        return self.successResultOf(self.store.queued_for(domain))

    def run_timers(self, until: float = float("inf")) -> None:
        """
        Advance the clock from one timer to the next, running each, until
        none is left or the next is after C{T0 + until}.
        """
        while calls := self.clock.getDelayedCalls():
            when = min(call.getTime() for call in calls)
            if when > T0 + until:
                return
            self.clock.advance(max(0.0, when - self.clock.seconds()))

    def timer_times(self) -> list[float]:
        return [call.getTime() - T0 for call in self.clock.getDelayedCalls()]


class DeliveryTests(QueueTestCase):
    def test_delivered(self) -> None:
        """
        A delivery every recipient accepts is removed from the queue, and
        the queue sleeps with no timer, having nothing left.
        """
        queue = self.start()
        obj = self.send(queue, (LOST, RAVEN))

        self.assertEqual(self.links.calls, [(0.0, "lenore.org", (LOST, RAVEN))])
        self.assertEqual(self.queued(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.bounces, [])
        self.assertEqual(queue.stats.delivered, 2)
        # The object itself stays: it is the sender's copy.
        self.assertEqual(self.successResultOf(self.store.get_object(obj.id)), obj)

    def test_temporary_failure_rescheduled(self) -> None:
        """
        A temporary failure of the whole message is counted and kept with
        the row, which is tried again after the first wait.
        """
        queue = self.start()
        self.links.script = [LinkDown()]
        self.send(queue)

        [row] = self.queued()
        self.assertEqual(row.attempts, 1)
        self.assertEqual(row.next_attempt, T0 + 1)
        self.assertEqual(row.last_error, "421 connection refused")
        self.assertEqual(self.timer_times(), [1.0])
        self.assertEqual(queue.stats.retried, 1)

        self.clock.advance(0.5)
        self.assertEqual(len(self.links.calls), 1)
        self.clock.advance(0.5)
        self.assertEqual(self.links.times(), [0.0, 1.0])
        self.assertEqual(self.queued(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_schedule_until_window_runs_out(self) -> None:
        """
        A domain that never answers is tried again within seconds (after 1,
        2 and 5 seconds: a peer restarting is back by then), then after 1,
        5, 15 and 30 minutes, 1 and 2 hours, then every 4 hours; when the
        next attempt would fall after five days from when the message was
        queued, the sender gets a bounce instead and the row goes.
        """
        queue = self.start()
        self.links.default = LinkDown()
        self.send(queue)
        self.run_timers()

        times = self.links.times()
        expected = [0, 1, 3, 8, 68, 368, 1268, 3068, 6668, 13868, 28268]
        self.assertEqual(times[: len(expected)], expected)
        self.assertEqual(
            {
                later - earlier
                for earlier, later in zip(times[10:-1], times[11:], strict=True)
            },
            {4 * 3600.0},
        )
        self.assertLessEqual(times[-1], DEFAULT_RETRY_WINDOW)
        self.assertGreater(times[-1] + 4 * 3600, DEFAULT_RETRY_WINDOW)

        self.assertEqual(self.queued(), [])
        [(recipient, bounce)] = self.bounces
        self.assertEqual(recipient, EDGAR)
        self.assertIn(f"({len(times)} attempts)", bounce.body.decode())
        self.assertEqual(queue.stats.bounced, 1)
        self.assertEqual(queue.stats.retried, len(times) - 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_jitter(self) -> None:
        """
        Each wait is stretched or shrunk by up to a tenth, from the random
        source given.
        """
        self.links.default = LinkDown()
        queue = self.start(random=lambda: 0.0)
        self.send(queue)
        self.assertEqual(self.queued()[0].next_attempt, T0 + 0.9)
        queue.stopService()

        self.store = MemoryStore()
        queue = self.start(random=lambda: 0.75)
        self.send(queue)
        self.assertAlmostEqual(self.queued()[0].next_attempt, T0 + 1.05)

    def test_custom_schedule_and_window(self) -> None:
        """
        The schedule and the window are the operator's to set.
        """
        self.links.default = LinkDown()
        queue = self.start(retry_schedule=(10, 20), retry_window=70)
        self.send(queue)
        self.run_timers()
        # 0, then +10, +20, +20; the next, at 70, is not after the window.
        self.assertEqual(self.links.times(), [0, 10, 30, 50, 70])
        self.assertEqual(len(self.bounces), 1)
        self.assertEqual(queue.stats.retried, 4)

    def test_reply_code_bounds(self) -> None:
        """
        Per recipient, 200 to 299 is delivered, 500 to 599 bounced, and
        anything else (300, 499, 600) tried again: a retry costs little, a
        wrong bounce or a wrong "delivered" loses a message.
        """
        recipients = tuple(f"user{n}@lenore.org" for n in range(7))
        queue = self.start()
        self.links.script = [(200, 299, 300, 499, 500, 599, 600)]
        self.send(queue, recipients)

        [(_, bounce)] = self.bounces
        body = bounce.body.decode()
        for n, bounced in enumerate([False, False, False, False, True, True, False]):
            self.assertEqual(f"{recipients[n]}:" in body, bounced, n)
        [row] = self.queued()
        self.assertEqual(row.recipients, (recipients[2], recipients[3], recipients[6]))
        self.assertEqual(
            (queue.stats.delivered, queue.stats.retried, queue.stats.bounced),
            (2, 3, 2),
        )

    def test_whole_message_code_bounds(self) -> None:
        """
        A whole-message refusal of 500 bounces; 499 is tried again.
        """

        def refusal(code: int) -> FMTPError:
            error = FMTPError("refused whole")
            error.code = code
            return error

        queue = self.start()
        self.links.script = [refusal(499), refusal(500)]
        self.send(queue)
        self.assertEqual(self.bounces, [])
        self.clock.advance(60)
        self.assertEqual(len(self.bounces), 1)
        self.assertEqual(self.queued(), [])


class BounceTests(QueueTestCase):
    def verify(self, obj: FMTPObject) -> None:
        """
        Check that C{obj} carries a valid signature of this domain.
        """
        verifier = StaticKeyVerifier({}, self.clock)
        verifier.add_signer(self.signer)
        key = self.successResultOf(verifier.verify_object(obj))
        self.assertEqual(key.fingerprint, self.signer.fingerprint)

    def test_window_exhausted_bounce(self) -> None:
        """
        The bounce filed when the window runs out is a signed message from
        the postmaster to the sender, answering the original in its
        thread, and saying who failed, how, and after how many attempts.
        """
        queue = self.start(retry_schedule=(60,), retry_window=100)
        self.links.default = LinkDown()
        obj = self.send(queue)
        self.assertEqual(self.bounces, [])
        self.clock.advance(60)

        self.assertEqual(self.links.times(), [0, 60])
        self.assertEqual(self.queued(), [])
        [(recipient, bounce)] = self.bounces
        self.assertEqual(recipient, EDGAR)
        self.assertEqual(bounce.type, "message")
        self.assertEqual(bounce.owner, "postmaster@poe.net")
        self.assertEqual(bounce.properties["From"], "postmaster@poe.net")
        self.assertEqual(bounce.properties["To"], EDGAR)
        self.assertEqual(bounce.properties["Subject"], "Undeliverable: Nevermore")
        self.assertEqual(bounce.properties["Parent"], obj.id)
        self.assertEqual(bounce.properties["Parent-Digest"], obj.digest())
        self.assertEqual(bounce.properties["Top"], obj.id)
        body = bounce.body.decode("utf-8")
        self.assertIn(f"{LOST}: 421 connection refused", body)
        self.assertIn("(2 attempts)", body)
        self.assertIn(obj.id, body)
        self.verify(bounce)
        self.assertEqual(queue.stats.bounced, 1)

    def test_bounce_thread_and_subject(self) -> None:
        """
        A bounce of a reply keeps the thread's C{Top}; a message without a
        subject is named by its id.
        """
        original = FMTPObject(
            new_object_id(EDGAR, T0),
            "message",
            {
                "From": EDGAR,
                "To": LOST,
                "Parent": "1.a.lost@lenore.org",
                "Top": "0.b.lost@lenore.org",
            },
        )
        row = QueuedDelivery.new(original.id, "lenore.org", [LOST], T0)
        bounce = make_bounce(
            original, row, [RecipientResult(LOST, 550, "no such user")], 1, "poe.net"
        )
        self.assertEqual(bounce.properties["Top"], "0.b.lost@lenore.org")
        self.assertEqual(bounce.properties["Subject"], f"Undeliverable: {original.id}")
        self.assertIn("(1 attempt)", bounce.body.decode())

    def test_bounce_id_is_stable(self) -> None:
        """
        The same failure makes the same bounce id, so that a bounce filed
        again after a crash is de-duplicated by the inbox; other failed
        recipients make another.
        """
        original = FMTPObject(new_object_id(EDGAR, T0), "message", {"From": EDGAR})
        row = QueuedDelivery.new(original.id, "lenore.org", [LOST, RAVEN], T0)
        lost = [RecipientResult(LOST, 550, "no such user")]
        raven = [RecipientResult(RAVEN, 550, "no such user")]
        first = make_bounce(original, row, lost, 1, "poe.net")
        self.assertEqual(first.id, make_bounce(original, row, lost, 3, "poe.net").id)
        self.assertNotEqual(
            first.id, make_bounce(original, row, raven, 1, "poe.net").id
        )

    def test_bounce_text(self) -> None:
        """
        The whole body of a bounce, as the sender reads it, and its id:
        timestamped when the message was queued.
        """
        original = FMTPObject(
            new_object_id(EDGAR, T0), "message", {"From": EDGAR, "Subject": "Hi"}
        )
        row = QueuedDelivery.new(original.id, "lenore.org", [LOST, RAVEN], T0 - 5)
        failures = [
            RecipientResult(LOST, 550, "no such user"),
            RecipientResult(RAVEN, 554, ""),
        ]
        bounce = make_bounce(original, row, failures, 2, "poe.net")
        self.assertEqual(
            bounce.body.decode("utf-8"),
            "This is the postmaster at poe.net.\n"
            "\n"
            "Your message could not be delivered to these recipients at "
            "lenore.org:\n"
            "\n"
            f"  {LOST}: 550 no such user\n"
            f"  {RAVEN}: 554 no reason given\n"
            "\n"
            "No further attempts will be made (2 attempts).\n"
            "\n"
            f"Message: {original.id}\n"
            "Subject: Hi\n",
        )
        ms, owner = parse_object_id(bounce.id)
        self.assertEqual((ms, owner), (int((T0 - 5) * 1000), "postmaster@poe.net"))

    def test_clean_reason(self) -> None:
        """
        A peer's reason is kept whole up to 300 characters, then cut to
        that length, ending in "...".
        """
        self.assertEqual(clean_reason("x" * 300), "x" * 300)
        self.assertEqual(clean_reason("x" * 301), "x" * 297 + "...")
        self.assertEqual(clean_reason(" \r\n "), "no reason given")
        self.assertEqual(clean_reason("a \r\n b"), "a b")

    def test_peer_reason_is_quoted_on_one_line(self) -> None:
        """
        A peer's reason cannot add lines to a bounce or make it huge.
        """
        original = FMTPObject(new_object_id(EDGAR, T0), "message", {"From": EDGAR})
        row = QueuedDelivery.new(original.id, "lenore.org", [LOST], T0)
        reason = "busy\r\nSubject: forged\n" + "x" * 5000
        bounce = make_bounce(
            original, row, [RecipientResult(LOST, 554, reason)], 1, "poe.net"
        )
        body = bounce.body.decode()
        self.assertNotIn("\nSubject: forged", body)
        self.assertLess(len(body), 1000)

    def test_per_recipient_mix(self) -> None:
        """
        A peer that accepts one recipient, refuses another for good and
        another for now: the refused one is bounced, and only the last is
        tried again.
        """
        queue = self.start()
        self.links.script = [(201, 554, 451)]
        obj = self.send(queue, (LOST, RAVEN, LENORE))

        [(recipient, bounce)] = self.bounces
        self.assertEqual(recipient, EDGAR)
        body = bounce.body.decode()
        self.assertIn(f"{RAVEN}: 554 code 554", body)
        self.assertIn("(1 attempt)", body)
        self.assertNotIn(LOST, body)
        self.assertNotIn(LENORE, body)
        self.verify(bounce)

        [row] = self.queued()
        self.assertEqual(
            row,
            QueuedDelivery(
                obj.id, "lenore.org", (LENORE,), T0, 1, T0 + 1, "451 code 451"
            ),
        )
        self.clock.advance(1)
        self.assertEqual(self.links.calls[-1], (1.0, "lenore.org", (LENORE,)))
        self.assertEqual(self.queued(), [])
        self.assertEqual(len(self.bounces), 1)
        self.assertEqual(
            (queue.stats.delivered, queue.stats.retried, queue.stats.bounced),
            (2, 1, 1),
        )

    def test_all_recipients_temporary(self) -> None:
        """
        When the peer answers every recipient with a 4xx, the row keeps its
        place and is rescheduled, naming each recipient's reason; the
        domain is not given up for the rest of the pass, since it answered.
        """
        queue = self.start()
        self.links.script = [(451, 452)]
        obj = self.queue_message((LOST, RAVEN))
        self.clock.advance(1)
        self.queue_message((LENORE,))
        queue.kick()

        [row] = self.queued()
        self.assertEqual(row.object_id, obj.id)
        self.assertEqual((row.recipients, row.attempts), ((LOST, RAVEN), 1))
        self.assertEqual(row.last_error, f"{LOST} 451 code 451; {RAVEN} 452 code 452")
        self.assertEqual(len(self.links.calls), 2)
        self.assertEqual((queue.stats.retried, queue.stats.delivered), (2, 1))

    def test_window_runs_out_for_some_recipients(self) -> None:
        """
        Recipients retried one by one until the window runs out are
        bounced with those refused for good in the same attempt, in one
        bounce counting every attempt; each retry is counted, and the
        give-up is logged.
        """
        queue = self.start(retry_window=400, retry_schedule=MAIL_SCHEDULE)
        self.links.script = [(201, 451, 451), (451, 451), (554, 451)]
        with capturedLogs() as events:
            obj = self.send(queue, (LOST, RAVEN, LENORE))
            self.assertEqual(self.queued()[0].recipients, (RAVEN, LENORE))
            self.run_timers()
        self.assertEqual(self.links.times(), [0, 60, 360])
        self.assertEqual(self.queued(), [])
        [(_, bounce)] = self.bounces
        body = bounce.body.decode()
        self.assertIn(f"  {RAVEN}: 554 code 554\n", body)
        self.assertIn(f"  {LENORE}: 451 code 451\n", body)
        self.assertIn("(3 attempts)", body)
        self.assertEqual(
            (queue.stats.delivered, queue.stats.retried, queue.stats.bounced),
            (1, 4, 2),
        )
        self.assertIn(
            f"Giving up on {obj.id} to lenore.org after 3 attempts: 451 code 451",
            [formatEvent(event) for event in events],
        )

    def test_missing_results_are_retried(self) -> None:
        """
        A recipient the peer gave no result for is tried again rather than
        taken as delivered or bounced.
        """
        queue = self.start()
        self.links.script = [
            lambda delivery: succeed([RecipientResult(LOST, 201, "ok")])
        ]
        self.send(queue, (LOST, RAVEN))
        [row] = self.queued()
        self.assertEqual(row.recipients, (RAVEN,))
        self.assertEqual(row.last_error, "451 no reply for recipient")
        self.assertEqual(self.bounces, [])
        self.assertEqual(queue.stats.retried, 1)

    def test_results_for_malformed_addresses_are_skipped(self) -> None:
        """
        A result line naming no address of ours is skipped, and the
        results after it still count.
        """
        queue = self.start()
        self.links.script = [
            lambda delivery: succeed(
                [
                    RecipientResult("not an address", 554, "x"),
                    RecipientResult(LOST, 201, "ok"),
                ]
            )
        ]
        self.send(queue)
        self.assertEqual(self.queued(), [])
        self.assertEqual(self.bounces, [])
        self.assertEqual(queue.stats.delivered, 1)

    def test_whole_message_permanent(self) -> None:
        """
        A permanent refusal of the whole message bounces every recipient
        at once, and the message is not tried again.
        """
        queue = self.start()
        self.links.script = [NoSuchDomain()]
        self.send(queue, (LOST, RAVEN))

        self.assertEqual(self.queued(), [])
        [(_, bounce)] = self.bounces
        body = bounce.body.decode()
        self.assertIn(f"{LOST}: 554 lenore.org does not exist", body)
        self.assertIn(f"{RAVEN}: 554 lenore.org does not exist", body)
        self.assertIn("(1 attempt)", body)
        self.run_timers()
        self.assertEqual(len(self.links.calls), 1)
        self.assertEqual(queue.stats.bounced, 2)

    def test_no_bounce_of_a_bounce(self) -> None:
        """
        An undeliverable message from a postmaster is dropped with a log
        line: bouncing it could start a loop between two servers.
        """
        queue = self.start()
        self.links.script = [NoSuchDomain()]
        with capturedLogs() as events:
            self.send(queue, sender="postmaster@poe.net")
        self.assertEqual(self.bounces, [])
        self.assertEqual(self.queued(), [])
        self.assertTrue(
            any("never bounced" in formatEvent(event) for event in events), events
        )

    def test_no_bounce_to_other_domain(self) -> None:
        """
        A sender at another domain gets no bounce from here (bounces go
        only into local inboxes); the failure is logged.
        """
        queue = self.start()
        self.links.script = [NoSuchDomain()]
        with capturedLogs() as events:
            self.send(queue, sender=ANNABEL)
        self.assertEqual(self.bounces, [])
        self.assertEqual(self.queued(), [])
        text = [formatEvent(event) for event in events]
        self.assertTrue(
            any(ANNABEL in line and "not a user of poe.net" in line for line in text),
            text,
        )

    def test_give_up_and_bounce_are_logged(self) -> None:
        """
        doc/admin.md: each failure and bounce is logged, naming the
        message, the attempts and the recipients; a bounce filed (its
        inbox answered 201) is logged as bounced, not as refused.
        """
        self.file_bounce = lambda recipient, obj: succeed(
            [RecipientResult(recipient, 201, "delivered")]
        )
        queue = self.start(retry_window=100, retry_schedule=MAIL_SCHEDULE)
        self.links.default = LinkDown()
        with capturedLogs() as events:
            obj = self.send(queue, (LOST, RAVEN))
            self.clock.advance(60)
        text = [formatEvent(event) for event in events]
        self.assertIn(
            f"Giving up on {obj.id} to lenore.org after 2 attempts: "
            "421 connection refused",
            text,
        )
        [bounced] = [line for line in text if line.startswith("Bounced")]
        self.assertTrue(bounced.startswith(f"Bounced {obj.id} to {EDGAR} as "), bounced)
        self.assertTrue(bounced.endswith(f": failed for {LOST}, {RAVEN}"), bounced)
        self.assertFalse([line for line in text if "was refused" in line], text)

    def test_bounce_refused_is_logged(self) -> None:
        """
        A C{deliver_local} that answers with results (one that runs the
        recipient's policy) and refuses the bounce gets a log line: the
        sender will not hear of the failure otherwise.
        """
        self.file_bounce = lambda recipient, obj: succeed(
            [RecipientResult(recipient, 554, "refused by the recipient's policy")]
        )
        queue = self.start()
        self.links.script = [NoSuchDomain()]
        with capturedLogs() as events:
            self.send(queue)
        text = [formatEvent(event) for event in events]
        self.assertTrue(any("was refused for" in line for line in text), text)
        self.assertEqual(self.queued(), [])

    def test_bounce_filing_fails(self) -> None:
        """
        If the bounce cannot be filed, the row stays (nothing acknowledged
        is lost) and is tried again after a wait, not in a loop.
        """
        self.file_bounce = lambda recipient, obj: fail(StoreUnavailable())
        queue = self.start()
        self.links.default = NoSuchDomain()
        with capturedLogs() as events:
            obj = self.send(queue)

        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailable)), 1)
        self.assertIn(
            f"Could not settle the delivery of {obj.id} to lenore.org",
            [formatEvent(event) for event in events],
        )
        self.assertEqual(len(self.queued()), 1)
        self.assertEqual(self.timer_times(), [60.0])

        self.file_bounce = self._file
        self.clock.advance(60)
        self.assertEqual(self.links.times(), [0, 60])
        self.assertEqual(self.queued(), [])
        self.assertEqual(len(self.bounces), 1)

    def test_reply_settled_after_the_pass_fails_to_settle(self) -> None:
        """
        A reply that comes after its pass ended and cannot be settled
        leaves its row queued, resting for the pause: a pass meanwhile (a
        new message sent) does not try it again, and a timer does once the
        pause is over, with nothing else to wake the queue.
        """
        self.file_bounce = lambda recipient, obj: fail(StoreUnavailable())
        queue = self.start()
        self.links.script = [PENDING]
        self.send(queue)
        self.clock.advance(10)
        self.links.pending.pop()[1].errback(NoSuchDomain())
        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailable)), 1)
        self.assertEqual(len(self.queued()), 1)

        self.clock.advance(1)
        self.assertEqual(self.timer_times(), [70.0])
        self.send(queue, (ANNABEL,))
        self.assertEqual(self.links.calls[1:], [(11, "kingdom.example", (ANNABEL,))])
        self.assertEqual(self.timer_times(), [70.0])

        self.file_bounce = self._file
        self.links.default = NoSuchDomain()
        self.clock.advance(59)
        self.assertEqual(self.links.times(), [0, 11, 70])
        self.assertEqual(self.queued(), [])
        self.assertEqual([recipient for recipient, _ in self.bounces], [EDGAR])

    def test_row_not_settled_does_not_put_off_the_store_retry(self) -> None:
        """
        A row that cannot be settled while the queue waits out a failed
        read of the store rests on its own: the store is read again when
        its wait is over, not at the end of the row's rest.
        """

        class Broken(MemoryStore):
            broken = False

            def due_deliveries(self, now: float, limit: int, skip: Any = ()) -> Any:
                if self.broken:
                    return fail(StoreUnavailable())
                return super().due_deliveries(now, limit, skip)

        self.store = Broken()
        self.file_bounce = lambda recipient, obj: fail(StoreUnavailable())
        queue = self.start()
        self.links.script = [PENDING]
        self.send(queue)
        self.store.broken = True
        self.send(queue, (ANNABEL,))
        self.assertEqual(self.timer_times(), [60.0])
        self.clock.advance(30)
        self.links.pending.pop()[1].errback(NoSuchDomain())
        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailable)), 2)
        self.assertEqual(self.timer_times(), [60.0])

        self.store.broken = False
        self.file_bounce = self._file
        self.links.default = NoSuchDomain()
        self.clock.advance(30)
        self.assertEqual(self.links.calls[1:], [(60, "kingdom.example", (ANNABEL,))])
        self.assertEqual(self.timer_times(), [90.0])
        self.clock.advance(30)
        self.assertEqual(self.links.times(), [0, 60, 90])
        self.assertEqual(self.queued(), [])
        self.assertEqual(self.queued("kingdom.example"), [])

    def assert_row_outlives_a_failed_bounce(self, queue: OutboundQueue) -> None:
        """
        The bounce could not be filed: the row must still be queued, so
        the failure is reported later rather than lost.
        """
        self.assertTrue(self.flushLoggedErrors(StoreUnavailable))
        self.assertEqual(len(self.queued()), 1)
        self.assertEqual(self.bounces, [])

    def test_recipient_refused_and_bounce_filing_fails(self) -> None:
        """
        The per-recipient path: a 554 for the recipient is bounced before
        its row goes.
        """
        self.file_bounce = lambda recipient, obj: fail(StoreUnavailable())
        queue = self.start()
        self.links.default = (554,)
        self.send(queue)
        self.assert_row_outlives_a_failed_bounce(queue)

    def test_window_runs_out_and_bounce_filing_fails(self) -> None:
        """
        The give-up path: the window has run out, and the bounce is filed
        before the row goes.
        """
        self.file_bounce = lambda recipient, obj: fail(StoreUnavailable())
        queue = self.start(retry_schedule=(10,), retry_window=15)
        self.links.default = LinkDown()
        self.send(queue)
        self.clock.advance(10)
        self.clock.advance(10)
        self.assert_row_outlives_a_failed_bounce(queue)


class FailureTests(QueueTestCase):
    def test_plain_exception_is_temporary(self) -> None:
        """
        An exception that is not an L{FMTPError} is a bug below; the
        message is tried again, and the traceback is logged.
        """

        def broken(delivery: QueuedDelivery) -> Deferred[Any]:
            raise ZeroDivisionError("division by zero")

        queue = self.start()
        self.links.script = [broken]
        self.send(queue)

        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        [row] = self.queued()
        self.assertEqual(row.attempts, 1)
        self.assertEqual(row.next_attempt, T0 + 1)
        self.assertEqual(row.last_error, "451 ZeroDivisionError: division by zero")
        self.assertEqual(self.bounces, [])
        self.clock.advance(1)
        self.assertEqual(self.queued(), [])
        self.assertEqual(queue.stats.delivered, 1)

    def test_failing_domain_puts_off_its_other_rows(self) -> None:
        """
        Once a domain fails as a whole, its other rows due in the same pass
        are put off without being tried, while other domains go on.
        """
        queue = self.start()
        self.links.script = [LinkDown()]
        first = self.queue_message((LOST,))
        self.clock.advance(1)
        second = self.queue_message((RAVEN,))
        elsewhere = self.queue_message((ANNABEL,))
        queue.kick()

        self.assertEqual(
            [domain for _, domain, _ in self.links.calls],
            ["lenore.org", "kingdom.example"],
        )
        rows = {row.object_id: row for row in self.queued()}
        self.assertEqual(rows[first.id].attempts, 1)
        self.assertEqual(rows[second.id].attempts, 1)
        self.assertEqual(rows[second.id].next_attempt, T0 + 2)
        self.assertEqual(
            rows[second.id].last_error,
            "421 not tried, lenore.org just failed: connection refused",
        )
        self.assertEqual(self.queued("kingdom.example"), [])
        self.assertTrue(self.successResultOf(self.store.has_object(elsewhere.id)))

    def test_every_row_of_a_failed_domain_is_put_off(self) -> None:
        """
        The rows put off are all the domain's rows due in the pass, however
        many windows they fill: none is left due, to be tried at once.
        """
        queue = self.start(window=2, retry_schedule=MAIL_SCHEDULE)
        self.links.default = LinkDown()
        for _ in range(5):
            self.queue_message((LOST,))
            self.clock.advance(1)
        queue.kick()
        self.assertEqual(len(self.links.calls), 1)
        self.assertEqual([row.attempts for row in self.queued()], [1] * 5)
        self.assertEqual(self.timer_times(), [65.0])

    def test_put_off_counts_as_an_attempt(self) -> None:
        """
        A row put off counts its attempt: the next wait is the schedule's
        next one, and a bounce counts it.
        """
        queue = self.start(retry_window=400, retry_schedule=MAIL_SCHEDULE)
        self.links.default = LinkDown()
        self.queue_message((LOST,))
        put_off = self.queue_message((RAVEN,))
        queue.kick()
        self.clock.advance(60)
        rows = {row.object_id: row for row in self.queued()}
        self.assertEqual(rows[put_off.id].attempts, 2)
        self.assertEqual(rows[put_off.id].next_attempt, T0 + 60 + 300)
        self.clock.advance(300)
        self.assertEqual(self.queued(), [])
        bodies = [bounce.body.decode() for _, bounce in self.bounces]
        self.assertEqual(len(bodies), 2)
        self.assertEqual(queue.stats.bounced, 2)
        self.assertTrue(all("(3 attempts)" in body for body in bodies), bodies)
        self.assertTrue(
            any(
                f"  {address}: 421 not tried" in "".join(bodies)
                for address in (LOST, RAVEN)
            ),
            bodies,
        )

    def test_put_off_row_of_a_deleted_object(self) -> None:
        """
        A row put off whose object is gone is dropped, as when it is tried.
        """
        gone: set[str] = set()

        class Forgetting(MemoryStore):
            def queued_objects(self, object_ids) -> Deferred[list[FMTPObject | None]]:
                d = super().queued_objects(object_ids)
                return d.addCallback(
                    lambda found: [
                        None if obj is not None and obj.id in gone else obj
                        for obj in found
                    ]
                )

        self.store = Forgetting()
        queue = self.start(retry_schedule=MAIL_SCHEDULE)
        self.links.default = LinkDown()
        kept = self.queue_message((LOST,))
        self.clock.advance(1)
        dropped = self.queue_message((RAVEN,))
        gone.add(dropped.id)
        queue.kick()
        self.assertEqual(len(self.links.calls), 1)
        self.assertEqual([row.object_id for row in self.queued()], [kept.id])

    def test_failed_pass_tried_again_after_a_wait(self) -> None:
        """
        A pass that fails (a bug) does not stop the queue: the next pass
        runs after the first wait.
        """
        queue = self.make_queue()
        run_pass = queue._run_pass
        failures = [RuntimeError("a bug")]

        async def broken() -> float | None:
            if failures:
                raise failures.pop()
            return await run_pass()

        queue._run_pass = broken
        self.queue_message()
        queue.startService()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.links.calls, [])
        self.assertEqual(self.timer_times(), [60.0])
        self.clock.advance(60)
        self.assertEqual(self.links.times(), [60.0])

    def test_deleted_object(self) -> None:
        """
        A row whose object is gone (deleted between reading the row and
        the object) is dropped without a delivery.
        """

        class Forgetful(MemoryStore):
            def queued_objects(
                self, object_ids: Sequence[str]
            ) -> Deferred[list[FMTPObject | None]]:
                return succeed([None] * len(object_ids))

        self.store = Forgetful()
        queue = self.start()
        self.send(queue)
        self.assertEqual(self.links.calls, [])
        self.assertEqual(self.queued(), [])

    def test_store_trouble(self) -> None:
        """
        A store that cannot be read is tried again after a wait.
        """

        class Broken(MemoryStore):
            broken = True

            def due_deliveries(self, now: float, limit: int, skip: Any = ()) -> Any:
                if self.broken:
                    return fail(StoreUnavailable())
                return super().due_deliveries(now, limit, skip)

        self.store = Broken()
        self.queue_message()
        self.start()
        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailable)), 1)
        self.assertEqual(self.timer_times(), [60.0])
        self.store.broken = False
        self.clock.advance(60)
        self.assertEqual(self.links.times(), [60.0])

    def test_arguments_checked(self) -> None:
        for bad, message in (
            ({"retry_schedule": ()}, "retry_schedule must be positive waits"),
            ({"retry_schedule": (60, 0)}, "retry_schedule must be positive waits"),
            ({"retry_window": -1}, "retry_window must not be negative"),
            ({"max_held": 0}, "batch, window and max_held must"),
            ({"batch": 0}, "batch, window and max_held must"),
            ({"window": 0}, "batch, window and max_held must"),
        ):
            with self.assertRaises(ValueError, msg=bad) as caught:
                self.make_queue(**bad)
            self.assertTrue(str(caught.exception).startswith(message), caught.exception)
        # The smallest values allowed.
        self.make_queue(
            retry_schedule=(1,),
            retry_window=0,
            max_held=1,
            batch=1,
            window=1,
        )

    def test_put_off_row_not_settled_is_logged(self) -> None:
        """
        A row put off that the store fails to reschedule stays queued, with
        a log line naming it and its domain.
        """

        class Failing(MemoryStore):
            def reschedule(self, object_id, *args, **kwargs):
                if object_id == put_off.id:
                    return fail(StoreUnavailable())
                return super().reschedule(object_id, *args, **kwargs)

        self.store = Failing()
        queue = self.start()
        self.links.default = LinkDown()
        self.queue_message((LOST,))
        self.clock.advance(1)
        put_off = self.queue_message((RAVEN,))
        with capturedLogs() as events:
            queue.kick()
        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailable)), 1)
        self.assertIn(
            f"Could not settle the delivery of {put_off.id} to lenore.org",
            [formatEvent(event) for event in events],
        )
        self.assertEqual(len(self.queued()), 2)

    def test_retry_delay(self) -> None:
        self.assertEqual(
            [retry_delay(n) for n in range(1, 13)],
            [1, 2, 5, 60, 300, 900, 1800, 3600, 7200, 14400, 14400, 14400],
        )
        self.assertEqual(retry_delay(0), DEFAULT_SCHEDULE[0])


class SchedulingTests(QueueTestCase):
    def test_start_delivers_due_rows(self) -> None:
        """
        A new queue on a store with due rows (as after a restart) delivers
        them when started, without a kick.
        """
        self.links.default = LinkDown()
        first = self.start()
        self.send(first)
        self.assertEqual(self.successResultOf(first.stopService()), None)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(600)

        self.links.default = None
        second = self.start()
        self.assertEqual(self.links.times(), [0.0, 600.0])
        self.assertEqual(self.queued(), [])
        self.assertEqual(second.stats.delivered, 1)

    def test_one_timer_for_next_due(self) -> None:
        """
        Started with nothing due, the queue sets one timer for the next row
        that falls due, and delivers it then.
        """
        self.queue_message(next_attempt=T0 + 500)
        self.queue_message((ANNABEL,), next_attempt=T0 + 800)
        queue = self.start()
        self.assertEqual(self.links.calls, [])
        self.assertEqual(self.timer_times(), [500.0])
        self.clock.advance(499)
        self.assertEqual(self.links.calls, [])
        self.clock.advance(1)
        self.assertEqual(self.links.times(), [500.0])
        self.assertEqual(self.timer_times(), [800.0])
        self.clock.advance(300)
        self.assertEqual(self.links.times(), [500.0, 800.0])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(queue.stats.delivered, 2)

    def test_kick_while_sleeping(self) -> None:
        """
        A kick while the queue sleeps until a later row runs a pass at
        once, then sleeps until that row again.
        """
        self.queue_message(next_attempt=T0 + 500)
        queue = self.start()
        self.assertEqual(self.timer_times(), [500.0])
        self.send(queue, (ANNABEL,))
        self.assertEqual(self.links.times(), [0.0])
        self.assertEqual(self.timer_times(), [500.0])
        self.send(queue, (USHER,))
        self.assertEqual(self.timer_times(), [500.0])
        self.clock.advance(500)
        self.assertEqual(self.links.times(), [0.0, 0.0, 500.0])

    def test_timer_for_a_row_due_soon(self) -> None:
        self.queue_message(next_attempt=T0 + 0.25)
        self.start()
        self.assertEqual(self.timer_times(), [0.25])

    def test_repr(self) -> None:
        queue = self.make_queue()
        self.assertEqual(repr(queue), "<OutboundQueue poe.net stopped>")
        queue.startService()
        self.assertEqual(repr(queue), "<OutboundQueue poe.net running>")

    def test_default_sizes(self) -> None:
        """
        By default a pass reads 100 rows at a time, every domain with rows
        due is sent to at once, and up to 32 deliveries are pipelined on one
        domain's link.
        """
        reads = []

        class Counting(MemoryStore):
            def due_deliveries(self, now: float, limit: int, skip=()) -> Any:
                reads.append(limit)
                return super().due_deliveries(now, limit, skip)

        self.store = Counting()
        self.links.default = PENDING
        queue = self.make_queue()
        for n in range(40):
            self.queue_message((f"user{n}@lenore.org",))
            self.clock.advance(1)
        for n in range(9):
            self.queue_message((f"user@domain{n}.example",))
        queue.startService()
        self.assertEqual(reads[0], 100)
        domains = {d.domain for d, _ in self.links.pending}
        self.assertEqual(len(domains), 10)
        # The first delivery to a domain goes alone: it opens the link.
        lenore = [
            i for i, (d, _) in enumerate(self.links.pending) if d.domain == "lenore.org"
        ]
        self.assertEqual(len(lenore), 1)
        self.links.finish(lenore[0])
        in_flight = [d for d, _ in self.links.pending if d.domain == "lenore.org"]
        self.assertEqual(len(in_flight), 32)

    def test_kick_during_pass(self) -> None:
        """
        Kicks while a pass reads the store start no second pass beside it:
        they make one more pass after it.
        """
        reads: list[Deferred[None]] = []

        class Slow(MemoryStore):
            def due_deliveries(self, now: float, limit: int, skip: Any = ()) -> Any:
                gate: Deferred[None] = Deferred()
                reads.append(gate)
                result = super().due_deliveries(now, limit, skip)
                return gate.addCallback(lambda _: result)

        self.store = Slow()
        queue = self.start()
        reads.pop().callback(None)
        self.queue_message()
        first_kick = queue.kick()  # a pass starts, and waits for the store
        self.assertNoResult(first_kick)

        self.queue_message((ANNABEL,))
        kicks = [queue.kick(), queue.kick()]
        self.assertEqual(len(reads), 1)
        for kick in kicks:
            self.assertNoResult(kick)

        reads.pop().callback(None)
        self.assertIsNone(self.successResultOf(first_kick))
        self.assertEqual(len(reads), 1)  # the one more pass
        reads.pop().callback(None)
        for kick in kicks:
            self.assertIsNone(self.successResultOf(kick))
        self.assertEqual(reads, [])
        self.assertEqual(
            sorted(domain for _, domain, _ in self.links.calls),
            ["kingdom.example", "lenore.org"],
        )
        self.assertEqual(self.queued("kingdom.example"), [])
        self.assertEqual(self.queued("lenore.org"), [])

    def test_pass_skips_the_rows_held(self) -> None:
        """
        A pass asks the store for rows past those the loops hold: it does
        not read them again, and finds the new ones however many are held.
        """
        reads: list[tuple[frozenset[tuple[str, str]], list[str]]] = []

        class Recording(MemoryStore):
            def due_deliveries(self, now: float, limit: int, skip: Any = ()) -> Any:
                rows = self._due(now, limit, skip)
                reads.append((frozenset(skip), [row.object_id for row in rows]))
                return succeed(rows)

        self.store = Recording()
        queue = self.start(window=1, batch=1)
        self.links.default = PENDING
        first = self.send(queue)
        self.clock.advance(1)
        second = self.send(queue)
        self.clock.advance(1)
        third = self.send(queue)
        held = {(first.id, "lenore.org"), (second.id, "lenore.org")}
        self.assertIn((held, [third.id]), reads)
        self.assertEqual(queue.destination("lenore.org").pending, 2)
        self.assertEqual(len(self.links.pending), 1)
        while self.links.pending:
            self.links.finish()
        self.assertEqual(self.links.ids, [first.id, second.id, third.id])
        self.assertEqual(self.queued(), [])

    def test_settles_share_a_store_call(self) -> None:
        """
        The rows whose replies come while a removal is being written are
        removed together in the next store call, each reply settled only
        once its own call has returned.
        """
        writes: list[tuple[list[tuple[str, str]], Deferred[None]]] = []

        class SlowDisk(MemoryStore):
            def finish_deliveries(self, keys: Sequence[tuple[str, str]]) -> Any:
                gate: Deferred[None] = Deferred()
                writes.append((list(keys), gate))
                result = self._finish_many(keys)
                return gate.addCallback(lambda _: result)

            def _finish_many(self, keys: Sequence[tuple[str, str]]) -> list[bool]:
                return [self._finish_delivery(*key) for key in keys]

        self.store = SlowDisk()
        queue = self.start(window=8)
        self.links.default = PENDING
        sent = []
        for _ in range(5):
            self.clock.advance(1)
            sent.append(self.send(queue))
        # The first row opens the link, alone; once it is settled the
        # four others go.
        self.links.finish()
        writes[0][1].callback(None)
        self.assertEqual(len(self.links.pending), 4)
        while self.links.pending:
            self.links.finish()
        # The first removal went alone; the three others wait for it.
        self.assertEqual([len(keys) for keys, _ in writes], [1, 1])
        destination = queue.destination("lenore.org")
        self.assertEqual(destination.in_flight, 4)
        writes[1][1].callback(None)
        self.assertEqual([len(keys) for keys, _ in writes], [1, 1, 3])
        self.assertEqual(destination.in_flight, 3)
        writes[2][1].callback(None)
        self.assertEqual(len(writes), 3)
        self.assertEqual(destination.in_flight, 0)
        self.assertEqual(queue.stats.delivered, 5)
        self.assertEqual(self.queued(), [])
        self.assertEqual(
            [key for keys, _ in writes for key in keys],
            [(obj.id, "lenore.org") for obj in sent],
        )

    def test_retry_not_held_up_by_another_domain_in_flight(self) -> None:
        """
        A domain's retry is tried when due, however long a delivery to
        another domain stays in flight: the queue does not wait for that
        reply to look at the store again.
        """

        def by_domain(delivery: QueuedDelivery) -> Any:
            if delivery.domain == "lenore.org":
                d: Deferred[list[RecipientResult]] = Deferred()
                self.links.pending.append((delivery, d))
                return d
            return fail(LinkDown())

        queue = self.start(retry_schedule=(10,))
        self.links.default = by_domain
        self.queue_message((LOST,))
        self.queue_message((ANNABEL,))
        queue.kick()
        self.assertEqual(len(self.links.pending), 1)
        [row] = self.queued("kingdom.example")
        self.assertEqual(row.next_attempt, T0 + 10)
        self.run_timers(until=20)
        kingdom = [
            when for when, domain, _ in self.links.calls if domain != "lenore.org"
        ]
        self.assertEqual(len(kingdom), 2)
        self.assertTrue(10 <= kingdom[1] < 20, kingdom)
        self.assertEqual(len(self.links.pending), 1)

    def test_each_domain_has_its_own_loop(self) -> None:
        """
        Each domain's rows are sent by its own loop: a domain whose link
        hangs does not hold up another's rows, in this pass or the next.
        """
        queue = self.start()
        self.links.script = [PENDING]
        self.queue_message((LOST,))
        queue.kick()
        self.assertEqual(len(self.links.pending), 1)

        self.clock.advance(1)
        self.send(queue, (ANNABEL,))
        self.send(queue, (USHER,))
        self.assertEqual(
            [domain for _, domain, _ in self.links.calls],
            ["lenore.org", "kingdom.example", "usher.example"],
        )
        self.assertEqual(self.queued("kingdom.example"), [])
        self.assertEqual(self.queued("usher.example"), [])
        self.assertEqual(len(self.queued("lenore.org")), 1)
        self.links.finish()
        self.assertEqual(self.queued("lenore.org"), [])

    def test_window_after_the_first_delivery(self) -> None:
        """
        A domain's first row goes alone (it opens the link); once it is
        through, up to C{window} go at once on that link, and each answer
        lets the next row go at once.
        """
        self.links.default = PENDING
        queue = self.start(window=2)
        for recipient in (LOST, RAVEN, LOST, RAVEN):
            self.queue_message((recipient,))
            self.clock.advance(1)
        queue.kick()
        counts = [len(self.links.pending)]
        while self.links.pending:
            self.links.finish(0)
            counts.append(len(self.links.pending))
        self.assertEqual(counts, [1, 2, 2, 1, 0])
        self.assertEqual(queue.stats.delivered, 4)
        self.assertEqual(self.queued("lenore.org"), [])

    def test_pipelined_in_the_order_queued(self) -> None:
        """
        Many rows for one domain go pipelined, up to the window (32 by
        default, what a receiving server runs at once on one connection),
        in the order they were queued; each reply settles its own row.
        """
        self.links.default = PENDING
        queue = self.start()
        self.assertEqual(queue.window, 32)
        ids = []
        for n in range(40):
            ids.append(self.queue_message((f"user{n}@lenore.org",)).id)
            self.clock.advance(0.001)
        queue.kick()
        self.assertEqual(len(self.links.pending), 1)
        self.links.finish(0)
        self.assertEqual(len(self.links.pending), 32)
        self.assertEqual([d.object_id for d, _ in self.links.pending], ids[1:33])
        loop = queue.destination("lenore.org")
        # A reply out of order settles its own row, and the next goes.
        done = self.links.finish(5)
        self.assertEqual(done.object_id, ids[6])
        self.assertNotIn(ids[6], [r.object_id for r in self.queued()])
        self.assertEqual(self.links.pending[-1][0].object_id, ids[33])
        while self.links.pending:
            self.links.finish(0)
        self.assertEqual(self.links.ids, ids)
        self.assertEqual(self.queued(), [])
        self.assertEqual(loop.max_in_flight, 32)

    def test_loops_hold_a_bounded_number_of_rows(self) -> None:
        """
        The loops hold at most C{max_held} rows; the others stay due in the
        store, and a loop running low asks for another pass, so that all
        go, in order, without a timer.
        """
        self.links.default = PENDING
        queue = self.start(window=2, max_held=3, batch=2)
        ids = []
        for n in range(7):
            ids.append(self.queue_message((f"user{n}@lenore.org",)).id)
            self.clock.advance(0.001)
        queue.kick()
        while self.links.pending:
            self.assertLessEqual(len(queue.destination("lenore.org")), 3)
            self.links.finish(0)
        self.assertEqual(self.links.ids, ids)
        self.assertEqual(self.queued(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_domain_down_puts_off_what_its_loop_holds(self) -> None:
        """
        When the domain fails as a whole, the rows its loop holds are put
        off without a try; once the rest is over, its next row is tried
        alone again, and when that gets through the window opens.
        """
        self.links.default = PENDING
        queue = self.start()
        for n in range(4):
            self.queue_message((f"user{n}@lenore.org",))
        queue.kick()
        self.assertEqual(len(self.links.pending), 1)
        delivery, d = self.links.pending.pop(0)
        d.errback(LinkDown())
        self.assertEqual(len(self.links.calls), 1)
        rows = self.queued()
        self.assertEqual([r.attempts for r in rows], [1, 1, 1, 1])
        self.assertTrue(all(r.next_attempt == T0 + 1 for r in rows))
        self.assertEqual(self.timer_times(), [1.0])

        self.clock.advance(1)
        self.assertEqual(len(self.links.pending), 1)  # probing, alone
        self.links.finish(0)
        self.assertEqual(len(self.links.pending), 3)
        while self.links.pending:
            self.links.finish(0)
        self.assertEqual(self.queued(), [])

    def test_peer_connected_sends_at_once(self) -> None:
        """
        When the peer's server connects to us (its HELLO verified), what
        waits for it is sent at once, whatever its back-off, and the
        count of attempts is kept.
        """
        queue = self.start()
        self.links.default = LinkDown()
        self.send(queue)
        self.run_timers(until=10)
        self.assertEqual(self.links.times(), [0, 1, 3, 8])
        [row] = self.queued()
        self.assertEqual(row.next_attempt, T0 + 68)

        self.links.default = None
        self.clock.advance(2)
        self.assertIsNone(self.successResultOf(queue.peer_connected("LENORE.org")))
        self.assertEqual(self.links.times(), [0, 1, 3, 8, 10])
        self.assertEqual(self.queued(), [])
        self.assertEqual(queue.stats.delivered, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_peer_connected_brings_only_its_own_rows(self) -> None:
        """
        A peer that connects makes due what waits for its domain only:
        another domain's rows keep their back-off.
        """
        queue = self.start()
        self.links.default = LinkDown()
        self.send(queue, (LOST,))
        self.send(queue, (ANNABEL,))
        self.assertEqual(len(self.links.calls), 2)
        self.links.default = None
        self.successResultOf(queue.peer_connected("lenore.org"))
        self.assertEqual(
            [domain for _, domain, _ in self.links.calls[2:]], ["lenore.org"]
        )
        [row] = self.queued("kingdom.example")
        self.assertEqual((row.attempts, row.next_attempt), (1, T0 + 1))

    def test_peer_connected_ends_the_rest(self) -> None:
        """
        A peer that connects while its domain rests after a failure has
        what its loop holds tried, not put off.
        """
        self.links.default = PENDING
        queue = self.start()
        self.queue_message((LOST,))
        queue.kick()
        _, d = self.links.pending.pop(0)
        d.errback(LinkDown())
        self.assertTrue(queue.destination("lenore.org").resting)
        self.links.default = None
        self.successResultOf(queue.peer_connected("lenore.org"))
        self.assertEqual(self.links.times(), [0, 0])
        self.assertEqual(self.queued(), [])

    def test_peer_connected_with_nothing_queued(self) -> None:
        queue = self.start()
        self.successResultOf(queue.peer_connected("lenore.org"))
        self.assertEqual(self.links.calls, [])
        queue.stopService()
        self.successResultOf(queue.peer_connected("lenore.org"))

    def test_stop_waits_for_in_flight(self) -> None:
        """
        Stopping waits for the delivery in flight to be settled, starts no
        other, and leaves the rest queued for the next start.
        """
        self.links.default = PENDING
        queue = self.start()
        self.queue_message((LOST,))
        self.clock.advance(1)
        second = self.queue_message((RAVEN,))
        queue.kick()

        stopped = queue.stopService()
        self.assertNoResult(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertIsNone(self.successResultOf(queue.kick()))

        self.links.finish()
        self.assertIsNone(self.successResultOf(stopped))
        self.assertEqual(len(self.links.calls), 1)
        [left] = self.queued()
        self.assertEqual((left.object_id, left.attempts), (second.id, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_idle(self) -> None:
        queue = self.start()
        self.queue_message(next_attempt=T0 + 500)
        queue.kick()
        self.assertEqual(self.timer_times(), [500.0])
        self.assertIsNone(self.successResultOf(queue.stopService()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_batches(self) -> None:
        """
        A long queue is read a batch at a time, all in one pass.
        """
        for n in range(5):
            self.clock.advance(1)
            self.queue_message((f"user{n}@lenore.org",))
        self.start(batch=2)
        self.assertEqual(len(self.links.calls), 5)
        self.assertEqual(self.queued(), [])


@pytest_twisted.ensureDeferred
async def test_sqlite_retry_survives_restart(tmp_path) -> None:
    """
    On a real SQLite file: a temporary failure is recorded durably, and
    after the server restarts (a new store object and a new queue on the
    same file) the message is delivered.
    """
    path = tmp_path / "fmtp.db"
    clock = Clock()
    clock.advance(T0)
    signer = DomainSigner(generate_private_key(), "poe.net")
    links = FakeLinks(clock)
    links.script = [LinkDown()]
    bounces: list[tuple[str, FMTPObject]] = []

    def make_queue(store: SQLiteStore) -> OutboundQueue:
        return OutboundQueue(
            store,
            links,
            clock,
            "poe.net",
            signer,
            lambda r, o: bounces.append((r, o)),
            random=lambda: 0.5,
        )

    obj = FMTPObject(
        new_object_id(EDGAR, T0), "message", {"From": EDGAR, "To": LOST}, b"Quoth"
    )
    store = SQLiteStore(path)
    await store.open()
    try:
        queue = make_queue(store)
        queue.startService()
        await store.enqueue(obj, [QueuedDelivery.new(obj.id, "lenore.org", [LOST], T0)])
        await queue.kick()
        await queue.stopService()
        [row] = await store.queued_for("lenore.org")
        assert (row.attempts, row.next_attempt) == (1, T0 + 1)
        assert row.last_error == "421 connection refused"
    finally:
        await store.close()

    clock.advance(60)
    store = SQLiteStore(path)
    await store.open()
    try:
        queue = make_queue(store)
        queue.startService()
        await queue.kick()
        await queue.stopService()
        assert await store.queued_for("lenore.org") == []
        assert await store.get_object(obj.id) == obj
    finally:
        await store.close()
    assert links.times() == [0.0, 60.0]
    assert bounces == []
