"""
A room's ban of a whole domain (doc/protocol.md 10.3, 10.9), written as
attacks first: a hostile domain's server makes up users at will, so a ban
of each address it sends never ends; the room bans C{*@DOMAIN} instead,
and none of that domain's users, made up or not, come in, whichever way
their JOIN takes.
"""

from __future__ import annotations

from twisted.internet.defer import ensureDeferred

from fmtp.errors import Forbidden
from fmtp.federation.hello import Peer
from fmtp.store.rooms import MemberBanned, Role
from tests.protocols.chat.test_commands import (
    ANNABEL,
    ATTIC,
    LENORE,
    LOUNGE,
    MALLORY,
    ChatTestCase,
)
from tests.protocols.chat.test_federation import (
    LOST,
    RAVEN,
    USHER,
    FederationTestCase,
)

EVIL = "*@lenore.org"


class DomainBanTests(ChatTestCase):
    """
    The commands on the room's home, for its local moderators.
    """

    def raid(self, room=LOUNGE, count=3) -> list[str]:
        """
        Made-up users of lenore.org, members of C{room} (as if their
        server had sent their JOINs).
        """
        raiders = [f"raider{n}@lenore.org" for n in range(count)]
        for address in raiders:
            self.successResultOf(self.store.join(room, address, 0.0))
        return raiders

    def test_members_of_the_domain_are_removed_and_told(self) -> None:
        edgar = self.room(Public="yes", members=[ANNABEL])
        raiders = self.raid()
        annabel = self.logged_in(ANNABEL)
        self.assertEqual(self.code(annabel, "ENTER", LOUNGE), 200)
        banned = edgar.ask(
            "BAN", "1", LOUNGE, {"Address": "*@Lenore.ORG", "Reason": "a botnet"}
        )
        self.assertEqual(banned.code, 200)
        self.assertEqual(banned.headers["Address"], EVIL)
        told = [
            (f.code, f.headers["Address"], f.headers["Role"], f.headers["Reason"])
            for f in annabel.frames()
        ]
        self.assertEqual(told, [(257, r, "banned", "a botnet") for r in raiders])
        who = edgar.ask("WHO", "2", LOUNGE)
        self.assertEqual(
            who.body, b"annabel@poe.net member -\r\nedgar@poe.net owner -\r\n"
        )
        bans = edgar.ask("WHO", "3", LOUNGE, {"Role": "banned"})
        self.assertEqual(bans.body, b"*@lenore.org banned -\r\n")

    def test_made_up_users_cannot_join(self) -> None:
        edgar = self.room(Public="yes")
        self.assertEqual(self.code(edgar, "BAN", LOUNGE, {"Address": EVIL}), 200)
        for address in ("raider0@lenore.org", "never.seen@lenore.org"):
            joined = ensureDeferred(self.chat.join(address, LOUNGE, None))
            self.failureResultOf(joined, MemberBanned)
        # Another domain's users, and the subdomains', are not banned.
        for address in (USHER, "eve@sub.lenore.org"):
            joined = ensureDeferred(self.chat.join(address, LOUNGE, None))
            self.assertEqual(self.successResultOf(joined).role, Role.MEMBER)

    def test_unban_lifts_it(self) -> None:
        edgar = self.room(Public="yes")
        self.assertEqual(self.code(edgar, "BAN", LOUNGE, {"Address": EVIL}), 200)
        lifted = edgar.ask("UNBAN", "1", LOUNGE, {"Address": EVIL})
        self.assertEqual((lifted.code, lifted.headers["Changed"]), (200, "yes"))
        self.assertEqual(edgar.ask("WHO", "2", LOUNGE, {"Role": "banned"}).body, b"")
        joined = ensureDeferred(self.chat.join("raider0@lenore.org", LOUNGE, None))
        self.assertEqual(self.successResultOf(joined).role, Role.MEMBER)

    def test_a_member_cannot_ban_a_domain(self) -> None:
        self.room(Public="yes", members=[ANNABEL])
        raiders = self.raid()
        annabel = self.logged_in(ANNABEL)
        self.assertEqual(self.code(annabel, "BAN", LOUNGE, {"Address": EVIL}), 554)
        self.assertEqual(self.code(annabel, "UNBAN", LOUNGE, {"Address": EVIL}), 554)
        members = self.successResultOf(self.store.members(LOUNGE))
        self.assertLessEqual(set(raiders), {m.address for m in members})

    def test_a_moderator_cannot_ban_the_domain_of_an_owner_or_moderator(self) -> None:
        """
        A domain's ban removes its members as a BAN of each would, so it
        is refused where one of those would be: nobody bans an owner, or
        themselves, and only an owner bans a moderator.
        """
        edgar = self.room(Public="yes", members=[ANNABEL])
        [raven] = self.raid(count=1)
        moderator = {"Address": ANNABEL, "Role": "moderator"}
        self.assertEqual(self.code(edgar, "ROLE", LOUNGE, moderator), 200)
        self.assertEqual(
            self.code(edgar, "ROLE", LOUNGE, {"Address": raven, "Role": "moderator"}),
            200,
        )
        annabel = self.logged_in(ANNABEL)
        self.assertEqual(self.code(annabel, "BAN", LOUNGE, {"Address": EVIL}), 554)
        self.assertEqual(
            self.successResultOf(self.store.member(LOUNGE, raven)).role, Role.MODERATOR
        )
        self.assertEqual(self.code(edgar, "BAN", LOUNGE, {"Address": EVIL}), 200)

    def test_the_rooms_own_domain_cannot_be_banned(self) -> None:
        """
        It would ban the room's owners, and every local user.
        """
        edgar = self.room(Public="yes", members=[ANNABEL])
        banned = edgar.ask("BAN", "1", LOUNGE, {"Address": "*@poe.net"})
        self.assertEqual(banned.code, 554)
        self.assertIn("own domain", banned.argument)
        self.assertEqual(edgar.ask("WHO", "2", LOUNGE, {"Role": "banned"}).body, b"")
        self.assertEqual(self.code(self.logged_in(LENORE), "JOIN", LOUNGE), 200)

    def test_only_ban_and_unban_name_a_domain(self) -> None:
        edgar = self.room(Public="yes")
        for verb in ("INVITE", "KICK", "ROLE"):
            headers = {"Address": EVIL, "Role": "member"}
            self.assertEqual(self.code(edgar, verb, LOUNGE, headers), 553, verb)
        for bad in ("*@", "*@not a domain", "**@lenore.org", "*"):
            self.assertEqual(self.code(edgar, "BAN", LOUNGE, {"Address": bad}), 553)

    def test_domain_bans_have_the_stranger_rate(self) -> None:
        """
        Each writes a row nobody asked for, as a BAN of a stranger does.
        """
        mallory = self.room(owner=MALLORY, room=ATTIC)
        codes = [
            self.code(mallory, "BAN", ATTIC, {"Address": f"*@d{n}.example"})
            for n in range(30)
        ]
        self.assertEqual(codes.count(200), int(self.settings.join_burst))
        self.assertEqual(codes[-1], 429)


