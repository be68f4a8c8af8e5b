"""
Attacks on the chat protocol by a hostile member, moderator or outsider,
each written first as a test that failed: a private room revealed by
JOIN; a kicked session that kept receiving through an ENTER under way;
invitations, bans of strangers and password hashes without a rate; a
TOPIC that undid an owner's Password; a member kicked, banned (alone or
with their domain) or leaving as they were made an owner, which left the
room with none.  And a guard: the chain verifies
after retractions, topics and a conflict.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.auth.router import Router
from fmtp.errors import Forbidden
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.objects import FMTPObject
from fmtp.protocols.chat.events import ROOM_CLOSED, ROOM_LINE
from fmtp.protocols.chat.lines import ConfigChange
from fmtp.protocols.chat.service import ChatService
from fmtp.protocols.chat.settings import ChatSettings
from fmtp.store.memory import MemoryStore
from fmtp.store.rooms import Role, RoomNotFound, verify_chain
from fmtp.wire import request, serialize
from tests.helpers import run_now
from tests.protocols.chat.test_commands import (
    ANNABEL,
    ATTIC,
    EDGAR,
    LOUNGE,
    MALLORY,
    ChatTestCase,
    lines_of,
)


class PrivateRoomJoinTests(ChatTestCase):
    """
    JOIN must not tell an outsider that a private room exists: every
    refusal reads as a room that does not exist.
    """

    def assertNowhere(self, conn, room, headers=None) -> None:
        there = conn.ask("JOIN", "1", room, headers)
        nowhere = conn.ask("JOIN", "2", "nowhere@poe.net", headers)
        self.assertEqual((there.code, there.argument), (550, "no such room"))
        self.assertEqual((nowhere.code, nowhere.argument), (550, "no such room"))

    def test_members_only(self) -> None:
        self.room(room=ATTIC, **{"Members-Only": "yes"})
        self.assertNowhere(self.logged_in(MALLORY), ATTIC)

    def test_passworded(self) -> None:
        self.room(room=ATTIC, Password="raven")
        mallory = self.logged_in(MALLORY)
        self.assertNowhere(mallory, ATTIC)
        self.assertNowhere(mallory, ATTIC, {"Password": "crow"})
        self.assertEqual(self.code(mallory, "JOIN", ATTIC, {"Password": "raven"}), 200)

    def test_full(self) -> None:
        self.room(room=ATTIC, **{"Max-Members": "1"})
        self.assertNowhere(self.logged_in(MALLORY), ATTIC)

    def test_banned(self) -> None:
        edgar = self.room(room=ATTIC)
        self.assertEqual(self.code(edgar, "BAN", ATTIC, {"Address": MALLORY}), 200)
        self.assertNowhere(self.logged_in(MALLORY), ATTIC)

    def test_the_invited_and_public_rooms_are_told_why(self) -> None:
        edgar = self.room(room=ATTIC, **{"Max-Members": "1"})
        self.code(edgar, "INVITE", ATTIC, {"Address": ANNABEL})
        self.assertEqual(self.code(self.logged_in(ANNABEL), "JOIN", ATTIC), 554)
        self.room(Public="yes", **{"Members-Only": "yes"})
        self.assertEqual(self.code(self.logged_in(MALLORY), "JOIN", LOUNGE), 554)


class SlowReaderTests(ChatTestCase):
    settings = ChatSettings(history_bytes=20_000)

    def test_pipelined_history_to_a_slow_reader_holds_about_a_page(self) -> None:
        """
        A client that pipelines HISTORY and does not read makes the
        server hold about one page of it, not one page a request: each
        page is smaller by what the stream already holds (at least one
        entry), and the client goes on from Next-Since.
        """
        edgar = self.room(Public="yes", members=[ANNABEL])
        for _ in range(40):
            self.assertEqual(self.code(edgar, "SAY", LOUNGE, body=b"x" * 4000), 201)
        annabel = self.logged_in(ANNABEL)
        reads, read = [], self.store.history

        def held(*args) -> Deferred:
            reads.append((Deferred(), args))
            return reads[-1][0]

        self.store.history = held
        requests = b"".join(
            serialize(request("HISTORY", f"h{n}", LOUNGE, {"Limit": "200"}))
            for n in range(10)
        )
        annabel.send_bytes(requests)
        self.assertEqual(len(reads), 10)
        annabel.protocol.pauseProducing()  # the client reads nothing
        for d, args in reads:
            d.callback(self.successResultOf(read(*args)))
        held = annabel.protocol.queued_bytes
        self.assertLess(held, 20_000 + 9 * 5_000)
        annabel.protocol.resumeProducing()
        pages = annabel.frames()
        self.assertEqual(len(pages), 10)
        counts = [int(page.headers["Count"]) for page in pages]
        self.assertEqual(counts[0], 4)
        self.assertEqual(counts[1:], [1] * 9)
        self.assertTrue(all(page.headers["Next-Since"] for page in pages))


class FloodTests(ChatTestCase):
    def test_invitations_have_a_rate(self) -> None:
        """
        A moderator (anyone, in a room of their own) cannot flood a user
        with invitations by banning, unbanning and inviting again, nor
        fill the store with invitations.
        """
        mallory = self.room(owner=MALLORY, room=ATTIC)
        annabel = self.logged_in(ANNABEL)
        codes = []
        for _ in range(30):
            self.code(mallory, "BAN", ATTIC, {"Address": ANNABEL})
            self.code(mallory, "UNBAN", ATTIC, {"Address": ANNABEL})
            codes.append(self.code(mallory, "INVITE", ATTIC, {"Address": ANNABEL}))
        burst = int(self.settings.join_burst)
        self.assertLessEqual(codes.count(200), burst)
        self.assertEqual(codes[-1], 429)
        self.assertEqual(len(annabel.frames()), codes.count(200))
        many = [
            self.code(mallory, "INVITE", ATTIC, {"Address": f"u{n}@poe.net"})
            for n in range(5)
        ]
        self.assertEqual(many, [429] * 5)

    def test_bans_of_strangers_have_a_rate(self) -> None:
        """
        A BAN of an address with no standing in the room writes a row, as
        an invitation does: counted with INVITEs, so a room of one's own
        does not fill the store; banning members (a raid) is not counted.
        """
        mallory = self.room(owner=MALLORY, room=ATTIC)
        for n in range(15):
            self.store.join(ATTIC, f"raider{n}@poe.net", 0.0)
        raid = [
            self.code(mallory, "BAN", ATTIC, {"Address": f"raider{n}@poe.net"})
            for n in range(15)
        ]
        self.assertEqual(raid, [200] * 15)
        strangers = [
            self.code(mallory, "BAN", ATTIC, {"Address": f"s{n}@poe.net"})
            for n in range(30)
        ]
        self.assertEqual(strangers.count(200), int(self.settings.join_burst))
        self.assertEqual(strangers[-1], 429)

    def test_setting_a_password_has_a_rate(self) -> None:
        """
        Each Password an owner sets costs an scrypt hash: a loop of
        CONFIGs must not keep the hashing threads busy.
        """
        edgar = self.room()
        codes = [
            self.code(edgar, "CONFIG", LOUNGE, {"Password": f"p{n}"}) for n in range(30)
        ]
        self.assertEqual(codes[-1], 429)
        self.assertLessEqual(codes.count(200), int(self.settings.join_burst))
        # Reading, and other changes, are not counted.
        self.assertEqual(self.code(edgar, "CONFIG", LOUNGE, {"Name": "x"}), 200)


class ChainTests(ChatTestCase):
    def test_chain_verifies_after_retractions_topics_and_a_conflict(self) -> None:
        """
        A guard more than an attack: whatever members and moderators do,
        and another process of the domain appending behind the service's
        back, HISTORY pages verify end to end, and a member cannot retract
        a moderator's topic or another member's line.
        """
        edgar = self.room(members=[ANNABEL, MALLORY])
        annabel, mallory = self.logged_in(ANNABEL), self.logged_in(MALLORY)
        self.code(annabel, "SAY", LOUNGE, body=b"one")
        self.code(edgar, "TOPIC", LOUNGE, {"Topic": "raven"})
        _, digest = self.successResultOf(self.store.head(LOUNGE))
        other = FMTPObject(
            "1800000000000.abcdefabcdef.lenore@poe.net",
            "message",
            {"From": "lenore@poe.net", "To": LOUNGE, "Parent-Digest": digest},
            b"from elsewhere",
        )
        self.successResultOf(self.store.append(LOUNGE, other, 1.0))
        self.assertEqual(self.code(mallory, "SAY", LOUNGE, body=b"four"), 201)
        self.assertEqual(self.code(mallory, "RETRACT", LOUNGE, {"Seq": "1"}), 554)
        self.assertEqual(self.code(mallory, "RETRACT", LOUNGE, {"Seq": "2"}), 554)
        self.assertEqual(self.code(mallory, "RETRACT", LOUNGE, {"Seq": "4"}), 201)
        self.assertEqual(self.code(edgar, "RETRACT", LOUNGE, {"Seq": "1"}), 201)
        self.assertEqual(self.code(edgar, "RETRACT", LOUNGE, {"Seq": "5"}), 550)
        entries = []
        since = 0
        while True:
            page = annabel.ask(
                "HISTORY", "h", LOUNGE, {"Since": str(since), "Limit": "2"}
            )
            entries += lines_of(page.body)
            if "Next-Since" not in page.headers:
                break
            since = int(page.headers["Next-Since"])
        verify_chain(entries)
        self.assertEqual([e.seq for e in entries], [1, 2, 3, 4, 5, 6])
        self.assertEqual([e.retracted_by for e in entries][:4], [6, None, None, 5])
        for entry in entries:
            if entry.obj is not None and entry.seq != 3:
                self.successResultOf(self.services.keys.verify_object(entry.obj))


class HeldStore(MemoryStore):
    """
    A memory store one of whose reads the test holds: computed at the call
    (a read that saw the store as it was) or when released (a read that
    sees it as it is then).
    """

    def __init__(self) -> None:
        super().__init__()
        self.holding: dict[str, tuple[bool, object]] = {}
        self.waiting: list[Deferred] = []

    def hold(self, method: str, at_release: bool, address=None) -> None:
        self.holding[method] = (at_release, address)

    def _held(self, method: str, call, address=None):
        rule = self.holding.get(method)
        if rule is None or rule[1] not in (None, address):
            return call()
        del self.holding[method]
        at_release, _ = rule
        held: Deferred = Deferred()
        result = None if at_release else call()
        self.waiting.append(
            held.addCallback(lambda _: call() if at_release else result)
        )
        return held

    def member(self, room, address):
        return self._held(
            "member", lambda: super(HeldStore, self).member(room, address), address
        )

    def head(self, room):
        return self._held("head", lambda: super(HeldStore, self).head(room))

    def members(self, room, role=None):
        return self._held("members", lambda: super(HeldStore, self).members(room, role))

    def release(self) -> None:
        while self.waiting:
            self.waiting.pop(0).callback(None)


class HeldStoreTestCase(SynchronousTestCase):
    """
    A room of Edgar's with Mallory a member and one line, on a store whose
    reads the test holds, and Mallory's chat session.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = HeldStore()
        self.router = Router(self.clock)
        signer = DomainSigner(generate_private_key(), "poe.net")
        self.chat = ChatService(
            self.clock,
            "poe.net",
            self.store,
            self.router,
            signer,
            run_in_thread=run_now,
        )
        self.done(self.chat.create(EDGAR, LOUNGE, ConfigChange()))
        self.done(self.chat.join(MALLORY, LOUNGE, None))
        self.done(self.chat.say(EDGAR, LOUNGE, b"before", None))
        self.received: list[tuple[str, int | None]] = []

        def sink(event) -> None:
            seq = event.payload.entry.seq if event.kind == ROOM_LINE else None
            self.received.append((event.kind, seq))

        self.session = self.router.open(MALLORY, "chat", sink, [ROOM_LINE, ROOM_CLOSED])

    def done(self, coroutine):
        return self.successResultOf(ensureDeferred(coroutine))


