"""
The outbound queue's worker: delivers what the sending code queued, retries
with backoff, and bounces to the sender what cannot be delivered.

The sending code stores a message and its queue rows in one durable step
(L{IDeliveryStore.enqueue}) before the sender hears 2xx (design decision
6); from then on the rows in the store are the only record that the message
still has to go somewhere.  This service reads them, hands each to the link
pool, and settles every row in exactly one of three ways: delivered (the
row is removed), put off (the row is rescheduled by a mail-server-like
schedule) or given up (a bounce is filed for the sender, then the row is
removed).  Because nothing but the store holds that state, a restarted
server picks up where the last one stopped.

Work is done in I{passes}, as in Synapse's federation sender: a pass reads
the rows that are due, in batches, and delivers them, one domain after
another on each domain's link but several domains at once; then it reads
when the next row falls due and sleeps until then on one timer.  Only one
pass runs at a time, so no row is ever tried twice at once; a L{kick} while
a pass runs asks for one more pass after it.
"""

from __future__ import annotations

import hashlib
import random as _random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from fmtp.delivery import QueuedDelivery, RecipientResult, sender_of
from fmtp.errors import FMTPError, InvalidObjectId
from fmtp.interfaces import IDeliveryStore, IDomainSigner
from fmtp.objects import (
    FMTPObject,
    domain_of,
    normalize_address,
    normalize_domain,
)

#: How long to wait after each failed attempt, in seconds: after the first
#: failure 1 minute, then 5 and 15 minutes, 30 minutes, 1 and 2 hours, and
#: from then on the last entry, every 4 hours, as mail servers do.  Early
#: retries catch a peer that was restarting; later ones spare a peer that
#: is down for long.
DEFAULT_SCHEDULE: tuple[float, ...] = (
    60.0,
    5 * 60.0,
    15 * 60.0,
    30 * 60.0,
    3600.0,
    2 * 3600.0,
    4 * 3600.0,
)

#: How long after it was queued a delivery is given up, in seconds: five
#: days, as for mail.  The receiving side accepts signatures a little older
#: than this (L{fmtp.federation.inbound.MAX_SIGNATURE_AGE}).
DEFAULT_RETRY_WINDOW = 5 * 86400.0

#: Each wait is stretched or shrunk by up to this fraction, at random, so
#: that the rows of a server that was down do not all come due in the same
#: second when it restarts.
JITTER = 0.1

#: The local part of the address bounces come from.  A message from any
#: postmaster is never bounced, so two servers can never bounce a bounce
#: back and forth.
POSTMASTER = "postmaster"

#: The type of a bounce: an ordinary message in the sender's inbox.
BOUNCE_TYPE = "message"

#: The longest reason a bounce quotes for one recipient: the reason comes
#: from the peer, which should not be able to fill the sender's inbox.
MAX_REASON = 300

#: Delivers one queue row over a link (the link pool): a L{Deferred} or a
#: coroutine of one result per recipient.
Deliver = Callable[[QueuedDelivery, FMTPObject], Awaitable[list[RecipientResult]]]
#: Files a bounce in a local user's inbox and pushes it to the user.
DeliverLocal = Callable[[str, FMTPObject], Awaitable[object]]


def retry_delay(failures: int, schedule: Sequence[float] = DEFAULT_SCHEDULE) -> float:
    """
    How long to wait after the C{failures}-th failed attempt (1 for the
    first) before the next one, without jitter: the schedule's entry for
    that failure, or its last entry once the schedule is used up.
    """
    return schedule[min(max(failures, 1), len(schedule)) - 1]


def is_success(code: int) -> bool:
    return 200 <= code < 300


def is_permanent(code: int) -> bool:
    """
    Whether a reply code says "do not retry".  Everything else that is not
    a success (4xx, and codes a peer should not have used) is retried: a
    retry costs little, a wrong bounce loses a message.
    """
    return 500 <= code < 600


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


