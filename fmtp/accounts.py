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

#: scrypt cost: 2**14 x 8 blocks is 16 MiB per hash, OWASP's floor.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SCHEME = "scrypt"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, n: int = SCRYPT_N) -> str:
    """
    Hash a password for storage: C{scrypt$N$r$p$salt$hash} in base64.

    The parameters travel with the hash, so raising the cost later leaves
    old hashes verifiable.  Blocking: call it in a thread on a server.
    """
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"{_SCHEME}${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """
    Whether C{password} matches an encoded hash from L{hash_password}.

    A malformed hash never matches.  Blocking: call it in a thread.
    """
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=2**26,
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
def _dummy_hash() -> str:
    """
    Compared against when an account does not exist, so that a wrong
    address costs as long as a wrong password and timing does not reveal
    accounts.  Made on first use, not at import: every C{fmtp} command
    imports this module.
    """
    return hash_password("no such account", n=SCRYPT_N)


def _check_or_pretend(password: str, encoded: str | None) -> bool:
    """
    Verify C{password} against C{encoded}, or spend the same time on the
    dummy hash when there is no account.  Runs in a thread: both halves are
    slow on purpose.
    """
    return verify_password(password, encoded or _dummy_hash())


#: The most passwords hashed at once, however many cores: each scrypt holds
#: 16 MiB while it runs, and the C library keeps what a thread used.
MAX_HASH_THREADS = 4


def hash_threads() -> int:
    """
    How many threads hash passwords: one per core, at least one and at most
    L{MAX_HASH_THREADS}.  More would only queue for the cores while each
    held its 16 MiB.
    """
    return max(1, min(MAX_HASH_THREADS, os.cpu_count() or 1))


class PasswordHashPool(Service):
    """
    The threads a server hashes passwords in: a private L{ThreadPool} of
    L{hash_threads} threads, made when the service starts and stopped with
    it, as L{fmtp.store.sqlite.SQLiteStore} runs its own.

    Hashing used to share the reactor's pool, whose ten threads a burst of
    LOGINs could fill, each then keeping a 16 MiB scrypt buffer, and DNS
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
    """

    credentialInterfaces = (IUsernamePassword,)
    _log = Logger()

    def __init__(
        self,
        store: IAccountStore,
        run_in_thread: Callable[..., Deferred] = threads.deferToThread,
    ) -> None:
        self._store = store
        self._run_in_thread = run_in_thread

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
        matched = await self._run_in_thread(_check_or_pretend, password, encoded)
        if encoded is None or not matched:
            raise UnauthorizedLogin("bad address or password")
        return address


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
) -> Portal:
    """
    The portal every protocol logs users in through.
    """
    return Portal(AccountRealm(), [StoreCredentialsChecker(store, run_in_thread)])
