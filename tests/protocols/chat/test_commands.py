"""
Unit tests of the chat commands over StringTransport, on a Clock and a
memory store: the wire of section 10, and each attack a hostile member or
outsider tries, written as a test first.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from fmtp.protocols.chat.lines import entry_of_frame
from fmtp.protocols.chat.plugin import ChatProtocolPlugin
from fmtp.protocols.chat.settings import ChatSettings
from fmtp.store.rooms import verify_chain
from fmtp.wire import FrameParser, Limits
from tests.helpers import FAST_COST, StreamHarness, add_account, make_services, run_now

EDGAR = "edgar@poe.net"
ANNABEL = "annabel@poe.net"
LENORE = "lenore@poe.net"
MALLORY = "mallory@poe.net"
PASSWORD = "nevermore-quoth"
LOUNGE = "lounge@poe.net"
ATTIC = "attic@poe.net"


def lines_of(body: bytes):
    """
    The entries a HISTORY body holds, as a member reads them.
    """
    return [entry_of_frame(f)[1] for f in FrameParser(Limits()).feed(body)]


class ChatTestCase(SynchronousTestCase):
    """
    One server of poe.net, its chat protocol, and four users.
    """

    settings = ChatSettings()

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.services = make_services(self.clock)
        self.store = self.services.store
        for address in (EDGAR, ANNABEL, LENORE, MALLORY):
            add_account(self.store, address, PASSWORD)
        plugin = ChatProtocolPlugin(
            self.settings, run_in_thread=run_now, password_cost=FAST_COST
        )
        self.handler = plugin.handler(self.services)
        self.chat = self.handler.groups[1].chat

    def logged_in(self, address: str) -> StreamHarness:
        conn = StreamHarness(self.services, handler=self.handler)
        self.assertEqual(conn.login(address, PASSWORD).code, 230)
        return conn

    def code(self, conn, verb, argument="", headers=None, body=b"") -> int:
        return conn.ask(verb, "t", argument, headers, body).code

    def room(self, owner=EDGAR, room=LOUNGE, members=(), **headers):
        """
        C{owner} creates C{room} with C{headers}, and C{members} join.
        """
        conn = self.logged_in(owner)
        self.assertEqual(self.code(conn, "CREATE", room, headers), 201)
        for member in members:
            joiner = self.logged_in(member)
            self.assertEqual(self.code(joiner, "JOIN", room), 200)
        return conn


class RoomTests(ChatTestCase):
    def test_create_config_and_capa(self) -> None:
        edgar = self.logged_in(EDGAR)
        capa = edgar.ask("CAPA")
        self.assertEqual(capa.headers["Protocol"], "chat")
        for verb in ("CREATE", "SAY", "ENTER", "HISTORY", "WHO"):
            self.assertIn(verb, capa.headers["Commands"].split())
        made = edgar.ask(
            "CREATE", "1", "Lounge@Poe.net", {"Name": "The lounge", "Public": "yes"}
        )
        self.assertEqual(made.code, 201)
        self.assertEqual(made.headers["Room"], LOUNGE)
        self.assertEqual(made.headers["Public"], "yes")
        self.assertEqual(made.headers["Max-Members"], "1000")
        self.assertEqual(self.code(edgar, "CREATE", LOUNGE), 554)
        changed = edgar.ask("CONFIG", "2", LOUNGE, {"Topic": "Nevermore"})
        self.assertEqual(changed.headers["Topic"], "Nevermore")

    def test_refusals_of_malformed_requests(self) -> None:
        edgar = self.logged_in(EDGAR)
        self.assertEqual(self.code(edgar, "CREATE", ""), 501)
        self.assertEqual(self.code(edgar, "CREATE", "not an address"), 553)
        self.assertEqual(self.code(edgar, "CREATE", "room@lenore.org"), 554)
        self.assertEqual(self.code(edgar, "CREATE", EDGAR), 554)
        self.assertEqual(self.code(edgar, "CREATE", LOUNGE, {"Public": "maybe"}), 501)
        self.assertEqual(
            self.code(edgar, "CREATE", LOUNGE, {"Name": "a\u202ebidi"}), 501
        )
        self.assertEqual(
            self.code(edgar, "CREATE", LOUNGE, {"Max-Members": "9999"}), 501
        )

    def test_needs_login(self) -> None:
        anonymous = StreamHarness(self.services, handler=self.handler)
        for verb in ("CREATE", "JOIN", "SAY", "LIST", "MYROOMS", "HISTORY"):
            self.assertEqual(anonymous.ask(verb, "1", LOUNGE).code, 530, verb)

    def test_only_an_owner_configures_and_destroys(self) -> None:
        self.room(members=[ANNABEL])
        annabel = self.logged_in(ANNABEL)
        self.assertEqual(self.code(annabel, "CONFIG", LOUNGE, {"Name": "mine"}), 554)
        self.assertEqual(self.code(annabel, "DESTROY", LOUNGE), 554)
        self.assertEqual(annabel.ask("CONFIG", "1", LOUNGE).headers["Name"], "")

    def test_destroyed_room_keeps_its_address(self) -> None:
        edgar = self.room()
        self.assertEqual(self.code(edgar, "DESTROY", LOUNGE), 200)
        self.assertEqual(self.code(edgar, "JOIN", LOUNGE), 550)
        self.assertEqual(self.code(self.logged_in(MALLORY), "CREATE", LOUNGE), 554)

    def test_list_shows_public_rooms_and_myrooms_only_mine(self) -> None:
        self.room(room=LOUNGE, Public="yes", Name="The lounge")
        self.room(owner=ANNABEL, room=ATTIC)
        mallory = self.logged_in(MALLORY)
        listed = mallory.ask("LIST", "1")
        self.assertEqual(listed.body, b"lounge@poe.net The lounge\r\n")
        self.assertEqual(mallory.ask("MYROOMS", "2").body, b"")
        annabel = self.logged_in(ANNABEL)
        self.assertEqual(annabel.ask("MYROOMS", "3").body, b"attic@poe.net\r\n")


class PrivacyTests(ChatTestCase):
    def test_outsider_of_a_private_room_gets_no_such_room(self) -> None:
        edgar = self.room(room=ATTIC, members=[ANNABEL])
        self.code(edgar, "SAY", ATTIC, body=b"secret")
        mallory = self.logged_in(MALLORY)
        for verb in ("HISTORY", "WHO", "CONFIG", "ENTER", "SAY", "TOPIC"):
            there = mallory.ask(verb, "1", ATTIC, body=b"x" if verb == "SAY" else b"")
            nowhere = mallory.ask(
                verb, "2", "nowhere@poe.net", body=b"x" if verb == "SAY" else b""
            )
            self.assertEqual((there.code, there.argument), (550, "no such room"), verb)
            self.assertEqual((nowhere.code, nowhere.argument), (550, "no such room"))

    def test_members_see_who(self) -> None:
        self.room(members=[ANNABEL])
        who = self.logged_in(ANNABEL).ask("WHO", "1", LOUNGE)
        self.assertEqual(
            who.body, b"annabel@poe.net member -\r\nedgar@poe.net owner -\r\n"
        )

    def test_public_room_member_list_is_for_members(self) -> None:
        self.room(Public="yes")
        self.assertEqual(self.code(self.logged_in(MALLORY), "WHO", LOUNGE), 554)
        self.assertEqual(self.code(self.logged_in(MALLORY), "HISTORY", LOUNGE), 554)


class JoinTests(ChatTestCase):
    def test_members_only_needs_an_invitation(self) -> None:
        # A public room says why (a private one reads as none: test_attacks).
        edgar = self.room(Public="yes", **{"Members-Only": "yes"})
        mallory = self.logged_in(MALLORY)
        self.assertEqual(self.code(mallory, "JOIN", LOUNGE), 554)
        annabel = self.logged_in(ANNABEL)
        self.assertEqual(self.code(edgar, "INVITE", LOUNGE, {"Address": ANNABEL}), 200)
        invited = annabel.frames()
        self.assertEqual(
            [(f.code, f.headers) for f in invited],
            [(258, {"Room": LOUNGE, "From": EDGAR})],
        )
        self.assertEqual(self.code(annabel, "JOIN", LOUNGE), 200)

    def test_an_invitation_declined_is_gone(self) -> None:
        """
        An invited user turns the invitation down: a private room is
        hidden from them again, and a members-only one closed to them.
        """
        edgar = self.room(**{"Members-Only": "yes"})
        annabel = self.logged_in(ANNABEL)
        self.assertEqual(self.code(edgar, "INVITE", LOUNGE, {"Address": ANNABEL}), 200)
        annabel.frames()
        declined = annabel.ask("DECLINE", "d", LOUNGE)
        self.assertEqual((declined.code, declined.headers["Changed"]), (200, "yes"))
        self.assertEqual(self.code(annabel, "JOIN", LOUNGE), 550)
        self.assertEqual(self.code(annabel, "DECLINE", LOUNGE), 550)
        # Nobody else's invitation is touched, and a member's standing
        # is not an invitation.
        self.assertEqual(self.code(edgar, "INVITE", LOUNGE, {"Address": MALLORY}), 200)
        self.assertEqual(edgar.ask("DECLINE", "d", LOUNGE).headers["Changed"], "no")
        self.assertEqual(self.code(self.logged_in(MALLORY), "JOIN", LOUNGE), 200)
        self.assertEqual(self.code(annabel, "DECLINE", "nowhere@poe.net"), 550)

    def test_a_member_cannot_invite(self) -> None:
        self.room(members=[ANNABEL], **{"Members-Only": "no"})
        annabel = self.logged_in(ANNABEL)
        self.assertEqual(
            self.code(annabel, "INVITE", LOUNGE, {"Address": MALLORY}), 554
        )

    def test_password(self) -> None:
        edgar = self.room(Public="yes", Password="raven")
        config = edgar.ask("CONFIG", "1", LOUNGE)
        self.assertEqual(config.headers["Password-Protected"], "yes")
        self.assertNotIn(
            "raven", repr(self.successResultOf(self.store.get_room(LOUNGE)))
        )
        mallory = self.logged_in(MALLORY)
        self.assertEqual(self.code(mallory, "JOIN", LOUNGE), 554)
        self.assertEqual(self.code(mallory, "JOIN", LOUNGE, {"Password": "crow"}), 554)
        self.assertEqual(self.code(mallory, "JOIN", LOUNGE, {"Password": "raven"}), 200)

    def test_banned_user_cannot_come_back(self) -> None:
        edgar = self.room(members=[MALLORY])
        ban = edgar.ask("BAN", "1", LOUNGE, {"Address": MALLORY, "Reason": "spam"})
        self.assertEqual(ban.code, 200)
        mallory = self.logged_in(MALLORY)
        # The room is private: to the banned, it is no room at all.
        self.assertEqual(self.code(mallory, "JOIN", LOUNGE), 550)
        self.assertEqual(self.code(mallory, "SAY", LOUNGE, body=b"hi"), 550)
        self.assertEqual(self.code(edgar, "UNBAN", LOUNGE, {"Address": MALLORY}), 200)
        self.assertEqual(self.code(mallory, "JOIN", LOUNGE), 200)

    def test_max_members(self) -> None:
        self.room(members=[ANNABEL], Public="yes", **{"Max-Members": "2"})
        self.assertEqual(self.code(self.logged_in(MALLORY), "JOIN", LOUNGE), 554)

    def test_join_rate(self) -> None:
        mallory = self.logged_in(MALLORY)
        for n in range(int(self.settings.join_burst)):
            self.assertEqual(self.code(mallory, "CREATE", f"r{n}@poe.net"), 201)
        self.assertEqual(self.code(mallory, "CREATE", "more@poe.net"), 429)

    def test_only_owner_cannot_leave(self) -> None:
        edgar = self.room(members=[ANNABEL])
        self.assertEqual(self.code(edgar, "LEAVE", LOUNGE), 554)
        self.assertEqual(self.code(self.logged_in(ANNABEL), "LEAVE", LOUNGE), 200)


class ModerationTests(ChatTestCase):
    def test_moderated_room_needs_voice(self) -> None:
        edgar = self.room(members=[ANNABEL], Moderated="yes")
        annabel = self.logged_in(ANNABEL)
        self.assertEqual(self.code(annabel, "SAY", LOUNGE, body=b"hello"), 554)
        self.assertEqual(
            self.code(edgar, "ROLE", LOUNGE, {"Address": ANNABEL, "Voice": "yes"}), 200
        )
        self.assertEqual(self.code(annabel, "SAY", LOUNGE, body=b"hello"), 201)

    def test_moderator_limits(self) -> None:
        edgar = self.room(members=[ANNABEL, LENORE, MALLORY])
        headers = {"Address": ANNABEL, "Role": "moderator"}
        self.assertEqual(self.code(edgar, "ROLE", LOUNGE, headers), 200)
        annabel = self.logged_in(ANNABEL)
        self.assertEqual(self.code(annabel, "KICK", LOUNGE, {"Address": EDGAR}), 554)
        self.assertEqual(self.code(annabel, "BAN", LOUNGE, {"Address": EDGAR}), 554)
        promote = {"Address": LENORE, "Role": "moderator"}
        self.assertEqual(self.code(annabel, "ROLE", LOUNGE, promote), 554)
        self.assertEqual(self.code(annabel, "KICK", LOUNGE, {"Address": MALLORY}), 200)
        mallory = self.logged_in(LENORE)
        self.assertEqual(self.code(mallory, "KICK", LOUNGE, {"Address": ANNABEL}), 554)

    def test_owner_cannot_be_left_without_an_owner(self) -> None:
        edgar = self.room()
        headers = {"Address": EDGAR, "Role": "member"}
        self.assertEqual(self.code(edgar, "ROLE", LOUNGE, headers), 554)

    def test_kicked_session_stops_receiving(self) -> None:
        edgar = self.room(members=[MALLORY])
        mallory = self.logged_in(MALLORY)
        self.assertEqual(self.code(mallory, "ENTER", LOUNGE), 200)
        kick = {"Address": MALLORY, "Reason": "rude"}
        self.assertEqual(self.code(edgar, "KICK", LOUNGE, kick), 200)
        pushed = [(f.code, f.headers.get("Reason")) for f in mallory.frames()]
        self.assertEqual(pushed, [(257, "rude"), (259, "kicked")])
        self.assertEqual(self.code(edgar, "SAY", LOUNGE, body=b"after"), 201)
        self.assertEqual(mallory.frames(), [])
        self.assertEqual(self.code(mallory, "HISTORY", LOUNGE), 550)


class LineTests(ChatTestCase):
    def test_say_history_and_chain(self) -> None:
        edgar = self.room(members=[ANNABEL])
        annabel = self.logged_in(ANNABEL)
        for n in range(3):
            said = edgar.ask("SAY", "1", LOUNGE, body=b"line %d" % n)
            self.assertEqual((said.code, said.headers["Seq"]), (201, str(n + 1)))
        self.assertEqual(self.code(annabel, "SAY", LOUNGE, body=b"mine"), 201)
        page = annabel.ask("HISTORY", "2", LOUNGE, {"Limit": "3"})
        self.assertEqual(
            (page.headers["Count"], page.headers["Next-Since"]), ("3", "3")
        )
        rest = annabel.ask("HISTORY", "3", LOUNGE, {"Since": "3"})
        self.assertNotIn("Next-Since", rest.headers)
        entries = lines_of(page.body) + lines_of(rest.body)
        verify_chain(entries)
        self.assertEqual([e.obj.body for e in entries][-1], b"mine")
        self.assertEqual(entries[-1].obj.properties["From"], ANNABEL)
        self.assertEqual(entries[-1].obj.properties["To"], LOUNGE)
        self.successResultOf(self.services.keys.verify_object(entries[0].obj))

    def test_a_page_of_large_lines_holds_fewer(self) -> None:
        self.settings = ChatSettings(history_bytes=3000)
        self.setUp()
        edgar = self.room()
        for _ in range(4):
            self.code(edgar, "SAY", LOUNGE, body=b"x" * 1000)
        page = edgar.ask("HISTORY", "1", LOUNGE)
        self.assertEqual(
            (page.headers["Count"], page.headers["Next-Since"]), ("2", "2")
        )
        self.assertEqual(len(lines_of(page.body)), 2)

    def test_forged_retraction_is_refused(self) -> None:
        edgar = self.room(members=[MALLORY])
        self.assertEqual(self.code(edgar, "SAY", LOUNGE, body=b"mine"), 201)
        mallory = self.logged_in(MALLORY)
        self.assertEqual(self.code(mallory, "RETRACT", LOUNGE, {"Seq": "1"}), 554)
        self.assertEqual(self.code(mallory, "SAY", LOUNGE, body=b"oops"), 201)
        self.assertEqual(self.code(mallory, "RETRACT", LOUNGE, {"Seq": "2"}), 201)
        self.assertEqual(self.code(edgar, "RETRACT", LOUNGE, {"Seq": "1"}), 201)
        self.assertEqual(self.code(edgar, "RETRACT", LOUNGE, {"Seq": "1"}), 550)
        self.assertEqual(self.code(edgar, "RETRACT", LOUNGE, {"Seq": "3"}), 550)
        entries = lines_of(edgar.ask("HISTORY", "1", LOUNGE).body)
        verify_chain(entries)
        self.assertEqual([e.obj is None for e in entries], [True, True, False, False])

    def test_from_is_the_logged_in_user(self) -> None:
        self.room(members=[MALLORY])
        mallory = self.logged_in(MALLORY)
        said = mallory.ask("SAY", "1", LOUNGE, {"From": EDGAR}, b"as edgar")
        self.assertEqual(said.code, 201)
        entry = lines_of(mallory.ask("HISTORY", "2", LOUNGE).body)[0]
        self.assertEqual(entry.obj.properties["From"], MALLORY)
        self.assertTrue(entry.obj.id.endswith(MALLORY))

    def test_oversized_and_empty_lines(self) -> None:
        edgar = self.room()
        big = b"x" * (self.settings.max_body + 1)
        self.assertEqual(self.code(edgar, "SAY", LOUNGE, body=big), 552)
        self.assertEqual(self.code(edgar, "SAY", LOUNGE), 501)
        self.assertEqual(self.code(edgar, "SAY", LOUNGE, {"Format": "html"}, b"x"), 501)
        self.assertEqual(self.code(edgar, "HISTORY", LOUNGE, {"Limit": "0"}), 501)
        self.assertEqual(self.code(edgar, "HISTORY", LOUNGE, {"Since": "-1"}), 501)
        self.assertEqual(self.code(edgar, "RETRACT", LOUNGE), 501)

    def test_a_flooding_member_does_not_starve_others(self) -> None:
        edgar = self.room(members=[ANNABEL, MALLORY])
        mallory, annabel = self.logged_in(MALLORY), self.logged_in(ANNABEL)
        codes = [self.code(mallory, "SAY", LOUNGE, body=b"spam") for _ in range(20)]
        self.assertEqual(codes.count(201), int(self.settings.say_burst))
        self.assertEqual(codes[-1], 429)
        self.assertEqual(self.code(annabel, "SAY", LOUNGE, body=b"hi"), 201)
        # The owner is exempt.
        for _ in range(20):
            self.assertEqual(self.code(edgar, "SAY", LOUNGE, body=b"x"), 201)
        self.clock.advance(1 / self.settings.say_rate)
        self.assertEqual(self.code(mallory, "SAY", LOUNGE, body=b"later"), 201)

    def test_an_owner_flooding_their_own_rooms_is_bounded(self) -> None:
        """
        Anyone may create a room and own it, and owners are exempt from
        the member and room rates: one rate per user across all rooms,
        whatever the role, bounds what one user makes the server sign and
        store; others still speak.
        """
        edgar = self.room(members=[ANNABEL])
        other = "other@poe.net"
        self.assertEqual(self.code(edgar, "CREATE", other), 201)
        burst = int(self.settings.user_burst)
        codes = [
            self.code(edgar, "SAY", (LOUNGE, other)[n % 2], body=b"spam")
            for n in range(burst + 5)
        ]
        self.assertEqual(codes.count(201), burst)
        self.assertEqual(codes[-1], 429)
        annabel = self.logged_in(ANNABEL)
        said = annabel.ask("SAY", "t", LOUNGE, None, b"hi")
        self.assertEqual((said.code, said.argument), (201, "stored"))
        self.clock.advance(1)
        self.assertEqual(self.code(edgar, "SAY", LOUNGE, body=b"later"), 201)

    def test_topic(self) -> None:
        edgar = self.room(members=[ANNABEL])
        annabel = self.logged_in(ANNABEL)
        self.assertEqual(self.code(annabel, "TOPIC", LOUNGE, {"Topic": "mine"}), 554)
        self.assertEqual(self.code(edgar, "TOPIC", LOUNGE, {"Topic": "Lenore"}), 201)
        self.assertEqual(annabel.ask("TOPIC", "1", LOUNGE).headers["Topic"], "Lenore")
        entry = lines_of(annabel.ask("HISTORY", "1", LOUNGE).body)[0]
        self.assertEqual(entry.obj.properties["Topic"], "Lenore")


class LogTests(ChatTestCase):
    def logged(self) -> list[str]:
        lines: list[str] = []
        self.chat._log = Logger(observer=lambda e: lines.append(formatEvent(e)))
        return lines

    def test_refusals_are_logged_with_the_user(self) -> None:
        edgar = self.room(members=[MALLORY], Moderated="yes", Public="yes")
        lines = self.logged()
        mallory = self.logged_in(MALLORY)
        self.assertEqual(self.code(mallory, "SAY", LOUNGE, body=b"x"), 554)
        self.code(edgar, "SAY", LOUNGE, body=b"mine")
        self.assertEqual(self.code(mallory, "RETRACT", LOUNGE, {"Seq": "1"}), 554)
        self.code(edgar, "BAN", LOUNGE, {"Address": MALLORY})
        self.assertEqual(self.code(mallory, "JOIN", LOUNGE), 554)
        self.assertEqual(len(lines), 3)
        for line in lines:
            self.assertIn(f"Chat: refused {MALLORY}", line)
        self.assertIn("banned", lines[-1])

    def test_a_flood_of_refusals_is_a_few_lines(self) -> None:
        self.room(members=[MALLORY])
        mallory = self.logged_in(MALLORY)
        lines = self.logged()
        for _ in range(100):
            self.code(mallory, "SAY", LOUNGE, body=b"spam")
        self.assertEqual(len(lines), 10)
        self.clock.advance(1)
        self.code(mallory, "SAY", LOUNGE, body=b"spam")
        self.code(mallory, "SAY", LOUNGE, body=b"spam")
        self.assertIn("similar lines suppressed", lines[-1])


class LargeRoomTests(ChatTestCase):
    settings = ChatSettings(max_members=1001)

    def test_a_join_and_a_line_in_a_large_room_read_no_member_list(self) -> None:
        edgar = self.room(Public="yes", **{"Max-Members": "1000"})
        for n in range(1000 - 1):
            self.store.join(LOUNGE, f"reader{n}@poe.net", 0.0)
        self.assertEqual(self.code(edgar, "ENTER", LOUNGE), 200)
        self.store.members = None  # any fan-out over the member list fails
        lenore = self.logged_in(LENORE)
        self.assertEqual(self.code(lenore, "JOIN", LOUNGE), 554)  # full
        self.assertEqual(
            self.code(edgar, "CONFIG", LOUNGE, {"Max-Members": "1001"}), 200
        )
        joined = lenore.send("JOIN", "1", LOUNGE)
        self.assertEqual([f.code for f in joined], [200])
        self.clock.advance(0)
        self.assertEqual([f.code for f in edgar.frames()], [257])
        self.assertEqual(self.code(lenore, "SAY", LOUNGE, body=b"hello all"), 201)
        self.assertEqual([f.code for f in edgar.frames()], [256])


class LiveTests(ChatTestCase):
    def test_enter_catches_up_then_goes_live(self) -> None:
        edgar = self.room(members=[ANNABEL])
        for n in range(3):
            self.code(edgar, "SAY", LOUNGE, body=b"%d" % n)
        annabel = self.logged_in(ANNABEL)
        entered = annabel.send("ENTER", "1", LOUNGE, {"Since": "1"})
        self.assertEqual([f.code for f in entered], [256, 256, 200])
        self.assertEqual([f.headers.get("Seq") for f in entered], ["2", "3", "3"])
        self.code(edgar, "SAY", LOUNGE, body=b"live")
        pushed = annabel.frames()
        self.assertEqual(
            [(f.code, f.headers["Seq"], f.body) for f in pushed], [(256, "4", b"live")]
        )
        self.assertEqual(self.code(annabel, "EXIT", LOUNGE), 200)
        self.code(edgar, "SAY", LOUNGE, body=b"gone")
        self.assertEqual(annabel.frames(), [])
        self.assertEqual(self.code(annabel, "EXIT", LOUNGE), 503)

    def test_join_is_one_event_for_entered_sessions_only(self) -> None:
        edgar = self.room(members=[ANNABEL])
        self.clock.advance(0)
        self.assertEqual(self.code(edgar, "ENTER", LOUNGE), 200)
        annabel = self.logged_in(ANNABEL)  # a member, not entered
        lenore = self.logged_in(LENORE)
        self.assertEqual(self.code(lenore, "JOIN", LOUNGE), 200)
        # Answered first: the pushes go on the next turn, so a JOIN into a
        # room of a thousand entered sessions does not wait for them.
        self.assertEqual(edgar.frames(), [])
        self.clock.advance(0)
        self.assertEqual(
            [(f.code, f.headers["Address"]) for f in edgar.frames()], [(257, LENORE)]
        )
        self.assertEqual(annabel.frames(), [])

    def test_enter_too_far_behind(self) -> None:
        edgar = self.room()
        self.code(edgar, "SAY", LOUNGE, body=b"x")
        self.assertEqual(self.code(edgar, "ENTER", LOUNGE, {"Since": "5"}), 501)
