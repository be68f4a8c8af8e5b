"""
The brake on password guessing (L{fmtp.loginthrottle}): the throttle on a
Clock, LOGIN over a StringTransport with checks held in progress, its
twistd options, and guessing in parallel over real loopback sockets
against a server built by L{fmtp.server.build_server}.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

import fmtp.accounts
from fmtp.accounts import hash_password, make_portal
from fmtp.client import connect
from fmtp.loginthrottle import (
    DEFAULT_LOGIN_LIMITS,
    RETRY_AFTER_CHECKS,
    LoginLimits,
    LoginThrottle,
    LoginThrottled,
    account_of,
    source_of,
)
from fmtp.objects import user_object
from fmtp.server import build_server
from fmtp.serveroptions import Options
from fmtp.store.memory import MemoryStore
from tests.helpers import (
    FAST_COST,
    FAST_SCRYPT_N,
    StreamHarness,
    add_account,
    bound_ports,
    make_services,
)
from tests.integration.test_twistd import (  # noqa: F401 (processes is a fixture)
    LISTENERS,
    TWISTD,
    ServerProcess,
    processes,
)

EDGAR = "edgar@poe.net"
LOST = "lost@poe.net"
PASSWORD = "nevermore-quoth"
HOST = "192.0.2.1"


class ThrottleTests(SynchronousTestCase):
    """
    L{LoginThrottle} alone, on a Clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def throttle(self, **limits) -> LoginThrottle:
        return LoginThrottle(self.clock, LoginLimits(**limits))

    def fail_times(
        self, throttle: LoginThrottle, host: str, address: str, times: int = 1
    ) -> None:
        for _ in range(times):
            throttle.begin(host, address).failed()

    def refused(self, throttle: LoginThrottle, host: str, address: str) -> float:
        """
        How long C{throttle} tells C{host} to wait; fails if it admits it.
        """
        with self.assertRaises(LoginThrottled) as caught:
            throttle.begin(host, address)
        retry_after = caught.exception.retry_after
        self.assertEqual(str(caught.exception), f"retry after {retry_after:.0f}s")
        return retry_after

    def test_defaults(self) -> None:
        """
        The documented defaults (doc/admin.md): 5 failures per account and
        50 per source in 10 minutes, 4 checks at once, one second's delay.
        """
        self.assertEqual(
            DEFAULT_LOGIN_LIMITS,
            LoginLimits(
                per_account=5,
                per_source=50,
                concurrent=4,
                window=600.0,
                failure_delay=1.0,
            ),
        )
        self.assertEqual(LoginThrottle(self.clock).limits, DEFAULT_LOGIN_LIMITS)

    def test_attempts_in_progress_count(self) -> None:
        """
        Reserved attempts count before any has failed: a burst of LOGINs
        for one account gets no more checks than its failure budget.
        """
        throttle = self.throttle(per_account=3, concurrent=10)
        attempts = [throttle.begin(HOST, EDGAR) for _ in range(3)]
        self.assertEqual(self.refused(throttle, HOST, EDGAR), RETRY_AFTER_CHECKS)
        attempts[0].failed()
        attempts[1].failed()
        self.refused(throttle, HOST, EDGAR)
        attempts[2].release()
        last = throttle.begin(HOST, EDGAR)
        self.refused(throttle, HOST, EDGAR)
        last.failed()
        self.refused(throttle, HOST, EDGAR)

    def test_concurrent_checks_per_source(self) -> None:
        """
        One source has at most C{concurrent} checks in progress, whatever
        the accounts; another source is not held up by them.
        """
        throttle = self.throttle(concurrent=2)
        first = throttle.begin(HOST, "a@poe.net")
        throttle.begin(HOST, "b@poe.net")
        self.assertEqual(self.refused(throttle, HOST, "c@poe.net"), RETRY_AFTER_CHECKS)
        throttle.begin("192.0.2.2", "c@poe.net")
        first.succeeded()
        throttle.begin(HOST, "c@poe.net")

    def test_per_account_failures(self) -> None:
        """
        Failures for one account from one source refuse that pair only,
        until the oldest ages out of the window; the source's other
        accounts and the account from other sources are untouched (no
        account is ever locked out from everywhere).
        """
        throttle = self.throttle(per_account=3, window=60)
        for _ in range(3):
            self.fail_times(throttle, HOST, EDGAR)
            self.clock.advance(1)
        self.assertEqual(self.refused(throttle, HOST, EDGAR), 57)
        throttle.begin(HOST, LOST).succeeded()
        throttle.begin("198.51.100.7", EDGAR).succeeded()
        self.clock.advance(56)
        self.assertEqual(self.refused(throttle, HOST, EDGAR), 1)
        self.clock.advance(1)
        throttle.begin(HOST, EDGAR)

    def test_per_source_failures(self) -> None:
        """
        Spraying many accounts from one source is bounded by its budget for
        all accounts together, then every LOGIN of that source is refused;
        other sources are not.
        """
        throttle = self.throttle(per_account=2, per_source=5, window=60)
        for i in range(5):
            self.fail_times(throttle, HOST, f"user{i}@poe.net")
        self.assertEqual(self.refused(throttle, HOST, EDGAR), 60)
        throttle.begin("192.0.2.2", EDGAR).succeeded()
        self.clock.advance(60)
        throttle.begin(HOST, EDGAR).succeeded()

    def test_success_clears_only_its_own_account(self) -> None:
        """
        A right password forgets the failures of its source and account,
        but not the source's failures for all accounts: a guesser cannot
        reset its budget by logging into an account of its own.
        """
        throttle = self.throttle(per_account=3, per_source=10)
        self.fail_times(throttle, HOST, EDGAR, 2)
        throttle.begin(HOST, EDGAR).succeeded()
        self.fail_times(throttle, HOST, EDGAR, 2)
        throttle.begin(HOST, EDGAR).succeeded()  # 4 failures, 2 forgotten
        self.fail_times(throttle, HOST, LOST, 3)  # 7 failures from HOST
        throttle.begin(HOST, "mallory@poe.net").succeeded()
        self.refused(throttle, HOST, LOST)
        for name in ("m2", "m3", "m4"):
            self.fail_times(throttle, HOST, f"{name}@poe.net")
        self.refused(throttle, HOST, "mallory@poe.net")
        throttle.begin("192.0.2.2", "mallory@poe.net").succeeded()

    def test_attempt_ends_once(self) -> None:
        """
        An attempt ends by its first verdict; L{LoginAttempt.release}
        after it does nothing, and alone it frees the slot without counting
        a failure (the check never judged a password).
        """
        throttle = self.throttle(per_account=2, concurrent=1)
        attempt = throttle.begin(HOST, EDGAR)
        attempt.failed()
        attempt.failed()
        attempt.release()
        attempt.succeeded()
        self.assertTrue(attempt.ended)
        unjudged = throttle.begin(HOST, EDGAR)
        unjudged.release()
        throttle.begin(HOST, EDGAR).failed()
        self.refused(throttle, HOST, EDGAR)

    def test_refusals_are_not_remembered(self) -> None:
        throttle = self.throttle(concurrent=1)
        throttle.begin(HOST, EDGAR)
        before = throttle.remembered()
        for i in range(100):
            self.refused(throttle, HOST, f"user{i}@poe.net")
        self.assertEqual(throttle.remembered(), before)

    def test_bounded_memory(self) -> None:
        """
        A spread-out attack remembers at most C{max_entries} sources and as
        many pairs, and entries with nothing left in the window go.
        """
        throttle = LoginThrottle(self.clock, LoginLimits(window=60), max_entries=10)
        for i in range(1000):
            self.fail_times(throttle, f"10.0.{i // 256}.{i % 256}", f"u{i}@poe.net")
        self.assertEqual(throttle.remembered(), 20)
        self.clock.advance(61)
        throttle.begin(HOST, EDGAR).succeeded()
        self.assertEqual(throttle.remembered(), 2)

    def test_a_failure_is_remembered_for_the_window(self) -> None:
        """
        A failure counts for C{window} seconds and no longer: at that
        second it no longer stands beside the checks in progress.
        """
        throttle = self.throttle(per_account=2, window=600)
        throttle.begin(HOST, EDGAR).failed()
        self.clock.advance(600)
        throttle.begin(HOST, EDGAR)
        throttle.begin(HOST, EDGAR)

    def test_forgetting_idle_entries_keeps_the_others(self) -> None:
        """
        Entries with nothing left to count are forgotten oldest first, and
        only they: a source's failure made after is still counted.
        """
        throttle = self.throttle(per_source=1)
        idle = throttle.begin("10.0.0.1", EDGAR)
        throttle.begin("10.0.0.2", EDGAR).failed()
        idle.succeeded()
        throttle.begin("10.0.0.3", EDGAR)
        self.refused(throttle, "10.0.0.2", EDGAR)

    def test_a_failure_counts_as_a_use(self) -> None:
        """
        Memory is freed least recently used first, and a failure is a use:
        a source (or source and account) that just failed is kept over one
        whose attempt is still in progress.
        """
        for limits, kept in [
            (LoginLimits(per_source=1), "source"),
            (LoginLimits(per_account=1), "pair"),
        ]:
            throttle = LoginThrottle(self.clock, limits, max_entries=2)
            guesser = throttle.begin("10.0.0.1", EDGAR)
            throttle.begin("10.0.0.2", EDGAR)
            guesser.failed()
            throttle.begin("10.0.0.3", EDGAR)
            with self.assertRaises(LoginThrottled, msg=kept):
                throttle.begin("10.0.0.1", EDGAR)

    def test_sources(self) -> None:
        """
        An IPv6 host counts as its /64, as one host is given one; an
        IPv4-mapped address as the IPv4 address.
        """
        self.assertEqual(source_of("192.0.2.1"), "192.0.2.1")
        self.assertEqual(source_of("::ffff:192.0.2.1"), "192.0.2.1")
        self.assertEqual(source_of("2001:db8:1:2::5"), "2001:db8:1:2::/64")
        self.assertEqual(source_of("2001:db8:1:2:ffff::9"), "2001:db8:1:2::/64")
        self.assertEqual(source_of("/tmp/socket"), "/tmp/socket")
        throttle = self.throttle(per_account=1)
        self.fail_times(throttle, "2001:db8:1:2::5", EDGAR)
        self.refused(throttle, "2001:db8:1:2::6", EDGAR)
        throttle.begin("2001:db8:1:3::5", EDGAR)

    def test_accounts(self) -> None:
        """
        An address counts in its normal form; all malformed ones as one.
        """
        self.assertEqual(account_of("Edgar@POE.net"), EDGAR)
        self.assertEqual(account_of("not an address"), account_of("x@@y"))
        throttle = self.throttle(per_account=1)
        self.fail_times(throttle, HOST, "EDGAR@poe.net")
        self.refused(throttle, HOST, EDGAR)


