"""
The SQL of presence subscriptions (L{fmtp.interfaces.IPresenceStore}).

One row per directed link (see L{fmtp.store.presence}); the rules that
change a link are L{fmtp.store.presence}'s, applied here inside the
transaction that reads and writes it, so two requests cannot both pass
the cap on waiting ones.
"""

from __future__ import annotations

import sqlite3

from twisted.internet.defer import Deferred

from fmtp.objects import domain_of
from fmtp.store.checks import check_address, check_domain, check_time
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
from fmtp.store.sql.engine import SQLiteEngine, transaction


def _link(conn: sqlite3.Connection, subscriber: str, target: str) -> Link:
    row = conn.execute(
        "SELECT state FROM subscriptions WHERE subscriber = ? AND target = ?",
        (subscriber, target),
    ).fetchone()
    return Link.NONE if row is None else Link(row[0])


def _put_link(
    conn: sqlite3.Connection, subscriber: str, target: str, link: Link, now: float
) -> None:
    # An existing row keeps its time: a request is as old as when first made.
    conn.execute(
        """
        INSERT INTO subscriptions
            (subscriber, target, state, created, subscriber_domain, target_domain)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (subscriber, target) DO UPDATE SET state = excluded.state
        """,
        (subscriber, target, link.value, now, domain_of(subscriber), domain_of(target)),
    )


def _count(
    conn: sqlite3.Connection, column: str, address: str, links: frozenset[Link]
) -> int:
    # The column is one of ours, never a caller's text.
    states = sorted(link.value for link in links)
    marks = ", ".join("?" for _ in states)
    (count,) = conn.execute(
        f"SELECT count(*) FROM subscriptions WHERE {column} = ? AND state IN ({marks})",
        (address, *states),
    ).fetchone()
    return int(count)


def _request(
    conn: sqlite3.Connection,
    subscriber: str,
    target: str,
    now: float,
    max_pending: int,
    hidden: bool = False,
) -> Link:
    with transaction(conn):
        link = _link(conn, subscriber, target)
        after = requested(
            link,
            hidden,
            _count(conn, "subscriber", subscriber, WAITING),
            _count(conn, "target", target, frozenset({Link.PENDING})),
            max_pending,
        )
        if after is not link:
            _put_link(conn, subscriber, target, after, now)
    return after


def _approve(
    conn: sqlite3.Connection, target: str, subscriber: str, now: float
) -> Link:
    with transaction(conn):
        link = _link(conn, subscriber, target)
        after = after_approval(link)
        if after is not link:
            _put_link(conn, subscriber, target, after, now)
    return after


def _remove_link(
    conn: sqlite3.Connection, subscriber: str, target: str, links: frozenset[Link]
) -> bool:
    states = sorted(link.value for link in links)
    marks = ", ".join("?" for _ in states)
    cursor = conn.execute(
        "DELETE FROM subscriptions WHERE subscriber = ? AND target = ? "
        f"AND state IN ({marks})",
        (subscriber, target, *states),
    )
    return cursor.rowcount > 0


def _subscription(conn: sqlite3.Connection, user: str, contact: str) -> Subscription:
    return seen_by_user(
        user, contact, _link(conn, user, contact), _link(conn, contact, user)
    )


def _subscriptions(conn: sqlite3.Connection, user: str) -> list[Subscription]:
    links: dict[str, dict[str, Link]] = {}
    for contact, state, direction in conn.execute(
        """
        SELECT target, state, 'outbound' FROM subscriptions
        WHERE subscriber = ? AND state != 'preapproved'
        UNION ALL
        SELECT subscriber, state, 'inbound' FROM subscriptions
        WHERE target = ? AND state != 'hidden'
        """,
        (user, user),
    ):
        links.setdefault(contact, {})[direction] = Link(state)
    return [
        seen_by_user(
            user,
            contact,
            links[contact].get("outbound", Link.NONE),
            links[contact].get("inbound", Link.NONE),
        )
        for contact in sorted(links)
    ]


#: A target's subscribers, read in order from C{subscriptions_target}.
SUBSCRIBERS_QUERY = """
    SELECT subscriber FROM subscriptions
    WHERE target = ? AND state = 'approved' ORDER BY subscriber
"""


def _subscribers(conn: sqlite3.Connection, target: str) -> list[str]:
    return [subscriber for (subscriber,) in conn.execute(SUBSCRIBERS_QUERY, (target,))]


def _pending_requests(conn: sqlite3.Connection, target: str) -> list[PendingRequest]:
    return [
        PendingRequest(subscriber, target, float(created))
        for subscriber, created in conn.execute(
            """
            SELECT subscriber, created FROM subscriptions
            WHERE target = ? AND state = 'pending' ORDER BY created, subscriber
            """,
            (target,),
        )
    ]


def _waiting_from(conn: sqlite3.Connection, target: str, domain: str) -> int:
    (count,) = conn.execute(
        """
        SELECT COUNT(*) FROM subscriptions
        WHERE target = ? AND state IN ('pending', 'hidden')
            AND subscriber_domain = ?
        """,
        (target, domain),
    ).fetchone()
    return count


def _shared_with_domain(conn: sqlite3.Connection, domain: str) -> list[tuple[str, str]]:
    return [
        (subscriber, target)
        for subscriber, target in conn.execute(
            """
            SELECT subscriber, target FROM subscriptions
            WHERE state = 'approved'
                AND (subscriber_domain = ? OR target_domain = ?)
            ORDER BY subscriber, target
            """,
            (domain, domain),
        )
    ]


