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

Work is split as in Synapse's federation sender.  I{Passes} read the
rows that are due from the store, a batch at a time, and hand each to its
domain's transmission loop (L{fmtp.federation.destination}), which sends
them in order, pipelined on the domain's one link; then a pass reads when
the next row falls due, and the queue sleeps until then on one timer.  Only
one pass runs at a time and a row is held by one loop until it is settled,
so no row is ever tried twice at once; a L{kick} while a pass runs asks for
one more pass after it, and a loop running low on rows asks for one too
while rows are left due.

When a peer's server connects to us and proves its domain
(L{peer_connected}), the domain's rows are made due and sent at once,
whatever their back-off: it is back.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from fmtp.delivery import QueuedDelivery
from fmtp.federation.bounce import Bouncer, DeliverLocal
from fmtp.federation.destination import DestinationQueue, RowKey, row_key
from fmtp.federation.settle import (
    DEFAULT_RETRY_WINDOW,
    DEFAULT_SCHEDULE,
    JITTER,
    Deliver,
    QueueStats,
    RowSettler,
)
from fmtp.interfaces import IDeliveryStore, IDomainSigner
from fmtp.objects import normalize_domain

#: Seconds a pass that could not read or settle rows (the store or the
#: inbox failed) waits before the next, instead of trying the same rows
#: again at once, in a loop: a store in trouble is not a peer restarting.
TROUBLE_PAUSE = 60.0


