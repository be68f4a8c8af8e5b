"""
The outbound queue's worker: delivers what the sending code queued, retries
with backoff, and bounces to the sender what cannot be delivered.

The sending code stores a message and its queue rows in one durable step
(L{IDeliveryStore.enqueue}) before the sender hears 2xx (design decision
6); from then on the rows in the store are the only record that the message
still has to go somewhere.  This service reads them, hands each to the link
pool, and settles every row (L{fmtp.federation.settle}) in exactly one of
three ways: delivered (the row is removed), put off (the row is
rescheduled by a mail-server-like schedule) or given up (a bounce is filed
for the sender, L{fmtp.federation.bounce}, then the row is removed).
Because nothing but the store holds that state, a restarted server picks
up where the last one stopped.

Work is done in I{passes}, as in Synapse's federation sender: a pass reads
the rows that are due, in batches, and delivers them, one domain after
another on each domain's link but several domains at once; then it reads
when the next row falls due and sleeps until then on one timer.  Only one
pass runs at a time, so no row is ever tried twice at once; a L{kick} while
a pass runs asks for one more pass after it.
"""

from __future__ import annotations

import random as _random
from collections.abc import Awaitable, Callable, Sequence

from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
    gatherResults,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from fmtp.delivery import QueuedDelivery
from fmtp.federation.bounce import Bouncer, DeliverLocal
from fmtp.federation.settle import (
    DEFAULT_RETRY_WINDOW,
    DEFAULT_SCHEDULE,
    Deliver,
    DomainSuspended,
    QueueStats,
    RowSettler,
)
from fmtp.interfaces import IDeliveryStore, IDomainSigner
from fmtp.objects import normalize_domain


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
        self._clock = clock
        self._batch = batch
        #: The first wait of the schedule: how long a pass that hit
        #: trouble waits before the next.
        self._pause = float(retry_schedule[0])
        self._settler = RowSettler(
            store,
            deliver,
            clock,
            Bouncer(self.domain, signer, clock, deliver_local),
            retry_schedule,
            retry_window,
            random,
            self.stats,
        )
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
            delay = max(delay, self._pause)
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
        suspended: DomainSuspended | None = None
        size, start = 1, 0
        while start < len(rows) and self.running:
            chunk, start = rows[start : start + size], start + size
            size = self.window
            if suspended is not None:
                for row in chunk:
                    await self._guarded(
                        domain, row, self._settler.put_off(row, suspended)
                    )
                continue
            outcomes = await gatherResults(
                [
                    Deferred.fromCoroutine(
                        self._guarded(domain, row, self._settler.attempt(row))
                    )
                    for row in chunk
                ]
            )
            suspended = next((o for o in outcomes if o is not None), None)

    async def _guarded(
        self, domain: str, row: QueuedDelivery, work: Awaitable[None]
    ) -> DomainSuspended | None:
        """
        Run one row's C{work}; a failure to settle it is logged and leaves
        the row queued, never stopping the domain's other rows.

        @return: the L{DomainSuspended} the work raised, if it did.
        """
        try:
            await work
        except DomainSuspended as e:
            return e
        except Exception:
            self._trouble = True
            self._log.failure(
                "Could not settle the delivery of {id} to {domain}",
                id=row.object_id,
                domain=domain,
            )
        return None
