"""
Resumption tokens (L{fmtp.auth.tokens}) through the object protocol's
LOGIN and LOGOUT, on a memory store and a Clock: the attacks first (a
token of one user for another, an expired, revoked or outdated token,
guessing, a token in the logs), then what a client gets.
"""

from __future__ import annotations

import hashlib
import secrets

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from fmtp.auth.tokens import (
    DEFAULT_TOKEN_LIFETIME,
    IResumptionToken,
    ResumptionToken,
    ResumptionTokens,
    token_hash,
)
from fmtp.store.memory import MemoryStore
from tests.helpers import StreamHarness, add_account, make_services

EDGAR = "edgar@poe.net"
LOST = "lost@poe.net"
PASSWORD = "nevermore-quoth"
HOST = "192.0.2.1"
REFUSED = "bad, expired or revoked token: log in with the password"


class TokenLoginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore()
        add_account(self.store, EDGAR, PASSWORD)
        add_account(self.store, LOST, PASSWORD)
        self.services = make_services(self.clock, self.store)
        self.limits = self.services.login_throttle.limits
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def connect(self, host: str = HOST) -> StreamHarness:
        return StreamHarness(self.services, host=host)

    def password_login(self, address: str = EDGAR, **headers: str):
        conn = self.connect()
        answer = conn.ask(
            "LOGIN", headers={"Address": address, "Password": PASSWORD, **headers}
        )
        self.assertEqual(answer.code, 230, answer)
        return conn, answer

    def issue(self, address: str = EDGAR) -> str:
        _, answer = self.password_login(address, **{"Issue-Token": "yes"})
        return answer.headers["Token"]

    def token_login(self, address: str, token: str, conn=None):
        """
        LOGIN with a token; a refusal comes after the failure delay.
        """
        conn = conn or self.connect()
        frames = conn.send("LOGIN", headers={"Address": address, "Token": token})
        if not frames:
            self.clock.advance(self.limits.failure_delay)
            frames = conn.frames()
        [answer] = frames
        return answer

    def refusal_logged(self) -> str:
        lines = [formatEvent(e) for e in self.events]
        return "\n".join(line for line in lines if "resumption token" in line)

    # Attacks

    def test_a_token_logs_in_only_as_its_address(self) -> None:
        token = self.issue(EDGAR)
        answer = self.token_login(LOST, token)
        self.assertEqual((answer.code, answer.argument), (535, REFUSED))
        self.assertIn(f"for {LOST}: issued for another address", self.refusal_logged())
        self.assertEqual(self.token_login(EDGAR, token).code, 230)

    def test_an_expired_token_is_refused(self) -> None:
        token = self.issue()
        self.clock.advance(DEFAULT_TOKEN_LIFETIME - 1)
        self.assertEqual(self.token_login(EDGAR, token).code, 230)
        self.clock.advance(1)
        answer = self.token_login(EDGAR, token)
        self.assertEqual((answer.code, answer.argument), (535, REFUSED))
        self.assertIn("unknown, expired or revoked", self.refusal_logged())

    def test_logout_revokes_the_sessions_token(self) -> None:
        token = self.issue()
        other = self.issue()
        conn = self.connect()
        self.assertEqual(self.token_login(EDGAR, token, conn).code, 230)
        self.assertEqual(conn.ask("LOGOUT", "2").code, 200)
        self.assertEqual(self.token_login(EDGAR, token).code, 535)
        # Another session's token is its own.
        self.assertEqual(self.token_login(EDGAR, other).code, 230)

    def test_logout_of_the_issuing_session_revokes_its_token(self) -> None:
        conn, answer = self.password_login(**{"Issue-Token": "yes"})
        self.assertEqual(conn.ask("LOGOUT", "2").code, 200)
        self.assertEqual(self.token_login(EDGAR, answer.headers["Token"]).code, 535)

    def test_a_dropped_connection_keeps_its_token(self) -> None:
        """
        What a token is for: the connection drops, the client comes back.
        """
        conn, answer = self.password_login(**{"Issue-Token": "yes"})
        conn.ask("QUIT", "2")
        conn.protocol.connectionLost(None)
        self.assertEqual(self.token_login(EDGAR, answer.headers["Token"]).code, 230)

    def test_a_password_change_or_deleted_account_voids_tokens(self) -> None:
        token = self.issue()
        self.successResultOf(self.store.set_password_hash(EDGAR, "scrypt$new"))
        self.assertEqual(self.token_login(EDGAR, token).code, 535)
        token = self.issue(LOST)
        self.successResultOf(self.store.delete_account(LOST))
        add_account(self.store, LOST, PASSWORD)
        self.assertEqual(self.token_login(LOST, token).code, 535)

    def test_guessed_tokens_are_throttled_as_failed_logins(self) -> None:
        """
        Guesses count in the login throttle's budget: after it, even the
        right token is refused (429) unchecked, and so is the password.
        """
        token = self.issue()
        for _ in range(self.limits.per_account):
            guess = secrets.token_urlsafe(32)
            self.assertEqual(self.token_login(EDGAR, guess).code, 535)
        refused = self.token_login(EDGAR, token)
        self.assertEqual(refused.code, 429)
        self.assertIn("Retry-After", refused.headers)
        # The password is refused from there too: one budget.
        conn = self.connect()
        frames = conn.send("LOGIN", headers={"Address": EDGAR, "Password": PASSWORD})
        self.assertEqual(frames[0].code, 429)

    def test_three_failures_close_the_connection(self) -> None:
        conn = self.connect()
        for _ in range(3):
            self.token_login(EDGAR, secrets.token_urlsafe(32), conn)
        self.assertTrue(conn.protocol.session.closing)

    def test_a_token_is_never_logged(self) -> None:
        conn, answer = self.password_login(**{"Issue-Token": "yes"})
        token = answer.headers["Token"]
        self.token_login(LOST, token)
        self.token_login(EDGAR, token)
        conn.ask("LOGOUT", "2")
        self.token_login(EDGAR, token)
        self.token_login(EDGAR, token[:-1] + "!")
        self.assertTrue(self.events)
        for event in self.events:
            self.assertNotIn(token, repr(event) + formatEvent(event))
            self.assertNotIn(token[:-1], repr(event) + formatEvent(event))

    def test_malformed_tokens_and_both_credentials(self) -> None:
        for bad in ["short", "x" * 44, "é" * 43, "a" * 42 + "="]:
            self.assertEqual(self.token_login(EDGAR, bad).code, 535)
        self.assertIn("not a token this server issues", self.refusal_logged())
        conn = self.connect()
        answer = conn.ask(
            "LOGIN",
            headers={"Address": EDGAR, "Password": PASSWORD, "Token": "x" * 43},
        )
        self.assertEqual(answer.code, 501)

    def test_no_tokens_where_not_offered(self) -> None:
        services = make_services(self.clock, self.store)
        object.__setattr__(services, "tokens", None)
        self.services = services
        _, answer = self.password_login(**{"Issue-Token": "yes"})
        self.assertNotIn("Token", answer.headers)
        self.assertEqual(self.token_login(EDGAR, "x" * 43).code, 535)
        self.assertNotIn("Token-Lifetime", self.connect().ask("CAPA").headers)

    # What a client gets

    def test_issued_on_request_only(self) -> None:
        _, answer = self.password_login()
        self.assertNotIn("Token", answer.headers)
        self.assertEqual(self.store._tokens, {})
        _, answer = self.password_login(**{"Issue-Token": "yes"})
        token = answer.headers["Token"]
        self.assertEqual(len(token), 43)
        expires = self.clock.seconds() + DEFAULT_TOKEN_LIFETIME
        self.assertEqual(answer.headers["Token-Expires"], f"{expires:.0f}")
        # Kept as its SHA-256 only.
        self.assertEqual(
            list(self.store._tokens), [hashlib.sha256(token.encode()).hexdigest()]
        )

    def test_a_token_login_opens_a_session(self) -> None:
        token = self.issue()
        conn = self.connect()
        answer = self.token_login("Edgar@POE.net", token, conn)
        self.assertEqual(answer.headers["Address"], EDGAR)
        self.assertIn("Session", answer.headers)
        self.assertNotIn("Token", answer.headers)
        self.assertEqual(conn.protocol.session.address, EDGAR)

    def test_capa_says_the_lifetime(self) -> None:
        capa = self.connect().ask("CAPA")
        self.assertEqual(capa.headers["Token-Lifetime"], "604800")


