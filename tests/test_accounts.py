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
from twisted.internet.defer import fail, gatherResults
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from fmtp.accounts import (
    DEFAULT_SCRYPT_COST,
    MAX_HASH_THREADS,
    AccountRealm,
    PasswordHashPool,
    ScryptCost,
    StoreCredentialsChecker,
    check_new_password,
    hash_password,
    hash_threads,
    parse_scrypt_n,
    verify_password,
)
from fmtp.errors import StoreUnavailable
from fmtp.interfaces import IAccount
from fmtp.store.memory import MemoryStore
from tests.helpers import FAST_SCRYPT_N, add_account, run_now

EDGAR = "edgar@poe.net"


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
    One thread per core, capped: each running scrypt holds its memory.
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


class CostTests(SynchronousTestCase):
    """
    The scrypt cost an admin sets: new hashes use it, old ones verify with
    their own parameters and are re-hashed at it when their user logs in.
    """

    def test_hash_carries_its_cost(self) -> None:
        cost = ScryptCost(n=2**11, r=4, p=2)
        encoded = hash_password("correct horse", cost=cost)
        self.assertTrue(encoded.startswith("scrypt$2048$4$2$"))
        self.assertEqual(ScryptCost.of_hash(encoded), cost)
        self.assertTrue(verify_password("correct horse", encoded))
        self.assertIsNone(ScryptCost.of_hash("md5$1$2$3$4$5"))

    def test_default_cost(self) -> None:
        """
        About 10 ms a hash (doc/admin.md states it): 2**12 x 8, 4 MiB.
        """
        self.assertEqual(DEFAULT_SCRYPT_COST, ScryptCost(2**12, 8, 1))
        self.assertEqual(DEFAULT_SCRYPT_COST.memory // 2**20, 4)

    def test_weaker(self) -> None:
        strong = ScryptCost(2**14)
        self.assertTrue(ScryptCost(2**12).weaker_than(strong))
        self.assertTrue(ScryptCost(2**14, p=1).weaker_than(ScryptCost(2**14, p=2)))
        self.assertFalse(strong.weaker_than(strong))
        self.assertFalse(ScryptCost(2**15).weaker_than(strong))

    def test_parse_scrypt_n(self) -> None:
        self.assertEqual(parse_scrypt_n("16384"), 16384)
        for bad in ["", "512", "5000", "2**14", str(2**21), "١٠٢٤", "-4096"]:
            self.assertRaises(ValueError, parse_scrypt_n, bad)

    def test_a_hash_out_of_range_never_matches(self) -> None:
        """
        A stored hash asking for more than a server allows (a tampered
        row) is refused, not computed.
        """
        self.assertFalse(verify_password("x", "scrypt$4194304$8$1$AA==$AA=="))
        self.assertFalse(verify_password("x", "scrypt$1024$64$2$AA==$AA=="))


class RehashTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        self.events: list[dict] = []
        add_account(self.store, "edgar@poe.net", "nevermore-quoth")
        self.old = self.successResultOf(self.store.get_password_hash("edgar@poe.net"))
        self.cost = ScryptCost(n=2**11)
        self.checker = StoreCredentialsChecker(
            self.store, run_in_thread=run_now, cost=self.cost
        )
        self.checker._log = Logger(observer=self.events.append)

    def login(self, password: str):
        return self.checker.requestAvatarId(UsernamePassword("edgar@poe.net", password))

    def stored(self) -> str:
        return self.successResultOf(self.store.get_password_hash("edgar@poe.net"))

    def test_a_weaker_hash_is_rehashed_at_login(self) -> None:
        self.assertEqual(self.successResultOf(self.login("nevermore-quoth")), EDGAR)
        new = self.stored()
        self.assertNotEqual(new, self.old)
        self.assertEqual(ScryptCost.of_hash(new), self.cost)
        self.assertTrue(verify_password("nevermore-quoth", new))
        [event] = self.events
        self.assertIn("Re-hashed", event["log_format"])
        self.assertNotIn("nevermore", repr(event))
        # Once: the new hash is not weaker.
        self.successResultOf(self.login("nevermore-quoth"))
        self.assertEqual(self.stored(), new)

    def test_a_wrong_password_rehashes_nothing(self) -> None:
        self.failureResultOf(self.login("wrong-password"), UnauthorizedLogin)
        self.assertEqual(self.stored(), self.old)

    def test_a_failed_rehash_does_not_fail_the_login(self) -> None:
        self.store.replace_password_hash = lambda *args: fail(StoreUnavailable("x"))
        self.assertEqual(self.successResultOf(self.login("nevermore-quoth")), EDGAR)
        self.assertEqual(self.stored(), self.old)
        [event] = self.events
        self.assertIn("Could not re-hash", event["log_format"])


def test_hash_threads_follow_the_cores_this_process_may_use(monkeypatch) -> None:
    """
    A server pinned to one core (C{taskset}) hashes in one thread.
    """
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert hash_threads() == 1
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)))
    assert hash_threads() == MAX_HASH_THREADS


def test_scrypt_n_options(tmp_path) -> None:
    """
    C{twistd fmtp --scrypt-n} and C{fmtp adduser/passwd --scrypt-n} set
    the cost of the hashes they make; a bad value is refused, named.
    """
    from twisted.python import usage

    from fmtp.cli.admin import PasswdOptions
    from fmtp.serveroptions import Options

    server = Options()
    server.parseOptions(["--data-dir", str(tmp_path)])
    assert server["password-cost"] == DEFAULT_SCRYPT_COST
    server = Options()
    server.parseOptions(["--data-dir", str(tmp_path), "--scrypt-n", "16384"])
    assert server["password-cost"] == ScryptCost(16384, 8, 1)
    admin = PasswdOptions()
    admin.parseOptions(
        ["--data-dir", str(tmp_path), "--scrypt-n", "2048", "edgar@poe.net"]
    )
    assert admin["password-cost"] == ScryptCost(2048, 8, 1)
    with pytest.raises(usage.UsageError, match="--scrypt-n"):
        Options().parseOptions(["--scrypt-n", "1000"])
    with pytest.raises(usage.UsageError, match="--scrypt-n"):
        PasswdOptions().parseOptions(["--scrypt-n", "1000", "edgar@poe.net"])
