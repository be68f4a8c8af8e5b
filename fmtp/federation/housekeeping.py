"""
Forgetting, on schedule, what the store keeps only for a while.

Two records exist only to answer questions that stop being asked: what
this server sent to which domain (the countersign; a receiver refuses a
signature older than L{MAX_SIGNATURE_AGE} anyway), and the
C{Idempotency-Key} of each keyed SEND (a client retries within minutes,
so a day covers it).  And the objects protocols send other domains (a
room's pushes, subscription actions) are kept by the queue as a user's
sent message is, though nobody reads them once delivered.  Without a
sweep all three would grow for ever.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

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
#: How long a protocol's object is kept after it was queued, once no
#: delivery of it is queued: the queue deletes a row once the delivery is
#: settled, so nothing reads the object by then (a receiver's countersign
#: comes while its delivery is under way).
DELIVERED_LIFETIME = 3600.0
#: Seconds between sweeps.
SWEEP_INTERVAL = 3600.0


class Housekeeping(Service):
    """
    Sweeps the store every L{SWEEP_INTERVAL} seconds, from the injected
    clock, starting at once.  A sweep that fails is logged and tried again
    at the next interval: nothing depends on it being prompt.

    @param protocol_types: reads the object types protocols send other
        domains and take instead of inboxes
        (L{fmtp.federation.inbound.DeliveryReceiver.handled_types}): read
        at each sweep, since protocols register theirs after this is
        built.  Their objects are forgotten once delivered
        (L{IDeliveryStore.forget_delivered}).
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
        protocol_types: Callable[[], Collection[str]] = frozenset,
        delivered_lifetime: float = DELIVERED_LIFETIME,
    ) -> None:
        self._store = store
        self._clock = clock
        self.interval = interval
        self.sent_lifetime = sent_lifetime
        self.key_lifetime = key_lifetime
        self.delivered_lifetime = delivered_lifetime
        self._protocol_types = protocol_types
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
        store = self._store
        try:
            sent = await store.forget_sent(now - self.sent_lifetime)
            keys = await store.forget_send_keys(now - self.key_lifetime)
            objects = await store.forget_delivered(
                sorted(self._protocol_types()), now - self.delivered_lifetime
            )
        except Exception:
            self._log.failure("Housekeeping sweep failed; trying again later")
            return
        if sent or keys or objects:
            self._log.info(
                "Housekeeping: forgot {sent} sent records, {keys} send keys"
                " and {objects} delivered protocol objects",
                sent=sent,
                keys=keys,
                objects=objects,
            )
