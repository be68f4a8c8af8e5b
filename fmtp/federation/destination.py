"""
One destination domain's transmission loop, as Synapse's
C{PerDestinationQueue}: the rows of the outbound queue taken for one
domain, sent in the order they were queued, pipelined on the domain's one
link with at most L{DestinationQueue.window} in flight.

The outbound queue (L{fmtp.federation.queue}) reads what is due from the
store and hands each row to its domain's L{DestinationQueue}; the loop
settles each row (L{fmtp.federation.settle.RowSettler}) as its reply comes,
and sends the next one at once, so the link is never idle while rows wait.
The first row after a failure goes alone (it opens the link, and if the
domain is still down it is the only one to wait for that).  When the
domain fails as a whole, the rows it holds are put off without being
tried, as a mail server does for a host it found dead, and so are those
handed to it within the first retry wait after: trying each would only
wait out the same failure again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fmtp.delivery import QueuedDelivery
from fmtp.federation.settle import DomainSuspended, RowKey

__all__ = ["DestinationQueue", "RowKey", "row_key"]


def row_key(row: QueuedDelivery) -> RowKey:
    """
    What identifies C{row} in the queue: its object and its domain.
    """
    return (row.object_id, row.domain)


class DestinationQueue:
    """
    The rows taken for one domain, and the loop that sends them.

    @ivar domain: the destination domain.
    @ivar window: most rows in flight at once (a receiving server runs at
        most 32 requests of one connection at once).
    @ivar in_flight: rows being tried or settled now.
    @ivar max_in_flight: the most that ever were at once, for tests and
        benchmarks.
    """

    _log = Logger()

    def __init__(
        self,
        domain: str,
        attempt: Callable[[QueuedDelivery], Awaitable[None]],
        put_off: Callable[[QueuedDelivery, DomainSuspended], Awaitable[None]],
        clock: IReactorTime,
        window: int,
        rest: float,
        settled: Callable[[DestinationQueue, QueuedDelivery, bool], object],
    ) -> None:
        """
        @param attempt: tries one row and settles it; raises
            L{DomainSuspended} (after settling it) when the domain failed
            as a whole.
        @param put_off: reschedules a row not tried because the domain
            just failed.
        @param rest: how long after the domain failed the rows handed to
            it are put off without a try (less than the first retry
            wait, so that the retry itself is tried).
        @param settled: C{settled(destination, row, ok)} once each row is
            done with, C{ok} false if it could not be settled (it stays
            queued in the store).
        """
        self.domain = domain
        self.window = window
        self._attempt = attempt
        self._put_off = put_off
        self._clock = clock
        self._rest = rest
        self._settled = settled
        self._pending: deque[QueuedDelivery] = deque()
        self._keys: set[RowKey] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        #: Only one row is sent until one gets through: the first opens
        #: the link.
        self._probing = True
        self._suspended: DomainSuspended | None = None
        self._suspended_at = 0.0
        self._stopping = False
        # _pump is not re-entered when a row settles at once (a store
        # whose Deferreds have fired): it loops instead, so that a long
        # queue cannot nest calls without end.
        self._pumping = False
        self._pump_again = False
        self._drained: list[Deferred[None]] = []

    def __repr__(self) -> str:
        return (
            f"<DestinationQueue {self.domain} pending={len(self._pending)} "
            f"in_flight={self.in_flight}>"
        )

    def __len__(self) -> int:
        """
        How many rows it holds, pending or in flight.
        """
        return len(self._keys)

    def __contains__(self, key: RowKey) -> bool:
        return key in self._keys

    @property
    def keys(self) -> frozenset[RowKey]:
        """
        The keys of the rows it holds, pending or in flight.
        """
        return frozenset(self._keys)

    @property
    def pending(self) -> int:
        """
        How many rows wait for a place in the window.
        """
        return len(self._pending)

    @property
    def idle(self) -> bool:
        """
        Whether it holds no row.
        """
        return not self._keys

    @property
    def resting(self) -> bool:
        """
        Whether its domain just failed, so that the rows handed to it are
        put off without a try.
        """
        return self._suspension() is not None

    def add(self, row: QueuedDelivery) -> None:
        """
        Take C{row} (unless it is already held) and send it as soon as the
        window has room, after those taken before.
        """
        key = row_key(row)
        if key in self._keys or self._stopping:
            return
        self._keys.add(key)
        self._pending.append(row)
        self._pump()

    def resume(self) -> None:
        """
        The domain is back (its server connected to us): stop putting off
        its rows.
        """
        self._suspended = None
        self._pump()

    def stop(self) -> Deferred[None]:
        """
        Send nothing more; drop the rows not yet sent (they stay due in the
        store for the next start), and wait for those in flight to be
        settled.
        """
        self._stopping = True
        for row in self._pending:
            self._keys.discard(row_key(row))
        self._pending.clear()
        if not self.in_flight:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._drained.append(waiter)
        return waiter

    def _suspension(self) -> DomainSuspended | None:
        if self._suspended is None:
            return None
        if self._clock.seconds() - self._suspended_at >= self._rest:
            self._suspended = None
            self._probing = True
        return self._suspended

    def _pump(self) -> None:
        """
        Start rows while the window has room: put off while the domain
        rests after a failure, one at a time while probing.
        """
        if self._pumping:
            self._pump_again = True
            return
        self._pumping = True
        try:
            self._pump_again = True
            while self._pump_again:
                self._pump_again = False
                self._start_rows()
        finally:
            self._pumping = False

    def _start_rows(self) -> None:
        while self._pending and not self._stopping:
            suspended = self._suspension()
            limit = 1 if self._probing and suspended is None else self.window
            if self.in_flight >= limit:
                return
            row = self._pending.popleft()
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if suspended is not None:
                work = self._put_off(row, suspended)
            else:
                work = self._attempt(row)
            Deferred.fromCoroutine(self._run(row, work))

    async def _run(self, row: QueuedDelivery, work: Awaitable[None]) -> None:
        ok = True
        try:
            await work
        except DomainSuspended as e:
            if self._suspended is None:
                self._suspended = e
                self._suspended_at = self._clock.seconds()
            self._probing = True
        except Exception:
            ok = False
            self._log.failure(
                "Could not settle the delivery of {id} to {domain}",
                id=row.object_id,
                domain=row.domain,
            )
        else:
            if self._suspended is None:
                self._probing = False
        self.in_flight -= 1
        self._keys.discard(row_key(row))
        self._pump()
        try:
            self._settled(self, row, ok)
        finally:
            if not self.in_flight and self._drained:
                waiters, self._drained = self._drained, []
                for waiter in waiters:
                    waiter.callback(None)
