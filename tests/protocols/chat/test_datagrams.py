"""
Unit tests of the chat protocol's light clients (doc/protocol.md 10.10),
on a Clock and a recording datagram transport: SAY and LISTEN in
datagrams signed with a session's key, and each attack on them written as
a test first: a forged MAC, another user's session, another protocol's
session, a replayed datagram, a LISTEN by an outsider or without a
cookie, oversize, malformed and flooding datagrams, a kicked member, a
session that ended.
"""

from __future__ import annotations

from twisted.logger import capturedLogs, formatEvent

from fmtp.auth.router import datagram_mac, session_id, sign_frame, unsigned_bytes
from fmtp.client.lightchat import signed_request
from fmtp.protocols.chat import datagrams
from fmtp.protocols.chat.datagrams import LISTEN_LIFETIME, MAX_LISTENED, SEQ_WINDOW
from fmtp.protocols.chat.plugin import ChatProtocolPlugin
from fmtp.wire import Frame, parse_datagram, request, serialize
from tests.framing.test_datagram import RecordingDatagramTransport
from tests.helpers import StreamHarness
from tests.protocols.chat.test_commands import (
    ANNABEL,
    ATTIC,
    EDGAR,
    LOUNGE,
    MALLORY,
    PASSWORD,
    ChatTestCase,
)

SOURCE = ("192.0.2.7", 40000)
#: Another address of Annabel's (a phone that changed networks).
ELSEWHERE = ("198.51.100.4", 50000)


def verified(data: bytes, key: str) -> Frame:
    """
    A push, once its MAC is checked as a client checks it.
    """
    frame = parse_datagram(data)
    assert frame.headers.pop("Mac") == datagram_mac(key, unsigned_bytes(data)), frame
    return frame


