"""
Unit tests of presence across domains on a Clock
(L{fmtp.protocols.presence.federation}, L{fmtp.protocols.presence.remote}):
unknown until a domain answers and again once it is away past the
timeout, one update per domain, and what a hostile peer cannot do.  The
server links are a recording fake here; the real ones carry the same
traffic in tests/integration/test_presence_federation.py.
"""

from __future__ import annotations

import inspect

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.errors import Forbidden, InvalidAddress, InvalidObject, TooManyRequests
from fmtp.federation.failures import LinkFailed
from fmtp.federation.hello import Peer
from fmtp.federation.inbound import MAX_CLOCK_SKEW, MAX_SIGNATURE_AGE
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.objects import FMTPObject, new_object_id, user_object
from fmtp.protocols.presence.actions import SUBSCRIPTION_TYPE
from fmtp.protocols.presence.events import PRESENCE, REQUEST
from fmtp.protocols.presence.federation import (
    PROBE_VERB,
    PUSH_BURST,
    PUSH_VERB,
    parse_answer,
)
from fmtp.protocols.presence.remote import RemotePresence
from fmtp.protocols.presence.service import PresenceService, PresenceSettings
from fmtp.protocols.presence.status import NOTHING, UNKNOWN_SHOWN, Shown
from fmtp.store.memory import MemoryStore
from fmtp.store.presence import Link
from fmtp.wire import Frame, request

EDGAR = "edgar@poe.net"
ANNABEL = "annabel@poe.net"
LOST = "lost@lenore.org"
RAVEN = "raven@lenore.org"
LENORE = Peer("lenore.org", True, "nonce")

SETTINGS = PresenceSettings(remote_refresh=10.0, remote_timeout=30.0)


def profile(address: str, **properties: str) -> FMTPObject:
    """
    A user object with a policy.
    """
    obj = user_object(address)
    return FMTPObject(obj.id, obj.type, {**obj.properties, **properties})


class FakeLinks:
    """
    Records what the presence federation asks of the server links.
    """

    pool = object()

    def __init__(self) -> None:
        self.verbs: dict = {}
        self.types: dict = {}
        self.observers: list = []
        self.notified: list[tuple[str, str, dict, bytes]] = []
        self.enqueued: list[tuple[FMTPObject, list[str]]] = []
        self.requests: list[tuple[str, str, bytes, Deferred]] = []

    def register(self, verb, handler, unverified=False):
        self.verbs[verb] = handler

    def register_object_type(self, object_type, handler):
        self.types[object_type] = handler

    def observe_peers(self, callback):
        self.observers.append(callback)

    def notify(self, domain, key, verb, argument="", headers=None, body=b"", **kw):
        self.notified.append((domain, verb, dict(headers or {}), body))

    def enqueue(self, obj, recipients):
        self.enqueued.append((obj, list(recipients)))
        return succeed(None)

    def request(self, domain, verb, argument="", headers=None, body=b""):
        d: Deferred = Deferred()
        self.requests.append((domain, verb, body, d))
        return d


class FederationTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.store = MemoryStore()
        self.links = FakeLinks()
        signer = DomainSigner(generate_private_key(), "poe.net")
        self.service = PresenceService(
            self.clock,
            "poe.net",
            self.store,
            router=None,
            settings=SETTINGS,
            links=self.links,
            signer=signer,
        )
        self.federation = self.service.federation
        self.pushes: list[tuple[str, str, Shown | str]] = []
        self.service.push = self._record
        for user in (EDGAR, ANNABEL):
            self.now(self.store.put_object, user_object(user))

    def now(self, f, *args):
        """
        The result of C{f(*args)}, a coroutine or a Deferred that has it
        at once (a memory store, a Clock).
        """
        result = f(*args)
        if inspect.iscoroutine(result):
            result = Deferred.fromCoroutine(result)
        if isinstance(result, Deferred):
            return self.successResultOf(result)
        return result

    def _record(self, address, event) -> None:
        payload = event.payload
        if event.kind == PRESENCE:
            self.pushes.append((address, payload.contact, payload.shown))
        else:
            self.pushes.append((address, event.kind, payload))

    def follow(self, subscriber: str, target: str) -> None:
        now = self.clock.seconds()
        self.now(self.store.request_subscription, subscriber, target, now, 100)
        self.now(self.store.approve_subscription, target, subscriber, now)

    def probed(self) -> tuple[str, str, bytes, Deferred]:
        self.clock.advance(0)
        [asked] = self.links.requests
        self.links.requests.clear()
        return asked

    def answer(self, d: Deferred, body: str) -> None:
        d.callback(Frame("200", "1", "ok", {}, body.encode()))
        self.clock.advance(0)

    def push(self, peer: Peer, headers: dict, body: str = "") -> Frame:
        frame = request(PUSH_VERB, "1", headers=headers, body=body.encode())
        return self.now(self.links.verbs[PUSH_VERB], peer, frame)

    def delivered(
        self, actor: str, user: str, action: str, at: float | None = None
    ) -> Deferred:
        """
        lenore.org's DELIVER of C{actor}'s C{action} to C{user}: its
        Deferred, failed or not.
        """
        at = self.clock.seconds() if at is None else at
        obj = FMTPObject(
            new_object_id(actor, at),
            SUBSCRIPTION_TYPE,
            {"From": actor, "To": user, "Subscription": action},
        )
        handler = self.links.types[SUBSCRIPTION_TYPE]
        return Deferred.fromCoroutine(handler(obj, [user], "lenore.org"))

    def deliver(self, actor: str, user: str, action: str, at: float | None = None):
        return self.successResultOf(self.delivered(actor, user, action, at))


class UnknownTests(FederationTestCase):
    def test_unknown_until_the_domain_answers(self) -> None:
        self.follow(EDGAR, LOST)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        domain, verb, body, d = self.probed()
        self.assertEqual((domain, verb, body), ("lenore.org", PROBE_VERB, b""))
        self.assertEqual(self.now(self.service.seen_by, EDGAR, LOST), UNKNOWN_SHOWN)

        self.answer(d, f"{LOST} {EDGAR} away gone fishing\r\n")
        self.assertEqual(self.pushes, [(EDGAR, LOST, Shown("away", "gone fishing"))])
        self.assertEqual(
            self.now(self.service.seen_by, EDGAR, LOST), Shown("away", "gone fishing")
        )

    def test_a_domain_away_past_the_timeout_turns_unknown(self) -> None:
        self.follow(EDGAR, LOST)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.answer(self.probed()[3], f"{LOST} {EDGAR} online\r\n")
        self.pushes.clear()
        # Every refresh fails: the link is down.
        for _ in range(3):
            self.clock.advance(SETTINGS.remote_refresh)
            self.probed()[3].errback(LinkFailed("down"))
            self.assertEqual(self.pushes, [])
        self.clock.advance(SETTINGS.remote_refresh)
        self.assertEqual(self.pushes, [(EDGAR, LOST, UNKNOWN_SHOWN)])
        # Back: the next answer is the truth again.
        self.pushes.clear()
        self.answer(self.probed()[3], "")
        self.assertEqual(self.pushes, [(EDGAR, LOST, NOTHING)])

    def test_the_peer_coming_back_is_asked_at_once(self) -> None:
        self.follow(EDGAR, LOST)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.answer(self.probed()[3], "")
        for observer in self.links.observers:
            observer("lenore.org")
            observer("kingdom.example")
        [(domain, verb, _, _)] = [self.probed()]
        self.assertEqual((domain, verb), ("lenore.org", PROBE_VERB))