class HeldChecks:
    """
    A C{run_in_thread} for the checker that holds every password check in
    progress until the test finishes it.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Deferred, object, tuple]] = []

    def __call__(self, f, *args) -> Deferred:
        d = Deferred()
        self.calls.append((d, f, args))
        return d

    def finish(self, index: int) -> None:
        d, f, args = self.calls[index]
        d.callback(f(*args))

    def crash(self, index: int) -> None:
        d, _, _ = self.calls[index]
        d.errback(RuntimeError("the hash pool fell over"))


class LoginCommandTests(SynchronousTestCase):
    """
    LOGIN through the object protocol, with the default limits: what is
    checked, what is refused, and when the replies come.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        store = MemoryStore()
        add_account(store, EDGAR, PASSWORD)
        add_account(store, LOST, PASSWORD)
        self.checks = HeldChecks()
        self.services = make_services(
            self.clock,
            store,
            portal=make_portal(store, run_in_thread=self.checks, cost=FAST_COST),
        )
        self.limits = self.services.login_throttle.limits

    def start_login(self, address: str, password: str, host: str = HOST):
        conn = StreamHarness(self.services, host=host)
        frames = conn.send("LOGIN", headers={"Address": address, "Password": password})
        return conn, frames

    def test_failure_reply_waits_one_second(self) -> None:
        """
        A wrong password is answered 535 after exactly the failure delay
        (one second by default), through the reactor's clock.
        """
        self.assertEqual(self.limits.failure_delay, 1.0)
        conn, frames = self.start_login(EDGAR, "wrong password")
        self.checks.finish(0)
        self.assertEqual(frames + conn.frames(), [])
        self.clock.advance(0.75)
        self.assertEqual(conn.frames(), [])
        self.clock.advance(0.25)
        [answer] = conn.frames()
        self.assertEqual(answer.code, 535)

    def test_checks_in_progress_count(self) -> None:
        """
        Many LOGINs for one account from one address at once: only as many
        as a source may have in progress are checked, the rest refused at
        once with 429; when those fail, the next burst gets only what is
        left of the account's budget, then nothing, right password or not.
        """
        burst = [self.start_login(EDGAR, f"guess {i}") for i in range(20)]
        self.assertEqual(len(self.checks.calls), self.limits.concurrent)
        refused = [frames[0] for _, frames in burst if frames]
        self.assertEqual(len(refused), 20 - self.limits.concurrent)
        self.assertEqual({f.code for f in refused}, {429})
        self.assertEqual({f.headers["Retry-After"] for f in refused}, {"1"})
        for i in range(self.limits.concurrent):
            self.checks.finish(i)
        self.clock.advance(self.limits.failure_delay)
        for conn, _ in burst[: self.limits.concurrent]:
            self.assertEqual(conn.frames()[0].code, 535)

        second = [self.start_login(EDGAR, f"more {i}") for i in range(20)]
        left = self.limits.per_account - self.limits.concurrent
        self.assertEqual(len(self.checks.calls), self.limits.per_account)
        self.assertEqual(sum(1 for _, frames in second if frames), 20 - left)
        conn, frames = self.start_login(EDGAR, PASSWORD)
        self.assertEqual(frames[0].code, 429)
        self.assertEqual(len(self.checks.calls), self.limits.per_account)

    def test_failures_are_recorded(self) -> None:
        """
        Each 535 counts: after the account's budget of failures, its right
        password is refused from that address, unchecked, until the window
        has passed; from another address it logs in.
        """
        self.fail_logins(EDGAR, self.limits.per_account)
        conn, frames = self.start_login(EDGAR, PASSWORD)
        self.assertEqual(frames[0].code, 429)
        self.assertEqual(
            int(frames[0].headers["Retry-After"]), int(self.limits.window) - 5
        )
        self.assertEqual(len(self.checks.calls), self.limits.per_account)
        elsewhere, _ = self.start_login(EDGAR, PASSWORD, host="198.51.100.7")
        self.checks.finish(-1)
        self.assertEqual(elsewhere.frames()[0].code, 230)
        neighbour, _ = self.start_login(LOST, PASSWORD)
        self.checks.finish(-1)
        self.assertEqual(neighbour.frames()[0].code, 230)

    def fail_logins(self, address: str, times: int) -> None:
        for _ in range(times):
            conn, _ = self.start_login(address, "wrong password")
            self.checks.finish(-1)
            self.clock.advance(self.limits.failure_delay)
            self.assertEqual(conn.frames()[0].code, 535)

    def test_login_forgets_its_account_failures(self) -> None:
        """
        A user who mistypes and then logs in starts afresh for their
        account: mistyping as often again does not lock them out.
        """
        for _ in range(3):
            self.fail_logins(EDGAR, self.limits.per_account - 1)
            conn, _ = self.start_login(EDGAR, PASSWORD)
            self.checks.finish(-1)
            self.assertEqual(conn.frames()[0].code, 230)

    def test_spraying_accounts_is_bounded_per_source(self) -> None:
        """
        Wrong passwords for many accounts, none over its own budget, use up
        the source's: then even a right password is refused from there.
        (A small budget: each unknown account costs a full-cost hash.)
        """
        limits = LoginLimits(per_account=2, per_source=6)
        self.services = replace(
            self.services, login_throttle=LoginThrottle(self.clock, limits)
        )
        for i in range(limits.per_source):
            self.start_login(f"user{i}@poe.net", "wrong password")
            self.checks.finish(i)
        self.clock.advance(limits.failure_delay)
        _, frames = self.start_login(LOST, PASSWORD)
        self.assertEqual(frames[0].code, 429)
        self.assertEqual(len(self.checks.calls), limits.per_source)

    def test_refusal_does_not_reveal_the_account(self) -> None:
        """
        An address with no account is throttled exactly as one with an
        account: same code, same text, same Retry-After.
        """
        answers = []
        for address in (EDGAR, "nobody@poe.net"):
            self.fail_logins(address, self.limits.per_account)
            self.clock.advance(10)
            _, frames = self.start_login(address, "wrong password")
            answers.append(frames[0])
        known, unknown = answers
        self.assertEqual(known.code, 429)
        self.assertEqual(
            (known.code, known.argument, known.headers),
            (unknown.code, unknown.argument, unknown.headers),
        )

    def test_failed_check_releases_its_slot(self) -> None:
        """
        A check that errs (451) frees its reservation without counting a
        failure, so an outage does not lock users out afterwards.
        """
        for i in range(self.limits.per_account + 1):
            conn, _ = self.start_login(EDGAR, PASSWORD)
            self.checks.crash(i)
            self.assertEqual(conn.frames()[0].code, 451)
        self.flushLoggedErrors(RuntimeError)
        conn, _ = self.start_login(EDGAR, PASSWORD)
        self.checks.finish(-1)
        self.assertEqual(conn.frames()[0].code, 230)

    def test_dropped_connection_still_ends_its_attempt(self) -> None:
        """
        A guesser that hangs up while its password is checked still has
        the failure counted, and its slot freed, when the check ends.
        """
        throttle = LoginThrottle(self.clock, LoginLimits(per_account=2, concurrent=1))
        self.services = replace(self.services, login_throttle=throttle)
        conn, _ = self.start_login(EDGAR, "wrong password")
        conn.protocol.connectionLost(None)
        self.checks.finish(0)
        self.clock.advance(1)
        conn, _ = self.start_login(EDGAR, "wrong again")
        self.checks.finish(1)
        self.clock.advance(1)
        self.assertEqual(conn.frames()[0].code, 535)
        _, frames = self.start_login(EDGAR, PASSWORD)
        self.assertEqual(frames[0].code, 429)


