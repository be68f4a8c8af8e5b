"""
Local accounts through twisted.cred: password hashing and the threads it
runs in, the checker over the store and the realm.  The brake
on password guessing is L{fmtp.loginthrottle}.

Passwords are hashed with scrypt (memory-hard, in the standard library
through OpenSSL) and never stored in clear.  Hashing takes tens of
milliseconds by design, so it runs in a thread, never on the reactor: on a
server, in the L{PasswordHashPool}.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import threads
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from fmtp.errors import InvalidAddress
from fmtp.interfaces import IAccount, IAccountStore
from fmtp.objects import normalize_address

_SCHEME = "scrypt"


@dataclass(frozen=True)
class ScryptCost:
    """
    What one scrypt hash costs: C{n} (CPU and memory, a power of two),
    C{r} (block size) and C{p} (parallelism).  It holds C{128 * n * r}
    bytes while it runs.

    The parameters are stored with each hash, so a hash made at one cost
    verifies at any later one; a server re-hashes, at its cost, the
    password of a user whose stored hash is weaker once they log in with
    it (L{StoreCredentialsChecker}).
    """

    n: int = 2**12
    r: int = 8
    p: int = 1

    @property
    def memory(self) -> int:
        """
        Bytes scrypt needs (what OpenSSL checks against C{maxmem}).
        """
        return 128 * self.r * (self.n + self.p + 2)

    def weaker_than(self, other: ScryptCost) -> bool:
        """
        Whether a guess costs less memory or less work than at C{other}.
        """
        return (
            self.n * self.r < other.n * other.r
            or self.n * self.r * self.p < other.n * other.r * other.p
        )

    @classmethod
    def of_hash(cls, encoded: str) -> ScryptCost | None:
        """
        The cost a stored hash was made at, or L{None} if it is not one.
        """
        parts = encoded.split("$")
        if len(parts) != 6 or parts[0] != _SCHEME:
            return None
        try:
            return cls(int(parts[1]), int(parts[2]), int(parts[3]))
        except ValueError:
            return None


#: The default cost: 2**12 x 8 blocks, 4 MiB and about 10 ms of one core
#: per hash on a 2020s server (doc/admin.md), so that two cores check a
#: few hundred logins a second.  An admin raises it with C{--scrypt-n}.
DEFAULT_SCRYPT_COST = ScryptCost()
#: The range C{--scrypt-n} accepts: below 2**10 a hash costs a guesser
#: next to nothing, above 2**20 one login takes a second and 1 GiB.
MIN_SCRYPT_N = 2**10
MAX_SCRYPT_N = 2**20


def parse_scrypt_n(text: str) -> int:
    """
    The value of a C{--scrypt-n} option: a power of two from
    L{MIN_SCRYPT_N} to L{MAX_SCRYPT_N}.

    @raise ValueError: saying what is wrong.
    """
    n = int(text) if text.isascii() and text.isdigit() and len(text) < 9 else 0
    if not (MIN_SCRYPT_N <= n <= MAX_SCRYPT_N and n & (n - 1) == 0):
        raise ValueError(
            f"must be a power of two from {MIN_SCRYPT_N} to {MAX_SCRYPT_N}, "
            f"such as 4096 or 16384"
        )
    return n


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(
    password: str, n: int | None = None, cost: ScryptCost = DEFAULT_SCRYPT_COST
) -> str:
    """
    Hash a password for storage: C{scrypt$N$r$p$salt$hash} in base64.

    The parameters travel with the hash, so raising the cost later leaves
    old hashes verifiable.  Blocking: call it in a thread on a server.

    @param n: C{cost} with this C{n} instead (tests hash cheaply).
    """
    if n is not None:
        cost = ScryptCost(n, cost.r, cost.p)
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=cost.n,
        r=cost.r,
        p=cost.p,
        dklen=32,
        maxmem=cost.memory + 2**20,
    )
    return f"{_SCHEME}${cost.n}${cost.r}${cost.p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """
    Whether C{password} matches an encoded hash from L{hash_password}.

    A malformed hash never matches, nor one whose cost is out of the range
    a server accepts.  Blocking: call it in a thread.
    """
    cost = ScryptCost.of_hash(encoded)
    if cost is None or not 0 < cost.n <= MAX_SCRYPT_N or cost.r * cost.p > 64:
        return False
    try:
        salt, digest = encoded.split("$")[4:]
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=cost.n,
            r=cost.r,
            p=cost.p,
            dklen=len(expected),
            maxmem=cost.memory + 2**20,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def check_new_password(password: str) -> str:
    """
    Refuse passwords that would not survive the wire: header values lose
    surrounding white space, and an empty one proves nothing.

    @raise ValueError: saying what is wrong.
    """
    if password != password.strip():
        raise ValueError("a password may not start or end with white space")
    if len(password) < 8:
        raise ValueError("a password must have at least 8 characters")
    if any(c in password for c in "\r\n"):
        raise ValueError("a password may not contain a line break")
    return password


@functools.cache
def _dummy_hash(cost: ScryptCost) -> str:
    """
    Compared against when an account does not exist, so that a wrong
    address costs as long as a wrong password and timing does not reveal
    accounts.  Made on first use, not at import: every C{fmtp} command
    imports this module.
    """
    return hash_password("no such account", cost=cost)


def _check_or_pretend(password: str, encoded: str | None, cost: ScryptCost) -> bool:
    """
    Verify C{password} against C{encoded}, or spend the same time on the
    dummy hash (at the server's cost) when there is no account.  Runs in a
    thread: both halves are slow on purpose.
    """
    return verify_password(password, encoded or _dummy_hash(cost))


#: The most passwords hashed at once, however many cores: each scrypt holds
#: its memory (4 MiB at the default cost) while it runs, and the C library
#: keeps what a thread used.
MAX_HASH_THREADS = 4


def hash_threads() -> int:
    """
    How many threads hash passwords: one per core this process may run on
    (a server pinned with C{taskset} to one core gets one), at least one
    and at most L{MAX_HASH_THREADS}.  More would only queue for the cores
    while each held its scrypt memory.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_HASH_THREADS, cores))


