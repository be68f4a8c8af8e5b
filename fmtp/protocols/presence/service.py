"""
The presence of one server's users (L{IPresenceService}): the table of
available sessions, the grace period of a lost connection, and the pushes
a change makes, coalesced.

Time comes from the injected clock, so grace periods, rates and
coalescing are tested on a L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from fmtp.auth.router import Event
from fmtp.errors import InvalidObject, TooManyRequests
from fmtp.federation.inbound import MAX_CLOCK_SKEW, MAX_SIGNATURE_AGE
from fmtp.interfaces import (
    IDomainSigner,
    IPresenceService,
    IPresenceView,
    IRouter,
    IServerLinks,
    ISession,
)
from fmtp.objects import domain_of
from fmtp.protocols.presence.announce import Announcer, soon
from fmtp.protocols.presence.events import (
    PRESENCE,
    REQUEST,
    SUBSCRIPTION,
    PresenceChanged,
    SubscriptionChanged,
)
from fmtp.protocols.presence.federation import PresenceFederation
from fmtp.protocols.presence.status import (
    NOTHING,
    OFFLINE,
    SessionPresence,
    Shown,
    user_presence,
)
from fmtp.protocols.presence.subscriptions import (
    Outcome,
    Subscriptions,
    state_token,
)
from fmtp.ratelimit import SourceRateLimiter
from fmtp.store.presence import Link, Subscription
from fmtp.util.sweep import PeriodicSweep
from fmtp.util.timers import Timers

#: Seconds between two sweeps of the requests that waited too long.
EXPIRY_INTERVAL = 3600.0
#: Seconds the last action of each remote user about each local one is
#: kept: as long as DELIVER accepts its signature.
ACTION_MEMORY = MAX_SIGNATURE_AGE + MAX_CLOCK_SKEW


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    """
    What an admin may tune (doc/admin.md, "Presence").

    @ivar grace_period: seconds a lost connection's presence stays.
    @ivar max_pending: requests that may wait per subscriber, and put to
        a target (more wait hidden).
    @ivar subscribe_rate: SUBSCRIBEs per second per user, after a burst
        of C{subscribe_burst}.
    @ivar status_rate: STATUS changes per second per session, after a
        burst of C{status_burst}.
    @ivar request_lifetime: seconds a subscription request waits for an
        answer before it is forgotten (30 days), so that requests nobody
        answers do not hold their places under the caps for ever.
    @ivar remote_refresh: seconds between two probes of each followed
        domain (doc/protocol.md 9.7).
    @ivar remote_timeout: seconds a domain not heard from keeps its users'
        presence before they show C{unknown}; also the lifetime of a
        status update on its way to a domain.
    @ivar remote_rate: subscription actions and probes per second a peer
        domain may send, after a burst of C{remote_burst}.
    @ivar remote_max_pending: requests from one other domain that may
        wait for one user, hidden or not; more are refused for now (429,
        and that domain's queue tries again), so that a domain minting
        users can fill neither a user's cap nor the store.
    """

    grace_period: float = 30.0
    max_pending: int = 100
    subscribe_rate: float = 20 / 60
    subscribe_burst: float = 20.0
    status_rate: float = 10.0
    status_burst: float = 20.0
    request_lifetime: float = 30 * 86400.0
    remote_refresh: float = 60.0
    remote_timeout: float = 180.0
    remote_rate: float = 10.0
    remote_burst: float = 200.0
    remote_max_pending: int = 10


DEFAULT_SETTINGS = PresenceSettings()


@implementer(IPresenceService, IPresenceView)
class PresenceService(Service):
    """
    L{IPresenceService} for the users of C{domain}.

    It runs as long as its server does (a service of the server's tree,
    L{fmtp.interfaces.ICommandGroup.service}): while running it forgets,
    every L{EXPIRY_INTERVAL} seconds, the requests that waited longer than
    the settings' C{request_lifetime}; once stopped, none of its timers
    (grace periods, announcements, that sweep) runs any more, so nothing
    of it meets the store after the server closed it.

    @param store: provides L{fmtp.interfaces.IPresenceStore}, and
        C{get_object} for the users' policies (the server's store).
    @param router: the server's router, through which pushes reach the
        sessions that made themselves available.
    @param links: the server links, and C{signer} this domain's signer:
        with both, users have contacts of other domains
        (L{PresenceFederation}); without, only of this one.
    """

    _log = Logger()

    #: Called as C{bridge_notify(bridge, address, event)} for each event
    #: pushed to C{address} while a bridge publishes their presence (the
    #: bridge's notifications, L{fmtp.protocols.presence.bridgenotify}).
    bridge_notify: Callable[[str, str, Event], None] | None = None

    def __init__(
        self,
        clock: IReactorTime,
        domain: str,
        store,
        router: IRouter,
        settings: PresenceSettings = DEFAULT_SETTINGS,
        links: IServerLinks | None = None,
        signer: IDomainSigner | None = None,
    ) -> None:
        #: Every call scheduled by this service, cancelled when it stops.
        self.timers = Timers(clock)
        self._clock = clock
        self._domain = domain
        self._store = store
        self._router = router
        self.settings = settings
        self._expiry = PeriodicSweep(
            self.timers, EXPIRY_INTERVAL, self._expire_requests
        )
        self.subscriptions = Subscriptions(
            clock,
            domain,
            store,
            settings.max_pending,
            SourceRateLimiter(clock, settings.subscribe_rate, settings.subscribe_burst),
            federated=links is not None and signer is not None,
            max_per_domain=settings.remote_max_pending,
        )
        self._status_rate = SourceRateLimiter(
            clock, settings.status_rate, settings.status_burst
        )
        self._order = itertools.count()
        #: Each user's sessions that count, by resource.
        #: (A list, not a dict by resource: a user has one session or a
        #: few, and a dict each would cost an idle session 100 bytes more.)
        self._users: dict[str, list[SessionPresence]] = {}
        #: The sessions being welcomed (L{_welcome}), each with the
        #: requests pushed to it live meanwhile.
        self._welcoming: dict[SessionPresence, set[str]] = {}
        #: Each available session's presence, by session key.
        self._by_key: dict[str, SessionPresence] = {}
        self.federation: PresenceFederation | None = None
        remote = None
        if links is not None and signer is not None:
            self.federation = PresenceFederation(
                self, clock, domain, store, links, signer
            )
            remote = self.federation.announce
        self._announcer = Announcer(
            self.timers, self.user_presence, self._audience, self.push, remote
        )
        self._changed = self._announcer.changed

    # Lifetime

    def startService(self) -> None:
        super().startService()
        self._expiry.start()
        if self.federation is not None:
            self.federation.start()

    def stopService(self) -> Deferred | None:
        """
        Cancel every timer: grace periods, announcements and the sweep.
        The Deferred fires once a sweep under way is done, so the store
        is not closed under it.
        """
        super().stopService()
        done = [self._expiry.stop()]
        if self.federation is not None:
            done.append(self.federation.stop())
        self.timers.cancel_all()
        running = [d for d in done if d is not None]
        return gatherResults(running).addCallback(lambda _: None) if running else None

    def expire_requests(self) -> Deferred:
        """
        Forget the requests that waited longer than the settings'
        C{request_lifetime}; the Deferred never fails (a failure is
        logged, and the next sweep tries again).
        """
        return self._expiry.run()

    async def _expire_requests(self) -> None:
        now = self._clock.seconds()
        before = now - self.settings.request_lifetime
        # An action older than any signature DELIVER accepts cannot come
        # again: what refuses its replay is no longer needed.
        old_actions = int((now - ACTION_MEMORY) * 1000)
        try:
            forgotten = await self._store.expire_requests(before)
            await self._store.forget_actions(old_actions)
        except Exception:
            self._log.failure("Presence: forgetting old requests failed")
            return
        if forgotten:
            self._log.info(
                "Presence: forgot {count} subscription requests nobody answered",
                count=forgotten,
            )

    # Sessions

    def set_status(
        self,
        login: ISession,
        status: str,
        note: str = "",
        priority: int = 0,
        resource: str | None = None,
    ) -> SessionPresence:
        if not self._status_rate.allow(login.key):
            raise TooManyRequests("too many STATUS changes, slow down")
        entry = self._by_key.get(login.key)
        first = entry is None
        if entry is None:
            entry = self._make_available(login, resource or secrets.token_hex(6))
        elif resource is not None and resource != entry.resource:
            raise InvalidObject("Resource is chosen at the first STATUS")
        entry.status, entry.note, entry.priority = status, note, priority
        entry.order = next(self._order)
        self._changed(login.address)
        if first:
            # After the reply to this STATUS, as the announcements are.
            soon(self.timers, self._welcome, entry.address, entry)
        return entry

    def _make_available(self, login: ISession, resource: str) -> SessionPresence:
        """
        The session's presence entry, taking the place of one of the same
        user and resource (a reconnect within its grace period, or a
        connection the client gave up on).
        """
        entry = SessionPresence(login.address, resource, "", "", 0, 0, login)
        self._put(entry)
        self._by_key[login.key] = entry
        return entry

    def _find(self, address: str, resource: str) -> SessionPresence | None:
        for entry in self._users.get(address, ()):
            if entry.resource == resource:
                return entry
        return None

    def _put(self, entry: SessionPresence) -> None:
        """
        Count C{entry} among its user's sessions, in place of one of the
        same resource.
        """
        sessions = self._users.get(entry.address)
        if sessions is None:
            self._users[entry.address] = [entry]
            return
        old = self._find(entry.address, entry.resource)
        if old is None:
            sessions.append(entry)
        else:
            self._detach(old)
            sessions[sessions.index(old)] = entry

    def _detach(self, entry: SessionPresence) -> None:
        if entry.login is not None:
            self._by_key.pop(entry.login.key, None)
            entry.login = None
        if entry.expiry is not None and entry.expiry.active():
            entry.expiry.cancel()
        entry.expiry = None

    def publish(
        self,
        address: str,
        bridge: str,
        status: str,
        note: str = "",
        priority: int = 0,
        ttl: float = 300.0,
    ) -> None:
        """
        An ISP bridge publishes C{address}'s presence: one more session of
        the user, whose resource is the bridge's name, counted by the
        priority rule and pushed to subscribers as any session is.  It
        ends after C{ttl} seconds unless published again (a bridge that
        goes away leaves nobody online for ever), or at once if C{status}
        is C{offline}.  It takes the place of a session of the same
        resource, as a reconnect does.
        """
        entry = self._find(address, bridge)
        if status == OFFLINE:
            if entry is not None and entry.bridged:
                self._remove(entry)
            return
        if entry is None or not entry.bridged:
            entry = SessionPresence(address, bridge, "", "", 0, 0, bridged=True)
            self._put(entry)
        if entry.expiry is not None and entry.expiry.active():
            # A bridge republishes its users often: move the end of this
            # presence rather than cancel and schedule a call each time.
            entry.expiry.reset(ttl)
        else:
            entry.expiry = self.timers.callLater(ttl, self._remove, entry)
        if (entry.status, entry.note, entry.priority) != (status, note, priority):
            entry.status, entry.note, entry.priority = status, note, priority
            entry.order = next(self._order)
            self._changed(address)

    def session_presence(self, login: ISession) -> SessionPresence | None:
        return self._by_key.get(login.key)

    def user_presence(self, address: str) -> Shown:
        return user_presence(self._users.get(address, []))

    def session_ended(self, login: ISession) -> None:
        entry = self._by_key.get(login.key)
        if entry is not None:
            self._remove(entry)

    def session_lost(self, login: ISession) -> None:
        entry = self._by_key.pop(login.key, None)
        if entry is not None:
            entry.login = None
            entry.expiry = self.timers.callLater(
                self.settings.grace_period, self._remove, entry
            )

    def _remove(self, entry: SessionPresence) -> None:
        self._detach(entry)
        sessions = self._users.get(entry.address, [])
        if any(s is entry for s in sessions):
            sessions.remove(entry)
            if not sessions:
                del self._users[entry.address]
            self._changed(entry.address)

    # What is seen, and pushed

    def shown_to(self, viewer: str, contact: str) -> Deferred:
        return Deferred.fromCoroutine(self._shown_to_viewer(viewer, contact))

    async def _shown_to_viewer(self, viewer: str, contact: str) -> Shown | None:
        if viewer == contact:
            return self.user_presence(contact)
        subscription = await self._store.subscription(viewer, contact)
        if subscription.outbound is not Link.APPROVED:
            return None
        return await self._shown_to(viewer, subscription)

    async def seen_by(self, viewer: str, contact: str) -> Shown:
        return await self._shown_to(
            viewer, await self._store.subscription(viewer, contact)
        )

    async def _shown_to(
        self, viewer: str, subscription: Subscription, pushed: bool = False
    ) -> Shown:
        """
        What C{viewer} sees of the contact of their C{subscription}:
        L{seen}, unless the contact's policy blocks C{viewer} now (an
        approval does not outlive a block).  Sessions of a blocked viewer
        that may still show more are pushed C{offline} (L{Announcer.hide}).

        @param pushed: whether the caller pushes the answer to all of
            C{viewer}'s sessions itself.
        """
        shown = self.seen(subscription)
        contact = subscription.contact
        if shown == NOTHING or domain_of(contact) != self._domain:
            # A remote contact's own domain keeps their blocks.
            return shown
        if not await self.subscriptions.blocks(contact, viewer):
            return shown
        if self._announcer.hide(contact, viewer) and not pushed:
            self.push(viewer, Event(PRESENCE, PresenceChanged(contact, NOTHING)))
        return NOTHING

    async def _audience(self, address: str) -> tuple[list[str], frozenset[str]]:
        """
        C{address}'s approved subscribers, and those of them its policy
        blocks now.
        """
        return await self.subscriptions.audience(address)

    def seen(self, subscription: Subscription) -> Shown:
        """
        What a user sees of a contact, given how they stand (what
        L{seen_by} answers, for a caller that has read the subscription).
        """
        contact = subscription.contact
        if subscription.outbound is not Link.APPROVED:
            return NOTHING
        if domain_of(contact) != self._domain:
            if self.federation is None:
                return NOTHING
            return self.federation.remote.seen(subscription.user, contact)
        return self.user_presence(contact)

    def push(self, address: str, event: Event) -> None:
        """
        Hand C{event} to C{address}'s available sessions (and to the
        bridge that publishes them, if one does).
        """
        for entry in list(self._users.get(address, ())):
            if entry.login is not None:
                told = self._welcoming.get(entry)
                if told is not None and event.kind == REQUEST:
                    told.add(event.payload)
                self._router.deliver_to(entry.login, event)
            elif entry.bridged and self.bridge_notify is not None:
                # Their bridge is sent it (bridgenotify).
                self.bridge_notify(entry.resource, address, event)

    async def _welcome(self, entry: SessionPresence) -> None:
        """
        A session just made itself available: send it its buddies'
        presence, and the requests waiting for its user.
        """
        user = entry.address
        told: set[str] = set()
        self._welcoming[entry] = told
        try:
            await self._send_welcome(entry, user, told)
        finally:
            del self._welcoming[entry]

    async def _send_welcome(
        self, entry: SessionPresence, user: str, told: set[str]
    ) -> None:
        for subscription in await self._store.subscriptions(user):
            if subscription.outbound is Link.APPROVED and entry.login is not None:
                shown = await self._shown_to(user, subscription)
                if entry.login is None:
                    break
                event = Event(PRESENCE, PresenceChanged(subscription.contact, shown))
                self._router.deliver_to(entry.login, event)
        for subscriber in await self.subscriptions.waiting_for(user):
            # A request pushed live while this welcome read the store was
            # told already.
            if entry.login is not None and subscriber not in told:
                self._router.deliver_to(entry.login, Event(REQUEST, subscriber))

    # Subscriptions

    async def subscribe(self, subscriber: str, target: str) -> str:
        state, outcome = await self.subscriptions.request(subscriber, target)
        if self._remote(target):
            if outcome is Outcome.WAITING:
                # Asked again, it is sent again: the first may have bounced.
                await self.federation.send_action(subscriber, target, "request")
            return state
        self.requested(subscriber, target, outcome)
        return state

    def requested(self, subscriber: str, target: str, outcome: Outcome) -> None:
        """
        Tell whom it concerns of C{subscriber}'s request to local
        C{target}: C{target}, of a new request; a local C{subscriber},
        of an approval at once.
        """
        if outcome is Outcome.ASKED:
            self.push(target, Event(REQUEST, subscriber))
        elif outcome is Outcome.APPROVED and not self._remote(subscriber):
            # The reply says the state; the presence is pushed after it.
            soon(
                self.timers,
                self._tell_subscriber,
                subscriber,
                subscriber,
                target,
                False,
            )

    def _remote(self, address: str) -> bool:
        """
        Whether C{address} is of another domain (which only a federated
        service lets a user name).
        """
        return domain_of(address) != self._domain

    async def unsubscribe(self, subscriber: str, target: str) -> str:
        before = await self._store.subscription(subscriber, target)
        state = await self.subscriptions.unsubscribe(subscriber, target)
        if self._remote(target) and before.outbound is not Link.NONE:
            await self.federation.send_action(subscriber, target, "unsubscribe")
        return state

    async def approve(self, target: str, subscriber: str) -> str:
        before = await self._store.subscription(target, subscriber)
        state, link = await self.subscriptions.approve(target, subscriber)
        if not self._remote(subscriber):
            if link is Link.APPROVED:
                await self._tell_subscriber(subscriber, target)
        elif link is Link.APPROVED and before.inbound is not Link.APPROVED:
            await self.federation.send_action(target, subscriber, "approve")
        return state

    async def deny(self, target: str, subscriber: str) -> str:
        before = await self._store.subscription(target, subscriber)
        state, saw = await self.subscriptions.deny(target, subscriber)
        if not self._remote(subscriber):
            if saw:
                await self._tell_subscriber(subscriber, target)
        elif before.inbound in (Link.PENDING, Link.APPROVED):
            # A request hidden by a polite block, or a pre-approval, was
            # never the subscriber's to know of.
            await self.federation.send_action(target, subscriber, "deny")
        return state

    async def tell_subscriber(self, subscriber: str, target: str) -> None:
        """
        Tell local C{subscriber}'s sessions how they now stand with
        C{target}, and what they see of them.
        """
        await self._tell_subscriber(subscriber, target)

    async def _tell_subscriber(
        self, subscriber: str, target: str, with_state: bool = True
    ) -> None:
        """
        Tell C{subscriber}'s available sessions how they now stand with
        C{target} (C{254}), and what they now see of them (C{252}).  One
        with none finds it in BUDDIES and at their first STATUS.
        """
        if subscriber not in self._users:
            return
        subscription = await self._store.subscription(subscriber, target)
        if with_state:
            state = await self.subscriptions.state(subscriber, target)
            changed = SubscriptionChanged(target, state)
            self.push(subscriber, Event(SUBSCRIPTION, changed))
        shown = await self._shown_to(subscriber, subscription, pushed=True)
        self.push(subscriber, Event(PRESENCE, PresenceChanged(target, shown)))

    async def buddies(self, user: str) -> list[tuple[str, str, Shown]]:
        return [
            (
                subscription.contact,
                state_token(subscription),
                await self._shown_to(user, subscription),
            )
            for subscription in await self.subscriptions.contacts(user)
        ]
