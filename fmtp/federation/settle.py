"""
Settling one row of the outbound queue: an attempt, and what its outcome
does to the row.

Every row is settled in exactly one of three ways: delivered (the row is
removed), put off (the row is rescheduled by a mail-server-like schedule)
or given up (a bounce is filed for the sender, then the row is removed).
A peer answers recipient by recipient, so one row can end in all three at
once: the delivered recipients are done, the refused ones bounced, the
others rescheduled alone.  When the whole message fails for now (the link,
DNS, a peer's 4xx), the domain is taken for down and its other rows in the
pass are put off without being tried (L{DomainSuspended}).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from fmtp.delivery import QueuedDelivery, RecipientResult
from fmtp.errors import FMTPError
from fmtp.federation.bounce import Bouncer, clean_reason, is_success, summarize
from fmtp.interfaces import IDeliveryStore
from fmtp.objects import FMTPObject, normalize_address

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

#: Delivers one queue row over a link (the link pool): a L{Deferred} or a
#: coroutine of one result per recipient.
Deliver = Callable[[QueuedDelivery, FMTPObject], Awaitable[list[RecipientResult]]]


def retry_delay(failures: int, schedule: Sequence[float] = DEFAULT_SCHEDULE) -> float:
    """
    How long to wait after the C{failures}-th failed attempt (1 for the
    first) before the next one, without jitter: the schedule's entry for
    that failure, or its last entry once the schedule is used up.
    """
    return schedule[min(max(failures, 1), len(schedule)) - 1]


def is_permanent(code: int) -> bool:
    """
    Whether a reply code says "do not retry".  Everything else that is not
    a success (4xx, and codes a peer should not have used) is retried: a
    retry costs little, a wrong bounce loses a message.
    """
    return 500 <= code < 600


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


class DomainSuspended(Exception):
    """
    The domain failed as a whole: its other rows in this pass are put off
    without being tried.
    """

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


class RowSettler:
    """
    Tries rows of the outbound queue and settles each in the store.

    @param deliver: sends a row over a link (see L{OutboundQueue}).
    @param bouncer: files the bounces.
    @param schedule: the waits after each failure, in seconds; the last
        one repeats.
    @param retry_window: how long after a row was queued it is given up.
    @param random: returns a float in [0, 1), for the jitter.
    @param stats: counts what was settled how.
    """

    _log = Logger()

    def __init__(
        self,
        store: IDeliveryStore,
        deliver: Deliver,
        clock: IReactorTime,
        bouncer: Bouncer,
        schedule: Sequence[float],
        retry_window: float,
        random: Callable[[], float],
        stats: QueueStats,
    ) -> None:
        self._store = store
        self._deliver = deliver
        self._clock = clock
        self._bouncer = bouncer
        self._schedule = tuple(float(wait) for wait in schedule)
        self._retry_window = float(retry_window)
        self._random = random
        self.stats = stats

    async def attempt(self, row: QueuedDelivery) -> None:
        """
        Try one row and settle it.

        @raise DomainSuspended: after settling it, if the whole message failed
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
        raise DomainSuspended(code, text)

    async def put_off(self, row: QueuedDelivery, why: DomainSuspended) -> None:
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
        self.stats.bounced += len(failures)
        await self._bouncer.bounce(row, obj, failures, attempts)
