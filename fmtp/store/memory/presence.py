"""
Presence subscriptions in memory (L{fmtp.interfaces.IPresenceStore}).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred

from fmtp.objects import domain_of
from fmtp.store.checks import check_address, check_domain, check_time
from fmtp.store.memory.base import MemoryBase
from fmtp.store.presence import (
    DENIABLE,
    UNSUBSCRIBABLE,
    WAITING,
    Link,
    PendingRequest,
    Subscription,
    after_approval,
    check_action,
    check_ms,
    check_pair,
    check_request,
    requested,
    seen_by_user,
)


@dataclass(slots=True)
class _Row:
    """
    One link as the memory store holds it, filed under its (subscriber,
    target) pair.
    """

    link: Link
    created: float


class MemoryPresence(MemoryBase):
    """
    L{fmtp.interfaces.IPresenceStore}'s methods, over dicts: each link by
    its (subscriber, target) pair, and each address's partners both ways,
    so that a user's list and a target's subscribers are found without a
    scan.
    """

    def __init__(self) -> None:
        super().__init__()
        self._links: dict[tuple[str, str], _Row] = {}
        self._targets_of: dict[str, set[str]] = {}
        self._subscribers_of: dict[str, set[str]] = {}
        self._actions: dict[tuple[str, str], tuple[int, str]] = {}

    def _link(self, subscriber: str, target: str) -> Link:
        row = self._links.get((subscriber, target))
        return Link.NONE if row is None else row.link

    def _put_link(self, subscriber: str, target: str, link: Link, now: float) -> None:
        row = self._links.get((subscriber, target))
        if row is None:
            self._links[subscriber, target] = _Row(link, now)
            self._targets_of.setdefault(subscriber, set()).add(target)
            self._subscribers_of.setdefault(target, set()).add(subscriber)
        else:
            row.link = link

    def _remove_link(
        self, subscriber: str, target: str, links: frozenset[Link]
    ) -> bool:
        row = self._links.get((subscriber, target))
        if row is None or row.link not in links:
            return False
        del self._links[subscriber, target]
        self._targets_of[subscriber].discard(target)
        self._subscribers_of[target].discard(subscriber)
        return True

    def _count(
        self, links: frozenset[Link], subscriber: str = "", target: str = ""
    ) -> int:
        """
        How many links in one of the states C{links} go from C{subscriber},
        or to C{target}.
        """
        if subscriber:
            pairs = ((subscriber, t) for t in self._targets_of.get(subscriber, ()))
        else:
            pairs = ((s, target) for s in self._subscribers_of.get(target, ()))
        return sum(1 for pair in pairs if self._links[pair].link in links)

    def request_subscription(
        self,
        subscriber: str,
        target: str,
        now: float,
        max_pending: int,
        hidden: bool = False,
    ) -> Deferred[Link]:
        return self._call(self._request, subscriber, target, now, max_pending, hidden)

    def _request(
        self, subscriber: str, target: str, now: float, max_pending: int, hidden: bool
    ) -> Link:
        check_request(subscriber, target, now, max_pending, hidden)
        link = self._link(subscriber, target)
        after = requested(
            link,
            hidden,
            self._count(WAITING, subscriber=subscriber),
            self._count(frozenset({Link.PENDING}), target=target),
            max_pending,
        )
        self._put_link(subscriber, target, after, now)
        return after

    def approve_subscription(
        self, target: str, subscriber: str, now: float
    ) -> Deferred[Link]:
        return self._call(self._approve, target, subscriber, now)

    def _approve(self, target: str, subscriber: str, now: float) -> Link:
        check_pair(subscriber, target)
        check_time(now=now)
        after = after_approval(self._link(subscriber, target))
        self._put_link(subscriber, target, after, now)
        return after

    def deny_subscription(self, target: str, subscriber: str) -> Deferred[bool]:
        return self._call(self._deny, target, subscriber)

    def _deny(self, target: str, subscriber: str) -> bool:
        check_pair(subscriber, target)
        return self._remove_link(subscriber, target, DENIABLE)

    def unsubscribe(self, subscriber: str, target: str) -> Deferred[bool]:
        return self._call(self._unsubscribe, subscriber, target)

    def _unsubscribe(self, subscriber: str, target: str) -> bool:
        check_pair(subscriber, target)
        return self._remove_link(subscriber, target, UNSUBSCRIBABLE)

    def subscription(self, user: str, contact: str) -> Deferred[Subscription]:
        return self._call(self._subscription, user, contact)

    def _subscription(self, user: str, contact: str) -> Subscription:
        check_pair(user, contact)
        return seen_by_user(
            user, contact, self._link(user, contact), self._link(contact, user)
        )

    def subscriptions(self, user: str) -> Deferred[list[Subscription]]:
        return self._call(self._subscriptions, user)

    def _subscriptions(self, user: str) -> list[Subscription]:
        check_address(user=user)
        contacts = {
            target
            for target in self._targets_of.get(user, ())
            if self._links[user, target].link is not Link.PREAPPROVED
        }
        contacts.update(
            subscriber
            for subscriber in self._subscribers_of.get(user, ())
            if self._links[subscriber, user].link is not Link.HIDDEN
        )
        return [self._subscription(user, contact) for contact in sorted(contacts)]

    def subscribers(self, target: str) -> Deferred[list[str]]:
        return self._call(self._subscribers, target)

    def _subscribers(self, target: str) -> list[str]:
        check_address(target=target)
        return sorted(
            subscriber
            for subscriber in self._subscribers_of.get(target, ())
            if self._links[subscriber, target].link is Link.APPROVED
        )

    def pending_requests(self, target: str) -> Deferred[list[PendingRequest]]:
        return self._call(self._pending_requests, target)

    def _pending_requests(self, target: str) -> list[PendingRequest]:
        check_address(target=target)
        waiting = [
            PendingRequest(subscriber, target, self._links[subscriber, target].created)
            for subscriber in self._subscribers_of.get(target, ())
            if self._links[subscriber, target].link is Link.PENDING
        ]
        waiting.sort(key=lambda request: (request.created, request.subscriber))
        return waiting

    def waiting_from(self, target: str, domain: str) -> Deferred[int]:
        return self._call(self._waiting_from, target, domain)

    def _waiting_from(self, target: str, domain: str) -> int:
        check_address(target=target)
        check_domain(domain=domain)
        return sum(
            1
            for subscriber in self._subscribers_of.get(target, ())
            if domain_of(subscriber) == domain
            and self._links[subscriber, target].link in WAITING
        )

    def shared_with_domain(self, domain: str) -> Deferred[list[tuple[str, str]]]:
        return self._call(self._shared_with_domain, domain)

    def _shared_with_domain(self, domain: str) -> list[tuple[str, str]]:
        check_domain(domain=domain)
        return sorted(
            pair
            for pair, row in self._links.items()
            if row.link is Link.APPROVED and domain in map(domain_of, pair)
        )

    def followed_domains(self, domain: str) -> Deferred[list[str]]:
        return self._call(self._followed_domains, domain)

    def _followed_domains(self, domain: str) -> list[str]:
        check_domain(domain=domain)
        return sorted(
            {
                domain_of(target)
                for (subscriber, target), row in self._links.items()
                if row.link is Link.APPROVED
                and domain_of(subscriber) == domain
                and domain_of(target) != domain
            }
        )

    def last_action(self, actor: str, user: str) -> Deferred[tuple[int, str] | None]:
        return self._call(self._last_action, actor, user)

    def _last_action(self, actor: str, user: str) -> tuple[int, str] | None:
        check_pair(actor, user)
        return self._actions.get((actor, user))

    def record_action(
        self, actor: str, user: str, ms: int, object_id: str
    ) -> Deferred[None]:
        return self._call(self._record_action, actor, user, ms, object_id)

    def _record_action(self, actor: str, user: str, ms: int, object_id: str) -> None:
        check_action(actor, user, ms, object_id)
        last = self._actions.get((actor, user))
        if last is None or ms >= last[0]:
            self._actions[actor, user] = (ms, object_id)

    def forget_actions(self, before: int) -> Deferred[int]:
        return self._call(self._forget_actions, before)

    def _forget_actions(self, before: int) -> int:
        check_ms(before)
        old = [key for key, (ms, _) in self._actions.items() if ms < before]
        for key in old:
            del self._actions[key]
        return len(old)

    def expire_requests(self, before: float) -> Deferred[int]:
        return self._call(self._expire_requests, before)

    def _expire_requests(self, before: float) -> int:
        check_time(before=before)
        old = [
            pair
            for pair, row in self._links.items()
            if row.link in WAITING and row.created < before
        ]
        for subscriber, target in old:
            self._remove_link(subscriber, target, WAITING)
        return len(old)

    def _forget_subscriptions(self, address: str) -> None:
        """
        Remove every link from or to C{address}, for a deleted account.
        """
        for target in list(self._targets_of.get(address, ())):
            self._remove_link(address, target, DENIABLE)
        for subscriber in list(self._subscribers_of.get(address, ())):
            self._remove_link(subscriber, address, DENIABLE)