class OptionsTests(SynchronousTestCase):
    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(list(args))
        return options

    def test_defaults(self) -> None:
        self.assertEqual(self.parse()["login-limits"], DEFAULT_LOGIN_LIMITS)

    def test_set(self) -> None:
        options = self.parse(
            "--login-failures-per-account",
            "3",
            "--login-failures-per-source",
            "500",
            "--login-concurrent",
            "16",
            "--login-window",
            "3600",
            "--login-failure-delay",
            "0.25",
        )
        self.assertEqual(
            options["login-limits"],
            LoginLimits(
                per_account=3,
                per_source=500,
                concurrent=16,
                window=3600.0,
                failure_delay=0.25,
            ),
        )

    def test_refused(self) -> None:
        for option, value in [
            ("--login-failures-per-account", "0"),
            ("--login-failures-per-account", "five"),
            ("--login-failures-per-account", "9" * 5000),
            ("--login-failures-per-source", "-1"),
            ("--login-failures-per-source", "2"),  # fewer than per account
            ("--login-concurrent", "1.5"),
            ("--login-window", "0"),
            ("--login-window", "nan"),
            ("--login-failure-delay", "-1"),
            ("--login-failure-delay", "inf"),
        ]:
            with self.assertRaises(usage.UsageError) as caught:
                self.parse(option, value)
            self.assertIn(option, str(caught.exception))


