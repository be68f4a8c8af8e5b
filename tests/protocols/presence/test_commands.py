"""
Unit tests of the presence commands over StringTransport, on a Clock: the
wire of section 9, consent, the target's policy, privacy, and the limits
on floods and malformed input.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.protocols.presence.plugin import PresenceProtocolPlugin
from fmtp.protocols.presence.service import PresenceSettings
from fmtp.wire import serialize
from tests.helpers import StreamHarness, add_account, make_services

EDGAR = "edgar@poe.net"
ANNABEL = "annabel@poe.net"
LENORE = "lenore@poe.net"
PASSWORD = "nevermore-quoth"


class PresenceTestCase(SynchronousTestCase):
    """
    One server of poe.net, its presence protocol, and three users.
    """

    settings = PresenceSettings()

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.services = make_services(self.clock)
        self.store = self.services.store
        for address in (EDGAR, ANNABEL, LENORE):
            add_account(self.store, address, PASSWORD)
        self.handler = PresenceProtocolPlugin(self.settings).handler(self.services)

    def connect(self) -> StreamHarness:
        return StreamHarness(self.services, handler=self.handler)

    def logged_in(self, address: str, status: str | None = None, **headers):
        conn = self.connect()
        self.assertEqual(conn.login(address, PASSWORD).code, 230)
        if status is not None:
            self.assertEqual(conn.ask("STATUS", "s", status, headers).code, 200)
        return conn

    def set_policy(self, address: str, **properties: str) -> None:
        profile = self.successResultOf(self.store.get_object(address))
        profile.properties.update(properties)
        self.store.put_object(profile)

    def pushes(self, conn: StreamHarness) -> list[tuple[str, dict[str, str]]]:
        """
        What was pushed to C{conn} once the coalesced announcements ran.
        """
        self.clock.advance(0)
        return [(f.verb, f.headers) for f in conn.frames()]

    def subscribed(self, subscriber: str, target: str) -> None:
        """
        C{subscriber} sees C{target}, through the store directly.
        """
        self.store.request_subscription(subscriber, target, 0.0, 100)
        self.store.approve_subscription(target, subscriber, 0.0)


class StatusTests(PresenceTestCase):
    def test_status_sets_the_sessions_presence_and_answers_it(self) -> None:
        edgar = self.logged_in(EDGAR)
        before = edgar.ask("STATUS", "1")
        self.assertEqual(
            before.headers, {"Status": "offline", "User-Status": "offline"}
        )
        answer = edgar.ask(
            "STATUS", "2", "Away", {"Note": "out", "Priority": "-5", "Resource": "desk"}
        )
        self.assertEqual(
            answer.headers,
            {
                "Status": "away",
                "Priority": "-5",
                "Resource": "desk",
                "User-Status": "away",
            },
        )
        self.assertEqual(edgar.ask("STATUS", "3").headers, answer.headers)

    def test_a_random_resource_when_none_is_given(self) -> None:
        first = self.logged_in(EDGAR).ask("STATUS", "1", "online")
        second = self.logged_in(EDGAR).ask("STATUS", "1", "online")
        self.assertNotEqual(first.headers["Resource"], second.headers["Resource"])

    def test_invisible_is_offline_to_subscribers(self) -> None:
        self.subscribed(ANNABEL, EDGAR)
        annabel = self.logged_in(ANNABEL, "online")
        self.pushes(annabel)
        edgar = self.logged_in(EDGAR)
        answer = edgar.ask("STATUS", "1", "invisible")
        self.assertEqual(
            (answer.headers["Status"], answer.headers["User-Status"]),
            ("invisible", "offline"),
        )
        self.assertEqual(self.pushes(annabel), [])
        edgar.ask("STATUS", "2", "busy")
        self.assertEqual(
            self.pushes(annabel), [("252", {"From": EDGAR, "Status": "busy"})]
        )

    def test_the_highest_priority_session_decides(self) -> None:
        self.subscribed(ANNABEL, EDGAR)
        annabel = self.logged_in(ANNABEL, "online")
        self.pushes(annabel)
        phone = self.logged_in(EDGAR, "away", Priority="1")
        desk = self.logged_in(EDGAR, "busy", Priority="5")
        self.assertEqual(
            self.pushes(annabel), [("252", {"From": EDGAR, "Status": "busy"})]
        )
        # A lower priority session's change changes nothing.
        phone.ask("STATUS", "2", "online", {"Priority": "1"})
        self.assertEqual(self.pushes(annabel), [])
        # Equal priority: the latest change decides.
        phone.ask("STATUS", "3", "online", {"Priority": "5"})
        self.assertEqual(
            self.pushes(annabel), [("252", {"From": EDGAR, "Status": "online"})]
        )
        desk.ask("QUIT")
        desk.protocol.connectionLost(None)
        self.assertEqual(self.pushes(annabel), [])
        phone.ask("LOGOUT")
        self.assertEqual(
            self.pushes(annabel), [("252", {"From": EDGAR, "Status": "offline"})]
        )

    def test_malformed_status_is_refused_and_the_stream_serves_on(self) -> None:
        edgar = self.logged_in(EDGAR)
        cases = [
            ("dancing", {}, 501),
            ("offline", {}, 501),
            ("online", {"Priority": "128"}, 501),
            ("online", {"Priority": "1.5"}, 501),
            ("online", {"Priority": "--1"}, 501),
            ("online", {"Resource": "two words"}, 501),
            ("online", {"Resource": "r" * 65}, 501),
            ("online", {"Note": "n" * 201}, 501),
            ("online", {"Note": "bell\x07"}, 501),
            ("", {"Note": "no status word"}, 501),
        ]
        for status, headers, code in cases:
            answer = edgar.ask("STATUS", "1", status, headers)
            self.assertEqual(answer.code, code, (status, headers, answer))
        self.assertEqual(edgar.ask("STATUS", "1").headers["Status"], "offline")
        # 200 characters after NFC: a decomposed note may be longer before.
        note = "e\u0301" * 200
        answer = edgar.ask("STATUS", "2", "online", {"Note": note})
        self.assertEqual(answer.code, 200)

    def test_the_resource_is_chosen_once(self) -> None:
        edgar = self.logged_in(EDGAR, "online", Resource="desk")
        self.assertEqual(
            edgar.ask("STATUS", "1", "away", {"Resource": "phone"}).code, 501
        )
        self.assertEqual(
            edgar.ask("STATUS", "2", "away", {"Resource": "desk"}).code, 200
        )

    def test_every_command_needs_login(self) -> None:
        anonymous = self.connect()
        for verb, argument in [
            ("STATUS", "online"),
            ("SUBSCRIBE", EDGAR),
            ("UNSUBSCRIBE", EDGAR),
            ("APPROVE", EDGAR),
            ("DENY", EDGAR),
            ("BUDDIES", ""),
        ]:
            self.assertEqual(anonymous.ask(verb, "1", argument).code, 530, verb)

    def test_capa_names_the_presence_commands(self) -> None:
        capa = self.connect().ask("CAPA")
        self.assertEqual(capa.headers["Protocol"], "presence")
        self.assertEqual(
            capa.headers["Commands"],
            "APPROVE BUDDIES CAPA DENY LOGIN LOGOUT PUBLISH QUIT RESYNC STATUS "
            "SUBSCRIBE UNSUBSCRIBE",
        )


class StatusFloodTests(PresenceTestCase):
    settings = PresenceSettings(status_rate=10.0, status_burst=20.0)

    def test_status_changes_are_rate_limited_per_session(self) -> None:
        edgar = self.logged_in(EDGAR)
        codes = [edgar.ask("STATUS", str(i), "online").code for i in range(21)]
        self.assertEqual(codes, [200] * 20 + [429])
        # Another session of the same user has its own share.
        self.assertEqual(self.logged_in(EDGAR).ask("STATUS", "1", "away").code, 200)
        self.clock.advance(1)
        self.assertEqual(edgar.ask("STATUS", "x", "online").code, 200)

    def test_a_burst_is_announced_once_with_the_latest(self) -> None:
        self.subscribed(ANNABEL, EDGAR)
        annabel = self.logged_in(ANNABEL, "online")
        self.pushes(annabel)
        edgar = self.logged_in(EDGAR)
        for i, status in enumerate(["online", "away", "busy", "away"] * 4):
            edgar.ask("STATUS", str(i), status, {"Note": str(i)})
        self.assertEqual(
            self.pushes(annabel),
            [("252", {"From": EDGAR, "Status": "away", "Note": "15"})],
        )


class SubscriptionTests(PresenceTestCase):
    def test_subscribe_approve_and_see_changes(self) -> None:
        edgar = self.logged_in(EDGAR, "online")
        annabel = self.logged_in(ANNABEL, "busy", Note="writing")
        self.pushes(edgar), self.pushes(annabel)
        asked = edgar.ask("SUBSCRIBE", "1", "Annabel@POE.net")
        self.assertEqual(asked.headers, {"Subscription": "pending-out"})
        self.assertEqual(self.pushes(annabel), [("253", {"From": EDGAR})])
        approved = annabel.ask("APPROVE", "2", EDGAR)
        self.assertEqual(approved.headers, {"Subscription": "from"})
        self.assertEqual(
            self.pushes(edgar),
            [
                ("254", {"From": ANNABEL, "Subscription": "to"}),
                ("252", {"From": ANNABEL, "Status": "busy", "Note": "writing"}),
            ],
        )
        annabel.ask("STATUS", "3", "online")
        self.assertEqual(
            self.pushes(edgar), [("252", {"From": ANNABEL, "Status": "online"})]
        )
        self.assertEqual(edgar.ask("BUDDIES").body, f"{ANNABEL} to online\r\n".encode())
        self.assertEqual(
            annabel.ask("BUDDIES").body, f"{EDGAR} from offline\r\n".encode()
        )
        # Removal from the target's side: the subscriber is told.
        self.assertEqual(
            annabel.ask("DENY", "4", EDGAR).headers, {"Subscription": "none"}
        )
        self.assertEqual(
            self.pushes(edgar),
            [
                ("254", {"From": ANNABEL, "Subscription": "none"}),
                ("252", {"From": ANNABEL, "Status": "offline"}),
            ],
        )
        self.assertEqual(edgar.ask("BUDDIES").body, b"")

    def test_asking_again_pushes_nothing_again(self) -> None:
        """
        Asking again changes nothing (9.3): the target is told of a
        request once, however often its subscriber repeats it.
        """
        edgar = self.logged_in(EDGAR, "online")
        annabel = self.logged_in(ANNABEL, "online")
        self.pushes(annabel)
        for tag in ("1", "2", "3"):
            asked = edgar.ask("SUBSCRIBE", tag, ANNABEL)
            self.assertEqual(asked.headers, {"Subscription": "pending-out"})
        self.assertEqual(self.pushes(annabel), [("253", {"From": EDGAR})])

    def test_requests_wait_for_the_targets_first_status(self) -> None:
        edgar = self.logged_in(EDGAR, "online")
        edgar.ask("SUBSCRIBE", "1", ANNABEL)
        annabel = self.logged_in(ANNABEL)
        # Not available yet: nothing pushed.
        self.assertEqual(self.pushes(annabel), [])
        annabel.ask("STATUS", "1", "online")
        self.assertEqual(self.pushes(annabel), [("253", {"From": EDGAR})])
        self.assertEqual(
            annabel.ask("BUDDIES").body, f"{EDGAR} pending-in offline\r\n".encode()
        )

    def test_first_status_sends_every_buddys_presence(self) -> None:
        self.subscribed(EDGAR, ANNABEL)
        self.subscribed(EDGAR, LENORE)
        self.logged_in(LENORE, "away", Note="gone")
        self.clock.advance(0)
        edgar = self.logged_in(EDGAR)
        edgar.ask("STATUS", "1", "online")
        self.assertEqual(
            sorted(self.pushes(edgar), key=lambda p: p[1]["From"]),
            [
                ("252", {"From": ANNABEL, "Status": "offline"}),
                ("252", {"From": LENORE, "Status": "away", "Note": "gone"}),
            ],
        )

    def test_preapproval_then_unsubscribe(self) -> None:
        annabel = self.logged_in(ANNABEL, "online")
        self.assertEqual(
            annabel.ask("APPROVE", "1", EDGAR).headers, {"Subscription": "none"}
        )
        edgar = self.logged_in(EDGAR, "online")
        self.pushes(edgar), self.pushes(annabel)
        self.assertEqual(
            edgar.ask("SUBSCRIBE", "2", ANNABEL).headers, {"Subscription": "to"}
        )
        self.assertEqual(
            self.pushes(edgar), [("252", {"From": ANNABEL, "Status": "online"})]
        )
        self.assertEqual(self.pushes(annabel), [])
        self.assertEqual(
            edgar.ask("UNSUBSCRIBE", "3", ANNABEL).headers, {"Subscription": "none"}
        )
        annabel.ask("STATUS", "4", "away")
        self.assertEqual(self.pushes(edgar), [])

    def test_whitelisted_requests_are_approved_at_once(self) -> None:
        self.set_policy(ANNABEL, Whitelist="*@poe.net", Policy="reject")
        edgar = self.logged_in(EDGAR, "online")
        self.assertEqual(
            edgar.ask("SUBSCRIBE", "1", ANNABEL).headers, {"Subscription": "to"}
        )

    def test_addresses_refused(self) -> None:
        edgar = self.logged_in(EDGAR)
        for verb in ("SUBSCRIBE", "UNSUBSCRIBE", "APPROVE", "DENY"):
            self.assertEqual(edgar.ask(verb, "1").code, 501, verb)
            self.assertEqual(edgar.ask(verb, "2", "no-at-sign").code, 553, verb)
            self.assertEqual(edgar.ask(verb, "3", "Edgar@poe.net").code, 501, verb)
            remote = edgar.ask(verb, "4", "lost@lenore.org")
            self.assertEqual(
                (remote.code, remote.argument),
                (554, "this server links no other domain"),
            )
        self.assertEqual(edgar.ask("STATUS", "5").code, 200)


class PrivacyTests(PresenceTestCase):
    def answers(self, conn: StreamHarness, target: str) -> bytes:
        """
        The bytes of everything C{conn} is told about C{target}: SUBSCRIBE,
        BUDDIES, and what it is pushed.
        """
        frames = [conn.ask("SUBSCRIBE", "1", target), conn.ask("BUDDIES", "2")]
        self.clock.advance(0)
        frames += conn.frames()
        return b"".join(serialize(f) for f in frames).replace(target.encode(), b"T")

    def test_a_blocked_requester_and_an_unknown_user_look_the_same(self) -> None:
        # The same length as annabel@poe.net, so that Length is the same.
        nobody = "nobodyx@poe.net"
        for policy in ({"Blacklist": "edgar@* lenore@*"}, {"Policy": "reject"}):
            with self.subTest(policy=policy):
                self.setUp()
                self.set_policy(ANNABEL, **policy)
                annabel = self.logged_in(ANNABEL, "online")
                edgar = self.logged_in(EDGAR, "online")
                lenore = self.logged_in(LENORE, "online")
                self.clock.advance(0)
                blocked = self.answers(edgar, ANNABEL)
                unknown = self.answers(lenore, nobody)
                self.assertEqual(blocked, unknown)
                self.assertIn(b"T pending-out offline", blocked)
                # The target is never asked, and never shown the request.
                self.assertEqual(self.pushes(annabel), [])
                self.assertEqual(annabel.ask("BUDDIES").body, b"")
                self.assertEqual(annabel.ask("STATUS", "3", "away").code, 200)
                self.assertEqual(self.pushes(edgar), [])

    def test_lifting_a_block_then_asking_again_shows_the_request(self) -> None:
        """
        A request made while blocked stays hidden when the block is lifted
        (else lifting a block would put the target every request it held,
        past their cap), until its requester asks again.
        """
        self.set_policy(ANNABEL, Blacklist="edgar@poe.net")
        edgar = self.logged_in(EDGAR, "online")
        edgar.ask("SUBSCRIBE", "1", ANNABEL)
        self.set_policy(ANNABEL, Blacklist="")
        annabel = self.logged_in(ANNABEL, "online")
        self.assertEqual(self.pushes(annabel), [])
        asked = edgar.ask("SUBSCRIBE", "2", ANNABEL)
        self.assertEqual(asked.headers, {"Subscription": "pending-out"})
        self.assertEqual(self.pushes(annabel), [("253", {"From": EDGAR})])
        self.assertEqual(
            annabel.ask("BUDDIES").body, f"{EDGAR} pending-in offline\r\n".encode()
        )

    def test_a_subscriber_blocked_later_sees_offline(self) -> None:
        """
        Approval is no licence the target cannot take back with their
        policy: a subscriber their Blacklist (or C{Policy: reject}) comes
        to match sees them offline from then on, everywhere, and learns
        nothing of their changes meanwhile.
        """
        for policy in ({"Blacklist": "annabel@*"}, {"Policy": "reject"}):
            with self.subTest(policy=policy):
                self.setUp()
                self.subscribed(ANNABEL, EDGAR)
                edgar = self.logged_in(EDGAR, "online", Note="here")
                annabel = self.logged_in(ANNABEL, "online")
                self.pushes(annabel)
                self.set_policy(EDGAR, **policy)
                edgar.ask("STATUS", "1", "busy", {"Note": "secret"})
                self.assertEqual(
                    self.pushes(annabel),
                    [("252", {"From": EDGAR, "Status": "offline"})],
                )
                edgar.ask("STATUS", "2", "away")
                self.assertEqual(self.pushes(annabel), [])
                self.assertEqual(
                    annabel.ask("BUDDIES").body, f"{EDGAR} to offline\r\n".encode()
                )
                later = self.logged_in(ANNABEL, "online")
                self.assertEqual(
                    self.pushes(later), [("252", {"From": EDGAR, "Status": "offline"})]
                )
                # Offline and back: still nothing, not even offline again.
                edgar.ask("LOGOUT")
                self.assertEqual(self.pushes(annabel), [])
                edgar = self.logged_in(EDGAR, "online")
                self.assertEqual(self.pushes(annabel), [])
                # Lifted: she sees him again at his next change.
                self.set_policy(EDGAR, Blacklist="", Policy="accept")
                edgar.ask("STATUS", "3", "busy")
                self.assertEqual(
                    self.pushes(annabel), [("252", {"From": EDGAR, "Status": "busy"})]
                )

    def test_a_blocked_subscriber_is_not_shown_a_preapproval(self) -> None:
        """
        A pre-approval the target's policy now blocks shows nothing
        either: the request it approves sees the target offline.
        """
        edgar = self.logged_in(EDGAR, "online")
        edgar.ask("APPROVE", "1", ANNABEL)
        self.set_policy(EDGAR, Blacklist="annabel@poe.net")
        annabel = self.logged_in(ANNABEL, "online")
        self.pushes(annabel)
        annabel.ask("SUBSCRIBE", "2", EDGAR)
        self.assertEqual(
            self.pushes(annabel), [("252", {"From": EDGAR, "Status": "offline"})]
        )

    def test_nobody_learns_anothers_subscriptions(self) -> None:
        self.subscribed(ANNABEL, EDGAR)
        lenore = self.logged_in(LENORE, "online")
        self.assertEqual(lenore.ask("BUDDIES").body, b"")
        # Lenore's view of edgar does not depend on annabel's.
        self.assertEqual(
            lenore.ask("SUBSCRIBE", "1", EDGAR).headers, {"Subscription": "pending-out"}
        )
        self.assertEqual(
            lenore.ask("DENY", "2", ANNABEL).headers, {"Subscription": "none"}
        )
        annabel = self.logged_in(ANNABEL, "online")
        self.assertEqual(
            annabel.ask("BUDDIES").body, f"{EDGAR} to offline\r\n".encode()
        )

    def test_no_reply_names_a_resource_or_session_of_another(self) -> None:
        self.subscribed(ANNABEL, EDGAR)
        self.logged_in(EDGAR, "online", Resource="secret-desk")
        annabel = self.logged_in(ANNABEL, "online")
        seen = b"".join(serialize(f) for f in [annabel.ask("BUDDIES")])
        seen += b"".join(serialize(f) for f in annabel.frames())
        self.assertIn(b"online", seen)
        self.assertNotIn(b"secret-desk", seen)
        self.assertNotIn(b"192.0.2.1", seen)


class SubscriptionFloodTests(PresenceTestCase):
    settings = PresenceSettings(
        max_pending=3, subscribe_rate=20 / 60, subscribe_burst=5
    )

    def test_subscribe_is_rate_limited_per_user(self) -> None:
        edgar = self.logged_in(EDGAR)
        targets = [f"user{i}@poe.net" for i in range(6)]
        codes = [edgar.ask("UNSUBSCRIBE", "0", t).code for t in targets]
        self.assertEqual(codes, [200] * 6)
        codes = [edgar.ask("SUBSCRIBE", str(i), t).code for i, t in enumerate(targets)]
        # Three wait (the cap), two more are refused by it, then the rate.
        self.assertEqual(codes, [200, 200, 200, 429, 429, 429])
        self.assertEqual(
            edgar.ask("SUBSCRIBE", "x", targets[5]).argument,
            "too many subscription requests, slow down",
        )
        # Another user is not slowed by edgar's flood.
        self.assertEqual(
            self.logged_in(LENORE).ask("SUBSCRIBE", "1", ANNABEL).code, 200
        )

    def test_preapprovals_share_the_rate(self) -> None:
        annabel = self.logged_in(ANNABEL)
        targets = [f"user{i}@poe.net" for i in range(6)]
        codes = [annabel.ask("APPROVE", str(i), t).code for i, t in enumerate(targets)]
        self.assertEqual(codes, [200] * 5 + [429])
        # Answering a waiting request is not limited.
        self.logged_in(EDGAR).ask("SUBSCRIBE", "1", ANNABEL)
        approved = annabel.ask("APPROVE", "7", EDGAR)
        self.assertEqual(approved.headers, {"Subscription": "from"})

    def test_pending_requests_are_capped(self) -> None:
        edgar = self.logged_in(EDGAR)
        for i in range(3):
            edgar.ask("SUBSCRIBE", str(i), f"user{i}@poe.net")
        refused = edgar.ask("SUBSCRIBE", "4", ANNABEL)
        self.assertEqual(
            (refused.code, refused.argument),
            (429, "too many of your subscription requests wait"),
        )
        edgar.ask("UNSUBSCRIBE", "5", "user0@poe.net")
        self.assertEqual(edgar.ask("SUBSCRIBE", "6", ANNABEL).code, 200)

    def throwaways(self, count: int) -> list[StreamHarness]:
        """
        C{count} new accounts, logged in: what an attacker makes cheaply.
        """
        made = []
        for i in range(count):
            address = f"throwaway{i}@poe.net"
            add_account(self.store, address, PASSWORD)
            made.append(self.logged_in(address))
        return made

    def test_blocked_requests_do_not_use_up_the_targets_cap(self) -> None:
        """
        The attack: throwaway accounts the target blocks, or that ask for
        a user who does not exist yet, must not fill the requests that may
        wait for the target, or no real request would reach them.
        """
        self.set_policy(ANNABEL, Blacklist="throwaway*@poe.net")
        annabel = self.logged_in(ANNABEL, "online")
        for conn in self.throwaways(4):
            self.assertEqual(conn.ask("SUBSCRIBE", "1", ANNABEL).code, 200)
            conn.ask("SUBSCRIBE", "2", "nobody@poe.net")
        self.assertEqual(self.pushes(annabel), [])
        asked = self.logged_in(EDGAR).ask("SUBSCRIBE", "1", ANNABEL)
        self.assertEqual(asked.headers, {"Subscription": "pending-out"})
        self.assertEqual(self.pushes(annabel), [("253", {"From": EDGAR})])
        # Whoever registers the address later is not put requests made
        # while it was nobody's.
        add_account(self.store, "nobody@poe.net", PASSWORD)
        nobody = self.logged_in("nobody@poe.net", "online")
        self.assertEqual(self.pushes(nobody), [])
        self.assertEqual(nobody.ask("BUDDIES").body, b"")

    def test_a_full_cap_looks_like_any_waiting_request(self) -> None:
        """
        A target whose cap is full is no oracle: the requester is answered
        as for an unknown user (not 429), and the target is not asked.
        """
        annabel = self.logged_in(ANNABEL, "online")
        self.pushes(annabel)
        for conn in self.throwaways(3):
            conn.ask("SUBSCRIBE", "1", ANNABEL)
        self.assertEqual(len(self.pushes(annabel)), 3)
        edgar = self.logged_in(EDGAR, "online")
        lenore = self.logged_in(LENORE, "online")
        full, unknown = [
            b"".join(
                serialize(f).replace(target.encode(), b"T")
                for f in (conn.ask("SUBSCRIBE", "1", target), conn.ask("BUDDIES", "2"))
            )
            for conn, target in ((edgar, ANNABEL), (lenore, "nobodyx@poe.net"))
        ]
        self.assertEqual(full, unknown)
        self.assertIn(b"200 1", full)
        self.assertEqual(self.pushes(annabel), [])
        # Once the target answers one, asking again puts the request.
        annabel.ask("DENY", "3", "throwaway0@poe.net")
        edgar.ask("SUBSCRIBE", "4", ANNABEL)
        self.assertEqual(self.pushes(annabel), [("253", {"From": EDGAR})])