class DomainBanFederationTests(FederationTestCase):
    """
    The JOINs and pushes through the banned domain's server (C{ROOM}).
    """

    def test_made_up_users_cannot_join_through_their_server(self) -> None:
        edgar = self.room(Public="yes")
        for actor in (LOST, RAVEN):
            self.assertEqual(self.peer_code("JOIN", actor), 200)
        self.links.enqueued.clear()
        self.assertEqual(edgar.ask("BAN", "b", LOUNGE, {"Address": EVIL}).code, 200)
        # Their server closes their sessions: one push for the domain.
        [(closed, to)] = self.pushes("closed")
        self.assertEqual(
            (sorted(to), closed.properties["Reason"]), ([LOST, RAVEN], "banned")
        )
        codes = [self.peer_code("JOIN", f"bot{n}@lenore.org") for n in range(5)]
        self.assertEqual(codes, [554] * 5)
        self.assertEqual(self.peer_code("JOIN", LOST), 554)
        self.failureResultOf(self.say(self.signed_line()), Forbidden)
        self.assertEqual(self.peer_code("WHO", LOST), 554)
        # Lines no longer go to lenore.org.
        self.links.enqueued.clear()
        self.assertEqual(edgar.ask("SAY", "s", LOUNGE, body=b"gone").code, 201)
        self.assertEqual(self.pushes("line"), [])
        # Another domain still comes in.
        house = Peer("house.net", True, "n")
        self.assertEqual(self.peer_code("JOIN", USHER, peer=house), 200)

    def test_a_private_room_stays_hidden_from_the_banned_domain(self) -> None:
        edgar = self.room()
        self.links.enqueued.clear()
        self.assertEqual(edgar.ask("BAN", "b", LOUNGE, {"Address": EVIL}).code, 200)
        # Nothing of lenore.org was in the room: it is not told.
        self.assertEqual(self.links.enqueued, [])
        self.assertEqual(self.peer_code("JOIN", "bot@lenore.org"), 550)

    def test_a_moderator_of_another_domain_bans_a_domain(self) -> None:
        edgar = self.room(Public="yes")
        self.assertEqual(self.peer_code("JOIN", LOST), 200)
        house = Peer("house.net", True, "n")
        self.assertEqual(self.peer_code("JOIN", USHER, peer=house), 200)
        moderator = {"Address": LOST, "Role": "moderator"}
        self.assertEqual(edgar.ask("ROLE", "r", LOUNGE, moderator).code, 200)
        self.assertEqual(self.peer_code("BAN", LOST, {"Address": "*@house.net"}), 200)
        self.assertEqual(self.peer_code("JOIN", USHER, peer=house), 554)
        # Its own domain would ban itself; the home's, the owners.
        self.assertEqual(self.peer_code("BAN", LOST, {"Address": EVIL}), 554)
        self.assertEqual(self.peer_code("BAN", LOST, {"Address": "*@poe.net"}), 554)
        self.assertEqual(self.peer_code("UNBAN", LOST, {"Address": "*@house.net"}), 200)
        self.assertEqual(self.peer_code("JOIN", USHER, peer=house), 200)