class RacingEnterTests(HeldStoreTestCase):
    """
    A member kicked while their ENTER is under way must not receive the
    room afterwards, whatever the order in which the store answers.
    """

    def kick_then_say_a_secret(self) -> None:
        self.done(self.chat.kick(EDGAR, LOUNGE, MALLORY, "rude"))
        self.done(self.chat.say(EDGAR, LOUNGE, b"now mallory is gone", None))

    def test_kicked_between_the_membership_read_and_registering(self) -> None:
        # The read of Mallory's standing saw her a member; the kick lands
        # before the service acts on it.
        self.store.hold("member", at_release=False, address=MALLORY)
        entering = ensureDeferred(self.chat.enter(self.session, LOUNGE, None))
        self.kick_then_say_a_secret()
        self.store.release()
        self.failureResultOf(entering, Forbidden, RoomNotFound)
        self.done(self.chat.say(EDGAR, LOUNGE, b"still gone", None))
        self.assertNotIn(ROOM_LINE, [kind for kind, _ in self.received])
        self.assertEqual(self.chat.live.entered(LOUNGE), [])

    def test_kicked_during_the_catch_up(self) -> None:
        self.store.hold("head", at_release=True)
        entering = ensureDeferred(self.chat.enter(self.session, LOUNGE, 0))
        self.kick_then_say_a_secret()
        self.store.release()
        self.failureResultOf(entering, Forbidden, RoomNotFound)
        # Told it was closed, and nothing of the room after that.
        self.assertEqual(self.received, [("room-closed", None)])
        self.assertEqual(self.chat.live.entered(LOUNGE), [])

    def test_kicked_with_an_earlier_enter_still_catching_up(self) -> None:
        # Two ENTERs of one session, pipelined: the second goes live at
        # once, the first still waits for the store when the kick lands.
        self.store.hold("head", at_release=True)
        first = ensureDeferred(self.chat.enter(self.session, LOUNGE, 0))
        self.done(self.chat.enter(self.session, LOUNGE, None))
        self.kick_then_say_a_secret()
        self.store.release()
        self.failureResultOf(first, Forbidden)
        self.assertEqual(self.received, [("room-closed", None)])

    def test_an_outsider_entering_hears_nothing_of_a_private_room(self) -> None:
        # Mallory guesses the name of a private room while its owner
        # destroys it: she must not be told that it was destroyed.
        self.done(self.chat.create(EDGAR, ATTIC, ConfigChange()))
        self.store.hold("member", at_release=False, address=MALLORY)
        entering = ensureDeferred(self.chat.enter(self.session, ATTIC, None))
        self.done(self.chat.destroy(EDGAR, ATTIC))
        self.store.release()
        self.failureResultOf(entering, RoomNotFound)
        self.assertEqual(self.received, [])


