"""
The brake on password guessing: how many LOGINs one source may have
checked, for one account and for all accounts together.

An attempt is reserved before its password is checked and counts from
then on, so a guesser gains nothing by sending many LOGINs at once: the
checks in progress already use up the budget the later ones would need.
Failures are counted per source and account, so a guesser at one account
does not lock its source's other users out, and per source, so spraying
many accounts from one source is bounded too.  Nothing is ever counted
per account alone: an attack from elsewhere never locks a user out of an
account from their own address.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from fmtp.errors import InvalidAddress
from fmtp.objects import normalize_address

#: Seconds to wait, as a client is told, when only checks still in
#: progress stand in the way: a check ends well within a second.
RETRY_AFTER_CHECKS = 1.0

#: How much of an IPv6 address names one source: a host is given a /64,
#: so counting its addresses one by one would count nothing.
IPV6_SOURCE_PREFIX = 64


@dataclass(frozen=True)
class LoginLimits:
    """
    What an admin may set (C{twistd fmtp --login-...}, doc/admin.md).

    @ivar per_account: failed LOGINs one source may make for one account
        within L{window}; then its LOGINs for that account are refused.
    @ivar per_source: failed LOGINs one source may make for all accounts
        together within L{window}; then all its LOGINs are refused.
    @ivar concurrent: LOGINs of one source that may be checked at once.
    @ivar window: seconds a failure is remembered.
    @ivar failure_delay: seconds a failed LOGIN's reply is held back, so a
        guesser on one connection gets at most one answer per delay.
    """

    per_account: int = 5
    per_source: int = 50
    concurrent: int = 4
    window: float = 600.0
    failure_delay: float = 1.0


DEFAULT_LOGIN_LIMITS = LoginLimits()


class LoginThrottled(Exception):
    """
    A LOGIN refused before its password was checked.

    @ivar retry_after: seconds until the same LOGIN may be checked.
    """

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.0f}s")
        self.retry_after = retry_after


def source_of(host: str) -> str:
    """
    The source a peer address counts as: an IPv4 address (IPv4-mapped
    IPv6 included) as itself, an IPv6 address as its /64 network, anything
    else (a UNIX socket's path) as given.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        network = ipaddress.IPv6Network((ip, IPV6_SOURCE_PREFIX), strict=False)
        return str(network)
    return str(ip)


def account_of(address: str) -> str:
    """
    The account a LOGIN's C{Address} counts against: its normal form, so
    that C{Edgar@POE.net} and C{edgar@poe.net} share one budget.  All
    malformed addresses share the empty name: none can log in, and they
    are bounded in length before they are kept.
    """
    try:
        return normalize_address(address)
    except InvalidAddress:
        return ""


class _Tally:
    """
    The failures (times, oldest first) and the checks in progress of one
    source, or of one source and account.
    """

    __slots__ = ("failures", "in_progress")

    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.in_progress = 0

    def forget_before(self, cutoff: float) -> None:
        while self.failures and self.failures[0] <= cutoff:
            self.failures.popleft()

    def idle(self) -> bool:
        return not self.failures and not self.in_progress

    def wait(self, limit: int, now: float, window: float) -> float:
        """
        Seconds until one more attempt fits under C{limit}; 0 if it does.
        """
        failed = len(self.failures)
        if failed + self.in_progress < limit:
            return 0.0
        if failed >= limit:
            # The failure that brings the count under the limit by expiring.
            return self.failures[failed - limit] + window - now
        return RETRY_AFTER_CHECKS


class LoginAttempt:
    """
    One reserved attempt, counted as in progress until it ends: by
    L{succeeded}, L{failed} or L{release}, whichever comes first.
    """

    def __init__(
        self,
        throttle: LoginThrottle,
        source_key: str,
        pair_key: tuple[str, str],
        source: _Tally,
        pair: _Tally,
    ) -> None:
        self._throttle = throttle
        self._source_key = source_key
        self._pair_key = pair_key
        self._source = source
        self._pair = pair
        self.ended = False

    def _end(self) -> bool:
        if self.ended:
            return False
        self.ended = True
        self._source.in_progress -= 1
        self._pair.in_progress -= 1
        return True

    def succeeded(self) -> None:
        """
        The password was right: this source's failures for this account
        are forgotten.  Its failures for all accounts are not, or a
        guesser could reset them by logging into an account of its own.
        """
        if self._end():
            self._pair.failures.clear()

    def failed(self) -> None:
        """
        The password was wrong (or the account does not exist: the two are
        counted alike, so the throttle never tells them apart).
        """
        if self._end():
            self._throttle._record_failure(
                self._source_key, self._pair_key, self._source, self._pair
            )

    def release(self) -> None:
        """
        End an attempt whose check never finished (the store failed, the
        request was cancelled): no password was judged, so it counts
        neither way.  Does nothing once the attempt has ended.
        """
        self._end()


class LoginThrottle:
    """
    Reserves LOGIN attempts under L{LoginLimits}: call L{begin} before a
    password is checked and end the attempt it returns when the check
    ends.

    A source may have at most C{concurrent} checks in progress, and
    failures plus checks in progress below C{per_account} for the account
    and below C{per_source} in all; otherwise L{begin} refuses.

    Memory is bounded under a spread-out attack: at most C{max_entries}
    sources and as many (source, account) pairs are remembered, the least
    recently used forgotten first, and an entry with no failure left in
    the window and no check in progress is dropped as soon as it is the
    oldest.

    @ivar limits: the L{LoginLimits} in force.
    """

    def __init__(
        self,
        clock: IReactorTime,
        limits: LoginLimits = DEFAULT_LOGIN_LIMITS,
        max_entries: int = 100_000,
    ) -> None:
        self._clock = clock
        self.limits = limits
        self._max_entries = max_entries
        self._sources: OrderedDict[str, _Tally] = OrderedDict()
        self._pairs: OrderedDict[tuple[str, str], _Tally] = OrderedDict()

    def begin(self, host: str, address: str) -> LoginAttempt:
        """
        Reserve an attempt to log in as C{address} from C{host}.

        @raise LoginThrottled: if the attempt would go over a limit; the
            password must then not be checked.  Nothing is remembered of a
            refused attempt.
        """
        limits = self.limits
        now = self._clock.seconds()
        cutoff = now - limits.window
        self._drop_idle(self._sources, cutoff)
        self._drop_idle(self._pairs, cutoff)
        source_key = source_of(host)
        pair_key = (source_key, account_of(address))
        source = self._current(self._sources, source_key, cutoff)
        pair = self._current(self._pairs, pair_key, cutoff)
        wait = max(
            source.wait(limits.per_source, now, limits.window),
            pair.wait(limits.per_account, now, limits.window),
            RETRY_AFTER_CHECKS if source.in_progress >= limits.concurrent else 0.0,
        )
        if wait > 0:
            raise LoginThrottled(wait)
        self._keep(self._sources, source_key, source)
        self._keep(self._pairs, pair_key, pair)
        source.in_progress += 1
        pair.in_progress += 1
        return LoginAttempt(self, source_key, pair_key, source, pair)

    def _record_failure(
        self, source_key: str, pair_key: tuple[str, str], source: _Tally, pair: _Tally
    ) -> None:
        now = self._clock.seconds()
        source.failures.append(now)
        pair.failures.append(now)
        # Keep the order of last use, which eviction relies on; an entry
        # evicted meanwhile stays forgotten.
        for table, key in ((self._sources, source_key), (self._pairs, pair_key)):
            if key in table:
                table.move_to_end(key)

    @staticmethod
    def _current(table: OrderedDict, key, cutoff: float) -> _Tally:
        tally = table.get(key)
        if tally is None:
            return _Tally()
        tally.forget_before(cutoff)
        return tally

    def _keep(self, table: OrderedDict, key, tally: _Tally) -> None:
        table[key] = tally
        table.move_to_end(key)
        while len(table) > self._max_entries:
            table.popitem(last=False)

    @staticmethod
    def _drop_idle(table: OrderedDict, cutoff: float) -> None:
        """
        Forget the least recently used entries while they hold nothing.
        """
        while table:
            tally = next(iter(table.values()))
            tally.forget_before(cutoff)
            if not tally.idle():
                return
            table.popitem(last=False)

    def remembered(self) -> int:
        """
        How many sources and (source, account) pairs are remembered; for
        tests and monitoring.
        """
        return len(self._sources) + len(self._pairs)
