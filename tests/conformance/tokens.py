"""
The contract every L{ITokenStore} keeps, as one suite run against each
store by C{tests/conformance/test_stores.py} (fixtures C{store} and
C{reopen}, as for the other suites).
"""

from __future__ import annotations

import pytest_twisted
from zope.interface.verify import verifyObject

from fmtp.interfaces import ITokenStore

ALICE = "alice@example.com"
BOB = "bob@example.com"
T0 = 1700000000.5
DAY = 86400.0
A1, A2, A3, B1 = ("a1" * 32, "a2" * 32, "a3" * 32, "b1" * 32)


async def with_accounts(store) -> None:
    await store.add_account(ALICE, "hash-a")
    await store.add_account(BOB, "hash-b")


class TokenConformance:
    def test_provides(self, store) -> None:
        verifyObject(ITokenStore, store)

    @pytest_twisted.ensureDeferred
    async def test_a_token_finds_its_account_until_it_expires(self, store) -> None:
        await with_accounts(store)
        assert await store.add_token(ALICE, A1, T0 + DAY, T0, 10) is True
        assert await store.find_token(A1, T0) == ALICE
        assert await store.find_token(A1, T0 + DAY - 1) == ALICE
        assert await store.find_token(A1, T0 + DAY) is None
        assert await store.find_token(B1, T0) is None

    @pytest_twisted.ensureDeferred
    async def test_no_token_for_an_account_that_does_not_exist(self, store) -> None:
        assert await store.add_token(ALICE, A1, T0 + DAY, T0, 10) is False
        assert await store.find_token(A1, T0) is None

    @pytest_twisted.ensureDeferred
    async def test_revoke(self, store) -> None:
        await with_accounts(store)
        await store.add_token(ALICE, A1, T0 + DAY, T0, 10)
        await store.add_token(ALICE, A2, T0 + DAY, T0, 10)
        assert await store.revoke_token(A1) is True
        assert await store.revoke_token(A1) is False
        assert await store.find_token(A1, T0) is None
        assert await store.find_token(A2, T0) == ALICE

    @pytest_twisted.ensureDeferred
    async def test_a_new_password_deletes_the_accounts_tokens(self, store) -> None:
        await with_accounts(store)
        await store.add_token(ALICE, A1, T0 + DAY, T0, 10)
        await store.add_token(BOB, B1, T0 + DAY, T0, 10)
        assert await store.set_password_hash(ALICE, "hash-a2") is True
        assert await store.find_token(A1, T0) is None
        assert await store.find_token(B1, T0) == BOB

    @pytest_twisted.ensureDeferred
    async def test_a_rehash_keeps_the_accounts_tokens(self, store) -> None:
        await with_accounts(store)
        await store.add_token(ALICE, A1, T0 + DAY, T0, 10)
        assert await store.replace_password_hash(ALICE, "hash-a", "stronger")
        assert await store.find_token(A1, T0) == ALICE

    @pytest_twisted.ensureDeferred
    async def test_deleting_the_account_deletes_its_tokens(self, store) -> None:
        await with_accounts(store)
        await store.add_token(ALICE, A1, T0 + DAY, T0, 10)
        await store.add_token(BOB, B1, T0 + DAY, T0, 10)
        assert await store.delete_account(ALICE) is True
        assert await store.find_token(A1, T0) is None
        # The address given to someone new gets none of the old tokens.
        await store.add_account(ALICE, "hash-new")
        assert await store.find_token(A1, T0) is None
        assert await store.find_token(B1, T0) == BOB

    @pytest_twisted.ensureDeferred
    async def test_an_account_keeps_its_newest_tokens(self, store) -> None:
        await with_accounts(store)
        await store.add_token(ALICE, A1, T0 + DAY, T0, 2)
        await store.add_token(ALICE, A2, T0 + DAY, T0, 2)
        await store.add_token(BOB, B1, T0 + DAY, T0, 2)
        await store.add_token(ALICE, A3, T0 + DAY, T0, 2)
        assert await store.find_token(A1, T0) is None
        assert await store.find_token(A2, T0) == ALICE
        assert await store.find_token(A3, T0) == ALICE
        assert await store.find_token(B1, T0) == BOB

    @pytest_twisted.ensureDeferred
    async def test_expired_tokens_are_forgotten(self, store) -> None:
        await with_accounts(store)
        await store.add_token(ALICE, A1, T0 + 10, T0, 10)
        await store.add_token(BOB, B1, T0 + DAY, T0, 10)
        assert await store.forget_expired_tokens(T0 + 10) == 1
        assert await store.forget_expired_tokens(T0 + 10) == 0
        assert await store.find_token(B1, T0 + 10) == BOB
        # Adding a token also drops the account's expired ones.
        await store.add_token(BOB, A2, T0 + 3 * DAY, T0 + 2 * DAY, 10)
        assert await store.forget_expired_tokens(T0 + 2 * DAY) == 0

    @pytest_twisted.ensureDeferred
    async def test_tokens_survive_reopen(self, store, reopen) -> None:
        await with_accounts(store)
        await store.add_token(ALICE, A1, T0 + DAY, T0, 10)
        again = await reopen()
        assert await again.find_token(A1, T0) == ALICE