class OutboundQueue(Service):
    """
    The outbound queue's worker.

    @ivar stats: a L{QueueStats}.
    @ivar domain: this server's domain; bounces come from its postmaster
        and go to its users only.
    @ivar window: most deliveries in flight at once on one domain's link.
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
        window: int = 32,
        batch: int = 100,
        max_held: int = 1000,
        random: Callable[[], float] = _random.random,
        trouble_pause: float = TROUBLE_PAUSE,
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
        @param window: most deliveries at once to one domain, pipelined on
            its link (a receiving server runs at most 32 requests of one
            connection at once; more would only wait in its socket).
        @param batch: how many due rows a pass reads beyond those held.
        @param max_held: most rows held by the transmission loops at once;
            the others stay due in the store until the loops run low.
        @param random: returns a float in [0, 1), for the jitter; tests
            pass a fixed one.
        @param trouble_pause: how long to wait after the store failed.
        """
        if not retry_schedule or any(wait <= 0 for wait in retry_schedule):
            raise ValueError("retry_schedule must be positive waits, at least one")
        if retry_window < 0:
            raise ValueError("retry_window must not be negative")
        if min(batch, window, max_held) < 1:
            raise ValueError("batch, window and max_held must be at least 1")
        self.domain = normalize_domain(domain)
        self.stats = QueueStats()
        self._store = store
        self._clock = clock
        self._batch = batch
        self._max_held = max_held
        self._pause = float(trouble_pause)
        #: A domain that failed as a whole has the rows handed to it put
        #: off for this long: half the shortest wait after that failure,
        #: so that its retry is tried.
        self._rest = float(retry_schedule[0]) * (1 - JITTER) / 2
        #: While the loops hold rows, the queue looks at the store this
        #: often: the shortest wait a failed row is given.
        self._poll = float(min(retry_schedule)) * (1 - JITTER)
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
        self.window = window
        #: The transmission loops, by domain: those holding rows, and
        #: those whose domain just failed.
        self._destinations: dict[str, DestinationQueue] = {}
        self._held = 0
        self._timer: IDelayedCall | None = None
        self._passing = False
        # Whoever kicked since the current pass began: they wait for the
        # next pass, which starts as soon as the current one ends.
        self._kicks: list[Deferred[None]] = []
        self._stop_waiters: list[Deferred[None]] = []
        # Set when the store could not be read: the next pass then waits
        # a while instead of trying again at once, in a loop.
        self._trouble = False
        # Rows that could not be settled (the store or the inbox failed):
        # they stay due in the store, and rest until then instead of being
        # tried again at once, in a loop.
        self._resting: set[RowKey] = set()
        self._resting_until = 0.0
        # Rows settled while a pass read the store: the read may have
        # seen them before they were settled.
        self._settled_during_read: set[RowKey] | None = None
        # The last pass left due rows it did not take (the loops held too
        # many): a loop running low asks for another pass.
        self._due_left = False

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<OutboundQueue {self.domain} {state}>"

    def destination(self, domain: str) -> DestinationQueue | None:
        """
        The transmission loop of C{domain}, if it holds rows (or its
        domain just failed): for status pages and tests.
        """
        return self._destinations.get(domain)

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
        waits = [d.stop() for d in list(self._destinations.values())]
        if self._passing:
            waiter: Deferred[None] = Deferred()
            self._stop_waiters.append(waiter)
            waits.append(waiter)
        if not waits:
            return succeed(None)
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)

    # Scheduling

    def kick(self) -> Deferred[None]:
        """
        Deliver what is due now, instead of waiting for the timer: the
        sending code calls this after it queued something.

        If a pass is running, one more pass runs after it (however many
        kicks came meanwhile), since the pass may have read the queue
        before the new rows were in it.

        @return: a L{Deferred} that fires (with L{None}, never failing)
            once a pass that began after this call has ended: the rows due
            then have been handed to their domains' loops, which may still
            be sending them.  Callers may ignore it.
        """
        if not self.running:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._kicks.append(waiter)
        if not self._passing:
            self._start_pass()
        return waiter

    def peer_connected(self, domain: str) -> Deferred[None]:
        """
        C{domain}'s server connected to us and proved its domain: it is
        back, so what waits for it is made due and sent at once, whatever
        its back-off (as Synapse does when a server it backed off from
        sends it a request).  The count of attempts is kept.

        @return: a L{Deferred} that fires (never failing) once the rows
            are due and a pass has handed them to the domain's loop.
        """
        return Deferred.fromCoroutine(self._peer_connected(normalize_domain(domain)))

    async def _peer_connected(self, domain: str) -> None:
        if not self.running:
            return
        destination = self._destinations.get(domain)
        if destination is not None:
            destination.resume()
        try:
            brought = await self._store.make_due(self._clock.seconds(), domain)
        except Exception:
            self._log.failure("Could not make the rows for {domain} due", domain=domain)
            return
        if brought:
            self._log.info(
                "{domain} connected: sending the {count} deliveries waiting for it",
                domain=domain,
                count=brought,
            )
            await self.kick()

    def _start_pass(self) -> None:
        self._cancel_timer()
        self._passing = True
        waiters, self._kicks = self._kicks, []
        Deferred.fromCoroutine(self._run_pass()).addBoth(self._pass_done, waiters)

    def _pass_done(
        self,
        outcome: tuple[float | None, bool] | Failure,
        waiters: list[Deferred[None]],
    ) -> None:
        self._passing = False
        if isinstance(outcome, Failure):
            # _run_pass catches everything; this is a bug, but the queue
            # must not stop over it: try again after a pause.
            self._log.failure("Outbound queue pass failed", outcome)
            self._trouble = True
            outcome = (self._clock.seconds(), False)
        next_due, more = outcome
        if self.running:
            if self._kicks or (more and not self._trouble):
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
        Sleep until C{next_due}: the one timer of the queue.  A row due
        now that a loop holds needs no timer (the loop settles it), nor do
        those the loops had no room for (they ask for a pass as they run
        low); but while rows are held, C{next_due} is theirs and says
        nothing of the rows of other domains falling due meanwhile (a
        retry after a failure), so the queue looks again after the
        shortest wait, rather than waiting for a reply that may be long in
        coming.  Resting rows wait for the end of their rest, and after
        the store failed the queue sleeps at least the pause.
        """
        self._cancel_timer()
        if next_due is None:
            return
        now = self._clock.seconds()
        delay = max(0.0, next_due - now)
        if self._trouble:
            delay = max(delay, self._pause)
        elif delay == 0.0:
            self._due_left = True
            if self._resting:
                delay = max(0.0, self._resting_until - now)
            elif self._held:
                delay = self._poll
        self._timer = self._clock.callLater(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self.kick()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    async def _run_pass(self) -> tuple[float | None, bool]:
        """
        Read the rows due, past those the loops hold, and hand each to
        its domain's loop; then say when the next row is due.

        @return: when the next row is due (L{None} if the queue is empty),
            and whether more rows may be due that this pass did not read.
        """
        self._trouble = False
        self._due_left = False
        self._prune()
        now = self._clock.seconds()
        if now >= self._resting_until:
            self._resting.clear()
        more = False
        try:
            room = self._max_held - self._held
            if room > 0:
                # The rows held and resting are skipped by the store, not
                # read again on every pass.
                skip = frozenset(self._resting).union(
                    *(d.keys for d in self._destinations.values())
                )
                limit = self._batch
                self._settled_during_read = set()
                try:
                    rows = await self._store.due_deliveries(now, limit, skip)
                    settled = self._settled_during_read
                finally:
                    self._settled_during_read = None
                taken = self._take(rows, settled, room)
                more = taken > 0 and len(rows) >= limit
            if not self.running:
                return None, False
            return await self._store.next_due_time(), more
        except Exception:
            self._log.failure("Outbound queue could not read the store")
            self._trouble = True
            return now, False

    def _take(self, rows: list[QueuedDelivery], settled: set[RowKey], room: int) -> int:
        """
        Hand each row not held, resting or just settled to its domain's
        loop, at most C{room} of them, in the order read.

        @return: how many were handed.
        """
        taken = 0
        for row in rows:
            if not self.running or taken >= room:
                break
            key = row_key(row)
            if key in settled or key in self._resting:
                continue
            destination = self._destinations.get(row.domain)
            if destination is None:
                destination = DestinationQueue(
                    row.domain,
                    self._settler.attempt,
                    self._settler.put_off,
                    self._clock,
                    self.window,
                    self._rest,
                    self._row_settled,
                )
                self._destinations[row.domain] = destination
            elif key in destination:
                continue
            self._held += 1
            taken += 1
            destination.add(row)
        return taken

    def _row_settled(
        self, destination: DestinationQueue, row: QueuedDelivery, ok: bool
    ) -> None:
        """
        A loop is done with C{row}: count it out, and ask for a pass if
        rows are left due that the loops may now take.
        """
        self._held -= 1
        key = row_key(row)
        if self._settled_during_read is not None:
            self._settled_during_read.add(key)
        if not self.running:
            return
        if not ok:
            # It stays queued in the store, due: let it rest for the
            # pause, rather than trying it again at once.
            if not self._resting:
                self._resting_until = self._clock.seconds() + self._pause
            self._resting.add(key)
            if not self._passing and self._timer is None:
                self._set_timer(self._clock.seconds())
        if self._due_left and destination.pending < destination.window:
            self._due_left = False
            self.kick()

    def _prune(self) -> None:
        """
        Forget the loops that hold nothing (those of a domain that just
        failed are kept while it rests).
        """
        for domain, destination in list(self._destinations.items()):
            if destination.idle and not destination.resting:
                del self._destinations[domain]