class LostUpdateTests(SynchronousTestCase):
    """
    A change of a room's configuration must not undo another made while
    it waited for the store: a moderator's TOPIC must not clear the
    Password or Members-Only an owner just set.
    """

    def setUp(self) -> None:
        clock = Clock()
        self.store = HeldStore()
        self.chat = ChatService(
            clock,
            "poe.net",
            self.store,
            Router(clock),
            DomainSigner(generate_private_key(), "poe.net"),
            run_in_thread=run_now,
        )
        self.done(self.chat.create(EDGAR, LOUNGE, ConfigChange()))
        self.done(self.chat.join(ANNABEL, LOUNGE, None))
        self.done(self.chat.set_role(EDGAR, LOUNGE, ANNABEL, Role.MODERATOR, None))

    def done(self, coroutine):
        return self.successResultOf(ensureDeferred(coroutine))

    def test_topic_does_not_undo_a_password(self) -> None:
        self.store.hold("member", at_release=False, address=ANNABEL)
        topic = ensureDeferred(self.chat.topic(ANNABEL, LOUNGE, "open house"))
        locked = ConfigChange(password="raven", members_only=True)
        self.done(self.chat.configure(EDGAR, LOUNGE, locked))
        self.store.release()
        self.successResultOf(topic)
        config = self.successResultOf(self.store.get_room(LOUNGE)).config
        self.assertEqual(config.topic, "open house")
        self.assertIsNotNone(config.password_hash)
        self.assertTrue(config.members_only)

    def test_two_owners_changes_both_hold(self) -> None:
        self.done(self.chat.set_role(EDGAR, LOUNGE, ANNABEL, Role.OWNER, None))
        self.store.hold("member", at_release=False, address=ANNABEL)
        named = ensureDeferred(
            self.chat.configure(ANNABEL, LOUNGE, ConfigChange(name="Lounge"))
        )
        self.done(self.chat.configure(EDGAR, LOUNGE, ConfigChange(moderated=True)))
        self.store.release()
        self.successResultOf(named)
        config = self.successResultOf(self.store.get_room(LOUNGE)).config
        self.assertEqual((config.name, config.moderated), ("Lounge", True))


