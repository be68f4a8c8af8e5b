"""
Forgetting, on schedule, what the store keeps only for a while.

Two records exist only to answer questions that stop being asked: what
this server sent to which domain (the countersign; a receiver refuses a
signature older than L{MAX_SIGNATURE_AGE} anyway), and the
C{Idempotency-Key} of each keyed SEND (a client retries within minutes,
so a day covers it).  Without a sweep both would grow for ever.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fmtp.federation.inbound import MAX_CLOCK_SKEW, MAX_SIGNATURE_AGE
from fmtp.interfaces import IDeliveryStore
from fmtp.util.sweep import PeriodicSweep

#: How long a record of what was sent is kept: as long as a receiver
#: could still accept the message's signature, and a day more.
SENT_RECORD_LIFETIME = MAX_SIGNATURE_AGE + MAX_CLOCK_SKEW + 86400.0
#: How long an Idempotency-Key is remembered.
SEND_KEY_LIFETIME = 86400.0
#: Seconds between sweeps.
SWEEP_INTERVAL = 3600.0


class Housekeeping(Service):
    """
    Sweeps the store every L{SWEEP_INTERVAL} seconds, from the injected
    clock, starting at once.  A sweep that fails is logged and tried again
    at the next interval: nothing depends on it being prompt.
    """

    name = "housekeeping"
    _log = Logger()

    def __init__(
        self,
        store: IDeliveryStore,
        clock: IReactorTime,
        interval: float = SWEEP_INTERVAL,
        sent_lifetime: float = SENT_RECORD_LIFETIME,
        key_lifetime: float = SEND_KEY_LIFETIME,
    ) -> None:
        self._store = store
        self._clock = clock
        self.interval = interval
        self.sent_lifetime = sent_lifetime
        self.key_lifetime = key_lifetime
        self._schedule = PeriodicSweep(clock, interval, self._sweep)

    def startService(self) -> None:
        super().startService()
        self._schedule.interval = self.interval
        self._schedule.start()

    def stopService(self) -> Deferred | None:
        """
        Stop sweeping; the Deferred fires once a sweep under way is done,
        so the store is not closed under it.
        """
        super().stopService()
        return self._schedule.stop()

    def sweep(self) -> Deferred:
        """
        Forget what has outlived its use; the Deferred never fails.
        """
        return self._schedule.run()

    async def _sweep(self) -> None:
        now = self._clock.seconds()
        try:
            sent = await self._store.forget_sent(now - self.sent_lifetime)
            keys = await self._store.forget_send_keys(now - self.key_lifetime)
        except Exception:
            self._log.failure("Housekeeping sweep failed; trying again later")
            return
        if sent or keys:
            self._log.info(
                "Housekeeping: forgot {sent} sent records and {keys} send keys",
                sent=sent,
                keys=keys,
            )