class PushTests(FederationTestCase):
    def test_a_push_for_another_domains_user_is_refused(self) -> None:
        self.follow(EDGAR, "raven@kingdom.example")
        for claimed in ("raven@kingdom.example", EDGAR):
            with self.subTest(claimed=claimed):
                failure = self.failureResultOf(
                    Deferred.fromCoroutine(
                        self.links.verbs[PUSH_VERB](
                            LENORE,
                            request(
                                PUSH_VERB,
                                "1",
                                headers={"From": claimed, "Status": "online"},
                                body=f"{EDGAR}\r\n".encode(),
                            ),
                        )
                    ),
                    Forbidden,
                )
                self.assertIn("only for its own users", failure.value.message)
        self.assertEqual(self.pushes, [])

    def test_only_approved_local_subscribers_named_see_it(self) -> None:
        # Annabel never subscribed: named, she is told nothing.  Edgar,
        # subscribed and named, sees it; not named later, offline.
        self.follow(EDGAR, LOST)
        self.push(LENORE, {"From": LOST, "Status": "busy"}, f"{EDGAR}\r\n{ANNABEL}\r\n")
        self.assertEqual(self.pushes, [(EDGAR, LOST, Shown("busy"))])
        self.push(LENORE, {"From": LOST, "Status": "away"}, "")
        self.assertEqual(self.pushes[-1], (EDGAR, LOST, NOTHING))

    def test_pushes_nobody_here_follows_hold_nothing(self) -> None:
        # Any proven domain may push; one whose users nobody here follows
        # must not make this server hold anything of it (many domains,
        # each its own key in DNS, would grow memory without bound).
        for n in range(100):
            peer = Peer(f"d{n}.example", True, "nonce")
            self.push(peer, {"From": f"u@d{n}.example", "Status": "online"}, EDGAR)
        self.assertEqual(self.federation.remote._domains, {})
        self.assertEqual(self.pushes, [])

    def test_a_peer_pushing_past_its_rate_is_refused(self) -> None:
        """
        Each update costs a store read and up to 10,000 address parses: a
        peer sending them as fast as it can is answered 429 (its queue
        tries again later), and another peer is not held back by it.
        """
        self.follow(EDGAR, LOST)
        update = {"From": LOST, "Status": "online"}
        for _ in range(int(PUSH_BURST)):
            self.assertEqual(self.push(LENORE, update, EDGAR).code, 200)
        frame = request(PUSH_VERB, "1", headers=update, body=EDGAR.encode())
        handler = self.links.verbs[PUSH_VERB]
        self.failureResultOf(
            Deferred.fromCoroutine(handler(LENORE, frame)), TooManyRequests
        )
        other = Peer("house.net", True, "nonce")
        self.assertEqual(
            self.push(other, {"From": "usher@house.net", "Status": "online"}).code, 200
        )

    def test_malformed_pushes_are_refused(self) -> None:
        self.follow(EDGAR, LOST)
        for headers, body in [
            ({"From": LOST, "Status": "invisible"}, ""),
            ({"From": LOST, "Status": "online", "Note": "a\x00b"}, ""),
            ({"From": "not an address", "Status": "online"}, ""),
            ({"From": LOST, "Status": "online"}, "not an address\r\n"),
        ]:
            with self.subTest(headers=headers, body=body):
                frame = request(PUSH_VERB, "1", headers=headers, body=body.encode())
                handler = self.links.verbs[PUSH_VERB]
                self.failureResultOf(
                    Deferred.fromCoroutine(handler(LENORE, frame)),
                    InvalidObject,
                    InvalidAddress,
                )
        self.assertEqual(self.pushes, [])