class HashingTests(SynchronousTestCase):
    """
    Room passwords are hashed in threads of the reactor's pool, which DNS
    lookups share: however many users JOIN passworded rooms at once, only
    a few hashes run at a time.
    """

    def test_few_hashes_at_once(self) -> None:
        clock = Clock()
        started: list[Deferred] = []

        def run_in_thread(f, *args):
            d: Deferred = Deferred()
            started.append(d)
            return d

        chat = ChatService(
            clock,
            "poe.net",
            MemoryStore(),
            Router(clock),
            DomainSigner(generate_private_key(), "poe.net"),
            run_in_thread=run_now,
        )
        self.successResultOf(
            ensureDeferred(chat.create(EDGAR, LOUNGE, ConfigChange(password="raven")))
        )
        chat._run_in_thread = run_in_thread
        joins = [
            ensureDeferred(chat.join(f"user{n}@poe.net", LOUNGE, "guess"))
            for n in range(40)
        ]
        self.assertLessEqual(len(started), 4)
        self.assertGreater(len(started), 0)
        # As each hash ends, the next starts; every JOIN is answered.
        while started:
            started.pop(0).callback(False)
        for joined in joins:
            self.failureResultOf(joined, Forbidden, RoomNotFound)


class LastOwnerTests(HeldStoreTestCase):
    """
    A room always keeps an owner, however its two owners' step-downs
    interleave with the store.
    """

    def setUp(self) -> None:
        super().setUp()
        self.done(self.chat.join(ANNABEL, LOUNGE, None))
        self.done(self.chat.set_role(EDGAR, LOUNGE, ANNABEL, Role.OWNER, None))

    def owners(self) -> list[str]:
        members = self.successResultOf(self.store.members(LOUNGE, Role.OWNER))
        return [member.address for member in members]

    def test_two_owners_leaving_at_once(self) -> None:
        # Edgar's count of the owners saw two; Annabel's leave comes
        # while his still waits for the store.
        self.store.hold("members", at_release=False)
        edgar = ensureDeferred(self.chat.leave(EDGAR, LOUNGE))
        annabel = ensureDeferred(self.chat.leave(ANNABEL, LOUNGE))
        self.store.release()
        self.successResultOf(edgar)
        self.failureResultOf(annabel, Forbidden)
        self.assertEqual(self.owners(), [ANNABEL])

    def test_two_owners_stepping_down_at_once(self) -> None:
        self.store.hold("members", at_release=False)
        edgar = ensureDeferred(
            self.chat.set_role(EDGAR, LOUNGE, EDGAR, Role.MEMBER, None)
        )
        annabel = ensureDeferred(
            self.chat.set_role(ANNABEL, LOUNGE, ANNABEL, Role.MEMBER, None)
        )
        self.store.release()
        self.successResultOf(edgar)
        self.failureResultOf(annabel, Forbidden)
        self.assertEqual(self.owners(), [ANNABEL])