class DatagramTestCase(ChatTestCase):
    """
    Edgar owns the public lounge, Annabel is a member; Annabel is logged
    in over a stream (her session key is L{key}) and has a cookie for
    L{SOURCE}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.listener = ChatProtocolPlugin().datagram_protocol(self.services)
        self.transport = RecordingDatagramTransport()
        self.listener.makeConnection(self.transport)
        self.edgar = self.room(Public="yes", members=[ANNABEL])
        self.annabel, self.key = self.chat_login(ANNABEL)
        self.cookies = {SOURCE[0]: self.get_cookie(SOURCE)}
        self.seq = 0
        #: The pushes (tag *) sent, with where they went.
        self.pushed: list[tuple[bytes, tuple]] = []

    def chat_login(self, address: str) -> tuple[StreamHarness, str]:
        conn = StreamHarness(self.services, handler=self.handler)
        answer = conn.login(address, PASSWORD)
        self.assertEqual(answer.code, 230)
        return conn, answer.headers["Session"]

    def receive_raw(self, data: bytes, source=SOURCE) -> list[bytes]:
        """
        The replies the listener sent for C{data}: never more than one,
        never to another address; the pushes it sent are kept apart in
        L{pushed}.
        """
        self.listener.datagramReceived(data, source)
        self.clock.advance(0)
        return self.replies(source)

    def replies(self, source=SOURCE) -> list[bytes]:
        sent, self.transport.sent = self.transport.sent, []
        answers = []
        for data, addr in sent:
            if parse_datagram(data).tag == "*" and b"\r\nMac: " in data:
                self.pushed.append((data, addr))
                continue
            self.assertEqual(addr, source)
            answers.append(data)
        self.assertLessEqual(len(answers), 1)
        return answers

    def receive(self, data: bytes, source=SOURCE) -> Frame:
        [answer] = self.receive_raw(data, source)
        return parse_datagram(answer)

    def get_cookie(self, source) -> str:
        data = serialize(request("CAPA", "c", headers={"Pad": "x" * 128}))
        answer = self.receive(data, source)
        self.assertEqual(answer.code, 432)
        return answer.headers["Cookie"]

    def signed(
        self,
        verb: str,
        argument: str = "",
        key: str | None = None,
        seq: int | None = None,
        source=SOURCE,
        body: bytes = b"",
        **headers: str,
    ) -> bytes:
        if seq is None:
            self.seq += 1
            seq = self.seq
        if source[0] in self.cookies:
            headers.setdefault("Cookie", self.cookies[source[0]])
        return signed_request(key or self.key, seq, verb, "u", argument, headers, body)

    def ask(self, verb: str, argument: str = "", **kw) -> Frame:
        source = kw.get("source", SOURCE)
        return self.receive(self.signed(verb, argument, **kw), source)

    def pushes(self, to=SOURCE, key: str | None = None) -> list[Frame]:
        """
        The pushes sent to C{to} since the last call, MACs checked.
        """
        self.clock.advance(0)
        self.replies()
        mine = [data for data, addr in self.pushed if addr == to]
        self.pushed = [(d, a) for d, a in self.pushed if a != to]
        return [verified(data, key or self.key) for data in mine]

    def lines_pushed(self, to=SOURCE) -> list[int]:
        return [int(f.headers["Seq"]) for f in self.pushes(to) if f.code == 256]

    def edgar_says(self, text: bytes = b"nevermore") -> int:
        answer = self.edgar.ask("SAY", "s", LOUNGE, body=text)
        self.assertEqual(answer.code, 201)
        return int(answer.headers["Seq"])

    def head(self, room: str = LOUNGE) -> int:
        answer = self.edgar.ask("HISTORY", "h", room)
        return int(answer.headers["Head"])


class SayAndListenTests(DatagramTestCase):
    def test_a_member_listens_and_says(self) -> None:
        """
        A LISTEN gets the room's last entry and how long it lasts; each
        new line then comes as a datagram signed with the session's key,
        with the room's Seq; a SAY in a datagram posts a line as over TCP.
        """
        self.edgar_says(b"before")
        listening = self.ask("LISTEN", LOUNGE)
        self.assertEqual(listening.code, 200)
        self.assertEqual(
            listening.headers,
            {"Room": LOUNGE, "Seq": "1", "Expires": str(int(LISTEN_LIFETIME))},
        )
        self.assertEqual(self.pushes(), [])
        self.edgar_says(b"Once upon a midnight dreary")
        [line] = self.pushes()
        self.assertEqual((line.code, line.tag), (256, "*"))
        self.assertEqual(line.headers["Seq"], "2")
        self.assertEqual(line.headers["From"], EDGAR)
        self.assertEqual(line.body, b"Once upon a midnight dreary")
        said = self.ask("SAY", LOUNGE, body=b"quoth the raven")
        self.assertEqual((said.code, said.headers["Seq"]), (201, "3"))
        self.assertEqual(self.lines_pushed(), [3])
        page = self.edgar.ask("HISTORY", "h", LOUNGE, {"Since": "2"})
        self.assertIn(b"From: annabel@poe.net", page.body)

    def test_say_in_a_datagram_keeps_the_rooms_rules_and_rates(self) -> None:
        """
        The same command as over TCP: a non-member is refused, and a
        member over the member rate gets 429.
        """
        _, mallory = self.chat_login(MALLORY)
        self.assertEqual(self.ask("SAY", LOUNGE, key=mallory, body=b"hi").code, 554)
        codes = [self.ask("SAY", LOUNGE, body=b"x").code for _ in range(7)]
        self.assertEqual(codes, [201] * 5 + [429] * 2)
        self.assertEqual(self.head(), 5)

    def test_listen_and_unlisten_are_datagram_only(self) -> None:
        self.assertEqual(self.annabel.ask("LISTEN", "1", LOUNGE).code, 503)
        self.assertEqual(self.annabel.ask("UNLISTEN", "1", LOUNGE).code, 503)
        capa = self.receive(self.signed("CAPA"))
        self.assertEqual(
            sorted(capa.headers["Commands"].split()),
            ["CAPA", "LISTEN", "SAY", "UNLISTEN"],
        )
        self.assertEqual(self.receive(self.signed("HISTORY", LOUNGE)).code, 305)

    def test_unlisten_stops_the_pushes(self) -> None:
        self.ask("LISTEN", LOUNGE)
        self.assertEqual(self.ask("UNLISTEN", LOUNGE).code, 200)
        self.edgar_says()
        self.assertEqual(self.pushes(), [])
        self.assertEqual(self.ask("UNLISTEN", LOUNGE).code, 503)

    def test_listening_lasts_while_refreshed_and_then_ends(self) -> None:
        """
        A LISTEN sent again keeps the lines coming; one not sent again for
        its lifetime ends with 259 Reason expired, and nothing more.
        """
        self.ask("LISTEN", LOUNGE)
        self.clock.advance(LISTEN_LIFETIME - 10)
        seq = self.edgar_says()
        again = self.ask("LISTEN", LOUNGE)
        self.assertEqual(again.headers["Seq"], str(seq))
        self.clock.advance(LISTEN_LIFETIME - 10)
        later = self.edgar_says()
        self.assertEqual(self.lines_pushed(), [seq, later])
        self.clock.advance(10)
        [closed] = self.pushes()
        self.assertEqual(closed.code, 259)
        self.assertEqual(closed.headers, {"Room": LOUNGE, "Reason": "expired"})
        self.edgar_says()
        self.assertEqual(self.pushes(), [])
        self.assertEqual(self.chat.live.entered(LOUNGE), [])

    def test_pushes_go_to_the_source_of_the_last_listen(self) -> None:
        self.ask("LISTEN", LOUNGE)
        self.cookies[ELSEWHERE[0]] = self.get_cookie(ELSEWHERE)
        self.ask("LISTEN", LOUNGE, source=ELSEWHERE)
        seq = self.edgar_says()
        self.assertEqual(self.lines_pushed(SOURCE), [])
        self.assertEqual(self.lines_pushed(ELSEWHERE), [seq])

    def test_a_replayed_listen_does_not_move_the_lines(self) -> None:
        """
        A captured LISTEN sent again from another port of the same host
        (behind the same NAT, so its cookie holds) gets the first answer,
        and the lines still go where the fresh one came from.
        """
        data = self.signed("LISTEN", LOUNGE)
        first = self.receive(data)
        other_port = (SOURCE[0], 40001)
        self.assertEqual(self.receive(data, other_port), first)
        seq = self.edgar_says()
        self.assertEqual(self.lines_pushed(other_port), [])
        self.assertEqual(self.lines_pushed(SOURCE), [seq])

    def test_a_line_too_large_for_a_datagram_is_named_for_history(self) -> None:
        self.ask("LISTEN", LOUNGE)
        seq = self.edgar_says(b"x" * 1100)
        [notice] = self.pushes()
        self.assertEqual((notice.code, notice.tag), (305, "*"))
        self.assertEqual(notice.headers, {"Room": LOUNGE, "Seq": str(seq)})

    def test_a_retried_say_is_posted_once(self) -> None:
        """
        A datagram received again byte for byte (its answer was lost) gets
        the first answer, and its line is not posted twice.
        """
        data = self.signed("SAY", LOUNGE, body=b"only once")
        first = self.receive(data)
        self.assertEqual(self.receive(data), first)
        self.assertEqual(self.head(), 1)


class AttackTests(DatagramTestCase):
    def test_a_forged_mac_is_refused(self) -> None:
        data = self.signed("SAY", LOUNGE, body=b"forged")
        forged = data.replace(b"forged", b"FORGED")
        with capturedLogs() as events:
            answer = self.receive(forged)
        self.assertEqual(answer.code, 535)
        self.assertEqual(self.head(), 0)
        self.assertTrue(
            any("535" in formatEvent(e) for e in events),
            [formatEvent(e) for e in events],
        )
        unsigned = serialize(
            request("SAY", "u", LOUNGE, {"Cookie": self.cookies[SOURCE[0]]}, b"x")
        )
        self.assertEqual(self.receive(unsigned).code, 501)

    def test_another_users_session_id_is_refused(self) -> None:
        """
        Mallory names Annabel's session but can only sign with her own key.
        """
        _, mallory = self.chat_login(MALLORY)
        data = signed_request(
            mallory,
            1,
            "SAY",
            "u",
            LOUNGE,
            {"Cookie": self.cookies[SOURCE[0]]},
            b"as annabel",
        )
        annabels = data.replace(
            session_id(mallory).encode(), session_id(self.key).encode()
        )
        self.assertNotEqual(annabels, data)
        self.assertEqual(self.receive(annabels).code, 535)
        self.assertEqual(self.head(), 0)

    def session_id(self, key: str) -> str:
        return parse_datagram(signed_request(key, 1, "CAPA", "1")).headers["Session-Id"]

    def test_the_key_of_another_protocols_session_proves_nothing(self) -> None:
        objects = StreamHarness(self.services)
        key = objects.login(ANNABEL, PASSWORD).headers["Session"]
        self.assertEqual(self.ask("SAY", LOUNGE, key=key, body=b"x").code, 535)
        self.assertEqual(self.ask("LISTEN", LOUNGE, key=key).code, 535)

    def test_a_replayed_datagram_is_not_run_again(self) -> None:
        """
        The same Seq with other bytes is refused, as is one older than
        the window: a captured SAY posts nothing more.
        """
        self.assertEqual(self.ask("SAY", LOUNGE, seq=100, body=b"a").code, 201)
        self.assertEqual(self.ask("SAY", LOUNGE, seq=100, body=b"b").code, 503)
        self.assertEqual(self.ask("SAY", LOUNGE, seq=99, body=b"c").code, 201)
        old = 100 - SEQ_WINDOW
        self.assertEqual(self.ask("SAY", LOUNGE, seq=old, body=b"d").code, 503)
        self.assertEqual(self.head(), 2)

    def test_an_outsider_may_not_listen(self) -> None:
        """
        The membership check of ENTER: a public room tells a non-member
        554, a private one 550, and nothing is pushed to them.
        """
        self.room(EDGAR, ATTIC)
        _, mallory = self.chat_login(MALLORY)
        self.assertEqual(self.ask("LISTEN", LOUNGE, key=mallory).code, 554)
        self.assertEqual(self.ask("LISTEN", ATTIC, key=mallory).code, 550)
        self.assertEqual(self.ask("LISTEN", ATTIC).code, 550)
        self.edgar_says()
        self.assertEqual(self.pushed, [])
        self.assertEqual(self.chat.live.entered(LOUNGE), [])

    def test_listen_without_a_cookie_gets_only_a_cookie(self) -> None:
        data = signed_request(self.key, 1, "LISTEN", "u", LOUNGE, {"Pad": "x" * 64})
        answer = self.receive(data)
        self.assertEqual(answer.code, 432)
        self.edgar_says()
        self.assertEqual(self.pushed, [])
        spoofed = self.signed("LISTEN", LOUNGE)
        self.assertEqual(self.receive(spoofed, ELSEWHERE).code, 432)
        self.edgar_says()
        self.assertEqual(self.pushed, [])

    def test_oversize_and_malformed_datagrams_get_clear_refusals(self) -> None:
        big = self.signed("SAY", LOUNGE, body=b"x" * 1300)
        self.assertEqual(self.receive(big).code, 552)
        no_tag = b"SAY\r\nPad: " + b"x" * 100 + b"\r\n\r\n"
        self.assertEqual(self.receive(no_tag).code, 500)
        headers = {"Session-Id": session_id(self.key), "Seq": "-1"}
        headers["Cookie"] = self.cookies[SOURCE[0]]
        bad_seq = sign_frame(request("SAY", "u", LOUNGE, headers, b"x"), self.key)
        self.assertEqual(self.receive(bad_seq).code, 501)
        self.assertEqual(self.ask("LISTEN", "not a room").code, 553)
        self.assertEqual(self.ask("LISTEN", "room@lenore.org").code, 554)
        self.assertEqual(self.head(), 0)

    def test_a_flood_is_dropped(self) -> None:
        answers = [
            self.receive_raw(self.signed("SAY", LOUNGE, body=b"x")) for _ in range(60)
        ]
        self.assertEqual(sum(1 for a in answers if a), 40 - 1)
        self.assertLessEqual(self.head(), 5)

    def test_a_kicked_member_stops_receiving(self) -> None:
        self.ask("LISTEN", LOUNGE)
        self.assertEqual(
            self.edgar.ask("KICK", "k", LOUNGE, {"Address": ANNABEL}).code, 200
        )
        [closed] = self.pushes()
        self.assertEqual(closed.code, 259)
        self.assertEqual(closed.headers, {"Room": LOUNGE, "Reason": "kicked"})
        self.edgar_says()
        self.assertEqual(self.pushes(), [])
        self.assertEqual(self.ask("LISTEN", LOUNGE).code, 554)

    def test_a_ban_a_leave_or_a_destroyed_room_ends_the_listening(self) -> None:
        for verb, conn, headers, reason in [
            ("BAN", self.edgar, {"Address": ANNABEL}, "banned"),
            ("LEAVE", self.annabel, {}, "left"),
            ("DESTROY", self.edgar, {}, "destroyed"),
        ]:
            self.edgar.ask("UNBAN", "b", LOUNGE, {"Address": ANNABEL})
            self.annabel.ask("JOIN", "j", LOUNGE)
            self.assertEqual(self.ask("LISTEN", LOUNGE).code, 200, verb)
            self.assertEqual(conn.ask(verb, "v", LOUNGE, headers).code, 200, verb)
            [closed] = self.pushes()
            self.assertEqual((closed.code, closed.headers["Reason"]), (259, reason))
            self.assertEqual(self.chat.live.entered(LOUNGE), [])

    def test_a_session_that_ended_receives_and_proves_nothing(self) -> None:
        sessions = len(self.services.router)
        self.ask("LISTEN", LOUNGE)
        self.assertEqual(len(self.services.router), sessions + 1)
        self.assertEqual(self.annabel.ask("LOGOUT").code, 200)
        self.edgar_says()
        self.assertEqual(self.pushes(), [])
        self.assertEqual(self.ask("SAY", LOUNGE, body=b"x").code, 535)
        self.assertEqual(self.chat.live.entered(LOUNGE), [])
        self.assertEqual(len(self.services.router), sessions - 1)

    def test_a_session_listens_to_a_few_rooms(self) -> None:
        rooms = [f"room{n}@poe.net" for n in range(MAX_LISTENED + 1)]
        for room in rooms:
            self.assertEqual(
                self.edgar.ask("CREATE", "c", room, {"Public": "yes"}).code, 201
            )
            self.assertEqual(self.annabel.ask("JOIN", "j", room).code, 200)
        codes = [self.ask("LISTEN", room).code for room in rooms]
        self.assertEqual(codes, [200] * MAX_LISTENED + [554])
        self.edgar.ask("SAY", "s", rooms[-1], body=b"x")
        self.assertEqual(self.pushes(), [])

    def test_pushes_to_an_address_are_bounded(self) -> None:
        """
        However busy the room, no more than the push rate reaches the
        address; the lines dropped are seen as gaps.
        """
        self.patch(datagrams, "PUSH_RATE", 5)
        self.ask("LISTEN", LOUNGE)
        with capturedLogs() as events:
            for _ in range(16):
                self.edgar_says()
        self.assertEqual(self.lines_pushed(), list(range(1, 11)))
        [logged] = [formatEvent(e) for e in events]
        self.assertIn("annabel@poe.net", logged)
        self.assertIn("over 5 a second, dropped (1 so far)", logged)
        self.clock.advance(1)
        self.assertEqual(self.lines_pushed(), [])
        seq = self.edgar_says()
        self.assertEqual(self.lines_pushed(), [seq])