class AnnounceTests(FederationTestCase):
    def test_one_update_per_domain_naming_whom_it_may_show_to(self) -> None:
        self.follow(LOST, EDGAR)
        self.follow(RAVEN, EDGAR)
        self.follow("poe@kingdom.example", EDGAR)
        self.now(self.store.put_object, profile(EDGAR, Blacklist=RAVEN))
        self.service.federation.announce(
            EDGAR,
            Shown("online"),
            [LOST, RAVEN, "poe@kingdom.example"],
            frozenset({RAVEN}),
        )
        self.assertEqual(
            sorted((d, v, h, b) for d, v, h, b in self.links.notified),
            [
                (
                    "kingdom.example",
                    PUSH_VERB,
                    {"From": EDGAR, "Status": "online"},
                    b"poe@kingdom.example\r\n",
                ),
                (
                    "lenore.org",
                    PUSH_VERB,
                    {"From": EDGAR, "Status": "online"},
                    f"{LOST}\r\n".encode(),
                ),
            ],
        )

    def test_a_domain_where_nobody_may_see_is_told_offline_only(self) -> None:
        # Raven, blocked, is Edgar's only subscriber at lenore.org: his
        # domain must learn neither Edgar's status nor his note (nor, so,
        # of the block), only that Raven sees him offline.
        self.follow(RAVEN, EDGAR)
        self.now(self.store.put_object, profile(EDGAR, Blacklist=RAVEN))
        self.service.federation.announce(
            EDGAR, Shown("online", "in the garden"), [RAVEN], frozenset({RAVEN})
        )
        self.assertEqual(
            self.links.notified,
            [("lenore.org", PUSH_VERB, {"From": EDGAR, "Status": "offline"}, b"")],
        )

    def test_a_probe_answers_only_the_askers_subscriptions(self) -> None:
        self.follow(LOST, EDGAR)
        self.follow(RAVEN, EDGAR)
        self.follow("poe@kingdom.example", ANNABEL)
        self.now(self.store.put_object, profile(EDGAR, Blacklist=RAVEN))
        self.service.publish(EDGAR, "isp", "busy", "at work")
        self.service.publish(ANNABEL, "isp", "online")
        answer = self.now(
            self.links.verbs[PROBE_VERB], LENORE, request(PROBE_VERB, "1")
        )
        # Raven is blocked: left off, as anyone offline is.
        self.assertEqual(answer.body, f"{EDGAR} {LOST} busy at work\r\n".encode())


