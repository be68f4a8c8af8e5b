"""
Unit tests of L{fmtp.protocols.presence.service} on a Clock: the grace
period of a lost connection, a reconnect taking its place, and what ends
a presence at once.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from fmtp.auth.router import Event
from fmtp.interfaces import IPresenceService, IPresenceView
from fmtp.protocols.presence.events import PRESENCE, REQUEST
from fmtp.protocols.presence.service import PresenceService, PresenceSettings
from fmtp.protocols.presence.status import Shown
from tests.helpers import add_account, make_services
from tests.protocols.presence.test_commands import (
    ANNABEL,
    EDGAR,
    LENORE,
    PresenceTestCase,
)

LOST = Failure(ConnectionLost())


class GraceTests(PresenceTestCase):
    settings = PresenceSettings(grace_period=30.0)

    def setUp(self) -> None:
        super().setUp()
        self.subscribed(ANNABEL, EDGAR)
        self.annabel = self.logged_in(ANNABEL, "online")
        self.pushes(self.annabel)

    def presence_timers(self) -> list:
        """
        The timers the presence service holds (not the streams' own).
        """
        return [c for c in self.clock.getDelayedCalls() if "Timeout" not in repr(c)]

    def test_interface(self) -> None:
        service = self.handler.groups[1].presence
        self.assertTrue(verifyObject(IPresenceService, service))
        other = PresenceService(self.clock, "poe.net", self.store, self.services.router)
        self.assertTrue(verifyObject(IPresenceService, other))
        self.assertTrue(verifyObject(IPresenceView, other))

    def test_a_lost_connection_goes_offline_after_the_grace_period(self) -> None:
        edgar = self.logged_in(EDGAR, "away", Note="brb")
        self.assertEqual(
            self.pushes(self.annabel),
            [("252", {"From": EDGAR, "Status": "away", "Note": "brb"})],
        )
        edgar.protocol.connectionLost(LOST)
        self.clock.advance(29.9)
        self.assertEqual(self.pushes(self.annabel), [])
        presence = self.handler.groups[1].presence
        self.assertEqual(presence.user_presence(EDGAR), Shown("away", "brb"))
        self.clock.advance(0.1)
        self.assertEqual(
            self.pushes(self.annabel), [("252", {"From": EDGAR, "Status": "offline"})]
        )
        self.assertEqual(presence.user_presence(EDGAR), Shown())

    def test_a_reconnect_within_the_grace_period_takes_its_place(self) -> None:
        edgar = self.logged_in(EDGAR, "busy", Resource="desk")
        self.pushes(self.annabel)
        edgar.protocol.connectionLost(LOST)
        self.clock.advance(20)
        again = self.logged_in(EDGAR, "busy", Resource="desk")
        self.clock.advance(60)
        # No offline blip, and the old session's timer is gone.
        self.assertEqual(self.pushes(self.annabel), [])
        self.assertEqual(self.presence_timers(), [])
        again.ask("STATUS", "2", "online")
        self.assertEqual(
            self.pushes(self.annabel), [("252", {"From": EDGAR, "Status": "online"})]
        )

    def test_another_resource_does_not_take_its_place(self) -> None:
        edgar = self.logged_in(EDGAR, "busy", Resource="desk", Priority="9")
        self.pushes(self.annabel)
        edgar.protocol.connectionLost(LOST)
        self.logged_in(EDGAR, "online", Resource="phone")
        # The lost one still decides (priority 9) until its grace ends.
        self.assertEqual(self.pushes(self.annabel), [])
        self.clock.advance(30)
        self.assertEqual(
            self.pushes(self.annabel), [("252", {"From": EDGAR, "Status": "online"})]
        )

    def test_quit_and_logout_end_at_once(self) -> None:
        for end in ("QUIT", "LOGOUT"):
            with self.subTest(end=end):
                edgar = self.logged_in(EDGAR, "online")
                self.pushes(self.annabel)
                edgar.ask(end)
                edgar.protocol.connectionLost(LOST)
                self.assertEqual(
                    self.pushes(self.annabel),
                    [("252", {"From": EDGAR, "Status": "offline"})],
                )
                self.assertEqual(self.presence_timers(), [])

    def test_a_lost_session_is_pushed_nothing(self) -> None:
        self.subscribed(EDGAR, ANNABEL)
        edgar = self.logged_in(EDGAR, "online")
        self.pushes(edgar), self.pushes(self.annabel)
        edgar.protocol.connectionLost(LOST)
        self.annabel.ask("STATUS", "2", "away")
        self.assertEqual(self.pushes(edgar), [])

    def test_a_session_not_yet_available_is_pushed_nothing(self) -> None:
        self.subscribed(EDGAR, ANNABEL)
        edgar = self.logged_in(EDGAR)
        self.annabel.ask("STATUS", "2", "away")
        self.annabel.ask("APPROVE", "3", "lenore@poe.net")
        self.assertEqual(self.pushes(edgar), [])


class LifetimeTests(PresenceTestCase):
    """
    The presence service runs as long as its server: it sweeps old
    requests, and once stopped nothing of it runs any more.
    """

    settings = PresenceSettings(grace_period=30.0, request_lifetime=86400.0)

    def setUp(self) -> None:
        super().setUp()
        self.presence = self.handler.groups[1].presence
        self.presence.startService()

    def test_it_is_the_service_the_server_runs(self) -> None:
        self.assertEqual(self.handler.group_services(), [self.presence])

    def test_stopping_cancels_every_timer(self) -> None:
        """
        The attack: grace periods (and announcements, and the sweep) that
        outlive the server run against its closed store.
        """
        self.subscribed(ANNABEL, EDGAR)
        annabel = self.logged_in(ANNABEL, "online")
        edgar = self.logged_in(EDGAR, "online")
        lenore = self.logged_in(LENORE, "online")
        edgar.protocol.connectionLost(LOST)
        annabel.ask("STATUS", "2", "away")
        self.assertNotEqual(self.presence_timers(), [])
        self.assertIsNone(self.presence.stopService())
        self.assertEqual(self.presence_timers(), [])
        self.assertEqual(self.presence.timers.getDelayedCalls(), [])
        self.store.close()
        self.clock.advance(86400)
        self.flushLoggedErrors()
        self.assertEqual(self.presence.user_presence(EDGAR), Shown("online"))
        # A call asked for once stopped never runs either.
        self.presence.session_lost(lenore.protocol.session.login)
        self.assertEqual(self.presence_timers(), [])

    def presence_timers(self) -> list:
        """
        The clock's calls, but the streams' own timeouts.
        """
        return [
            call
            for call in self.clock.getDelayedCalls()
            if not any(word in repr(call) for word in ("Timeout", "FrameStream"))
        ]

    def test_requests_nobody_answers_expire(self) -> None:
        self.logged_in(EDGAR).ask("SUBSCRIBE", "1", ANNABEL)
        self.clock.advance(3600)
        self.logged_in(LENORE).ask("SUBSCRIBE", "1", ANNABEL)
        self.clock.advance(86400 - 3600)
        waiting = self.successResultOf(self.store.pending_requests(ANNABEL))
        self.assertEqual([r.subscriber for r in waiting], [EDGAR, LENORE])
        self.clock.advance(3600)
        waiting = self.successResultOf(self.store.pending_requests(ANNABEL))
        self.assertEqual([r.subscriber for r in waiting], [LENORE])
        self.assertEqual(
            self.logged_in(EDGAR).ask("BUDDIES").body, b"", "no longer pending-out"
        )

    def test_a_failed_sweep_is_logged_and_tried_again(self) -> None:
        self.logged_in(EDGAR).ask("SUBSCRIBE", "1", ANNABEL)
        calls = []
        real = self.store.expire_requests

        def failing_once(before: float) -> Deferred:
            calls.append(before)
            if len(calls) == 1:
                return fail(RuntimeError("disk on fire"))
            return real(before)

        self.store.expire_requests = failing_once
        self.clock.advance(86400 + 3600)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.clock.advance(3600)
        self.assertEqual(self.successResultOf(self.store.pending_requests(ANNABEL)), [])
        self.assertEqual(len(calls), 2)


class SlowSubscribers:
    """
    A store whose C{subscribers} answers only when the test says.
    """

    def __init__(self, store) -> None:
        self._store = store
        self.waiting: list[Deferred] = []

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def subscribers(self, target: str) -> Deferred:
        d = Deferred()
        self.waiting.append(d)
        return d


class CoalescingTests(SynchronousTestCase):
    def test_one_announcement_at_a_time_and_the_latest_last(self) -> None:
        """
        Changes made while an announcement waits for the store are not
        announced each: one more announcement follows, with the latest.
        """
        clock = Clock()
        services = make_services(clock)
        add_account(services.store, ANNABEL, "x" * 12)
        add_account(services.store, EDGAR, "x" * 12)
        services.store.request_subscription(ANNABEL, EDGAR, 0.0, 10)
        services.store.approve_subscription(EDGAR, ANNABEL, 0.0)
        store = SlowSubscribers(services.store)
        router = services.router
        presence = PresenceService(clock, "poe.net", store, router)
        got: list[Event] = []
        annabel = router.open(ANNABEL, "presence", got.append, {PRESENCE})
        edgar = router.open(EDGAR, "presence", [].append, {PRESENCE})
        presence.set_status(annabel, "online")
        clock.advance(0)
        store.waiting.pop().callback([])
        presence.set_status(edgar, "away")
        clock.advance(0)
        self.assertEqual(len(store.waiting), 1)
        for status in ("busy", "online", "busy"):
            presence.set_status(edgar, status)
            clock.advance(0)
        # Still one: the others wait for it.
        self.assertEqual(len(store.waiting), 1)
        store.waiting[0].callback([ANNABEL])
        clock.advance(0)
        self.assertEqual(len(store.waiting), 2)
        store.waiting[1].callback([ANNABEL])
        shown = [e.payload.shown.status for e in got if e.payload.contact == EDGAR]
        # Her first STATUS's welcome, then two announcements.
        self.assertEqual(shown, ["offline", "away", "busy"])


class SlowSubscriptions:
    """
    A store whose C{subscriptions} (a welcome's first read) answers only
    when the test says.
    """

    def __init__(self, store) -> None:
        self._store = store
        self.waiting: list[tuple[Deferred, str]] = []

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def subscriptions(self, user: str) -> Deferred:
        d = Deferred()
        self.waiting.append((d, user))
        return d


class WelcomeTests(SynchronousTestCase):
    def test_a_request_during_the_welcome_is_pushed_once(self) -> None:
        """
        A request that arrives while a session's first STATUS is being
        answered with what waits for it reaches that session once: live,
        and not again from the list of waiting requests read after it.
        """
        clock = Clock()
        services = make_services(clock)
        for address in (ANNABEL, EDGAR):
            add_account(services.store, address, "x" * 12)
        store = SlowSubscriptions(services.store)
        router = services.router
        presence = PresenceService(clock, "poe.net", store, router)
        got: list[Event] = []
        edgar = router.open(EDGAR, "presence", got.append, {REQUEST})
        presence.set_status(edgar, "online")
        clock.advance(0)
        [(welcome, user)] = store.waiting
        self.assertEqual(user, EDGAR)
        asked = Deferred.fromCoroutine(presence.subscribe(ANNABEL, EDGAR))
        self.assertEqual(self.successResultOf(asked), "pending-out")
        welcome.callback([])
        clock.advance(0)
        self.assertEqual([e.payload for e in got if e.kind == REQUEST], [ANNABEL])