# Over real sockets: a server built by build_server on loopback, its checks
# counted where the password is really compared (in the hash pool).


class CountedChecks:
    """
    Wraps L{fmtp.accounts._check_or_pretend}, the function every password
    check runs, to count the passwords checked and name the threads.
    """

    def __init__(self, monkeypatch) -> None:
        self.passwords: list[str] = []
        self.threads: set[str] = set()
        real = fmtp.accounts._check_or_pretend

        def counted(password, encoded, cost):
            self.passwords.append(password)
            self.threads.add(threading.current_thread().name)
            return real(password, encoded, cost)

        monkeypatch.setattr(fmtp.accounts, "_check_or_pretend", counted)


@pytest.fixture
def counted(monkeypatch) -> CountedChecks:
    return CountedChecks(monkeypatch)


class LoopbackServer:
    """
    A server built by L{build_server} on a loopback port of its own, with
    the accounts C{EDGAR} and C{LOST}.  Stopping it closes every
    connection it opened.
    """

    def __init__(self, tmp_path, limits: LoginLimits) -> None:
        self.root, self.services = build_server(
            reactor,
            domain="poe.net",
            store_url=f"sqlite:{tmp_path / 'fmtp.sqlite'}",
            key_file=str(tmp_path / "domain.key"),
            listeners={
                "object": ["tcp:0:interface=127.0.0.1"],
                "presence": ["tcp:0:interface=127.0.0.1"],
                "chat": ["none"],
            },
            login_limits=limits,
        )
        self.connections: list = []

    async def start(self) -> LoopbackServer:
        self.root.startService()
        self.port = (await bound_ports(self.root))["object", "tcp"]
        for address in (EDGAR, LOST):
            encoded = hash_password(PASSWORD, n=FAST_SCRYPT_N)
            await self.services.store.add_account(address, encoded)
            await self.services.store.put_object(user_object(address))
        return self

    async def connect(self, source: str = "127.0.0.1"):
        endpoint = f"tcp:127.0.0.1:{self.port}:bindAddress={source}"
        connection = await connect(reactor, endpoint)
        self.connections.append(connection)
        return connection

    async def login(self, address: str, password: str, source: str = "127.0.0.1"):
        """
        LOGIN on a new connection from C{source}; the reply.
        """
        connection = await self.connect(source)
        return await request_login(connection, address, password)

    async def stop(self) -> None:
        for connection in self.connections:
            connection.transport.loseConnection()
            await connection.closed
        await self.root.stopService()


