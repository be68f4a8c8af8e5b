"""
Resumption tokens: a client that logged in with its password may ask for
a token, and log in again with it instead of the password, so that a
reconnect storm after a network blip costs a store lookup per client, not
an scrypt hash.

A token is 256 random bits, handed out once in the LOGIN reply and kept by
the server only as its SHA-256: a copy of the store logs no one in.  It
logs in only as the address it was issued for, until it expires (an
absolute lifetime from its issue, not extended by use, so using it costs
no write), its session logs out (C{LOGOUT} revokes it), the password
changes or the account is deleted (the store deletes the account's
tokens with it).

The check is a lookup by hash, not a comparison with a secret, so it
needs no constant-time compare: what the time of a lookup could reveal is
how much of the I{hash} of a guess matches a stored hash, and a guesser
who cannot invert SHA-256 cannot use that to build the next guess.  A
guessed token is a failed LOGIN all the same: it goes through the login
throttle (L{fmtp.loginthrottle}) as a wrong password does.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, implementer

from fmtp.errors import InvalidAddress
from fmtp.interfaces import ITokenStore
from fmtp.objects import normalize_address

#: How long a token logs in, by default: a week (C{--token-lifetime}).
DEFAULT_TOKEN_LIFETIME = 7 * 86400.0
#: The longest lifetime an admin may set: a year.
MAX_TOKEN_LIFETIME = 365 * 86400.0
#: The most tokens one account keeps (one per device or client that asked
#: for one); the oldest go first.
TOKENS_PER_ACCOUNT = 32
#: Random bytes in a token: 256 bits, 43 characters of URL-safe base64.
TOKEN_BYTES = 32
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def token_hash(token: str) -> str:
    """
    What the store keeps of C{token}: its SHA-256, in hex.  A token is
    high-entropy, so a fast hash is enough (no salt, no scrypt): nobody
    can try 2**256 guesses.
    """
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class IResumptionToken(ICredentials):
    """
    A LOGIN with a resumption token instead of a password.
    """

    address = Attribute("The address the client logs in as, as it wrote it.")
    token = Attribute("The token, as the LOGIN reply handed it out.")


@implementer(IResumptionToken)
class ResumptionToken:
    """
    The credentials of a LOGIN with C{Token}.  Its C{repr} leaves the
    token out, so no log line or traceback can show it.
    """

    __slots__ = ("address", "token")

    def __init__(self, address: str, token: str) -> None:
        self.address = address
        self.token = token

    def __repr__(self) -> str:
        return f"<ResumptionToken for {self.address!r}>"


@dataclass(frozen=True)
class IssuedToken:
    """
    A token just made: C{token} goes to the client once, C{hash} is what
    the server keeps, C{expires} is in POSIX seconds.
    """

    token: str
    hash: str
    expires: float

    def __repr__(self) -> str:
        return f"<IssuedToken expiring {self.expires:.0f}>"


@implementer(ICredentialsChecker)
class ResumptionTokens:
    """
    Issues, checks (as a twisted.cred checker of L{IResumptionToken}, the
    avatar id being the address) and revokes resumption tokens, over an
    L{ITokenStore}.

    @ivar lifetime: seconds a token logs in after its issue.
    """

    credentialInterfaces = (IResumptionToken,)
    _log = Logger()

    def __init__(
        self,
        store: ITokenStore,
        clock: IReactorTime,
        lifetime: float = DEFAULT_TOKEN_LIFETIME,
        keep: int = TOKENS_PER_ACCOUNT,
    ) -> None:
        self._store = store
        self._clock = clock
        self.lifetime = lifetime
        self._keep = keep

    async def issue(self, address: str) -> IssuedToken | None:
        """
        Make a token for C{address} and keep its hash, durably.

        @return: the token, or L{None} if the account no longer exists.
        """
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self._clock.seconds()
        issued = IssuedToken(token, token_hash(token), now + self.lifetime)
        if not await self._store.add_token(
            address, issued.hash, issued.expires, now, self._keep
        ):
            return None
        return issued

    def revoke(self, hash: str) -> Deferred[bool]:
        """
        Revoke the token of this hash (its session logged out).
        """
        return self._store.revoke_token(hash)

    def requestAvatarId(self, credentials: IResumptionToken) -> Deferred[str]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IResumptionToken) -> str:
        try:
            address = normalize_address(credentials.address)
        except InvalidAddress:
            address = None
        token = credentials.token
        if address is None or not _TOKEN_SHAPE.fullmatch(token):
            # Not one this server could have issued: no lookup.
            self._refuse(credentials.address, "not a token this server issues")
        found = await self._store.find_token(token_hash(token), self._clock.seconds())
        if found is None:
            self._refuse(address, "unknown, expired or revoked")
        if found != address:
            self._refuse(address, "issued for another address")
        return address

    def _refuse(self, address: str, why: str) -> None:
        self._log.info(
            "Refused a resumption token for {address}: {why}",
            address=address,
            why=why,
        )
        raise UnauthorizedLogin("bad, expired or revoked token")