class ActionTests(FederationTestCase):
    def test_a_remote_request_is_put_to_the_target(self) -> None:
        self.deliver(LOST, EDGAR, "request")
        self.assertEqual(self.pushes, [(EDGAR, REQUEST, LOST)])
        self.assertEqual(
            self.now(self.service.subscriptions.waiting_for, EDGAR), [LOST]
        )

    def test_approving_a_remote_request_tells_their_domain(self) -> None:
        self.deliver(LOST, EDGAR, "request")
        self.now(self.service.approve, EDGAR, LOST)
        [(obj, recipients)] = self.links.enqueued
        self.assertEqual(recipients, [LOST])
        self.assertEqual(obj.type, SUBSCRIPTION_TYPE)
        self.assertEqual(
            {k: obj.properties[k] for k in ("From", "To", "Subscription")},
            {"From": EDGAR, "To": LOST, "Subscription": "approve"},
        )
        self.assertIn("Signature", obj.properties)

    def test_a_blocked_remote_request_is_never_put(self) -> None:
        self.now(self.store.put_object, profile(EDGAR, Blacklist=LOST))
        self.deliver(LOST, EDGAR, "request")
        self.assertEqual(self.now(self.service.subscriptions.waiting_for, EDGAR), [])
        self.assertEqual(self.links.enqueued, [])
        # Politely: nobody is told, and the requester's domain hears what
        # any request gets.
        self.assertEqual(self.pushes, [])

    def test_an_approval_nobody_asked_for_is_ignored(self) -> None:
        self.deliver(LOST, EDGAR, "approve")
        subscription = self.now(self.store.subscription, EDGAR, LOST)
        self.assertIs(subscription.outbound, Link.NONE)

    def test_an_approval_asked_for_is_taken_and_probed(self) -> None:
        self.now(self.service.subscribe, EDGAR, LOST)
        [(obj, _)] = self.links.enqueued
        self.assertEqual(obj.properties["Subscription"], "request")
        self.deliver(LOST, EDGAR, "approve")
        subscription = self.now(self.store.subscription, EDGAR, LOST)
        self.assertIs(subscription.outbound, Link.APPROVED)
        domain, verb, body, _ = self.probed()
        self.assertEqual(
            (domain, verb, body), ("lenore.org", PROBE_VERB, f"{LOST}\r\n".encode())
        )

    def test_an_older_action_than_the_last_applied_is_ignored(self) -> None:
        now = self.clock.seconds()
        self.deliver(LOST, EDGAR, "request", at=now)
        self.deliver(LOST, EDGAR, "unsubscribe", at=now + 1)
        # The request again, replayed or retried after its withdrawal.
        self.deliver(LOST, EDGAR, "request", at=now)
        self.assertEqual(self.now(self.service.subscriptions.waiting_for, EDGAR), [])

    def test_the_same_action_delivered_again_is_not_applied_again(self) -> None:
        # A relay that carried Lost's request replays it (or the queue
        # retries it after a lost acknowledgement) once Edgar denied it:
        # Edgar is not asked again; the denial stands.
        obj = FMTPObject(
            new_object_id(LOST, self.clock.seconds()),
            SUBSCRIPTION_TYPE,
            {"From": LOST, "To": EDGAR, "Subscription": "request"},
        )
        handler = self.links.types[SUBSCRIPTION_TYPE]
        self.now(handler, obj, [EDGAR], "lenore.org")
        self.now(self.service.deny, EDGAR, LOST)
        self.pushes.clear()
        [result] = self.now(handler, obj, [EDGAR], "lenore.org")
        self.assertEqual(result.code, 250)
        self.assertEqual(self.pushes, [])
        self.assertEqual(self.now(self.service.subscriptions.waiting_for, EDGAR), [])

    def test_a_request_past_its_subscribers_rate_is_retried_not_lost(self) -> None:
        # Lost's server queued more requests than this one takes at once
        # (its link was down): the one past the rate is answered 429, so
        # that the queue tries it again, never 250 and forgotten.
        for n in range(int(SETTINGS.subscribe_burst)):
            self.deliver(LOST, f"u{n}@poe.net", "request")
        obj = FMTPObject(
            new_object_id(LOST, self.clock.seconds()),
            SUBSCRIPTION_TYPE,
            {"From": LOST, "To": EDGAR, "Subscription": "request"},
        )
        handler = self.links.types[SUBSCRIPTION_TYPE]
        failure = self.failureResultOf(
            Deferred.fromCoroutine(handler(obj, [EDGAR], "lenore.org")),
            TooManyRequests,
        )
        self.assertEqual(failure.value.code, 429)
        # Tried again later, it is taken.
        self.clock.advance(60)
        self.now(handler, obj, [EDGAR], "lenore.org")
        self.assertEqual(self.pushes, [(EDGAR, REQUEST, LOST)])

    def test_an_action_delivered_again_after_a_restart_is_not_applied(self) -> None:
        """
        What refuses a replay is in the store: a server restarted between
        the first delivery and the replay still refuses it, and the old
        actions are forgotten once no signature of their age is accepted.
        """
        obj = FMTPObject(
            new_object_id(LOST, self.clock.seconds()),
            SUBSCRIPTION_TYPE,
            {"From": LOST, "To": EDGAR, "Subscription": "request"},
        )
        self.now(self.links.types[SUBSCRIPTION_TYPE], obj, [EDGAR], "lenore.org")
        self.now(self.service.deny, EDGAR, LOST)

        links = FakeLinks()
        restarted = PresenceService(
            self.clock,
            "poe.net",
            self.store,
            router=None,
            settings=SETTINGS,
            links=links,
            signer=DomainSigner(generate_private_key(), "poe.net"),
        )
        self.now(links.types[SUBSCRIPTION_TYPE], obj, [EDGAR], "lenore.org")
        self.assertEqual(self.now(restarted.subscriptions.waiting_for, EDGAR), [])

        self.clock.advance(MAX_SIGNATURE_AGE + MAX_CLOCK_SKEW + 1)
        self.now(restarted.expire_requests)
        self.assertIsNone(self.now(self.store.last_action, LOST, EDGAR))

    def test_one_domain_cannot_fill_a_users_requests(self) -> None:
        """
        A domain mints subscribers faster than any per-subscriber limit:
        past its share its new requests are refused for now (its queue
        tries again), whether the target exists and blocks them or not;
        another domain's request still reaches the user, and once the
        user answers one, the domain may ask again.
        """
        share = SETTINGS.remote_max_pending
        for target in (EDGAR, "nobody@poe.net"):
            for n in range(share):
                self.deliver(f"minted{n}@lenore.org", target, "request")
            failure = self.failureResultOf(
                self.delivered(LOST, target, "request"), TooManyRequests
            )
            self.assertEqual(failure.value.code, 429)
        # Asking again what waits already is no new request.
        self.deliver("minted0@lenore.org", EDGAR, "request")
        self.deliver("poe@kingdom.example", EDGAR, "request")
        waiting = self.now(self.service.subscriptions.waiting_for, EDGAR)
        self.assertEqual(len(waiting), share + 1)
        self.now(self.service.deny, EDGAR, "minted3@lenore.org")
        self.deliver(LOST, EDGAR, "request")
        self.assertIn(LOST, self.now(self.service.subscriptions.waiting_for, EDGAR))

    def test_a_burst_of_actions_from_one_domain_is_refused_for_a_while(self) -> None:
        for n in range(int(SETTINGS.remote_burst)):
            self.deliver(f"u{n}@lenore.org", EDGAR, "unsubscribe")
        failure = self.failureResultOf(
            self.delivered(LOST, EDGAR, "request"), TooManyRequests
        )
        self.assertEqual(failure.value.code, 429)

    def test_malformed_actions_are_refused(self) -> None:
        handler = self.links.types[SUBSCRIPTION_TYPE]
        now = self.clock.seconds()
        for properties, recipients in [
            ({"From": LOST, "To": EDGAR, "Subscription": "befriend"}, [EDGAR]),
            ({"To": EDGAR, "Subscription": "request"}, [EDGAR]),
            (
                {"From": LOST, "To": f"{EDGAR} {ANNABEL}", "Subscription": "request"},
                [EDGAR, ANNABEL],
            ),
        ]:
            with self.subTest(properties=properties):
                obj = FMTPObject(
                    new_object_id(LOST, now), SUBSCRIPTION_TYPE, properties
                )
                self.failureResultOf(
                    Deferred.fromCoroutine(handler(obj, recipients, "lenore.org")),
                    InvalidObject,
                )
        self.assertEqual(self.pushes, [])
        self.assertNotIn(REQUEST, [kind for _, kind, _ in self.pushes])