def request_login(connection, address: str, password: str) -> Deferred:
    return connection.request(
        "LOGIN", headers={"Address": address, "Password": password}
    ).addTimeout(10, reactor)


def first_refusal(requests: list[Deferred]) -> Deferred:
    """
    A Deferred that fires with the first of C{requests}' replies that is
    a 429.
    """
    refused: Deferred = Deferred()

    def seen(answer):
        if answer.code == 429 and not refused.called:
            refused.callback(answer)
        return answer

    for d in requests:
        d.addCallback(seen)
    return refused


@pytest_twisted.ensureDeferred
async def test_parallel_guesses_get_only_the_budget(tmp_path, counted) -> None:
    """
    The attack of issue 6: many connections from one address each try one
    password for one account, all at once.  Only the account's budget of
    passwords is checked, however the LOGINs interleave; the right password,
    sent once the budget is spent (a 429 has come back), is refused
    unchecked; the address still logs into another account, and the
    account from another address.
    """
    limits = LoginLimits(per_account=5, concurrent=8, failure_delay=0.05)
    server = await LoopbackServer(tmp_path, limits).start()
    try:
        connections = [await server.connect() for _ in range(40)]
        guesses = [
            request_login(connection, EDGAR, f"guess {i}")
            for i, connection in enumerate(connections[:-1])
        ]
        await first_refusal(guesses).addTimeout(10, reactor)
        right = await request_login(connections[-1], EDGAR, PASSWORD)
        answers = await gatherResults(guesses)

        codes = [answer.code for answer in answers]
        assert codes.count(535) == limits.per_account, codes
        assert codes.count(429) == len(guesses) - limits.per_account, codes
        assert right.code == 429, right
        assert int(right.headers["Retry-After"]) >= 1
        assert PASSWORD not in counted.passwords
        assert len(counted.passwords) == limits.per_account

        # The failures were recorded, not only counted while in progress.
        assert (await server.login(EDGAR, PASSWORD)).code == 429
        assert (await server.login(LOST, PASSWORD)).code == 230
        assert (await server.login(EDGAR, PASSWORD, "127.0.0.2")).code == 230
        assert len(counted.passwords) == limits.per_account + 2
        assert all("fmtp-password-hash" in name for name in counted.threads), (
            counted.threads
        )
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_spraying_accounts_gets_only_the_source_budget(tmp_path, counted) -> None:
    """
    One address trying one password on each of many accounts at once gets
    only its budget for all accounts checked; then its right password for
    an account it never guessed at is refused too, while another address
    logs into that account.
    """
    limits = LoginLimits(per_account=2, per_source=6, concurrent=8, failure_delay=0.05)
    server = await LoopbackServer(tmp_path, limits).start()
    try:
        connections = [await server.connect() for _ in range(20)]
        answers = await gatherResults(
            [
                request_login(connection, f"user{i}@poe.net", "wrong password")
                for i, connection in enumerate(connections)
            ]
        )
        codes = [answer.code for answer in answers]
        assert codes.count(535) == limits.per_source, codes
        assert len(counted.passwords) == limits.per_source
        assert (await server.login(LOST, PASSWORD)).code == 429
        assert (await server.login(LOST, PASSWORD, "127.0.0.2")).code == 230
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_twistd_options_reach_the_throttle(tmp_path, processes) -> None:  # noqa: F811
    """
    C{twistd -n fmtp --login-...} as an admin runs it: the limits set on
    the command line are the ones LOGIN meets.  Two failures for an
    address without an account use up a budget of two; a third LOGIN is
    refused unchecked, while another account is still checked (535).
    """
    log_path = tmp_path / "twistd.log"
    args = [
        *TWISTD,
        "-n",
        "fmtp",
        *LISTENERS,
        "--login-failures-per-account",
        "2",
        "--login-failure-delay",
        "0.01",
    ]
    server = ServerProcess(processes.start(args, tmp_path, log_path), log_path)
    await server.wait_until_serving()
    connection = await server.connect()
    try:
        codes = []
        for _ in range(3):
            answer = await request_login(
                connection, "nobody@localhost", "wrong password"
            )
            codes.append(answer.code)
        assert codes == [535, 535, 429], codes
        assert int(answer.headers["Retry-After"]) > 500
    finally:
        connection.transport.loseConnection()
        await connection.closed
    other = await server.connect()
    try:
        answer = await request_login(other, "someone@localhost", "wrong password")
        assert answer.code == 535, answer
    finally:
        other.transport.loseConnection()
        await other.closed
    await server.terminate()
