"""
Unit tests of accounts: hashing and its thread pool, the cred checker and
realm, and sessions.  The login throttle's are in test_login_throttle.
"""

from __future__ import annotations

import threading

import pytest
import pytest_twisted
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from fmtp.accounts import (
    MAX_HASH_THREADS,
    AccountRealm,
    PasswordHashPool,
    StoreCredentialsChecker,
    check_new_password,
    hash_password,
    hash_threads,
    verify_password,
)
from fmtp.interfaces import IAccount
from fmtp.store.memory import MemoryStore
from tests.helpers import FAST_SCRYPT_N, add_account, run_now


class HashTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        encoded = hash_password("correct horse", n=FAST_SCRYPT_N)
        self.assertTrue(encoded.startswith(f"scrypt${FAST_SCRYPT_N}$"))
        self.assertNotIn("correct horse", encoded)
        self.assertTrue(verify_password("correct horse", encoded))
        self.assertFalse(verify_password("correct horsE", encoded))

    def test_salted(self) -> None:
        self.assertNotEqual(
            hash_password("same", n=FAST_SCRYPT_N),
            hash_password("same", n=FAST_SCRYPT_N),
        )

    def test_malformed_hash_never_matches(self) -> None:
        for bad in [
            "",
            "plain",
            "md5$1$2$3$4$5",
            "scrypt$x$8$1$AA==$AA==",
            "scrypt$$$$$",
        ]:
            self.assertFalse(verify_password("x", bad))

    def test_new_password_rules(self) -> None:
        self.assertEqual(check_new_password("long enough"), "long enough")
        for bad in [" padded password", "short", "line\nbreak!!"]:
            self.assertRaises(ValueError, check_new_password, bad)


class CheckerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        add_account(self.store, "edgar@poe.net", "nevermore-quoth")
        self.checker = StoreCredentialsChecker(self.store, run_in_thread=run_now)

    def test_interfaces(self) -> None:
        verifyObject(ICredentialsChecker, self.checker)
        verifyObject(IRealm, AccountRealm())

    def test_good_password(self) -> None:
        d = self.checker.requestAvatarId(
            UsernamePassword(b"Edgar@poe.net", b"nevermore-quoth")
        )
        self.assertEqual(self.successResultOf(d), "edgar@poe.net")

    def test_bad_password_and_unknown_user(self) -> None:
        for username, password in [
            ("edgar@poe.net", "wrong"),
            ("nobody@poe.net", "nevermore-quoth"),
            ("not an address", "x"),
        ]:
            d = self.checker.requestAvatarId(UsernamePassword(username, password))
            self.failureResultOf(d, UnauthorizedLogin)

    def test_realm(self) -> None:
        iface, avatar, logout = AccountRealm().requestAvatar(
            "edgar@poe.net", None, IAccount
        )
        self.assertIs(iface, IAccount)
        verifyObject(IAccount, avatar)
        self.assertEqual(avatar.address, "edgar@poe.net")
        logout()


def test_hash_pool_is_sized_to_the_cores() -> None:
    """
    One thread per core, capped: each running scrypt holds 16 MiB.
    """
    size = hash_threads()
    assert 1 <= size <= MAX_HASH_THREADS
    assert PasswordHashPool(reactor).size == size


@pytest_twisted.ensureDeferred
async def test_hash_pool_runs_in_its_own_threads() -> None:
    """
    Calls run in the pool's threads, never more threads than its size,
    only while the service runs.
    """
    pool = PasswordHashPool(reactor, size=2)
    with pytest.raises(RuntimeError):
        await pool.run(lambda: None)
    pool.startService()
    try:
        names = await gatherResults(
            [pool.run(lambda: threading.current_thread().name) for _ in range(20)]
        )
    finally:
        pool.stopService()
    assert len(set(names)) <= 2
    assert all("fmtp-password-hash" in name for name in names), names
    with pytest.raises(RuntimeError):
        await pool.run(lambda: None)
