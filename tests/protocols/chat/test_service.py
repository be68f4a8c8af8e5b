"""
Unit tests of the chat service on a Clock and a memory store: the
catch-up that goes live with no gap and no duplicate while lines keep
coming, the relinking of a line that lost the race to the head, and the
service's life.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from fmtp.auth.router import Router
from fmtp.interfaces import IChatService
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.objects import FMTPObject
from fmtp.protocols.chat.events import ROOM_LINE
from fmtp.protocols.chat.lines import ConfigChange
from fmtp.protocols.chat.service import ChatService
from fmtp.store.memory import MemoryStore
from fmtp.store.rooms import RoomConfig, verify_chain
from tests.helpers import run_now

EDGAR = "edgar@poe.net"
ANNABEL = "annabel@poe.net"
LOUNGE = "lounge@poe.net"


class SlowHistory(MemoryStore):
    """
    A memory store whose history pages wait until the test releases them,
    as a real store's reads take their time while lines keep coming.
    """

    def __init__(self) -> None:
        super().__init__()
        self.slow = False
        self.waiting: list[tuple[Deferred, object]] = []

    def history(self, room, since, limit):
        result = super().history(room, since, limit)
        if not self.slow:
            return result
        held: Deferred = Deferred()
        self.waiting.append((held, result))
        return held

    def release(self) -> None:
        while self.waiting:
            held, result = self.waiting.pop(0)
            result.chainDeferred(held)


class ChatServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = SlowHistory()
        self.router = Router(self.clock)
        self.signer = DomainSigner(generate_private_key(), "poe.net")
        self.chat = ChatService(
            self.clock,
            "poe.net",
            self.store,
            self.router,
            self.signer,
            run_in_thread=run_now,
        )
        self.done(self.chat.create(EDGAR, LOUNGE, ConfigChange()))
        self.done(self.chat.join(ANNABEL, LOUNGE, None))

    def done(self, coroutine):
        return self.successResultOf(ensureDeferred(coroutine))

    def say(self, text: bytes, user: str = EDGAR):
        return self.done(self.chat.say(user, LOUNGE, text, None))

    def three_lines_then_a_session(self):
        """
        Three lines in the lounge, and a session of Annabel's that records
        the numbers of the lines it receives.
        """
        for n in range(3):
            self.say(b"before %d" % n)
        received: list[int] = []
        session = self.router.open(
            ANNABEL, "chat", lambda e: received.append(e.payload.entry.seq), [ROOM_LINE]
        )
        return received, session

    def test_provides_interface(self) -> None:
        self.assertTrue(verifyObject(IChatService, self.chat))

    def test_no_gap_no_duplicate_while_lines_keep_coming(self) -> None:
        received, session = self.three_lines_then_a_session()
        self.store.slow = True
        entering = ensureDeferred(self.chat.enter(session, LOUNGE, 1))
        # Lines said while the catch-up reads the history are held.
        self.store.slow = False
        self.say(b"during 1")
        self.say(b"during 2")
        self.assertEqual(received, [])
        self.store.release()
        self.assertEqual(self.successResultOf(entering), 3)
        self.say(b"after")
        self.assertEqual(received, [2, 3, 4, 5, 6])

    def test_an_enter_overtaken_by_another_does_not_go_live(self) -> None:
        received, session = self.three_lines_then_a_session()
        self.store.slow = True
        first = ensureDeferred(self.chat.enter(session, LOUNGE, 0))
        second = ensureDeferred(self.chat.enter(session, LOUNGE, 0))
        self.store.slow = False
        self.say(b"during")
        self.store.release()
        self.assertEqual(
            (self.successResultOf(first), self.successResultOf(second)), (3, 3)
        )
        # Each catch-up as asked; the live line once, after the last.
        self.assertEqual(received, [1, 2, 3, 1, 2, 3, 4])

    def test_a_line_that_lost_the_race_is_linked_again(self) -> None:
        self.say(b"one")
        # Another process of the domain appends behind the service's back.
        _, digest = self.successResultOf(self.store.head(LOUNGE))
        other = FMTPObject(
            "1800000000000.abcdefabcdef.annabel@poe.net",
            "message",
            {"From": ANNABEL, "To": LOUNGE, "Parent-Digest": digest},
            b"two",
        )
        self.successResultOf(self.store.append(LOUNGE, other, 1.0))
        entry = self.say(b"three")
        self.assertEqual(entry.seq, 3)
        history = self.successResultOf(self.store.history(LOUNGE, 0, 10))
        verify_chain(history)
        self.successResultOf(self._verified(history[2].obj))

    def _verified(self, obj):
        from fmtp.keys.static import StaticKeyVerifier

        keys = StaticKeyVerifier({}, self.clock)
        keys.add_signer(self.signer)
        return keys.verify_object(obj)

    def test_destroy_closes_the_live_sessions(self) -> None:
        kinds = []
        session = self.router.open(
            ANNABEL, "chat", lambda e: kinds.append(e.kind), ["room-closed"]
        )
        self.done(self.chat.enter(session, LOUNGE, None))
        self.done(self.chat.destroy(EDGAR, LOUNGE))
        self.assertEqual(kinds, ["room-closed"])
        self.assertEqual(self.chat.live.entered(LOUNGE), [])

    def test_a_session_that_ended_leaves_its_rooms(self) -> None:
        session = self.router.open(ANNABEL, "chat", lambda e: None, [ROOM_LINE])
        self.done(self.chat.enter(session, LOUNGE, None))
        self.chat.session_ended(session)
        self.assertEqual(self.chat.live.entered(LOUNGE), [])

    def test_forgets_old_tombstones_while_running(self) -> None:
        self.done(self.chat.destroy(EDGAR, LOUNGE))
        self.chat.startService()
        self.addCleanup(self.chat.stopService)
        self.clock.advance(self.chat.settings.tombstone_hold + 3600)
        made = self.done(self.chat.create(ANNABEL, LOUNGE, ConfigChange()))
        self.assertEqual(made.creator, ANNABEL)

    def test_max_members_never_above_the_servers(self) -> None:
        made = self.done(self.chat.create(EDGAR, "attic@poe.net", ConfigChange()))
        self.assertEqual(made.config, RoomConfig(max_members=1000))