def _followed_domains(conn: sqlite3.Connection, domain: str) -> list[str]:
    return [
        target_domain
        for (target_domain,) in conn.execute(
            """
            SELECT DISTINCT target_domain FROM subscriptions
            WHERE subscriber_domain = ? AND target_domain != ?
                AND state = 'approved'
            ORDER BY target_domain
            """,
            (domain, domain),
        )
    ]


def _last_action(
    conn: sqlite3.Connection, actor: str, user: str
) -> tuple[int, str] | None:
    row = conn.execute(
        "SELECT ms, object_id FROM subscription_actions WHERE actor = ? AND user = ?",
        (actor, user),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def _record_action(
    conn: sqlite3.Connection, actor: str, user: str, ms: int, object_id: str
) -> None:
    conn.execute(
        """
        INSERT INTO subscription_actions (actor, user, ms, object_id)
        VALUES (?, ?, ?, ?)
        ON CONFLICT (actor, user) DO UPDATE SET
            ms = excluded.ms, object_id = excluded.object_id
        WHERE excluded.ms >= subscription_actions.ms
        """,
        (actor, user, ms, object_id),
    )


def _forget_actions(conn: sqlite3.Connection, before: int) -> int:
    return conn.execute(
        "DELETE FROM subscription_actions WHERE ms < ?", (before,)
    ).rowcount


def _expire_requests(conn: sqlite3.Connection, before: float) -> int:
    cursor = conn.execute(
        "DELETE FROM subscriptions WHERE state IN ('pending', 'hidden') "
        "AND created < ?",
        (before,),
    )
    return cursor.rowcount


def _forget_subscriptions(conn: sqlite3.Connection, address: str) -> None:
    """
    Remove every link from or to C{address}, for a deleted account, inside
    the caller's transaction.
    """
    conn.execute("DELETE FROM subscriptions WHERE subscriber = ?", (address,))
    conn.execute("DELETE FROM subscriptions WHERE target = ?", (address,))


class SQLPresence(SQLiteEngine):
    """
    L{fmtp.interfaces.IPresenceStore}'s methods, over the engine.
    """

    def request_subscription(
        self,
        subscriber: str,
        target: str,
        now: float,
        max_pending: int,
        hidden: bool = False,
    ) -> Deferred[Link]:
        return self.run_checked(
            lambda: check_request(subscriber, target, now, max_pending, hidden),
            _request,
            subscriber,
            target,
            now,
            max_pending,
            hidden,
        )

    def approve_subscription(
        self, target: str, subscriber: str, now: float
    ) -> Deferred[Link]:
        def check() -> None:
            check_pair(subscriber, target)
            check_time(now=now)

        return self.run_checked(check, _approve, target, subscriber, now)

    def deny_subscription(self, target: str, subscriber: str) -> Deferred[bool]:
        return self.run_checked(
            lambda: check_pair(subscriber, target),
            _remove_link,
            subscriber,
            target,
            DENIABLE,
        )

    def unsubscribe(self, subscriber: str, target: str) -> Deferred[bool]:
        return self.run_checked(
            lambda: check_pair(subscriber, target),
            _remove_link,
            subscriber,
            target,
            UNSUBSCRIBABLE,
        )

    def subscription(self, user: str, contact: str) -> Deferred[Subscription]:
        return self.run_checked(
            lambda: check_pair(user, contact), _subscription, user, contact, read=True
        )

    def subscriptions(self, user: str) -> Deferred[list[Subscription]]:
        return self.run_checked(
            lambda: check_address(user=user), _subscriptions, user, read=True
        )

    def subscribers(self, target: str) -> Deferred[list[str]]:
        return self.run_checked(
            lambda: check_address(target=target), _subscribers, target, read=True
        )

    def pending_requests(self, target: str) -> Deferred[list[PendingRequest]]:
        return self.run_checked(
            lambda: check_address(target=target), _pending_requests, target, read=True
        )

    def waiting_from(self, target: str, domain: str) -> Deferred[int]:
        return self.run_checked(
            lambda: (check_address(target=target), check_domain(domain=domain)),
            _waiting_from,
            target,
            domain,
            read=True,
        )

    def shared_with_domain(self, domain: str) -> Deferred[list[tuple[str, str]]]:
        return self.run_checked(
            lambda: check_domain(domain=domain), _shared_with_domain, domain, read=True
        )

    def followed_domains(self, domain: str) -> Deferred[list[str]]:
        return self.run_checked(
            lambda: check_domain(domain=domain), _followed_domains, domain, read=True
        )

    def last_action(self, actor: str, user: str) -> Deferred[tuple[int, str] | None]:
        return self.run_checked(
            lambda: check_pair(actor, user), _last_action, actor, user, read=True
        )

    def record_action(
        self, actor: str, user: str, ms: int, object_id: str
    ) -> Deferred[None]:
        return self.run_checked(
            lambda: check_action(actor, user, ms, object_id),
            _record_action,
            actor,
            user,
            ms,
            object_id,
        )

    def forget_actions(self, before: int) -> Deferred[int]:
        return self.run_checked(lambda: check_ms(before), _forget_actions, before)

    def expire_requests(self, before: float) -> Deferred[int]:
        return self.run_checked(
            lambda: check_time(before=before), _expire_requests, before
        )