class CheckerTests(SynchronousTestCase):
    def test_interfaces_and_repr(self) -> None:
        clock = MemoryReactorClock()
        tokens = ResumptionTokens(MemoryStore(), clock)
        credentials = ResumptionToken(EDGAR, "s3cret-token")
        verifyObject(IResumptionToken, credentials)
        self.assertNotIn("s3cret", repr(credentials))
        add_account(tokens._store, EDGAR, PASSWORD)
        issued = self.successResultOf(Deferred_of(tokens.issue(EDGAR)))
        self.assertNotIn(issued.token, repr(issued))
        self.assertEqual(issued.hash, token_hash(issued.token))
        d = tokens.requestAvatarId(ResumptionToken(EDGAR, issued.token))
        self.assertEqual(self.successResultOf(d), EDGAR)
        d = tokens.requestAvatarId(ResumptionToken("not an address", issued.token))
        self.failureResultOf(d, UnauthorizedLogin)

    def test_no_token_for_a_deleted_account(self) -> None:
        tokens = ResumptionTokens(MemoryStore(), MemoryReactorClock())
        self.assertIsNone(self.successResultOf(Deferred_of(tokens.issue(EDGAR))))


def Deferred_of(coroutine) -> Deferred:
    return Deferred.fromCoroutine(coroutine)


