"""
Volatile, coalesced updates to other domains: what a presence change
needs, as Synapse's per-destination queue sends presence apart from its
durable events.

An update is worth sending only while it is news.  So, per destination
domain, an update waiting to be sent is replaced by a newer one with the
same key (a user's presence: only the latest matters); it is sent on the
pooled link to the domain as soon as one can be had, tried again a few
times if the link fails or the peer answers 4xx (as often as it takes
within its lifetime when the peer answers 429, "slow down"), and dropped
once its lifetime has passed.  Nothing is stored, nothing is bounced,
and memory is bounded: at most C{max_keys} updates wait per domain (the oldest gives
way to a new key) and at most C{max_domains} domains have updates waiting
(an update for one more is dropped).

Time comes from the injected clock; links from the injected C{link_to}
(the pool's), so the whole queue is tested on a C{Clock}.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from fmtp.federation.failures import LinkError
from fmtp.federation.registry import check_verb
from fmtp.objects import normalize_domain
from fmtp.wire import Frame

#: link_to(domain): a verified link to the domain (L{LinkPool.link_to}).
LinkTo = Callable[[str], Awaitable[Any]]

#: Seconds to wait after each failed attempt before the next: the last
#: entry repeats.  Short: an update older than its lifetime is worthless.
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1.0, 5.0, 15.0)


@dataclass(slots=True)
class Update:
    """
    One volatile update waiting for its domain's link.

    @ivar attempts: how many times it was tried and failed.
    @ivar throttled: its last try was answered C{429}: the peer is busy,
        not refusing, so that try is not counted (the update is tried
        until its lifetime passes).
    """

    key: str
    verb: str
    argument: str
    headers: dict[str, str]
    body: bytes
    expires: float
    attempts: int = 0
    throttled: bool = False


@dataclass(slots=True)
class VolatileStats:
    """
    What became of the updates, for tests, benchmarks and the admin.

    @ivar sent: answered 2xx by the peer.
    @ivar replaced: coalesced away by a newer update of the same key.
    @ivar expired: their lifetime passed before they could be sent.
    @ivar failed: refused by the peer (5xx), or still failing after
        C{max_attempts}, or the domain has no server.
    @ivar dropped: not kept because of the caps on keys and domains.
    """

    sent: int = 0
    replaced: int = 0
    expired: int = 0
    failed: int = 0
    dropped: int = 0


@dataclass(slots=True)
class _Destination:
    """
    The updates waiting for one domain, oldest first, and its sender.

    @ivar sending: whether a sender is running (it sends what comes in
        meanwhile too).
    @ivar sender: the running sender, once it has had to wait.
    @ivar waiting: fires when the pause between tries is over.
    """

    pending: OrderedDict[str, Update] = field(default_factory=OrderedDict)
    sending: bool = False
    sender: Deferred | None = None
    wait: IDelayedCall | None = None
    waiting: Deferred | None = None


class VolatileQueue:
    """
    Sends volatile updates, coalesced by key, per destination domain.

    @param link_to: C{link_to(domain)} gives a verified link to the
        domain, whose C{request(verb, argument, headers, body)} returns
        the reply frame or fails with L{LinkError}.
    @param clock: time and timers.
    @param max_attempts: tries of one update before it is given up.
    @param retry_delays: seconds between tries (the last repeats).
    @param max_keys: most updates waiting for one domain.
    @param max_domains: most domains with updates waiting.
    """

    _log = Logger()

    def __init__(
        self,
        link_to: LinkTo,
        clock: IReactorTime,
        max_attempts: int = 3,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        max_keys: int = 1000,
        max_domains: int = 1000,
    ) -> None:
        if min(max_attempts, max_keys, max_domains) < 1:
            raise ValueError("max_attempts, max_keys and max_domains must be >= 1")
        if not retry_delays or any(delay <= 0 for delay in retry_delays):
            raise ValueError("retry_delays must be positive, at least one")
        self._link_to = link_to
        self._clock = clock
        self.max_attempts = max_attempts
        self._retry_delays = tuple(float(delay) for delay in retry_delays)
        self.max_keys = max_keys
        self.max_domains = max_domains
        self.stats = VolatileStats()
        self._destinations: dict[str, _Destination] = {}
        self._full = False
        self._closed = False

    def notify(
        self,
        domain: str,
        key: str,
        verb: str,
        argument: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        lifetime: float = 60.0,
    ) -> None:
        """
        Send an update to C{domain} within C{lifetime} seconds, or never;
        it replaces any update of the same C{key} for C{domain} still
        waiting.

        @raise fmtp.errors.InvalidAddress: for a malformed domain.
        @raise ValueError: for a malformed verb or a lifetime not above 0.
        """
        domain = normalize_domain(domain)
        verb = check_verb(verb)
        if not lifetime > 0:
            raise ValueError("lifetime must be above 0 seconds")
        if self._closed:
            self._log.info(
                "Not sending {verb} to {domain}: stopping", verb=verb, domain=domain
            )
            return
        update = Update(
            key,
            verb,
            argument,
            dict(headers or {}),
            bytes(body),
            self._clock.seconds() + lifetime,
        )
        destination = self._destinations.get(domain)
        if destination is None:
            if len(self._destinations) >= self.max_domains:
                self._drop_for_domains(domain, update)
                return
            destination = self._destinations[domain] = _Destination()
        self._full = False
        pending = destination.pending
        if pending.pop(key, None) is not None:
            self.stats.replaced += 1
        elif len(pending) >= self.max_keys:
            oldest, _ = pending.popitem(last=False)
            self.stats.dropped += 1
            self._log.info(
                "Dropped the update {key} for {domain}: {most} updates wait for it",
                key=oldest,
                domain=domain,
                most=self.max_keys,
            )
        pending[key] = update
        if not destination.sending:
            destination.sending = True
            sender = Deferred.fromCoroutine(self._send_all(domain, destination))
            if destination.sending:
                destination.sender = sender

    def pending(self, domain: str) -> list[Update]:
        """
        The updates waiting for C{domain} (not those on the wire), oldest
        first.
        """
        destination = self._destinations.get(normalize_domain(domain))
        return list(destination.pending.values()) if destination else []

    def domains(self) -> list[str]:
        """
        The domains with updates waiting or being sent.
        """
        return list(self._destinations)

    def close(self) -> Deferred:
        """
        Stop: drop what waits, send nothing more.  A request on the wire
        ends with its link, which the pool closes.

        @return: a L{Deferred} that fires once every sender has ended.
        """
        self._closed = True
        senders = []
        for destination in list(self._destinations.values()):
            destination.pending.clear()
            if destination.wait is not None and destination.wait.active():
                destination.wait.cancel()
            if destination.waiting is not None:
                destination.waiting.cancel()
            if destination.sender is not None:
                senders.append(destination.sender)
        return gatherResults(senders, consumeErrors=True).addBoth(lambda _: None)

    # -- sending ------------------------------------------------------------

    async def _send_all(self, domain: str, destination: _Destination) -> None:
        """
        Send what waits for C{domain} until nothing does: every update
        waiting when a link is had goes at once, pipelined; those to try
        again wait their delay with any that came meanwhile.
        """
        try:
            while not self._closed:
                self._expire(domain, destination)
                if not destination.pending:
                    break
                tried = list(destination.pending.values())
                try:
                    link = await self._link_to(domain)
                except LinkError as e:
                    if e.permanent:
                        self._give_up(domain, destination, e.message)
                        break
                    why = e.message
                    # Those replaced meanwhile were counted then.
                    failed = [u for u in tried if destination.pending.get(u.key) is u]
                    for update in failed:
                        del destination.pending[update.key]
                else:
                    self._expire(domain, destination)
                    batch = list(destination.pending.values())
                    destination.pending.clear()
                    outcomes = await gatherResults(
                        [
                            Deferred.fromCoroutine(self._send(domain, link, update))
                            for update in batch
                        ]
                    )
                    failed = [update for update in outcomes if update is not None]
                    why = "not sent"
                self._keep(domain, destination, failed, why)
                if failed and destination.pending and not self._closed:
                    await self._pause(destination)
        except CancelledError:
            pass
        except Exception:
            self._log.failure("Volatile updates to {domain} stopped", domain=domain)
        finally:
            self.stats.failed += len(destination.pending)
            destination.pending.clear()
            destination.sending = False
            destination.sender = None
            if self._destinations.get(domain) is destination:
                del self._destinations[domain]

    async def _send(self, domain: str, link: Any, update: Update) -> Update | None:
        """
        Send one update on C{link}.

        @return: the update, if it is to be tried again; else L{None}.
        """
        try:
            answer: Frame = await link.request(
                update.verb, update.argument, update.headers, update.body
            )
        except LinkError as e:
            self._log.info(
                "Update {key} for {domain} not sent: {why}",
                key=update.key,
                domain=domain,
                why=e.message,
            )
            return update
        if 200 <= answer.code < 300:
            self.stats.sent += 1
            return None
        if 400 <= answer.code < 500:
            update.throttled = answer.code == 429
            return update
        self.stats.failed += 1
        self._log.info(
            "{domain} refused the update {key} ({verb}): {code} {text}",
            domain=domain,
            key=update.key,
            verb=update.verb,
            code=answer.code,
            text=answer.argument,
        )
        return None

    def _keep(
        self,
        domain: str,
        destination: _Destination,
        failed: list[Update],
        why: str,
    ) -> None:
        """
        Put the updates that just failed back in line, before any that
        came meanwhile, unless a newer one of their key came, or they have
        had their tries.
        """
        kept: OrderedDict[str, Update] = OrderedDict()
        for update in failed:
            if update.throttled:
                # The peer asks us to slow down: the pause below does, and
                # the update is tried again until its lifetime passes, not
                # given up after a few answers that said "later".
                update.throttled = False
            else:
                update.attempts += 1
            if update.key in destination.pending:
                self.stats.replaced += 1
            elif update.attempts >= self.max_attempts:
                self.stats.failed += 1
                self._log.info(
                    "Gave up the update {key} for {domain} after {attempts} "
                    "tries: {why}",
                    key=update.key,
                    domain=domain,
                    attempts=update.attempts,
                    why=why,
                )
            else:
                kept[update.key] = update
        room = self.max_keys - len(destination.pending)
        while len(kept) > max(room, 0):
            kept.popitem(last=False)
            self.stats.dropped += 1
        kept.update(destination.pending)
        destination.pending = kept

    async def _pause(self, destination: _Destination) -> None:
        """
        Wait before the next try: the retry delay of the update tried most
        often, or less if an update expires sooner (it is then dropped
        without waiting any longer).
        """
        tries = max(update.attempts for update in destination.pending.values())
        delay = self._retry_delays[min(max(tries, 1), len(self._retry_delays)) - 1]
        now = self._clock.seconds()
        soonest = min(update.expires for update in destination.pending.values())
        delay = max(0.0, min(delay, soonest - now))
        waiting: Deferred = Deferred()
        destination.waiting = waiting
        destination.wait = self._clock.callLater(delay, waiting.callback, None)
        try:
            await waiting
        finally:
            destination.wait = destination.waiting = None

    def _expire(self, domain: str, destination: _Destination) -> None:
        now = self._clock.seconds()
        for key, update in list(destination.pending.items()):
            if update.expires <= now:
                del destination.pending[key]
                self.stats.expired += 1
                self._log.info(
                    "Dropped the update {key} for {domain}: its lifetime passed "
                    "after {attempts} tries",
                    key=key,
                    domain=domain,
                    attempts=update.attempts,
                )

    def _give_up(self, domain: str, destination: _Destination, why: str) -> None:
        self.stats.failed += len(destination.pending)
        self._log.info(
            "Dropped {count} updates for {domain}: {why}",
            count=len(destination.pending),
            domain=domain,
            why=why,
        )
        destination.pending.clear()

    def _drop_for_domains(self, domain: str, update: Update) -> None:
        self.stats.dropped += 1
        if not self._full:
            self._full = True
            self._log.warn(
                "Dropping updates for {domain} and other new domains: updates "
                "already wait for {most} domains",
                domain=domain,
                most=self.max_domains,
            )
