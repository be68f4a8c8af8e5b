"""
Tests for L{fmtp.federation.registry}: the inbound server-to-server verbs.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from fmtp.errors import Forbidden
from fmtp.federation.hello import Peer
from fmtp.federation.registry import VerbRegistry, check_verb
from fmtp.wire import Frame, reply, request

POE = Peer("poe.net", True, "n" * 16)
KEYLESS = Peer("keyless.example", False, "k" * 16)


class VerbRegistryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = VerbRegistry()
        self.seen: list[tuple[Peer, Frame]] = []

    async def ping(self, peer: Peer, frame: Frame) -> Frame:
        self.seen.append((peer, frame))
        return reply(200, frame.tag, "pong", headers={"Domain": peer.domain})

    def dispatch(self, peer: Peer, frame: Frame) -> Frame:
        d = Deferred.fromCoroutine(self.registry.dispatch(frame.verb, peer, frame))
        return self.successResultOf(d)

    def test_dispatch_hands_the_peer_and_frame(self) -> None:
        self.registry.register("PING", self.ping)
        frame = request("PING", "t1", "hello", {"X": "1"}, b"body")
        answer = self.dispatch(POE, frame)
        self.assertEqual((answer.code, answer.tag), (200, "t1"))
        self.assertEqual(answer.headers["Domain"], "poe.net")
        self.assertEqual(self.seen, [(POE, frame)])

    def test_unknown_verb_is_502(self) -> None:
        """
        As the command table answers an unknown command.
        """
        answer = self.dispatch(POE, request("NOPE", "t2"))
        self.assertEqual((answer.code, answer.tag), (502, "t2"))
        self.assertEqual(answer.argument, "unknown command NOPE")

    def test_the_object_protocols_verbs_are_not_a_plugins(self) -> None:
        """
        A plugin registering HELLO would replace the handshake, and one
        registering GET would clash with the object protocol on its port.
        """
        for verb in ("HELLO", "hello", "GET", "STARTTLS", "CAPA"):
            with self.assertRaises(KeyError):
                self.registry.register(verb, self.ping)

    def test_a_verb_registered_twice_is_a_key_error(self) -> None:
        self.registry.register("PING", self.ping)
        with self.assertRaises(KeyError):
            self.registry.register("ping", self.ping)

    def test_verbs_are_upper_case_and_checked(self) -> None:
        self.registry.register("x-ping", self.ping)
        self.assertEqual(self.registry.verbs(), frozenset({"X-PING"}))
        self.assertEqual(self.dispatch(POE, request("X-PING", "t")).code, 200)
        for bad in ("", "has space", "a" * 33, "250", "é", None):
            with self.assertRaises(ValueError):
                self.registry.register(bad, self.ping)
        self.assertEqual(check_verb("Deliver"), "DELIVER")

    def test_a_peer_without_a_key_gets_only_the_open_verbs(self) -> None:
        """
        A domain that publishes no key only claims its name: a handler
        registered without C{unverified=True} never sees it.
        """
        self.registry.register("PING", self.ping)
        self.registry.register("OPEN", self.ping, unverified=True)
        refused = self.dispatch(KEYLESS, request("PING", "t"))
        self.assertEqual(refused.code, 530)
        self.assertIn("keyless.example publishes no key", refused.argument)
        self.assertEqual(self.dispatch(KEYLESS, request("OPEN", "t")).code, 200)
        self.assertEqual([peer for peer, _ in self.seen], [KEYLESS])

    def test_a_handler_refusal_is_raised_for_the_group_to_answer(self) -> None:
        async def refuse(peer: Peer, frame: Frame) -> Frame:
            raise Forbidden("not you")

        self.registry.register("PING", refuse)
        d = Deferred.fromCoroutine(
            self.registry.dispatch("PING", POE, request("PING", "t"))
        )
        self.assertEqual(self.failureResultOf(d, Forbidden).value.message, "not you")
