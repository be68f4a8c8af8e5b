"""
The contract every L{IPresenceStore} keeps, as one suite run against each
store.

A test module subclasses L{PresenceConformance} and provides two fixtures
(see C{tests/conformance/test_stores.py}):

  - C{store}: an opened, empty store, closed afterwards;
  - C{reopen}: an async function that closes C{store} and returns the
    same data opened again as a store (for a file store, a new store
    object on the same file, as after a restart), closed afterwards.
"""

from __future__ import annotations

import math

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from fmtp.errors import StoreUnavailable
from fmtp.interfaces import IPresenceStore
from fmtp.store.presence import (
    Link,
    PendingLimitReached,
    PendingRequest,
    Subscription,
)

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"
#: A user of another domain: a server keeps its links with local users.
LOST = "lost@lenore.org"
RAVEN = "raven@lenore.org"

T0 = 1700000000.25
#: Large enough never to be reached, where a test is not about the cap.
CAP = 100


async def link_out(store, subscriber: str, target: str) -> Link:
    """
    The link from C{subscriber} to C{target}, as the subscriber sees it.
    """
    return (await store.subscription(subscriber, target)).outbound


class PresenceConformance:
    """
    Tests every L{IPresenceStore} must pass.
    """

    def test_provides_interface(self, store) -> None:
        assert verifyObject(IPresenceStore, store)

    # Requests and answers

    @pytest_twisted.ensureDeferred
    async def test_nothing_linked(self, store) -> None:
        assert await store.subscription(ALICE, BOB) == Subscription(ALICE, BOB)
        assert (await store.subscription(ALICE, BOB)).state == "none"
        assert await store.subscriptions(ALICE) == []
        assert await store.subscribers(ALICE) == []
        assert await store.pending_requests(ALICE) == []

    @pytest_twisted.ensureDeferred
    async def test_request_waits_for_the_target(self, store) -> None:
        assert await store.request_subscription(ALICE, BOB, T0, CAP) is Link.PENDING
        mine = await store.subscription(ALICE, BOB)
        theirs = await store.subscription(BOB, ALICE)
        assert (mine.outbound, mine.inbound, mine.state) == (
            Link.PENDING,
            Link.NONE,
            "pending out",
        )
        assert (theirs.outbound, theirs.inbound, theirs.state) == (
            Link.NONE,
            Link.PENDING,
            "pending in",
        )
        assert await store.pending_requests(BOB) == [PendingRequest(ALICE, BOB, T0)]
        assert await store.pending_requests(ALICE) == []
        # Asking is not seeing.
        assert await store.subscribers(BOB) == []

    @pytest_twisted.ensureDeferred
    async def test_approval(self, store) -> None:
        await store.request_subscription(ALICE, BOB, T0, CAP)
        assert await store.approve_subscription(BOB, ALICE, T0 + 1) is Link.APPROVED
        assert await store.subscribers(BOB) == [ALICE]
        assert (await store.subscription(ALICE, BOB)).state == "to"
        assert (await store.subscription(BOB, ALICE)).state == "from"
        assert await store.pending_requests(BOB) == []
        # Approving or asking again changes nothing.
        assert await store.approve_subscription(BOB, ALICE, T0 + 2) is Link.APPROVED
        assert await store.request_subscription(ALICE, BOB, T0 + 3, 0) is Link.APPROVED
        assert await store.subscribers(BOB) == [ALICE]

    @pytest_twisted.ensureDeferred
    async def test_states_of_both_directions(self, store) -> None:
        await store.request_subscription(ALICE, BOB, T0, CAP)
        await store.request_subscription(BOB, ALICE, T0, CAP)
        assert (await store.subscription(ALICE, BOB)).state == "pending out+in"
        await store.approve_subscription(BOB, ALICE, T0)
        assert (await store.subscription(ALICE, BOB)).state == "to+pending in"
        assert (await store.subscription(BOB, ALICE)).state == "from+pending out"
        await store.approve_subscription(ALICE, BOB, T0)
        assert (await store.subscription(ALICE, BOB)).state == "both"
        assert (await store.subscription(BOB, ALICE)).state == "both"
        assert await store.subscribers(ALICE) == [BOB]
        assert await store.subscribers(BOB) == [ALICE]

    @pytest_twisted.ensureDeferred
    async def test_asking_again_keeps_the_first_request(self, store) -> None:
        await store.request_subscription(ALICE, BOB, T0, CAP)
        assert await store.request_subscription(ALICE, BOB, T0 + 9, 1) is Link.PENDING
        assert await store.pending_requests(BOB) == [PendingRequest(ALICE, BOB, T0)]

    @pytest_twisted.ensureDeferred
    async def test_preapproval(self, store) -> None:
        """
        Approving someone who has not asked pre-approves them: only the
        approver sees it, and their request, when it comes, is approved at
        once (whatever the cap: it never waits).
        """
        assert await store.approve_subscription(BOB, ALICE, T0) is Link.PREAPPROVED
        assert await store.approve_subscription(BOB, ALICE, T0) is Link.PREAPPROVED
        theirs = await store.subscription(BOB, ALICE)
        assert (theirs.inbound, theirs.state, theirs.preapproved) == (
            Link.PREAPPROVED,
            "none",
            True,
        )
        assert await store.subscriptions(BOB) == [theirs]
        # Alice is not told; it is not a subscription yet.
        assert await store.subscription(ALICE, BOB) == Subscription(ALICE, BOB)
        assert await store.subscriptions(ALICE) == []
        assert await store.subscribers(BOB) == []
        assert await store.pending_requests(BOB) == []

        assert await store.request_subscription(ALICE, BOB, T0, 0) is Link.APPROVED
        assert await store.subscribers(BOB) == [ALICE]
        assert (await store.subscription(BOB, ALICE)).state == "from"

    # Removal from either side

    @pytest_twisted.ensureDeferred
    async def test_deny_a_request(self, store) -> None:
        await store.request_subscription(ALICE, BOB, T0, CAP)
        assert await store.deny_subscription(BOB, ALICE) is True
        assert await store.subscription(ALICE, BOB) == Subscription(ALICE, BOB)
        assert await store.pending_requests(BOB) == []
        assert await store.deny_subscription(BOB, ALICE) is False

    @pytest_twisted.ensureDeferred
    async def test_deny_cancels_a_subscription_or_a_preapproval(self, store) -> None:
        await store.request_subscription(ALICE, BOB, T0, CAP)
        await store.approve_subscription(BOB, ALICE, T0)
        assert await store.deny_subscription(BOB, ALICE) is True
        assert await store.subscribers(BOB) == []
        await store.approve_subscription(BOB, CAROL, T0)
        assert await store.deny_subscription(BOB, CAROL) is True
        assert await store.subscriptions(BOB) == []
        # Carol's request now waits like anyone's.
        assert await store.request_subscription(CAROL, BOB, T0, CAP) is Link.PENDING

    @pytest_twisted.ensureDeferred
    async def test_unsubscribe(self, store) -> None:
        await store.request_subscription(ALICE, BOB, T0, CAP)
        await store.approve_subscription(BOB, ALICE, T0)
        await store.request_subscription(ALICE, CAROL, T0, CAP)
        assert await store.unsubscribe(ALICE, BOB) is True
        assert await store.unsubscribe(ALICE, CAROL) is True
        assert await store.subscriptions(ALICE) == []
        assert await store.subscribers(BOB) == []
        assert await store.pending_requests(CAROL) == []
        assert await store.unsubscribe(ALICE, BOB) is False

    @pytest_twisted.ensureDeferred
    async def test_unsubscribe_keeps_the_targets_preapproval(self, store) -> None:
        await store.approve_subscription(BOB, ALICE, T0)
        assert await store.unsubscribe(ALICE, BOB) is False
        assert (await store.subscription(BOB, ALICE)).preapproved is True
        # Subscribed through the pre-approval, then gone: Bob approved
        # once, and Alice's next request waits for him again.
        await store.request_subscription(ALICE, BOB, T0, CAP)
        assert await store.unsubscribe(ALICE, BOB) is True
        assert await store.request_subscription(ALICE, BOB, T0, CAP) is Link.PENDING

    # The cap on waiting requests

    @pytest_twisted.ensureDeferred
    async def test_cap_per_subscriber(self, store) -> None:
        await store.request_subscription(ALICE, BOB, T0, 2)
        await store.request_subscription(ALICE, LOST, T0, 2)
        with pytest.raises(PendingLimitReached) as info:
            await store.request_subscription(ALICE, CAROL, T0, 2)
        assert info.value.code == 429
        assert await store.pending_requests(CAROL) == []
        assert await link_out(store, ALICE, CAROL) is Link.NONE
        # An answered request no longer waits.
        await store.approve_subscription(BOB, ALICE, T0)
        assert await store.request_subscription(ALICE, CAROL, T0, 2) is Link.PENDING

    @pytest_twisted.ensureDeferred
    async def test_cap_per_target_hides_the_overflow(self, store) -> None:
        """
        Many subscribers flooding one user are held to the cap too: past
        it a request waits hidden, answered as any waiting request (a
        refusal would tell the asker the target has a full cap, which an
        unknown user never has).
        """
        await store.request_subscription(ALICE, BOB, T0, 2)
        await store.request_subscription(LOST, BOB, T0, 2)
        assert await store.request_subscription(RAVEN, BOB, T0, 2) is Link.HIDDEN
        assert await store.subscription(RAVEN, BOB) == Subscription(
            RAVEN, BOB, Link.PENDING
        )
        assert [r.subscriber for r in await store.pending_requests(BOB)] == [
            ALICE,
            LOST,
        ]
        assert [s.contact for s in await store.subscriptions(BOB)] == [ALICE, LOST]
        # Asked again with room under the cap, it is put to the target.
        await store.deny_subscription(BOB, LOST)
        assert await store.request_subscription(RAVEN, BOB, T0, 2) is Link.PENDING
        assert await store.pending_requests(BOB) == [
            PendingRequest(ALICE, BOB, T0),
            PendingRequest(RAVEN, BOB, T0),
        ]

    @pytest_twisted.ensureDeferred
    async def test_hidden_requests_do_not_fill_the_targets_cap(self, store) -> None:
        """
        The attack: throwaway accounts the target blocks (or requests for
        no user at all) must not use up the requests that may wait for
        the target, or a real request would never reach them.
        """
        for subscriber in (ALICE, LOST, RAVEN):
            link = await store.request_subscription(subscriber, BOB, T0, 2, True)
            assert link is Link.HIDDEN
        assert await store.pending_requests(BOB) == []
        assert await store.subscriptions(BOB) == []
        assert (await store.subscription(BOB, ALICE)).state == "none"
        assert (await store.subscription(ALICE, BOB)).state == "pending out"
        assert await store.request_subscription(CAROL, BOB, T0, 2) is Link.PENDING
        assert [r.subscriber for r in await store.pending_requests(BOB)] == [CAROL]

    @pytest_twisted.ensureDeferred
    async def test_hidden_requests_count_for_their_subscriber(self, store) -> None:
        await store.request_subscription(ALICE, BOB, T0, 2, True)
        await store.request_subscription(ALICE, CAROL, T0, 2, True)
        with pytest.raises(PendingLimitReached):
            await store.request_subscription(ALICE, LOST, T0, 2)
        with pytest.raises(PendingLimitReached):
            await store.request_subscription(ALICE, RAVEN, T0, 2, True)

    @pytest_twisted.ensureDeferred
    async def test_a_hidden_request_and_its_answers(self, store) -> None:
        """
        Asking again hidden changes nothing; a request once put to the
        target is never hidden again; the target may still approve or
        deny it, and its subscriber withdraw it.
        """
        assert await store.request_subscription(ALICE, BOB, T0, CAP, True) is (
            Link.HIDDEN
        )
        assert await store.request_subscription(ALICE, BOB, T0 + 1, CAP, True) is (
            Link.HIDDEN
        )
        assert await store.request_subscription(ALICE, BOB, T0 + 2, CAP) is (
            Link.PENDING
        )
        assert await store.pending_requests(BOB) == [PendingRequest(ALICE, BOB, T0)]
        assert await store.request_subscription(ALICE, BOB, T0, CAP, True) is (
            Link.PENDING
        )
        await store.request_subscription(CAROL, BOB, T0, CAP, True)
        assert await store.approve_subscription(BOB, CAROL, T0) is Link.APPROVED
        assert await store.subscribers(BOB) == [CAROL]
        await store.request_subscription(LOST, BOB, T0, CAP, True)
        assert await store.unsubscribe(LOST, BOB) is True
        await store.request_subscription(RAVEN, BOB, T0, CAP, True)
        assert await store.deny_subscription(BOB, RAVEN) is True
        assert await link_out(store, RAVEN, BOB) is Link.NONE

    @pytest_twisted.ensureDeferred
    async def test_cap_counts_only_waiting_requests(self, store) -> None:
        await store.request_subscription(ALICE, BOB, T0, CAP)
        await store.approve_subscription(BOB, ALICE, T0)
        await store.approve_subscription(CAROL, ALICE, T0)
        await store.approve_subscription(ALICE, LOST, T0)
        assert await store.request_subscription(ALICE, RAVEN, T0, 1) is Link.PENDING
        with pytest.raises(PendingLimitReached):
            await store.request_subscription(ALICE, LOST, T0, 0)

    # Lists

    @pytest_twisted.ensureDeferred
    async def test_a_users_list_is_their_own(self, store) -> None:
        await store.request_subscription(ALICE, BOB, T0, CAP)
        await store.approve_subscription(BOB, ALICE, T0)
        await store.request_subscription(CAROL, ALICE, T0, CAP)
        await store.request_subscription(LOST, ALICE, T0, CAP)
        await store.approve_subscription(ALICE, LOST, T0)
        await store.request_subscription(BOB, CAROL, T0, CAP)
        await store.approve_subscription(CAROL, BOB, T0)
        await store.approve_subscription(RAVEN, BOB, T0)

        assert await store.subscriptions(ALICE) == [
            Subscription(ALICE, BOB, Link.APPROVED, Link.NONE),
            Subscription(ALICE, CAROL, Link.NONE, Link.PENDING),
            Subscription(ALICE, LOST, Link.NONE, Link.APPROVED),
        ]
        assert await store.subscriptions(BOB) == [
            Subscription(BOB, ALICE, Link.NONE, Link.APPROVED),
            Subscription(BOB, CAROL, Link.APPROVED, Link.NONE),
        ]
        assert await store.subscriptions(RAVEN) == [
            Subscription(RAVEN, BOB, Link.NONE, Link.PREAPPROVED)
        ]
        assert await store.subscribers(ALICE) == [LOST]
        assert await store.subscribers(BOB) == [ALICE]
        assert await store.subscribers(CAROL) == [BOB]

    @pytest_twisted.ensureDeferred
    async def test_subscribers_are_in_order(self, store) -> None:
        for subscriber in (RAVEN, CAROL, LOST, ALICE):
            await store.approve_subscription(BOB, subscriber, T0)
            await store.request_subscription(subscriber, BOB, T0, CAP)
        assert await store.subscribers(BOB) == sorted([RAVEN, CAROL, LOST, ALICE])

    @pytest_twisted.ensureDeferred
    async def test_pending_requests_oldest_first(self, store) -> None:
        await store.request_subscription(LOST, BOB, T0 + 2, CAP)
        await store.request_subscription(CAROL, BOB, T0 + 1, CAP)
        await store.request_subscription(ALICE, BOB, T0 + 2, CAP)
        assert await store.pending_requests(BOB) == [
            PendingRequest(CAROL, BOB, T0 + 1),
            PendingRequest(ALICE, BOB, T0 + 2),
            PendingRequest(LOST, BOB, T0 + 2),
        ]

    @pytest_twisted.ensureDeferred
    async def test_shared_with_domain(self, store) -> None:
        await store.approve_subscription(ALICE, LOST, T0)
        await store.request_subscription(LOST, ALICE, T0, CAP)
        await store.approve_subscription(RAVEN, BOB, T0)
        await store.request_subscription(BOB, RAVEN, T0, CAP)
        # Waiting, pre-approved and local links are not shared.
        await store.request_subscription(CAROL, RAVEN, T0, CAP)
        await store.approve_subscription(CAROL, LOST, T0)
        await store.request_subscription(ALICE, CAROL, T0, CAP)
        await store.approve_subscription(CAROL, ALICE, T0)

        assert await store.shared_with_domain("lenore.org") == [
            (BOB, RAVEN),
            (LOST, ALICE),
        ]
        assert await store.shared_with_domain("example.com") == [
            (ALICE, CAROL),
            (BOB, RAVEN),
            (LOST, ALICE),
        ]
        assert await store.shared_with_domain("kingdom.example") == []

    @pytest_twisted.ensureDeferred
    async def test_waiting_from(self, store) -> None:
        await store.request_subscription(LOST, BOB, T0, CAP, True)
        await store.request_subscription(RAVEN, BOB, T0, CAP)
        await store.request_subscription(ALICE, BOB, T0, CAP)
        await store.request_subscription(LOST, CAROL, T0, CAP)
        assert await store.waiting_from(BOB, "lenore.org") == 2
        assert await store.waiting_from(BOB, "example.com") == 1
        assert await store.waiting_from(CAROL, "lenore.org") == 1
        # Approved, it no longer waits.
        await store.approve_subscription(BOB, RAVEN, T0)
        assert await store.waiting_from(BOB, "lenore.org") == 1
        assert await store.waiting_from(BOB, "kingdom.example") == 0

    @pytest_twisted.ensureDeferred
    async def test_last_action(self, store) -> None:
        assert await store.last_action(LOST, ALICE) is None
        await store.record_action(LOST, ALICE, 2000, "2000.a.lost@lenore.org")
        assert await store.last_action(LOST, ALICE) == (2000, "2000.a.lost@lenore.org")
        # An older one changes nothing; a newer one, or as new, replaces it.
        await store.record_action(LOST, ALICE, 1000, "1000.b.lost@lenore.org")
        assert await store.last_action(LOST, ALICE) == (2000, "2000.a.lost@lenore.org")
        await store.record_action(LOST, ALICE, 2000, "2000.c.lost@lenore.org")
        assert await store.last_action(LOST, ALICE) == (2000, "2000.c.lost@lenore.org")
        # One pair's actions are not another's, either way round.
        assert await store.last_action(ALICE, LOST) is None
        await store.record_action(RAVEN, ALICE, 5000, "5000.d.raven@lenore.org")
        assert await store.forget_actions(3000) == 1
        assert await store.last_action(LOST, ALICE) is None
        assert await store.last_action(RAVEN, ALICE) == (
            5000,
            "5000.d.raven@lenore.org",
        )

    @pytest_twisted.ensureDeferred
    async def test_followed_domains(self, store) -> None:
        await store.approve_subscription(LOST, ALICE, T0)
        await store.request_subscription(ALICE, LOST, T0, CAP)
        # Waiting, pre-approved and local links follow nobody.
        await store.request_subscription(BOB, RAVEN, T0, CAP)
        await store.approve_subscription(RAVEN, CAROL, T0)
        await store.request_subscription(ALICE, CAROL, T0, CAP)
        await store.approve_subscription(CAROL, ALICE, T0)

        assert await store.followed_domains("example.com") == ["lenore.org"]
        assert await store.followed_domains("lenore.org") == []
        await store.request_subscription(RAVEN, BOB, T0, CAP)
        await store.approve_subscription(BOB, RAVEN, T0)
        assert await store.followed_domains("lenore.org") == ["example.com"]

    @pytest_twisted.ensureDeferred
    async def test_expire_requests(self, store) -> None:
        await store.request_subscription(ALICE, BOB, T0, CAP)
        await store.request_subscription(ALICE, CAROL, T0, CAP, True)
        await store.request_subscription(CAROL, BOB, T0 + 10, CAP)
        await store.request_subscription(LOST, BOB, T0, CAP)
        await store.approve_subscription(BOB, LOST, T0)
        await store.approve_subscription(BOB, RAVEN, T0)
        assert await store.expire_requests(T0 + 10) == 2
        assert await link_out(store, ALICE, CAROL) is Link.NONE
        assert await store.pending_requests(BOB) == [
            PendingRequest(CAROL, BOB, T0 + 10)
        ]
        assert await store.subscribers(BOB) == [LOST]
        assert (await store.subscription(BOB, RAVEN)).preapproved is True
        assert await store.expire_requests(T0 + 10) == 0

    # Accounts

    @pytest_twisted.ensureDeferred
    async def test_deleting_an_account_removes_its_links(self, store) -> None:
        """
        Whoever gets the address next inherits no buddy, no subscriber and
        no request of the old account.
        """
        await store.add_account(ALICE, "hash")
        await store.request_subscription(ALICE, BOB, T0, CAP)
        await store.approve_subscription(BOB, ALICE, T0)
        await store.request_subscription(LOST, ALICE, T0, CAP)
        await store.approve_subscription(ALICE, CAROL, T0)
        await store.request_subscription(ALICE, RAVEN, T0, CAP)
        await store.request_subscription(CAROL, BOB, T0, CAP)

        assert await store.delete_account(ALICE) is True
        assert await store.subscriptions(ALICE) == []
        assert await store.subscribers(BOB) == []
        assert await store.subscriptions(BOB) == [
            Subscription(BOB, CAROL, Link.NONE, Link.PENDING)
        ]
        assert await store.subscriptions(LOST) == []
        assert await store.pending_requests(RAVEN) == []

    # Bad arguments

    @pytest.mark.parametrize(
        "call",
        [
            lambda s: s.request_subscription(ALICE, ALICE, T0, CAP),
            lambda s: s.request_subscription("Alice@Example.com", BOB, T0, CAP),
            lambda s: s.request_subscription(ALICE, "bob", T0, CAP),
            lambda s: s.request_subscription(ALICE, None, T0, CAP),
            lambda s: s.request_subscription(ALICE, BOB, T0, -1),
            lambda s: s.request_subscription(ALICE, BOB, T0, True),
            lambda s: s.request_subscription(ALICE, BOB, T0, 1.5),
            lambda s: s.request_subscription(ALICE, BOB, "now", CAP),
            lambda s: s.request_subscription(ALICE, BOB, math.nan, CAP),
            lambda s: s.request_subscription(ALICE, BOB, T0, CAP, "yes"),
            lambda s: s.approve_subscription(BOB, BOB, T0),
            lambda s: s.approve_subscription(BOB, "ALICE@example.com", T0),
            lambda s: s.approve_subscription(BOB, ALICE, None),
            lambda s: s.deny_subscription(BOB, "alice@"),
            lambda s: s.unsubscribe("", BOB),
            lambda s: s.subscription(ALICE, ALICE),
            lambda s: s.subscriptions("alice"),
            lambda s: s.subscribers(b"bob@example.com"),
            lambda s: s.pending_requests("bob @example.com"),
            lambda s: s.shared_with_domain("Lenore.org"),
            lambda s: s.shared_with_domain(""),
            lambda s: s.followed_domains("Example.com"),
            lambda s: s.last_action(ALICE, ALICE),
            lambda s: s.waiting_from(BOB, "Lenore.org"),
            lambda s: s.waiting_from("bob", "lenore.org"),
            lambda s: s.record_action(LOST, ALICE, 1.5, "1.a.lost@lenore.org"),
            lambda s: s.record_action(LOST, ALICE, 1, ""),
            lambda s: s.forget_actions("soon"),
            lambda s: s.expire_requests("yesterday"),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_bad_arguments_are_refused(self, store, call) -> None:
        with pytest.raises(ValueError):
            await call(store)
        assert await store.subscriptions(ALICE) == []
        assert await store.subscriptions(BOB) == []

    # Durability

    @pytest_twisted.ensureDeferred
    async def test_survives_reopen(self, store, reopen) -> None:
        await store.request_subscription(ALICE, BOB, T0, CAP)
        await store.approve_subscription(BOB, ALICE, T0 + 1)
        await store.request_subscription(LOST, ALICE, T0 + 2, CAP)
        await store.approve_subscription(CAROL, ALICE, T0 + 3)

        store = await reopen()

        assert await store.subscriptions(ALICE) == [
            Subscription(ALICE, BOB, Link.APPROVED, Link.NONE),
            Subscription(ALICE, LOST, Link.NONE, Link.PENDING),
        ]
        assert await store.pending_requests(ALICE) == [
            PendingRequest(LOST, ALICE, T0 + 2)
        ]
        assert (await store.subscription(CAROL, ALICE)).preapproved is True
        assert await store.subscribers(BOB) == [ALICE]
        assert await store.shared_with_domain("lenore.org") == []
        # The cap still counts what waited before the restart.
        assert await store.request_subscription(RAVEN, ALICE, T0, 1) is Link.HIDDEN
        with pytest.raises(PendingLimitReached):
            await store.request_subscription(LOST, BOB, T0, 1)

    # Closing

    @pytest_twisted.ensureDeferred
    async def test_presence_calls_after_close_fail(self, store) -> None:
        await store.close()
        calls = [
            lambda: store.request_subscription(ALICE, BOB, T0, CAP),
            lambda: store.approve_subscription(BOB, ALICE, T0),
            lambda: store.deny_subscription(BOB, ALICE),
            lambda: store.unsubscribe(ALICE, BOB),
            lambda: store.subscription(ALICE, BOB),
            lambda: store.subscriptions(ALICE),
            lambda: store.subscribers(BOB),
            lambda: store.pending_requests(BOB),
            lambda: store.shared_with_domain("lenore.org"),
            lambda: store.expire_requests(T0),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable):
                await call()
