"""
Unit tests of rooms across domains on a Clock and a memory store
(L{fmtp.protocols.chat.federation}, L{fmtp.protocols.chat.remote}): what
a hostile peer tries against a room's home, written as tests first, and
what the home sends to its members' domains.  The server links are a
recording fake here; the real ones carry the same traffic in
tests/integration/test_chat_federation.py.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from fmtp.delivery import RecipientResult, deliveries_to
from fmtp.errors import (
    BadSignature,
    Forbidden,
    InvalidObject,
    ObjectSealed,
    TooManyRequests,
)
from fmtp.federation.bounce import Bouncer
from fmtp.federation.hello import Peer
from fmtp.framing.session import Session
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.objects import FMTPObject, new_object_id
from fmtp.protocols.chat.federation import (
    MAX_TO,
    PUSH_TYPE,
    ROOM_VERB,
    HomeRooms,
    chunks,
)
from fmtp.protocols.chat.lines import as_posted, entry_frame, posted_line
from fmtp.protocols.chat.remote import RemoteRooms
from fmtp.protocols.chat.settings import ChatSettings
from fmtp.store.rooms import HistoryEntry
from fmtp.wire import Frame, serialize
from tests.protocols.chat.test_commands import (
    ANNABEL,
    EDGAR,
    LOUNGE,
    ChatTestCase,
    lines_of,
)
from tests.protocols.presence.test_federation import FakeLinks

LOST = "lost@lenore.org"
RAVEN = "raven@lenore.org"
USHER = "usher@house.net"
LENORE = Peer("lenore.org", True, "nonce")


class FederationTestCase(ChatTestCase):
    settings = ChatSettings(remote_rate=1.0, remote_burst=30.0)

    def setUp(self) -> None:
        super().setUp()
        self.lenore = DomainSigner(generate_private_key(), "lenore.org")
        self.services.keys.add_signer(self.lenore)
        self.links = FakeLinks()
        actions = self.handler.groups[1].room_actions
        group = self.handler.groups[1]
        self.home = HomeRooms(
            self.chat, self.links, self.services.keys, actions, group.history
        )
        self.chat.federation = self.home
        self.remote = RemoteRooms(self.chat, self.links)

    def ask(self, action, actor, headers=None, body=b"", peer=LENORE, room=LOUNGE):
        """
        The reply to a C{ROOM} request of C{peer}, or its failure.
        """
        frame = Frame(
            ROOM_VERB, "t", room, {"Action": action, "Actor": actor, **(headers or {})}
        )
        frame.body = body
        d = Deferred.fromCoroutine(self.links.verbs[ROOM_VERB](peer, frame))
        self.clock.advance(0)
        return d

    def peer_code(self, *args, **kwargs) -> int:
        """
        The code of the reply, or of the error the framing answers with.
        """
        outcomes: list = []
        self.ask(*args, **kwargs).addBoth(outcomes.append)
        [outcome] = outcomes
        return outcome.value.code if isinstance(outcome, Failure) else outcome.code

    def signed_line(self, user=LOST, body=b"Nevermore", signer=None, at=None):
        now = self.clock.seconds() if at is None else at
        line = posted_line(new_object_id(user, now), user, LOUNGE, None, body)
        return (signer or self.lenore).sign_object(line, now)

    def say(self, line: FMTPObject, actor=LOST, body=None, **kwargs):
        headers = {"Id": line.id, "Poster-Signature": line.properties["Signature"]}
        return self.ask("SAY", actor, headers, line.body if body is None else body)

    def pushes(self, kind: str):
        return [
            (obj, to)
            for obj, to in self.links.enqueued
            if obj.properties["Room-Push"] == kind
        ]


class HomeTests(FederationTestCase):
    def test_a_user_of_another_domain_joins_and_talks(self) -> None:
        self.room(Public="yes")
        self.assertEqual(self.peer_code("JOIN", LOST), 200)
        said = self.successResultOf(self.say(self.signed_line()))
        self.assertEqual((said.code, said.headers["Seq"]), (201, "1"))
        edgar = self.logged_in(EDGAR)
        [entry] = lines_of(edgar.ask("HISTORY", "h", LOUNGE).body)
        self.assertEqual(entry.obj.properties["From"], LOST)
        # Both proofs hold: the home's, and the poster's domain's.
        self.successResultOf(self.services.keys.verify_object(as_posted(entry.obj)))
        [(push, to)] = self.pushes("line")
        self.assertEqual((to, push.properties["To"]), ([LOST], LOST))
        self.assertEqual(push.properties["From"], LOUNGE)
        self.assertEqual(push.body, serialize(entry_frame(LOUNGE, entry)))

    def test_a_peer_speaks_for_its_own_users_only(self) -> None:
        self.room(Public="yes", members=(ANNABEL,))
        for actor in (ANNABEL, EDGAR, USHER):
            failure = self.failureResultOf(self.ask("KICK", actor, {"Address": LOST}))
            failure.trap(Forbidden)
            self.assertIn("speaks for its own users only", failure.value.message)
        # Nor may it post a line as a local user, signed by itself.
        line = self.signed_line(ANNABEL)
        self.failureResultOf(self.say(line, actor=ANNABEL), Forbidden)
        self.assertEqual(
            lines_of(self.logged_in(EDGAR).ask("HISTORY", "h", LOUNGE).body), []
        )

    def test_only_rooms_of_this_domain(self) -> None:
        self.failureResultOf(self.ask("JOIN", LOST, room="den@house.net"), Forbidden)

    def test_forged_lines_are_refused(self) -> None:
        self.room(Public="yes")
        self.assertEqual(self.peer_code("JOIN", LOST), 200)
        impostor = DomainSigner(generate_private_key(), "lenore.org")
        forged = [
            # Signed by a key lenore.org does not publish.
            (self.signed_line(signer=impostor), None, LOST),
            # Signed by the home itself, for a user of lenore.org.
            (self.signed_line(signer=self.services.signer), None, LOST),
            # Its body changed after signing.
            (self.signed_line(), b"Evermore", LOST),
            # Another user's line, posted as Lost's.
            (self.signed_line(RAVEN), None, LOST),
            # Signed long ago: replayed.
            (self.signed_line(at=self.clock.seconds() - 3600), None, LOST),
        ]
        for line, body, actor in forged:
            self.failureResultOf(self.say(line, actor, body), BadSignature)
        self.failureResultOf(
            self.ask("SAY", LOST, {"Id": forged[0][0].id}, b"x"), InvalidObject
        )
        edgar = self.logged_in(EDGAR)
        self.assertEqual(lines_of(edgar.ask("HISTORY", "h", LOUNGE).body), [])

    def test_a_line_has_a_message_id(self) -> None:
        """
        A line's id is a new one of its poster (doc/protocol.md 10.9), not
        their address, the id of their user object.
        """
        self.room(Public="yes")
        self.assertEqual(self.peer_code("JOIN", LOST), 200)
        line = posted_line(LOST, LOST, LOUNGE, None, b"Nevermore")
        signed = self.lenore.sign_object(line, self.clock.seconds())
        self.failureResultOf(self.say(signed), InvalidObject)
        edgar = self.logged_in(EDGAR)
        self.assertEqual(lines_of(edgar.ask("HISTORY", "h", LOUNGE).body), [])

    def test_a_line_replayed_is_refused(self) -> None:
        self.room(Public="yes")
        self.assertEqual(self.peer_code("JOIN", LOST), 200)
        line = self.signed_line()
        self.assertEqual(self.successResultOf(self.say(line)).code, 201)
        failure = self.failureResultOf(self.say(line), ObjectSealed)
        self.assertIn("already", failure.value.message)
        edgar = self.logged_in(EDGAR)
        self.assertEqual(len(lines_of(edgar.ask("HISTORY", "h", LOUNGE).body)), 1)

    def test_a_user_of_another_domain_declines_an_invitation(self) -> None:
        edgar = self.room(**{"Members-Only": "yes"})
        self.assertEqual(edgar.ask("INVITE", "i", LOUNGE, {"Address": LOST}).code, 200)
        [(invitation, to)] = self.pushes("invitation")
        self.assertEqual((to, invitation.properties["Inviter"]), ([LOST], EDGAR))
        declined = self.successResultOf(self.ask("DECLINE", LOST))
        self.assertEqual(declined.headers["Changed"], "yes")
        # The private room is hidden from him again.
        self.assertEqual(self.peer_code("JOIN", LOST), 550)

    def test_a_forged_retraction_is_refused(self) -> None:
        edgar = self.room(Public="yes")
        self.assertEqual(self.peer_code("JOIN", LOST), 200)
        self.assertEqual(edgar.ask("SAY", "s", LOUNGE, body=b"mine").code, 201)
        failure = self.failureResultOf(self.ask("RETRACT", LOST, {"Seq": "1"}))
        failure.trap(Forbidden)
        self.assertEqual(edgar.ask("HISTORY", "h", LOUNGE).headers["Head"], "1")

    def test_banned_from_another_domain_stays_out(self) -> None:
        edgar = self.room(Public="yes")
        self.assertEqual(self.peer_code("JOIN", LOST), 200)
        self.assertEqual(edgar.ask("BAN", "b", LOUNGE, {"Address": LOST}).code, 200)
        [(closed, to)] = self.pushes("closed")
        self.assertEqual((to, closed.properties["Reason"]), ([LOST], "banned"))
        self.assertEqual(self.peer_code("JOIN", LOST), 554)
        self.failureResultOf(self.say(self.signed_line()), Forbidden)

    def test_a_peer_over_its_rate_is_refused(self) -> None:
        self.room(Public="yes")
        codes = [self.peer_code("WHO", LOST) for _ in range(31)]
        self.assertEqual(codes[:30], [554] * 30)
        self.failureResultOf(self.ask("WHO", LOST), TooManyRequests)
        # Another peer is not held back by it.
        house = Peer("house.net", True, "n")
        self.assertEqual(self.peer_code("WHO", USHER, peer=house), 554)

    def test_a_domain_guesses_a_rooms_password_slowly(self) -> None:
        """
        A user's password tries are rated (10.6), but a server speaks for
        as many users of its domain as it likes: its tries at one room's
        password are rated together, as one user's.
        """
        self.room(Public="yes", Password="raven")
        burst = int(self.settings.join_burst)
        codes = [
            self.peer_code("JOIN", f"guess{n}@lenore.org", {"Password": "crow"})
            for n in range(burst + 1)
        ]
        self.assertEqual(codes, [554] * burst + [429])
        # Another domain is not held back by it.
        house = Peer("house.net", True, "n")
        joined = self.peer_code("JOIN", USHER, {"Password": "raven"}, peer=house)
        self.assertEqual(joined, 200)

    def test_one_push_per_domain_whatever_its_members(self) -> None:
        edgar = self.room(Public="yes", members=(ANNABEL,))
        for actor, peer in ((LOST, LENORE), (RAVEN, LENORE)):
            self.assertEqual(self.peer_code("JOIN", actor, peer=peer), 200)
        house = Peer("house.net", True, "n")
        self.assertEqual(self.peer_code("JOIN", USHER, peer=house), 200)
        self.links.enqueued.clear()
        self.assertEqual(edgar.ask("SAY", "s", LOUNGE, body=b"all").code, 201)
        sent = {tuple(to) for _, to in self.pushes("line")}
        self.assertEqual(sent, {(LOST, RAVEN), (USHER,)})
        # A member leaving is told to the domains, and stops the pushes.
        self.assertEqual(self.peer_code("LEAVE", RAVEN), 200)
        self.links.enqueued.clear()
        self.assertEqual(edgar.ask("SAY", "s", LOUNGE, body=b"again").code, 201)
        self.assertEqual(
            {tuple(to) for _, to in self.pushes("line")}, {(LOST,), (USHER,)}
        )

    def test_addresses_fit_a_header_line(self) -> None:
        addresses = [f"user{n:05}@lenore.org" for n in range(1000)]
        groups = chunks(addresses)
        self.assertEqual([a for g in groups for a in g], addresses)
        self.assertTrue(all(len(" ".join(g)) <= MAX_TO for g in groups))
        self.assertEqual(chunks([]), [])


class RemoteTests(FederationTestCase):
    """
    The member's side: pushes of a room of another domain.
    """

    ROOM = "den@lenore.org"

    def push(self, kind, to, body=b"", **properties):
        now = self.clock.seconds()
        props = {"From": self.ROOM, "To": " ".join(to), "Room-Push": kind}
        obj = FMTPObject(
            new_object_id(self.ROOM, now), PUSH_TYPE, {**props, **properties}, body
        )
        d = Deferred.fromCoroutine(self.links.types[PUSH_TYPE](obj, to, "lenore.org"))
        return d

    def entered(self, address):
        conn = self.logged_in(address)
        session = self.services.router.sessions(address, "chat")[0]
        entering = self.chat.live.enter(self.ROOM, session)
        self.chat.live.admit(entering)
        self.chat.live.go_live(self.ROOM, session, entering, 0)
        return conn

    def line(self, seq, room=None):
        page = self.home_entry(seq)
        return serialize(entry_frame(room or self.ROOM, page))

    def home_entry(self, seq):
        obj = FMTPObject(new_object_id("lost@lenore.org", 1.0), "message", {}, b"hi")
        return HistoryEntry(seq, "d" * 64, "", obj, 1.0)

    def test_a_line_reaches_the_named_members_once(self) -> None:
        edgar = self.entered(EDGAR)
        annabel = self.entered(ANNABEL)
        for seq in (1, 1, 2):
            self.successResultOf(self.push("line", [EDGAR], self.line(seq)))
        seqs = [f.headers["Seq"] for f in edgar.frames() if f.code == 256]
        self.assertEqual(seqs, ["1", "2"])
        self.assertEqual([f for f in annabel.frames() if f.code == 256], [])

    def test_a_push_of_several_lines_reaches_them_in_order(self) -> None:
        edgar = self.entered(EDGAR)
        body = self.line(1) + self.line(2) + self.line(3)
        self.successResultOf(self.push("line", [EDGAR], body))
        seqs = [f.headers["Seq"] for f in edgar.frames() if f.code == 256]
        self.assertEqual(seqs, ["1", "2", "3"])
        mixed = self.line(4) + self.line(5, room="other@lenore.org")
        self.failureResultOf(self.push("line", [EDGAR], mixed), InvalidObject)
        self.assertEqual(edgar.frames(), [])

    def test_bad_pushes_are_refused(self) -> None:
        self.entered(EDGAR)
        for kind, body, props, error in (
            ("line", self.line(1, room="other@lenore.org"), {}, InvalidObject),
            ("line", b"not a frame", {}, InvalidObject),
            ("member", b"", {"Role": "emperor", "Address": LOST}, InvalidObject),
            ("closed", b"", {"Reason": "whim"}, InvalidObject),
            ("gossip", b"", {}, InvalidObject),
        ):
            self.failureResultOf(self.push(kind, [EDGAR], body, **props), error)

    def test_closed_stops_only_the_named(self) -> None:
        edgar = self.entered(EDGAR)
        annabel = self.entered(ANNABEL)
        self.successResultOf(self.push("closed", [EDGAR], Reason="kicked"))
        self.assertEqual([f.code for f in edgar.frames()], [259])
        self.assertEqual(annabel.frames(), [])
        self.successResultOf(self.push("line", [EDGAR, ANNABEL], self.line(1)))
        self.assertEqual(edgar.frames(), [])
        self.assertEqual([f.code for f in annabel.frames()], [256])

    def test_a_domain_floods_no_user_with_invitations(self) -> None:
        """
        A room's home rates its inviters; a hostile one does not: its
        invitations to a user are rated here too, as a local inviter's
        (429 beyond: a home that rated its own inviters delivers it later).
        """
        edgar = self.logged_in(EDGAR)
        annabel = self.logged_in(ANNABEL)
        burst = int(self.settings.join_burst)
        codes = [
            self.successResultOf(self.push("invitation", [EDGAR], Inviter=LOST))[0].code
            for _ in range(burst + 1)
        ]
        self.assertEqual(codes, [250] * burst + [429])
        self.assertEqual([f.code for f in edgar.frames()], [258] * burst)
        # Another user is not held back by it.
        self.successResultOf(self.push("invitation", [ANNABEL], Inviter=LOST))
        self.assertEqual([f.code for f in annabel.frames()], [258])

    def test_one_users_burst_does_not_spend_the_others_share(self) -> None:
        """
        The home counts a server's requests together: a user over their
        own rate is stopped here, before it reaches it.
        """

        def forward(user):
            frame = Frame("WHO", "t", self.ROOM)
            return Deferred.fromCoroutine(self.remote.forward(user, self.ROOM, frame))

        burst = int(self.settings.user_burst)
        for _ in range(burst):
            self.assertNoResult(forward(EDGAR))
        self.failureResultOf(forward(EDGAR), TooManyRequests)
        self.assertNoResult(forward(ANNABEL))
        self.assertEqual(len(self.links.requests), burst + 1)
        domain, verb, _, _ = self.links.requests[-1]
        self.assertEqual((domain, verb), ("lenore.org", ROOM_VERB))


class ConsistencyTests(FederationTestCase):
    """
    What the home's record of its members elsewhere must not get wrong.
    """

    def test_no_line_after_a_kick_reaches_the_kicked(self) -> None:
        """
        A read of the members elsewhere that began before a kick is not
        shared by the lines said after it: they would reach the kicked
        member's domain.
        """
        edgar = self.room(Public="yes")
        self.assertEqual(self.peer_code("JOIN", LOST), 200)
        store = self.chat.store
        before = self.successResultOf(store.members(LOUNGE))
        slow: Deferred = Deferred()
        reads = [slow]
        read = store.members
        store.members = lambda room, role=None: (
            reads.pop() if reads and role is None else read(room, role)
        )
        self.home.forget(LOUNGE)  # as after any change: the next push reads
        self.assertEqual(edgar.ask("SAY", "s", LOUNGE, body=b"before").code, 201)
        self.assertEqual(edgar.ask("KICK", "k", LOUNGE, {"Address": LOST}).code, 200)
        self.assertEqual(edgar.ask("SAY", "s", LOUNGE, body=b"after").code, 201)
        slow.callback(before)
        self.clock.advance(0)
        seqs = [
            lines_of(push.body)[0].seq for push, to in self.pushes("line") if LOST in to
        ]
        self.assertEqual(seqs, [1])

    def test_banning_a_stranger_tells_not_its_domain(self) -> None:
        """
        A private room's ban of an address with no standing in it is not
        told to that address's domain: the room's existence is not
        revealed to it, and nothing of theirs entered the room.
        """
        edgar = self.room()
        self.links.enqueued.clear()
        self.assertEqual(edgar.ask("BAN", "b", LOUNGE, {"Address": RAVEN}).code, 200)
        self.assertEqual(self.links.enqueued, [])
        self.assertEqual(self.peer_code("JOIN", RAVEN), 550)

    def test_a_push_refused_for_good_is_bounced_to_no_inbox(self) -> None:
        """
        A domain that refuses every push (hostile, or gone) makes the
        queue give them up: their bounces would go to the room's address,
        and fill an inbox nobody reads, one per line, for ever.
        """
        edgar = self.room(Public="yes")
        self.assertEqual(self.peer_code("JOIN", LOST), 200)
        self.assertEqual(edgar.ask("SAY", "s", LOUNGE, body=b"caw").code, 201)
        [(push, to)] = self.pushes("line")
        links = self.services.links
        bouncer = Bouncer(
            "poe.net", self.services.signer, self.clock, links.receiver.file_bounce
        )
        [row] = deliveries_to(push.id, to, self.clock.seconds())
        refused = [RecipientResult(LOST, 554, "not from you")]
        bounced = Deferred.fromCoroutine(bouncer.bounce(row, push, refused, 1))
        self.successResultOf(bounced)
        self.assertEqual(self.successResultOf(self.store.inbox(LOUNGE, 0, 10)), [])

    def test_a_slow_readers_remote_history_asks_for_one_entry(self) -> None:
        """
        The home sizes a page by what it holds for this server: for a
        client this server already holds replies for, a page of a room of
        another domain is asked for one entry.
        """
        self.logged_in(EDGAR)
        login = self.services.router.sessions(EDGAR, "chat")[0]
        asked: list[dict] = []
        self.links.request = lambda domain, verb, argument="", headers=None, body=b"": (
            asked.append(dict(headers or {})) or Deferred()
        )
        commands = self.handler.groups[1]
        commands.remote = self.remote
        history = commands.commands["HISTORY"]
        frame = Frame("HISTORY", "t", RemoteTests.ROOM, {"Limit": "200"})
        for held in (0, 4096):
            session = Session(host="192.0.2.1", login=login, queued=lambda n=held: n)
            self.assertNoResult(Deferred.fromCoroutine(history(frame, session)))
        self.assertEqual([a["Limit"] for a in asked], ["200", "1"])
        self.assertEqual({a["Actor"] for a in asked}, {EDGAR})


class BatchTests(FederationTestCase):
    def test_lines_said_while_a_push_is_queued_go_together(self) -> None:
        """
        A busy room costs its members' domains one queued push per batch
        of lines, not one per line, each line once and in order.
        """
        edgar = self.room(Public="yes")
        self.assertEqual(self.peer_code("JOIN", LOST), 200)
        queued: list[Deferred] = []
        enqueue = self.links.enqueue

        def slow(obj, recipients):
            enqueue(obj, recipients)
            queued.append(Deferred())
            return queued[-1]

        self.links.enqueue = slow
        for n in range(5):
            said = edgar.ask("SAY", "s", LOUNGE, body=f"line {n}".encode())
            self.assertEqual(said.code, 201)
        self.assertEqual(len(self.pushes("line")), 1)
        queued[0].callback(None)
        self.clock.advance(0)
        pushes = self.pushes("line")
        self.assertEqual(len(pushes), 2)
        seqs = [[e.seq for e in lines_of(push.body)] for push, _ in pushes]
        self.assertEqual(seqs, [[1], [2, 3, 4, 5]])
        queued[1].callback(None)
        self.assertEqual(len(self.pushes("line")), 2)


class HomeHistoryPageTests(FederationTestCase):
    """
    The home sizes a HISTORY page by what the server link already holds
    for the peer (10.9), as for a client (10.5): a peer that pipelines
    HISTORY and does not read makes the home hold about one page.
    """

    def test_a_peer_that_does_not_read_gets_one_entry(self) -> None:
        edgar = self.room(Public="yes")
        self.assertEqual(self.peer_code("JOIN", LOST), 200)
        for _ in range(3):
            self.assertEqual(edgar.ask("SAY", "s", LOUNGE, body=b"line").code, 201)
        reading = Peer("lenore.org", True, "nonce", queued=lambda: 0)
        page = self.successResultOf(self.ask("HISTORY", LOST, peer=reading))
        self.assertEqual(page.headers["Count"], "3")
        stalled = Peer("lenore.org", True, "nonce", queued=lambda: 10**9)
        page = self.successResultOf(self.ask("HISTORY", LOST, peer=stalled))
        self.assertEqual(
            (page.headers["Count"], page.headers["Next-Since"]), ("1", "1")
        )
