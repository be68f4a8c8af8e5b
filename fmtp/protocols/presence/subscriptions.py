"""
Subscription requests and answers, under the target's policy and the
abuse limits (doc/protocol.md 9.3): what SUBSCRIBE, APPROVE, DENY,
UNSUBSCRIBE and BUDDIES do to the store, apart from any socket.

A request the target's policy refuses (C{Blacklist}, C{Policy: reject})
and a request for a user who does not exist are I{politely blocked}: kept
as waiting, exactly as any waiting request, so that the requester learns
nothing, but never put to the target.  The store keeps them hidden
(L{fmtp.store.presence.Link.HIDDEN}), out of the target's cap of waiting
requests, so throwaway accounts cannot fill it; a request past a full cap
is kept hidden too, rather than refused, so a full cap is no oracle.  A
hidden request is decided when it is asked: asked again once the policy
lets it (a block lifted, room under the cap), it is put to the target.  A
request put to the target that their policy comes to refuse is hidden
from them as they read it (L{hide_blocked}).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import replace

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from fmtp.errors import Forbidden, InvalidObject, TooManyRequests
from fmtp.interfaces import IPresenceStore
from fmtp.objects import domain_of, normalize_address
from fmtp.policy import Decision, decide, matches
from fmtp.ratelimit import SourceRateLimiter
from fmtp.store.presence import Link, Subscription

#: The refusal of a contact of another domain, by a server that links no
#: other domain.
NOT_ACROSS_DOMAINS = "this server links no other domain"


class Outcome(enum.Enum):
    """
    What became of a subscription request.
    """

    #: The subscriber sees the target now (whitelisted, pre-approved, or
    #: approved before).
    APPROVED = "approved"
    #: Put to the target now: a new request, which they are told of.
    ASKED = "asked"
    #: It waits, and nobody is told: asked before (asking again changes
    #: nothing), or hidden (politely blocked, or past a full cap).
    WAITING = "waiting"


def state_token(subscription: Subscription) -> str:
    """
    A subscription's state as one token on the wire: the store's name
    with spaces written as hyphens (C{pending-out}, C{to+pending-in}).
    """
    return subscription.state.replace(" ", "-")


def refuses(profile: Mapping[str, str] | None, subscriber: str) -> bool:
    """
    Whether a target whose user object properties are C{profile} (L{None}
    if there is no such user) politely blocks requests from
    C{subscriber}: a whitelisted subscriber never is.
    """
    if profile is None:
        return True
    if matches(subscriber, profile.get("Whitelist", "")):
        return False
    return decide(profile, subscriber, approved=True) is Decision.REJECT


def welcomes(profile: Mapping[str, str] | None, subscriber: str) -> bool:
    """
    Whether a request from C{subscriber} is approved at once: the target
    whitelists them.
    """
    return profile is not None and matches(subscriber, profile.get("Whitelist", ""))


class Subscriptions:
    """
    The subscription rules of one server, for its own users.

    @param store: provides L{IPresenceStore} and L{IObjectStore} (the
        targets' user objects hold their policies).
    @param max_pending: the cap on requests waiting, per subscriber and
        per target (the store enforces it).
    @param requests: the rate of SUBSCRIBE, and of pre-approvals, per user.
    """

    def __init__(
        self,
        clock: IReactorTime,
        domain: str,
        store: IPresenceStore,
        max_pending: int,
        requests: SourceRateLimiter,
        federated: bool = False,
        max_per_domain: int = 10,
    ) -> None:
        """
        @param federated: whether contacts of other domains are served
            (the server links other domains).
        @param max_per_domain: the most requests from one other domain
            that may wait for one user (more are refused for now).
        """
        self._federated = federated
        self._max_per_domain = max_per_domain
        self._clock = clock
        self._domain = domain
        self._store = store
        self._max_pending = max_pending
        self._requests = requests

    def contact(self, user: str, address: str) -> str:
        """
        The normal form of a contact C{user} names.

        @raise InvalidAddress: if it is no address (553).
        @raise InvalidObject: if it is C{user}'s own (501).
        @raise Forbidden: if it is of another domain (554) and this server
            links no other domain.
        """
        contact = normalize_address(address)
        if contact == user:
            raise InvalidObject("you always see your own presence")
        if domain_of(contact) != self._domain and not self._federated:
            raise Forbidden(NOT_ACROSS_DOMAINS)
        return contact

    async def _profile(self, address: str) -> Mapping[str, str] | None:
        obj = await self._store.get_object(address)
        return None if obj is None else obj.properties

    async def request(self, subscriber: str, target: str) -> tuple[str, Outcome]:
        """
        C{subscriber} asks to see C{target}'s presence.

        @return: the subscription's state token as the subscriber sees it,
            and what became of the request.
        @raise TooManyRequests: over the subscriber's rate.
        @raise fmtp.store.presence.PendingLimitReached: over the
            subscriber's own cap.
        """
        if not self._requests.allow(subscriber):
            raise TooManyRequests("too many subscription requests, slow down")
        now = self._clock.seconds()
        if domain_of(target) != self._domain:
            # The target's domain decides; here it waits until it answers.
            link = await self._store.request_subscription(
                subscriber, target, now, self._max_pending
            )
            outcome = Outcome.APPROVED if link is Link.APPROVED else Outcome.WAITING
            return await self.state(subscriber, target), outcome
        profile = await self._profile(target)
        # Whether the target was put this request before: they are told
        # of a request once, however often it is asked.
        before = await self._store.subscription(target, subscriber)
        if domain_of(subscriber) != self._domain:
            await self._check_share(subscriber, target)
        link = await self._store.request_subscription(
            subscriber, target, now, self._max_pending, refuses(profile, subscriber)
        )
        if link in (Link.PENDING, Link.HIDDEN) and welcomes(profile, subscriber):
            link = await self._store.approve_subscription(target, subscriber, now)
        if link is Link.APPROVED:
            outcome = Outcome.APPROVED
        elif link is Link.PENDING and before.inbound is not Link.PENDING:
            outcome = Outcome.ASKED
        else:
            outcome = Outcome.WAITING
        return await self.state(subscriber, target), outcome

    async def _check_share(self, subscriber: str, target: str) -> None:
        """
        Refuse, for now, a new request from another domain's user when as
        many requests from that domain already wait for C{target} as one
        domain may have wait for a user: a hostile domain can mint
        subscribers faster than any per-subscriber limit counts them, and
        would fill the target's cap (so that nobody else's request reached
        them) and the store.  Counted alike whether C{target} exists or
        blocks them, hidden requests included, it tells that domain only
        what its own users asked; its queue tries again later, so a big
        domain's many friends of one user reach them as earlier requests
        are answered.

        @raise TooManyRequests: past the share (429).
        """
        mine = await self._store.subscription(subscriber, target)
        if mine.outbound is not Link.NONE:
            return
        domain = domain_of(subscriber)
        if await self._store.waiting_from(target, domain) >= self._max_per_domain:
            raise TooManyRequests(
                f"{self._max_per_domain} requests from {domain} already wait "
                "for this user: try later"
            )

    async def approve(self, target: str, subscriber: str) -> tuple[str, Link]:
        """
        C{target} approves C{subscriber}'s request, or pre-approves them.
        A pre-approval is a new row as a request is, and counts against
        the same rate: a user cannot fill the store with them.

        @return: the state token as the target sees it afterwards, and the
            link from C{subscriber} (approved, or pre-approved).
        @raise TooManyRequests: for a new pre-approval over the rate.
        """
        before = await self._store.subscription(target, subscriber)
        if before.inbound is Link.NONE and not self._requests.allow(target):
            raise TooManyRequests("too many subscription requests, slow down")
        link = await self._store.approve_subscription(
            target, subscriber, self._clock.seconds()
        )
        return await self.state(target, subscriber), link

    async def deny(self, target: str, subscriber: str) -> tuple[str, bool]:
        """
        C{target} removes the link from C{subscriber}: a request, a
        subscription or a pre-approval.

        @return: the state token as the target sees it afterwards, and
            whether C{subscriber} saw C{target} before.
        """
        before = await self._store.subscription(target, subscriber)
        await self._store.deny_subscription(target, subscriber)
        return await self.state(target, subscriber), before.inbound is Link.APPROVED

    async def unsubscribe(self, subscriber: str, target: str) -> str:
        """
        C{subscriber} stops seeing C{target}, or withdraws a request.

        @return: the state token as the subscriber sees it afterwards.
        """
        await self._store.unsubscribe(subscriber, target)
        return await self.state(subscriber, target)

    async def state(self, user: str, contact: str) -> str:
        """
        The state token of C{user}'s subscription with C{contact}, as
        C{user} sees it: a request C{user}'s policy blocks is not shown.
        """
        subscription = await self._store.subscription(user, contact)
        return state_token(hide_blocked(subscription, await self._profile(user)))

    async def contacts(self, user: str) -> list[Subscription]:
        """
        C{user}'s own list, without the requests their policy blocks.
        """
        profile = await self._profile(user)
        shown = []
        for subscription in await self._store.subscriptions(user):
            seen = hide_blocked(subscription, profile)
            if seen.state != "none" or seen.preapproved:
                shown.append(seen)
        return shown

    async def waiting_for(self, target: str) -> list[str]:
        """
        Who waits for C{target}'s answer, among those their policy lets
        ask, oldest request first.
        """
        profile = await self._profile(target)
        return [
            request.subscriber
            for request in await self._store.pending_requests(target)
            if not refuses(profile, request.subscriber)
        ]

    async def audience(self, target: str) -> tuple[list[str], frozenset[str]]:
        """
        C{target}'s approved subscribers, and those of them its policy
        blocks now: approved or not, they see C{target} offline.  The two
        reads (subscribers, policy) are asked of the store together, so a
        status change waits for one round trip to its thread, not two.
        """
        subscribers = self._store.subscribers(target)
        profile = Deferred.fromCoroutine(self._profile(target))
        try:
            addresses = await subscribers
        except BaseException:
            profile.addErrback(lambda _: None)
            raise
        properties = await profile
        return addresses, frozenset(s for s in addresses if refuses(properties, s))

    async def blocked_among(self, target: str, subscribers: list[str]) -> set[str]:
        """
        Those of C{subscribers} whom C{target}'s policy blocks now.
        """
        profile = await self._profile(target)
        return {s for s in subscribers if refuses(profile, s)}

    async def blocks(self, target: str, subscriber: str) -> bool:
        """
        Whether C{target}'s policy politely blocks C{subscriber}.
        """
        return refuses(await self._profile(target), subscriber)


def hide_blocked(
    subscription: Subscription, profile: Mapping[str, str] | None
) -> Subscription:
    """
    C{subscription} as its user is shown it: an inbound request their
    policy blocks is not shown (it never was put to them).
    """
    if subscription.inbound is Link.PENDING and refuses(profile, subscription.contact):
        return replace(subscription, inbound=Link.NONE)
    return subscription
