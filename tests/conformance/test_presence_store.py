"""
Tests for the presence store beyond its conformance suite (which
C{tests/conformance/test_stores.py} runs against every store): the
values and rules of L{fmtp.store.presence}, what only the SQLite store does
(plans, the cap under concurrent writers), and the memory store agreeing
with the SQLite store's SQL on random sequences of calls.
"""

from __future__ import annotations

import sqlite3
from itertools import permutations
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import DeferredList

from fmtp.store import MemoryStore, SQLiteStore
from fmtp.store.presence import (
    DENIABLE,
    UNSUBSCRIBABLE,
    Link,
    PendingLimitReached,
    Subscription,
    after_approval,
    after_request,
    requested,
    seen_by_user,
)
from fmtp.store.sql.engine import upgrade_schema
from fmtp.store.sql.presence import (
    SUBSCRIBERS_QUERY,
    _approve,
    _expire_requests,
    _followed_domains,
    _pending_requests,
    _remove_link,
    _request,
    _shared_with_domain,
    _subscribers,
    _subscription,
    _subscriptions,
)
from fmtp.store.sql.schema import SCHEMA_STEPS
from tests.conformance.agreement import fired, fired_outcome, outcome
from tests.conformance.presence import ALICE, BOB, CAROL, LOST, T0

# The rules


@pytest.mark.parametrize(
    "link, requested, requested_hidden, approved",
    [
        (Link.NONE, Link.PENDING, Link.HIDDEN, Link.PREAPPROVED),
        (Link.PENDING, Link.PENDING, Link.PENDING, Link.APPROVED),
        (Link.HIDDEN, Link.PENDING, Link.HIDDEN, Link.APPROVED),
        (Link.APPROVED, Link.APPROVED, Link.APPROVED, Link.APPROVED),
        (Link.PREAPPROVED, Link.APPROVED, Link.APPROVED, Link.PREAPPROVED),
    ],
)
def test_rules(
    link: Link, requested: Link, requested_hidden: Link, approved: Link
) -> None:
    assert after_request(link) is requested
    assert after_request(link, hidden=True) is requested_hidden
    assert after_approval(link) is approved


def test_a_full_target_cap_hides_rather_than_refuses() -> None:
    """
    Only the subscriber's own cap refuses: a target's full cap makes a
    request hidden, so the subscriber cannot tell it from any other.
    """
    assert requested(Link.NONE, False, 0, 5, 5) is Link.HIDDEN
    assert requested(Link.HIDDEN, False, 5, 5, 5) is Link.HIDDEN
    assert requested(Link.HIDDEN, False, 5, 4, 5) is Link.PENDING
    assert requested(Link.PENDING, False, 5, 5, 5) is Link.PENDING
    with pytest.raises(PendingLimitReached):
        requested(Link.NONE, True, 5, 0, 5)


def test_a_hidden_request_is_shown_waiting_to_its_subscriber_only() -> None:
    assert seen_by_user(ALICE, BOB, Link.HIDDEN, Link.NONE).state == "pending out"
    assert seen_by_user(BOB, ALICE, Link.NONE, Link.HIDDEN).state == "none"


def test_removal_never_touches_the_other_sides_decision() -> None:
    assert Link.PREAPPROVED not in UNSUBSCRIBABLE
    assert DENIABLE == set(Link) - {Link.NONE}


def test_every_pair_has_a_state() -> None:
    """
    Every pair of links a user can see names one XMPP state, and no two
    pairs name the same one.
    """
    names = {
        Subscription(ALICE, BOB, outbound, inbound).state
        for outbound in (Link.NONE, Link.PENDING, Link.APPROVED)
        for inbound in (Link.NONE, Link.PENDING, Link.APPROVED)
    }
    assert len(names) == 9
    assert {"none", "pending out", "pending in", "to", "from", "both"} <= names
    assert Subscription(ALICE, BOB, inbound=Link.PREAPPROVED).state == "none"


# SQLite


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "fmtp.db"


@pytest_twisted.async_yield_fixture
async def sqlite_store(db_path):
    s = SQLiteStore(db_path)
    await s.open()
    yield s
    await s.close()