class PromotedWhileRemovedTests(HeldStoreTestCase):
    """
    A member removed (kicked, banned, with their domain, or leaving) while
    an owner makes them an owner and then leaves: the removal read them a
    member, so it must not take away the owner they have become, or the
    room is left with none.
    """

    def setUp(self) -> None:
        super().setUp()
        self.done(self.chat.join(ANNABEL, LOUNGE, None))
        moderator = self.chat.set_role(EDGAR, LOUNGE, ANNABEL, Role.MODERATOR, None)
        self.done(moderator)

    def promote_then_leave(self, address: str) -> None:
        """
        Edgar makes C{address} an owner and leaves, while the removal
        waits for the store.
        """
        promoted = self.chat.set_role(EDGAR, LOUNGE, address, Role.OWNER, None)
        self.promoted = ensureDeferred(promoted)
        self.left = ensureDeferred(self.chat.leave(EDGAR, LOUNGE))

    def assertOwned(self) -> None:
        self.store.release()
        owners = self.successResultOf(self.store.members(LOUNGE, Role.OWNER))
        self.assertNotEqual(owners, [])
        # The removal took its turn first: the member is gone, so cannot
        # be made an owner, and Edgar stays the only one.
        self.failureResultOf(self.promoted, Forbidden)
        self.failureResultOf(self.left, Forbidden)
        self.assertEqual(owners[0].address, EDGAR)

    def test_kicked(self) -> None:
        self.store.hold("member", at_release=False, address=MALLORY)
        kicked = ensureDeferred(self.chat.kick(ANNABEL, LOUNGE, MALLORY, ""))
        self.promote_then_leave(MALLORY)
        self.assertOwned()
        self.successResultOf(kicked)

    def test_banned(self) -> None:
        self.store.hold("member", at_release=False, address=MALLORY)
        banned = ensureDeferred(self.chat.ban(ANNABEL, LOUNGE, MALLORY, ""))
        self.promote_then_leave(MALLORY)
        self.assertOwned()
        self.successResultOf(banned)

    def test_banned_with_their_domain(self) -> None:
        raven = "raven@lenore.org"
        self.done(self.chat.join(raven, LOUNGE, None))
        self.store.hold("members", at_release=False)
        banned = ensureDeferred(self.chat.ban(ANNABEL, LOUNGE, "*@lenore.org", ""))
        self.promote_then_leave(raven)
        self.assertOwned()
        self.successResultOf(banned)

    def test_leaving(self) -> None:
        self.store.hold("member", at_release=False, address=MALLORY)
        leaving = ensureDeferred(self.chat.leave(MALLORY, LOUNGE))
        self.promote_then_leave(MALLORY)
        self.assertOwned()
        self.successResultOf(leaving)

    def test_no_moderator_promoted_during_a_domain_ban_is_banned(self) -> None:
        """
        A moderator may not ban the domain of a moderator: not even one
        named while the ban read the members (the ban takes its turn
        first, and the member it removed cannot be named).
        """
        raven = "raven@lenore.org"
        self.done(self.chat.join(raven, LOUNGE, None))
        self.store.hold("members", at_release=False)
        banned = ensureDeferred(self.chat.ban(ANNABEL, LOUNGE, "*@lenore.org", ""))
        promoted = self.chat.set_role(EDGAR, LOUNGE, raven, Role.MODERATOR, None)
        promoting = ensureDeferred(promoted)
        self.store.release()
        self.successResultOf(banned)
        self.failureResultOf(promoting, Forbidden)


class DeclineRacingJoinTests(HeldStoreTestCase):
    """
    A DECLINE whose read of the invitation is overtaken by the user's own
    JOIN must not remove the membership it became: removed that way, with
    no member change told, the user was a ghost, out of WHO and out of
    reach of KICK, while the home still pushed the room's lines to their
    server.
    """

    def test_a_join_under_way_stays(self) -> None:
        self.done(self.chat.invite(EDGAR, LOUNGE, ANNABEL))
        self.store.hold("member", at_release=False, address=ANNABEL)
        declining = ensureDeferred(self.chat.decline(ANNABEL, LOUNGE))
        self.done(self.chat.join(ANNABEL, LOUNGE, None))
        self.store.release()
        self.assertIs(self.successResultOf(declining), False)
        member = self.successResultOf(self.store.member(LOUNGE, ANNABEL))
        self.assertEqual(member.role, Role.MEMBER)