class AnswerTests(SynchronousTestCase):
    def test_an_answer_speaks_only_for_its_domain(self) -> None:
        self.assertRaises(
            Forbidden,
            parse_answer,
            f"{EDGAR} {EDGAR} online\r\n".encode(),
            "lenore.org",
            "poe.net",
        )
        self.assertRaises(
            InvalidObject,
            parse_answer,
            f"{LOST} {RAVEN} online\r\n".encode(),
            "lenore.org",
            "poe.net",
        )
        self.assertRaises(
            InvalidObject,
            parse_answer,
            f"{LOST} {EDGAR}\r\n".encode(),
            "lenore.org",
            "poe.net",
        )

    def test_remote_presence_times_out(self) -> None:
        clock = Clock()
        remote = RemotePresence(clock, timeout=30.0)
        self.assertEqual(remote.seen(EDGAR, LOST), UNKNOWN_SHOWN)
        remote.set(LOST, Shown("online"), frozenset({EDGAR}))
        self.assertEqual(remote.seen(EDGAR, LOST), Shown("online"))
        self.assertEqual(remote.seen(ANNABEL, LOST), NOTHING)
        clock.advance(30)
        self.assertEqual(remote.stale_domains(), [])
        clock.advance(0.1)
        self.assertEqual(remote.stale_domains(), ["lenore.org"])
        remote.drop("lenore.org")
        self.assertEqual(remote.seen(EDGAR, LOST), UNKNOWN_SHOWN)