def test_token_lifetime_option(tmp_path) -> None:
    """
    C{twistd fmtp --token-lifetime}: seconds, 0 to switch tokens off, at
    most a year; anything else is refused, named.
    """
    import pytest
    from twisted.python import usage

    from fmtp.serveroptions import Options

    def parse(*args: str) -> Options:
        options = Options()
        options.parseOptions(["--data-dir", str(tmp_path), *args])
        return options

    assert parse()["token-lifetime"] == DEFAULT_TOKEN_LIFETIME
    assert parse("--token-lifetime", "0")["token-lifetime"] == 0
    assert parse("--token-lifetime", "3600")["token-lifetime"] == 3600
    for bad in ["-1", "nan", "inf", "week", str(366 * 86400)]:
        with pytest.raises(usage.UsageError, match="--token-lifetime"):
            parse("--token-lifetime", bad)


class LogoutRetryTests(SynchronousTestCase):
    def test_a_failed_logout_revokes_when_sent_again(self) -> None:
        """
        LOGOUT whose revocation meets an unavailable store answers 451;
        sent again, it revokes the token.
        """
        from twisted.internet.defer import fail

        from fmtp.errors import StoreUnavailable

        clock = MemoryReactorClock()
        store = MemoryStore()
        add_account(store, EDGAR, PASSWORD)
        services = make_services(clock, store)
        conn = StreamHarness(services, host=HOST)
        answer = conn.ask(
            "LOGIN",
            headers={"Address": EDGAR, "Password": PASSWORD, "Issue-Token": "yes"},
        )
        revoke = store.revoke_token
        store.revoke_token = lambda h: fail(StoreUnavailable("disk full"))
        self.assertEqual(conn.ask("LOGOUT", "2").code, 451)
        self.flushLoggedErrors(StoreUnavailable)
        store.revoke_token = revoke
        self.assertEqual(conn.ask("LOGOUT", "3").code, 200)
        other = StreamHarness(services, host=HOST)
        frames = other.send(
            "LOGIN", headers={"Address": EDGAR, "Token": answer.headers["Token"]}
        )
        clock.advance(5)
        self.assertEqual((frames + other.frames())[0].code, 535)