class PasswordHashPool(Service):
    """
    The threads a server hashes passwords in: a private L{ThreadPool} of
    L{hash_threads} threads, made when the service starts and stopped with
    it, as L{fmtp.store.sqlite.SQLiteStore} runs its own.

    Hashing used to share the reactor's pool, whose ten threads a burst of
    LOGINs could fill, each then keeping its scrypt buffer, and DNS
    lookups (which use that pool too) waited behind them.
    """

    def __init__(self, reactor, size: int | None = None) -> None:
        self._reactor = reactor
        self.size = size or hash_threads()
        self._pool: ThreadPool | None = None

    def run(self, f: Callable[..., object], *args, **kwargs) -> Deferred:
        """
        Call C{f(*args, **kwargs)} in one of the pool's threads, queued
        until one is free.

        @return: a L{Deferred} that fires with its result on the reactor,
            or fails at once if the service is not running.
        """
        if self._pool is None:
            return fail(RuntimeError("password hashing is not running"))
        return threads.deferToThreadPool(self._reactor, self._pool, f, *args, **kwargs)

    def startService(self) -> None:
        super().startService()
        self._pool = ThreadPool(
            minthreads=0, maxthreads=self.size, name="fmtp-password-hash"
        )
        self._pool.start()

    def stopService(self) -> None:
        super().stopService()
        pool, self._pool = self._pool, None
        if pool is not None:
            # Joins the threads, each done after at most one more hash.
            pool.stop()


@implementer(ICredentialsChecker)
class StoreCredentialsChecker:
    """
    Checks C{IUsernamePassword} credentials against the account store; the
    avatar id is the normalized address.

    A right password whose stored hash is weaker than C{cost} (made before
    an admin raised C{--scrypt-n}, or by C{fmtp adduser} at a lower one) is
    hashed again at C{cost} and stored in its place: hashes get stronger as
    users log in, and a guesser who takes the store later finds few old
    ones.  The swap happens only if the hash is still the one checked (a
    C{fmtp passwd} meanwhile wins) and keeps the account's resumption
    tokens: the password did not change.
    """

    credentialInterfaces = (IUsernamePassword,)
    _log = Logger()

    def __init__(
        self,
        store: IAccountStore,
        run_in_thread: Callable[..., Deferred] = threads.deferToThread,
        cost: ScryptCost = DEFAULT_SCRYPT_COST,
    ) -> None:
        self._store = store
        self._run_in_thread = run_in_thread
        self.cost = cost

    def requestAvatarId(self, credentials) -> Deferred:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials) -> str:
        username = credentials.username
        if isinstance(username, bytes):
            username = username.decode("utf-8", "replace")
        password = credentials.password
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        try:
            address = normalize_address(username)
        except InvalidAddress:
            address = None
        encoded = await self._store.get_password_hash(address) if address else None
        matched = await self._run_in_thread(
            _check_or_pretend, password, encoded, self.cost
        )
        if encoded is None or not matched:
            raise UnauthorizedLogin("bad address or password")
        stored_cost = ScryptCost.of_hash(encoded)
        if stored_cost is not None and stored_cost.weaker_than(self.cost):
            await self._rehash(address, password, encoded, stored_cost)
        return address

    async def _rehash(
        self, address: str, password: str, encoded: str, old: ScryptCost
    ) -> None:
        """
        Store C{password} hashed at L{cost} in place of C{encoded}.  A
        failure is logged, never fails the login: the old hash still works.
        """
        try:
            stronger = await self._run_in_thread(
                hash_password, password, None, self.cost
            )
            if await self._store.replace_password_hash(address, encoded, stronger):
                self._log.info(
                    "Re-hashed the password of {address} at scrypt N={new} "
                    "(was N={old}, r={r}, p={p})",
                    address=address,
                    new=self.cost.n,
                    old=old.n,
                    r=old.r,
                    p=old.p,
                )
        except Exception:
            self._log.failure(
                "Could not re-hash the password of {address}", address=address
            )


@implementer(IAccount)
@dataclass(frozen=True)
class Account:
    """
    A logged-in local user.
    """

    address: str


@implementer(IRealm)
class AccountRealm:
    """
    Turns an authenticated address into an L{Account} avatar.
    """

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IAccount not in interfaces:
            raise NotImplementedError("fmtp accounts only provide IAccount")
        return IAccount, Account(avatarId), lambda: None


def make_portal(
    store: IAccountStore,
    run_in_thread: Callable[..., Deferred] = threads.deferToThread,
    cost: ScryptCost = DEFAULT_SCRYPT_COST,
    tokens: ICredentialsChecker | None = None,
) -> Portal:
    """
    The portal every protocol logs users in through: passwords, and
    resumption tokens if C{tokens} (L{fmtp.auth.tokens.ResumptionTokens})
    is given.
    """
    checkers = [StoreCredentialsChecker(store, run_in_thread, cost)]
    if tokens is not None:
        checkers.append(tokens)
    return Portal(AccountRealm(), checkers)