@pytest_twisted.ensureDeferred
async def test_subscribers_need_no_sort(sqlite_store: SQLiteStore) -> None:
    """
    Every status change reads its target's subscribers: in order, from an
    index, never sorting.
    """

    def plan(conn: sqlite3.Connection) -> str:
        rows = conn.execute("EXPLAIN QUERY PLAN " + SUBSCRIBERS_QUERY, [BOB])
        return "\n".join(row[-1] for row in rows)

    text = await sqlite_store.run_interaction(plan)
    assert "TEMP B-TREE" not in text
    assert "USING COVERING INDEX subscriptions_target" in text


@pytest_twisted.ensureDeferred
async def test_cap_holds_between_two_processes(db_path: Path) -> None:
    """
    Two stores on one file (a server and an admin command, or two nodes)
    flooding one user with requests at once: the cap is checked in the
    transaction that writes, so no more than the cap ever wait for the
    user; the rest wait hidden.
    """
    first, second = SQLiteStore(db_path), SQLiteStore(db_path)
    await first.open()
    await second.open()
    try:
        calls = [
            store.request_subscription(f"flood{n}.{i}@lenore.org", BOB, T0, 5)
            for n in range(20)
            for i, store in enumerate((first, second))
        ]
        results = await DeferredList(calls)
        links = [result for ok, result in results]
        assert sorted(link.value for link in links) == ["hidden"] * 35 + ["pending"] * 5
        assert len(await first.pending_requests(BOB)) == 5
    finally:
        await first.close()
        await second.close()


# The memory store against the SQLite store's SQL

_pairs = st.sampled_from(list(permutations([ALICE, BOB, CAROL, LOST], 2)))
_times = st.integers(0, 5).map(lambda n: T0 + n)
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("request"), _pairs, _times, st.integers(0, 3), st.booleans()),
        st.tuples(st.just("approve"), _pairs, _times),
        st.tuples(st.just("deny"), _pairs),
        st.tuples(st.just("unsubscribe"), _pairs),
        st.tuples(st.just("expire"), _times),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(operations=_operations)
def test_sqlite_agrees_with_memory(operations) -> None:
    """
    Any sequence of requests, answers and removals leaves both stores with
    the same links, seen the same way from every side.
    """
    memory = MemoryStore()
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        upgrade_schema(conn, SCHEMA_STEPS)
        for op in operations:
            if op[0] == "request":
                _, (subscriber, target), now, cap, hidden = op
                assert fired_outcome(
                    memory.request_subscription(subscriber, target, now, cap, hidden)
                ) == outcome(_request, conn, subscriber, target, now, cap, hidden)
            elif op[0] == "approve":
                _, (subscriber, target), now = op
                assert fired(
                    memory.approve_subscription(target, subscriber, now)
                ) == _approve(conn, target, subscriber, now)
            elif op[0] == "deny":
                _, (subscriber, target) = op
                assert fired(
                    memory.deny_subscription(target, subscriber)
                ) == _remove_link(conn, subscriber, target, DENIABLE)
            elif op[0] == "unsubscribe":
                _, (subscriber, target) = op
                assert fired(memory.unsubscribe(subscriber, target)) == _remove_link(
                    conn, subscriber, target, UNSUBSCRIBABLE
                )
            else:
                assert fired(memory.expire_requests(op[1])) == _expire_requests(
                    conn, op[1]
                )
        for user in (ALICE, BOB, CAROL, LOST):
            assert _subscriptions(conn, user) == fired(memory.subscriptions(user))
            assert _subscribers(conn, user) == fired(memory.subscribers(user))
            assert _pending_requests(conn, user) == fired(memory.pending_requests(user))
        for user, contact in permutations([ALICE, BOB], 2):
            assert _subscription(conn, user, contact) == fired(
                memory.subscription(user, contact)
            )
        for domain in ("example.com", "lenore.org"):
            assert _shared_with_domain(conn, domain) == fired(
                memory.shared_with_domain(domain)
            )
            assert _followed_domains(conn, domain) == fired(
                memory.followed_domains(domain)
            )
    finally:
        conn.close()