@dataclass(slots=True)
class QueueStats:
    """
    What the queue has done since it was made, counted in recipients (a
    message to three addresses at one domain counts three), for the
    benchmarks and the admin.

    @ivar delivered: recipients a peer accepted (2xx).
    @ivar retried: recipients put off for a later attempt, once per
        failed attempt.
    @ivar bounced: recipients given up on (5xx, or the retry window ran
        out), whether or not a bounce could be filed for them.
    """

    delivered: int = 0
    retried: int = 0
    bounced: int = 0


class _Suspended(Exception):
    """
    The domain failed as a whole: its other rows in this pass are put off
    without being tried.
    """

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


class OutboundQueue(Service):
    """
    The outbound queue's worker.

    @ivar stats: a L{QueueStats}.
    @ivar domain: this server's domain; bounces come from its postmaster
        and go to its users only.
    """

    _log = Logger()

    def __init__(
        self,
        store: IDeliveryStore,
        deliver: Deliver,
        clock: IReactorTime,
        domain: str,
        signer: IDomainSigner,
        deliver_local: DeliverLocal,
        retry_schedule: Sequence[float] = DEFAULT_SCHEDULE,
        retry_window: float = DEFAULT_RETRY_WINDOW,
        max_concurrent_domains: int = 8,
        window: int = 16,
        batch: int = 100,
        random: Callable[[], float] = _random.random,
    ) -> None:
        """
        @param store: where the queue rows and their objects are.
        @param deliver: C{deliver(delivery, obj)} sends C{obj} to the
            recipients of C{delivery} over a link and returns (a L{Deferred}
            of, or an awaitable of) one L{RecipientResult} per recipient;
            it fails with an L{FMTPError} whose C{code} says whether the
            whole message failed for now (4xx: the link, DNS, a peer's 4xx)
            or for good (5xx).  Any other exception is a bug somewhere
            below, taken as temporary and logged with its traceback.
        @param clock: the time source and timer.
        @param domain: this server's domain.
        @param signer: signs bounces as this domain.
        @param deliver_local: C{deliver_local(recipient, bounce)} files a
            bounce in a local user's inbox and pushes it to the user's
            sessions.
        @param retry_schedule: the waits after each failure, in seconds;
            the last one repeats.
        @param retry_window: how long after a delivery was queued it is
            given up: when the next attempt would fall after this, the
            recipients still waiting are bounced instead.
        @param max_concurrent_domains: how many domains are delivered to
            at once.
        @param batch: how many due rows are read at a time.
        @param random: returns a float in [0, 1), for the jitter; tests
            pass a fixed one.
        @param window: most deliveries at once to one domain, pipelined on
            its link (the peer files each message on its own, so their
            order on the wire does not matter).
        """
        if not retry_schedule or any(wait <= 0 for wait in retry_schedule):
            raise ValueError("retry_schedule must be positive waits, at least one")
        if retry_window < 0:
            raise ValueError("retry_window must not be negative")
        if min(max_concurrent_domains, batch, window) < 1:
            raise ValueError(
                "max_concurrent_domains, batch and window must be at least 1"
            )
        self.domain = normalize_domain(domain)
        self.stats = QueueStats()
        self._store = store
        self._deliver = deliver
        self._clock = clock
        self._signer = signer
        self._deliver_local = deliver_local
        self._schedule = tuple(float(wait) for wait in retry_schedule)
        self._retry_window = float(retry_window)
        self._batch = batch
        self._random = random
        # Shared by every pass; only one pass runs at a time anyway.
        self._slots = DeferredSemaphore(max_concurrent_domains)
        #: Most deliveries in flight at once on one domain's link.
        self.window = window
        self._timer: IDelayedCall | None = None
        self._passing = False
        # Whoever kicked since the current pass began: they wait for the
        # next pass, which starts as soon as the current one ends.
        self._kicks: list[Deferred[None]] = []
        self._stop_waiters: list[Deferred[None]] = []
        # Set when a pass could not settle a row because the store (or the
        # inbox, for a bounce) failed: the next pass then waits a while
        # instead of retrying the same rows at once, in a loop.
        self._trouble = False

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<OutboundQueue {self.domain} {state}>"

    # Service

    def startService(self) -> None:
        """
        Deliver whatever is due (what a previous run left, or what came
        due while the server was down), then sleep until the next row is
        due.
        """
        super().startService()
        self.kick()

    def stopService(self) -> Deferred[None]:
        """
        Stop: cancel the timer, start no new delivery, and wait for those
        in flight, so that each is settled in the store (finished or
        rescheduled) before the store is closed.  Rows not tried stay due
        in the store for the next start.

        @return: a L{Deferred} that fires when nothing is in flight.
        """
        super().stopService()
        self._cancel_timer()
        if not self._passing:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._stop_waiters.append(waiter)
        return waiter

    # Scheduling

    def kick(self) -> Deferred[None]:
        """
        Deliver what is due now, instead of waiting for the timer: the
        sending code calls this after it queued something.

        If a pass is running, one more pass runs after it (however many
        kicks came meanwhile), since the pass may have read the queue
        before the new rows were in it.

        @return: a L{Deferred} that fires (with L{None}, never failing)
            once a pass that began after this call has ended; callers may
            ignore it.
        """
        if not self.running:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._kicks.append(waiter)
        if not self._passing:
            self._start_pass()
        return waiter

    def _start_pass(self) -> None:
        self._cancel_timer()
        self._passing = True
        waiters, self._kicks = self._kicks, []
        Deferred.fromCoroutine(self._run_pass()).addBoth(self._pass_done, waiters)

    def _pass_done(
        self, next_due: float | None | Failure, waiters: list[Deferred[None]]
    ) -> None:
        self._passing = False
        if isinstance(next_due, Failure):
            # _run_pass catches everything; this is a bug, but the queue
            # must not stop over it: try again after the first wait.
            self._log.failure("Outbound queue pass failed", next_due)
            self._trouble = True
            next_due = self._clock.seconds()
        if self.running:
            if self._kicks:
                self._start_pass()
            else:
                self._set_timer(next_due)
        else:
            waiters += self._kicks
            self._kicks = []
        # Last, so that a waiter that kicks finds the state settled.
        stop_waiters, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters + stop_waiters:
            waiter.callback(None)

    def _set_timer(self, next_due: float | None) -> None:
        """
        Sleep until C{next_due}: the one timer of the queue.  After a pass
        that met trouble, sleep at least the first retry wait.
        """
        self._cancel_timer()
        if next_due is None:
            return
        delay = max(0.0, next_due - self._clock.seconds())
        if self._trouble:
            delay = max(delay, self._schedule[0])
        self._timer = self._clock.callLater(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self.kick()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    async def _run_pass(self) -> float | None:
        """
        Deliver the rows due when the pass begins, a batch at a time, and
        say when the next row is due.

        Rows that come due during the pass wait for the timer or a kick,
        so a pass always ends.  A row seen before in this pass (one that
        could not be settled) is not tried again in it.

        @return: when the next row is due, or L{None} if the queue is
            empty.
        """
        self._trouble = False
        now = self._clock.seconds()
        seen: set[tuple[str, str]] = set()
        try:
            while self.running:
                rows = await self._store.due_deliveries(now, self._batch)
                fresh = [r for r in rows if (r.object_id, r.domain) not in seen]
                if not fresh:
                    break
                seen.update((r.object_id, r.domain) for r in fresh)
                await self._deliver_batch(fresh)
                if len(rows) < self._batch:
                    break
            if not self.running:
                return None
            return await self._store.next_due_time()
        except Exception:
            self._log.failure("Outbound queue could not read the store")
            self._trouble = True
            return now

    async def _deliver_batch(self, rows: list[QueuedDelivery]) -> None:
        """
        Deliver C{rows}: the rows of each domain one after another, on the
        one link to it, and up to C{max_concurrent_domains} domains at
        once, so that no domain gets a storm of connections and one slow
        domain does not hold up the others' rows in this pass.

        The pass waits for every domain, so a slow domain does delay the
        next pass (and what was kicked meanwhile); putting off a failed
        domain's other rows (L{_deliver_domain}) keeps a dead domain from
        making that wait longer than one failed attempt.
        """
        by_domain: dict[str, list[QueuedDelivery]] = {}
        for row in rows:
            by_domain.setdefault(row.domain, []).append(row)
        await DeferredList(
            [
                self._slots.run(self._deliver_domain, domain, domain_rows)
                for domain, domain_rows in by_domain.items()
            ],
            consumeErrors=True,
        )

    async def _deliver_domain(self, domain: str, rows: list[QueuedDelivery]) -> None:
        """
        Deliver one domain's rows: the first alone (it opens the link, and
        if the domain is down it is the only one to wait for that), then up
        to L{window} at once, pipelined on the one link.  Once the domain
        fails as a whole (its link, its DNS, a 4xx for a message), the rest
        are put off without being tried, as a mail server does for a host
        it found dead: trying each would only wait out the same failure
        again, while holding up the pass.
        """
        suspended: _Suspended | None = None
        size, start = 1, 0
        while start < len(rows) and self.running:
            chunk, start = rows[start : start + size], start + size
            size = self.window
            if suspended is not None:
                for row in chunk:
                    await self._guarded(domain, row, self._put_off(row, suspended))
                continue
            outcomes = await gatherResults(
                [
                    Deferred.fromCoroutine(
                        self._guarded(domain, row, self._attempt(row))
                    )
                    for row in chunk
                ]
            )
            suspended = next((o for o in outcomes if o is not None), None)

    async def _guarded(
        self, domain: str, row: QueuedDelivery, work: Awaitable[None]
    ) -> _Suspended | None:
        """
        Run one row's C{work}; a failure to settle it is logged and leaves
        the row queued, never stopping the domain's other rows.

        @return: the L{_Suspended} the work raised, if it did.
        """
        try:
            await work
        except _Suspended as e:
            return e
        except Exception:
            self._trouble = True
            self._log.failure(
                "Could not settle the delivery of {id} to {domain}",
                id=row.object_id,
                domain=domain,
            )
        return None

    # One delivery

    async def _attempt(self, row: QueuedDelivery) -> None:
        """
        Try one row and settle it.

        @raise _Suspended: after settling it, if the whole message failed
            for now, so that the domain's other rows are put off.
        """
        obj = await self._store.get_object(row.object_id)
        if obj is None:
            # Deleting an object cancels its deliveries; this row was read
            # just before.
            self._log.info(
                "Not delivering {id} to {domain}: the object was deleted",
                id=row.object_id,
                domain=row.domain,
            )
            await self._store.finish_delivery(row.object_id, row.domain)
            return
        attempt = row.attempts + 1
        try:
            results = await maybeDeferred(self._deliver, row, obj)
        except Exception as e:
            if isinstance(e, FMTPError):
                code, text = e.code, e.message
            else:
                code, text = 451, f"{type(e).__name__}: {e}"
                self._log.failure(
                    "Delivery of {id} to {domain} raised an unexpected error "
                    "(attempt {attempt}); will retry",
                    id=row.object_id,
                    domain=row.domain,
                    attempt=attempt,
                    level=LogLevel.error,
                )
            await self._whole_message_failed(row, obj, attempt, code, text)
            return
        await self._settle(row, obj, attempt, results)

    async def _whole_message_failed(
        self, row: QueuedDelivery, obj: FMTPObject, attempt: int, code: int, text: str
    ) -> None:
        self._log.warn(
            "Delivery of {id} to {domain} failed (attempt {attempt}): {error}",
            id=row.object_id,
            domain=row.domain,
            attempt=attempt,
            error=f"{code} {clean_reason(text)}",
        )
        failures = [RecipientResult(r, code, text) for r in row.recipients]
        if is_permanent(code):
            await self._bounce(row, obj, failures, attempt)
            await self._store.finish_delivery(row.object_id, row.domain)
            return
        await self._retry_whole(row, obj, failures, attempt)
        raise _Suspended(code, text)

    async def _put_off(self, row: QueuedDelivery, why: _Suspended) -> None:
        """
        Reschedule a row not tried because its domain just failed as a
        whole.  It counts as an attempt, the one it would have failed.
        """
        obj = await self._store.get_object(row.object_id)
        if obj is None:
            await self._store.finish_delivery(row.object_id, row.domain)
            return
        text = f"not tried, {row.domain} just failed: {why.text}"
        self._log.info(
            "Putting off {id} to {domain}: {error}",
            id=row.object_id,
            domain=row.domain,
            error=text,
        )
        failures = [RecipientResult(r, why.code, text) for r in row.recipients]
        await self._retry_whole(row, obj, failures, row.attempts + 1)

    async def _retry_whole(
        self,
        row: QueuedDelivery,
        obj: FMTPObject,
        failures: list[RecipientResult],
        attempt: int,
    ) -> None:
        """
        Reschedule a row whose recipients all failed for now, or bounce
        them all if the retry window has run out.
        """
        when = self._next_attempt_time(row, attempt)
        if when is None:
            self._give_up_log(row, attempt, failures)
            await self._bounce(row, obj, failures, attempt)
            await self._store.finish_delivery(row.object_id, row.domain)
            return
        await self._store.reschedule(
            row.object_id, row.domain, when, summarize(failures)
        )
        self.stats.retried += len(failures)

    async def _settle(
        self,
        row: QueuedDelivery,
        obj: FMTPObject,
        attempt: int,
        results: Sequence[RecipientResult],
    ) -> None:
        """
        Settle a row the peer answered recipient by recipient: the 2xx are
        done, the 5xx are bounced, the rest are retried, alone.
        """
        by_address: dict[str, RecipientResult] = {}
        for result in results or ():
            try:
                address = normalize_address(result.address)
            except FMTPError:
                continue
            by_address.setdefault(address, result)
        permanent: list[RecipientResult] = []
        temporary: list[RecipientResult] = []
        for recipient in row.recipients:
            # A recipient the peer did not answer for is retried: a retry
            # is harmless (the peer de-duplicates ids), a bounce is not.
            result = by_address.get(
                recipient, RecipientResult(recipient, 451, "no reply for recipient")
            )
            result = RecipientResult(recipient, result.code, result.text)
            if is_success(result.code):
                self.stats.delivered += 1
                self._log.info(
                    "Delivered {id} to {address} (attempt {attempt}): {code} {text}",
                    id=row.object_id,
                    address=result.address,
                    attempt=attempt,
                    code=result.code,
                    text=result.text,
                )
                continue
            self._log.warn(
                "Delivery of {id} to {address} failed (attempt {attempt}): {error}",
                id=row.object_id,
                domain=row.domain,
                address=recipient,
                attempt=attempt,
                error=f"{result.code} {clean_reason(result.text)}",
            )
            (permanent if is_permanent(result.code) else temporary).append(result)

        when = self._next_attempt_time(row, attempt) if temporary else None
        if temporary and when is None:
            self._give_up_log(row, attempt, temporary)
            permanent += temporary
            temporary = []
        if permanent:
            # Filed before the row goes, so that a crash in between files
            # it again (under the same id, so once) rather than never.
            await self._bounce(row, obj, permanent, attempt)
        if not temporary:
            await self._store.finish_delivery(row.object_id, row.domain)
            return
        assert when is not None
        error = summarize(temporary)
        self.stats.retried += len(temporary)
        remaining = None
        if len(temporary) < len(row.recipients):
            remaining = [r.address for r in temporary]
        await self._store.reschedule(
            row.object_id, row.domain, when, error, recipients=remaining
        )

    def _next_attempt_time(self, row: QueuedDelivery, attempt: int) -> float | None:
        """
        When to try C{row} again after its C{attempt}-th attempt failed,
        with jitter; or L{None} if that would fall after its retry window,
        when it is time to give up.
        """
        wait = retry_delay(attempt, self._schedule)
        wait *= 1 + JITTER * (2 * self._random() - 1)
        when = self._clock.seconds() + wait
        if when > row.created + self._retry_window:
            return None
        return when

    def _give_up_log(
        self, row: QueuedDelivery, attempt: int, failures: Sequence[RecipientResult]
    ) -> None:
        self._log.warn(
            "Giving up on {id} to {domain} after {attempt} attempts: {error}",
            id=row.object_id,
            domain=row.domain,
            attempt=attempt,
            error=summarize(failures),
        )

    # Bounces

    async def _bounce(
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
        self.stats.bounced += len(failures)
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
