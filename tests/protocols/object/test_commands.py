"""
Unit tests of the object protocol over a StringTransport, driven by a
Clock: every command, and every kind of bad input the protocol must answer
and survive.
"""

from __future__ import annotations

from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from fmtp.framing.stream import FrameStreamProtocol
from fmtp.interfaces import IPresenceView, IProtocolPlugin
from fmtp.objects import FMTPObject
from fmtp.protocols.object.plugin import ObjectProtocolPlugin
from fmtp.protocols.presence.status import Shown
from fmtp.wire import Limits
from tests.helpers import StreamHarness, add_account, make_services

EDGAR = "edgar@poe.net"
LOST = "lost@poe.net"
PASSWORD = "nevermore-quoth"


class ObjectProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.services = make_services(self.clock, limits=Limits(max_body=4096))
        self.store = self.services.store
        add_account(self.store, EDGAR, PASSWORD)
        add_account(self.store, LOST, PASSWORD)
        self.conn = StreamHarness(self.services)

    def logged_in(self, address: str = EDGAR) -> StreamHarness:
        conn = StreamHarness(self.services)
        self.assertEqual(conn.login(address, PASSWORD).code, 230)
        return conn

    def test_plugin(self) -> None:
        plugin = ObjectProtocolPlugin()
        verifyObject(IProtocolPlugin, plugin)
        self.assertIsNotNone(plugin.datagram_protocol(self.services))

    def test_greeting(self) -> None:
        self.assertEqual(self.conn.greeting.code, 220)
        self.assertEqual(self.conn.greeting.tag, "*")
        self.assertIn("poe.net", self.conn.greeting.argument)

    def test_capa(self) -> None:
        answer = self.conn.ask("CAPA", "c1")
        self.assertEqual((answer.code, answer.tag), (200, "c1"))
        self.assertEqual(answer.headers["Protocol"], "object")
        self.assertEqual(
            answer.headers["Commands"].split(),
            sorted(
                "CAPA LOGIN LOGOUT QUIT GET PUT DELETE LIST SEND FETCH HELD APPROVE "
                "REFUSE HELLO DELIVER CONFIRM".split()
            ),
        )
        self.assertEqual(answer.headers["Max-Body"], "4096")

    def test_login(self) -> None:
        answer = self.conn.login("Edgar@POE.net", PASSWORD)
        self.assertEqual(answer.code, 230)
        self.assertEqual(answer.headers["Address"], EDGAR)
        session = answer.headers["Session"]
        router = self.services.router
        login = router.session_for_key(session)
        self.assertEqual((login.address, login.protocol), (EDGAR, "object"))
        self.assertEqual(login.kinds, {"message"})
        self.assertEqual(self.conn.login(EDGAR, PASSWORD).code, 503)
        self.conn.protocol.connectionLost(None)
        self.assertIsNone(router.session_for_key(session))

    def test_wrong_password_is_delayed(self) -> None:
        self.assertEqual(
            self.conn.send("LOGIN", headers={"Address": EDGAR, "Password": "x"}), []
        )
        self.clock.advance(self.services.login_throttle.limits.failure_delay)
        [answer] = self.conn.frames()
        self.assertEqual(answer.code, 535)
        self.assertFalse(self.conn.transport.disconnecting)

    def test_unknown_account_fails_alike(self) -> None:
        self.conn.send("LOGIN", headers={"Address": "nobody@poe.net", "Password": "x"})
        self.clock.advance(1)
        [answer] = self.conn.frames()
        self.assertEqual(
            (answer.code, answer.argument), (535, "bad address or password")
        )

    def test_repeated_failures_close_the_connection(self) -> None:
        for tag in "123":
            self.conn.send("LOGIN", tag, headers={"Address": EDGAR, "Password": "x"})
            self.clock.advance(1)
            [answer] = self.conn.frames()
            self.assertEqual(answer.code, 535)
        self.assertTrue(self.conn.transport.disconnecting)

    def test_guessing_from_one_address_is_throttled(self) -> None:
        """
        Failures for one account from one address refuse that address's
        LOGINs for that account, even with the right password, until they
        age out; the account still logs in from elsewhere, and the address
        still logs into other accounts.
        """
        limits = self.services.login_throttle.limits
        for _ in range(limits.per_account):
            guesser = StreamHarness(self.services)
            guesser.send("LOGIN", headers={"Address": EDGAR, "Password": "x"})
            self.clock.advance(limits.failure_delay)
            self.assertEqual(guesser.frames()[0].code, 535)
        answer = self.conn.login(EDGAR, PASSWORD)
        self.assertEqual(answer.code, 429)
        self.assertTrue(int(answer.headers["Retry-After"]) > 0)
        other = StreamHarness(self.services, host="192.0.2.99")
        self.assertEqual(other.login(EDGAR, PASSWORD).code, 230)
        self.assertEqual(StreamHarness(self.services).login(LOST, PASSWORD).code, 230)
        self.clock.advance(limits.window + 1)
        again = StreamHarness(self.services)
        self.assertEqual(again.login(EDGAR, PASSWORD).code, 230)

    def test_login_needs_address(self) -> None:
        answer = self.conn.ask("LOGIN", headers={"Password": "x"})
        self.assertEqual(answer.code, 501)

    def test_put_before_login(self) -> None:
        answer = self.conn.ask("PUT", headers={"Type": "post"}, body=b"hi")
        self.assertEqual(answer.code, 530)
        self.assertEqual(self.conn.ask("DELETE", argument=EDGAR).code, 530)

    def test_put_get_round_trip(self) -> None:
        conn = self.logged_in()
        body = b"Once upon a midnight dreary\r\n\r\n\x00\xff"
        stored = conn.ask(
            "PUT",
            headers={"Type": "post", "Public": "yes", "Title": "The Raven"},
            body=body,
        )
        self.assertEqual(stored.code, 201)
        object_id = stored.headers["Id"]
        self.assertTrue(object_id.endswith("." + EDGAR))
        got = self.conn.ask("GET", "g", object_id)
        self.assertEqual(got.code, 200)
        self.assertEqual(got.body, body)
        self.assertEqual(got.headers["Title"], "The Raven")
        self.assertEqual(got.headers["Digest"], stored.headers["Digest"])
        obj = FMTPObject.from_headers(
            {k: v for k, v in got.headers.items() if k != "Digest"}, got.body
        )
        self.assertEqual(obj.digest(), stored.headers["Digest"])

    def test_private_objects_are_invisible_to_others(self) -> None:
        conn = self.logged_in()
        object_id = conn.ask("PUT", headers={"Type": "note"}, body=b"secret").headers[
            "Id"
        ]
        self.assertEqual(conn.ask("GET", argument=object_id).code, 200)
        self.assertEqual(self.conn.ask("GET", argument=object_id).code, 550)
        lost = self.logged_in(LOST)
        self.assertEqual(lost.ask("GET", argument=object_id).code, 550)
        missing = object_id.replace(object_id.split(".")[1], "000000")
        self.assertEqual(
            lost.ask("GET", argument=missing).argument,
            lost.ask("GET", argument=object_id).argument,
        )

    def test_a_message_is_visible_to_those_it_names(self) -> None:
        """
        A stored message (not sent) is shown to its owner and to the
        addresses in its To, to nobody else; other types are not shown
        for being addressed.
        """
        edgar, lost = self.logged_in(), self.logged_in(LOST)
        add_account(self.store, "raven@poe.net", PASSWORD)
        raven = self.logged_in("raven@poe.net")
        to_lost = edgar.ask("PUT", headers={"Type": "message", "To": LOST}).headers[
            "Id"
        ]
        post = edgar.ask("PUT", headers={"Type": "post", "To": LOST}).headers["Id"]
        no_to = edgar.ask("PUT", headers={"Type": "message"}).headers["Id"]
        self.assertEqual(lost.ask("GET", argument=to_lost).code, 200)
        self.assertEqual(raven.ask("GET", argument=to_lost).code, 550)
        self.assertEqual(self.conn.ask("GET", argument=to_lost).code, 550)
        self.assertEqual(lost.ask("GET", argument=post).code, 550)
        self.assertEqual(lost.ask("GET", argument=no_to).code, 550)
        self.assertEqual(edgar.ask("GET", argument=no_to).code, 200)

    def test_put_stores_what_it_says(self) -> None:
        """
        C{Id} and C{Type} are not properties; a user object's C{Address} is
        its owner's, whatever the request said, and only a user object
        gets one; C{Public: no} is as good as C{yes}.
        """
        conn = self.logged_in()
        put = conn.ask(
            "PUT", headers={"Type": "post", "Id": f"1700000000000.ab.{EDGAR}"}
        )
        self.assertEqual(put.code, 201)
        stored = self.successResultOf(self.store.get_object(put.headers["Id"]))
        self.assertEqual(stored.properties, {})
        profile = conn.ask(
            "PUT", headers={"Id": EDGAR, "Type": "user", "Address": "x@elsewhere.org"}
        )
        self.assertEqual(profile.code, 201)
        stored = self.successResultOf(self.store.get_object(EDGAR))
        self.assertEqual(stored.properties, {"Address": EDGAR})
        self.assertEqual(
            conn.ask("PUT", headers={"Type": "post", "Public": "No"}).code, 201
        )

    def test_user_object_shows_only_its_profile(self) -> None:
        conn = self.logged_in()
        answer = conn.ask(
            "PUT",
            headers={
                "Id": EDGAR,
                "Type": "user",
                "Given-Name": "Edgar",
                "Blacklist": "*@spam.example",
            },
        )
        self.assertEqual(answer.code, 201)
        mine = conn.ask("GET", argument=EDGAR)
        self.assertEqual(mine.headers["Blacklist"], "*@spam.example")
        theirs = self.conn.ask("GET", argument=EDGAR)
        self.assertEqual(theirs.headers["Given-Name"], "Edgar")
        self.assertNotIn("Blacklist", theirs.headers)

    def test_a_user_object_shows_presence_to_those_allowed_only(self) -> None:
        """
        A GET of a user object carries the user's live presence to whom the
        presence view allows (the user, approved subscribers), and to
        nobody else: not anonymously, not to a stranger, whatever the
        stored object held.
        """
        allowed = {(EDGAR, LOST): Shown("away", "at sea"), (LOST, LOST): Shown("away")}

        @implementer(IPresenceView)
        class View:
            def shown_to(self, viewer, contact):
                return succeed(allowed.get((viewer, contact)))

        self.services.presence.register(View())
        stranger = "stranger@poe.net"
        add_account(self.store, stranger, PASSWORD)
        seen = self.logged_in(EDGAR).ask("GET", argument=LOST)
        self.assertEqual(
            (seen.headers["Status"], seen.headers["Status-Note"]), ("away", "at sea")
        )
        own = self.logged_in(LOST).ask("GET", argument=LOST)
        self.assertEqual(own.headers["Status"], "away")
        self.assertNotIn("Status-Note", own.headers)
        for conn in (self.conn, self.logged_in(stranger)):
            answer = conn.ask("GET", argument=LOST)
            self.assertEqual(answer.code, 200)
            self.assertNotIn("Status", answer.headers)
            self.assertNotIn("Status-Note", answer.headers)

    def test_presence_is_not_stored_in_a_user_object(self) -> None:
        conn = self.logged_in()
        for name in ("Status", "Status-Note"):
            answer = conn.ask("PUT", headers={"Id": EDGAR, "Type": "user", name: "x"})
            self.assertEqual(
                (answer.code, answer.argument),
                (
                    501,
                    f"{name} is your live presence: set it with STATUS on the "
                    "presence protocol",
                ),
            )
        self.assertNotIn("Status", conn.ask("GET", argument=EDGAR).headers)

    def test_no_presence_without_the_presence_protocol(self) -> None:
        verifyObject(IPresenceView, self.services.presence)
        answer = self.logged_in(EDGAR).ask("GET", argument=EDGAR)
        self.assertNotIn("Status", answer.headers)

    def test_put_of_another_users_object(self) -> None:
        conn = self.logged_in()
        answer = conn.ask(
            "PUT", headers={"Id": "1700000000000.abc.lost@poe.net", "Type": "post"}
        )
        self.assertEqual(answer.code, 554)
        self.assertEqual(
            answer.argument,
            "1700000000000.abc.lost@poe.net belongs to lost@poe.net; "
            "you may only change your own objects",
        )
        self.assertEqual(
            conn.ask("PUT", headers={"Id": LOST, "Type": "user"}).code, 554
        )

    def test_put_refuses_bad_objects(self) -> None:
        conn = self.logged_in()
        for headers, text in [
            ({}, "missing header: Type"),
            ({"Type": "post", "Public": "maybe"}, "Public must be yes or no"),
            (
                {"Type": "post", "Id": EDGAR},
                "a user object's id is its address, and only a user object's is",
            ),
            (
                {"Type": "post", "Parent-Digest": "0" * 64},
                "Parent-Digest without Parent",
            ),
        ]:
            answer = conn.ask("PUT", headers=headers)
            self.assertEqual((answer.code, answer.argument), (501, text))
        self.assertEqual(conn.ask("PUT", headers={}).code, 501)
        self.assertEqual(conn.ask("PUT", headers={"Type": "Bad Type"}).code, 501)
        self.assertEqual(
            conn.ask("PUT", headers={"Type": "post", "Signature": "x"}).code, 501
        )
        self.assertEqual(
            conn.ask("PUT", headers={"Type": "post", "Public": "maybe"}).code, 501
        )
        self.assertEqual(
            conn.ask("PUT", headers={"Type": "post", "Id": "nonsense"}).code, 553
        )
        self.assertEqual(
            conn.ask("PUT", headers={"Type": "post", "Id": EDGAR}).code, 501
        )

    def test_put_checks_attachments_against_the_body(self) -> None:
        """
        An object's attachment table must fit its body, on PUT as on SEND:
        what a server keeps, every client can read.
        """
        conn = self.logged_in()
        table = {"Type": "post", "Attachments": "1", "Attachment-1": "4 text/plain a"}
        self.assertEqual(conn.ask("PUT", headers=table, body=b"abcd").code, 201)
        refused = conn.ask("PUT", headers=table, body=b"abc")
        self.assertEqual(
            (refused.code, refused.argument),
            (501, "the attachments are larger than the body"),
        )

    def test_thread_is_hash_linked(self) -> None:
        conn = self.logged_in()
        top = conn.ask("PUT", headers={"Type": "post", "Public": "yes"}, body=b"first")
        reply1 = conn.ask(
            "PUT", headers={"Type": "post", "Parent": top.headers["Id"]}, body=b"re"
        )
        got = conn.ask("GET", argument=reply1.headers["Id"])
        self.assertEqual(got.headers["Parent-Digest"], top.headers["Digest"])
        self.assertEqual(got.headers["Top"], top.headers["Id"])
        reply2 = conn.ask(
            "PUT", headers={"Type": "post", "Parent": reply1.headers["Id"]}
        )
        self.assertEqual(
            conn.ask("GET", argument=reply2.headers["Id"]).headers["Top"],
            top.headers["Id"],
        )
        forged = conn.ask(
            "PUT",
            headers={
                "Type": "post",
                "Parent": top.headers["Id"],
                "Parent-Digest": "0" * 64,
            },
        )
        self.assertEqual(forged.code, 554)

    def test_delete(self) -> None:
        conn = self.logged_in()
        object_id = conn.ask("PUT", headers={"Type": "post", "Public": "yes"}).headers[
            "Id"
        ]
        lost = self.logged_in(LOST)
        refused = lost.ask("DELETE", argument=object_id)
        self.assertEqual(
            (refused.code, refused.argument),
            (554, "you may only delete your own objects"),
        )
        refused = conn.ask("DELETE", argument=EDGAR)
        self.assertEqual(
            (refused.code, refused.argument),
            (554, "a user object is removed with its account"),
        )
        self.assertEqual(conn.ask("DELETE", argument=object_id).code, 200)
        self.assertEqual(conn.ask("DELETE", argument=object_id).code, 550)
        self.assertEqual(conn.ask("DELETE").code, 501)

    def test_list_pages_public_objects(self) -> None:
        conn = self.logged_in()
        ids = [
            conn.ask("PUT", str(i), headers={"Type": "post", "Public": "yes"}).headers[
                "Id"
            ]
            for i in range(5)
        ]
        conn.ask("PUT", headers={"Type": "post"})
        first = self.conn.ask("LIST", headers={"Limit": "3"})
        self.assertEqual(first.code, 200)
        lines = first.body.decode().splitlines()
        self.assertEqual([line.split()[0] for line in lines], ids[:3])
        self.assertEqual(first.headers["Next-Start"], "3")
        rest = self.conn.ask("LIST", headers={"Start": "3", "Limit": "3"})
        self.assertEqual(
            [line.split()[0] for line in rest.body.decode().splitlines()], ids[3:]
        )
        self.assertNotIn("Next-Start", rest.headers)
        mine = conn.ask("LIST", headers={"Owner": EDGAR, "Type": "post"})
        self.assertEqual(mine.headers["Count"], "6")
        self.assertEqual(
            self.conn.ask("LIST", headers={"Owner": EDGAR}).headers["Count"], "5"
        )
        self.assertEqual(self.conn.ask("LIST", headers={"Limit": "-1"}).code, 501)
        self.assertEqual(self.conn.ask("LIST", headers={"Start": "²"}).code, 501)
        self.assertEqual(self.conn.ask("LIST", headers={"Limit": "100000"}).code, 501)

    def test_list_limits_and_owner(self) -> None:
        """
        Limit runs from 1 to 200 inclusive; a page that ends exactly at the
        last object has no Next-Start; Owner lists only that owner's public
        objects.
        """
        edgar, lost = self.logged_in(), self.logged_in(LOST)
        ids = [
            edgar.ask("PUT", headers={"Type": "post", "Public": "yes"}).headers["Id"]
            for _ in range(3)
        ]
        whole = self.conn.ask("LIST", headers={"Limit": "3"})
        self.assertEqual(whole.headers["Count"], "3")
        self.assertNotIn("Next-Start", whole.headers)
        self.assertEqual(self.conn.ask("LIST", headers={"Limit": "200"}).code, 200)
        for limit in ("0", "201"):
            refused = self.conn.ask("LIST", headers={"Limit": limit})
            self.assertEqual(refused.code, 501)
            self.assertEqual(refused.argument, "Start must be >= 0 and Limit 1 to 200")
        lost.ask("PUT", headers={"Type": "post", "Public": "yes"})
        edgars = self.conn.ask("LIST", headers={"Owner": EDGAR})
        self.assertEqual(
            [line.split()[0] for line in edgars.body.decode().splitlines()], ids
        )

    def test_pipelined_requests_echo_their_tags(self) -> None:
        self.conn.send_bytes(
            b"CAPA a\r\n\r\nGET b nobody@poe.net\r\n\r\nNOPE c\r\n\r\n"
        )
        answers = {f.tag: f.code for f in self.conn.frames()}
        self.assertEqual(answers, {"a": 200, "b": 550, "c": 502})

    def test_quit(self) -> None:
        answer = self.conn.ask("QUIT", "q")
        self.assertEqual((answer.code, answer.tag), (221, "q"))
        self.assertTrue(self.conn.transport.disconnecting)

    def test_logout(self) -> None:
        conn = self.logged_in()
        self.assertEqual(conn.ask("LOGOUT").code, 200)
        self.assertEqual(conn.ask("PUT", headers={"Type": "post"}).code, 530)
        self.assertEqual(len(self.services.router), 0)


class BadInputTests(SynchronousTestCase):
    """
    Each kind of bad input gets its reply and a log line, and the
    connection survives wherever the frame boundary is still known.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.services = make_services(
            self.clock, limits=Limits(max_line=256, max_body=1024)
        )
        self.conn = StreamHarness(self.services)
        self.logged: list[dict] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def assertSurvives(self) -> None:
        self.assertFalse(self.conn.transport.disconnecting)
        self.assertEqual(self.conn.ask("CAPA", "after").code, 200)

    def assertLogged(self, code: int) -> None:
        self.assertTrue(
            any(event.get("code") == str(code) for event in self.logged),
            f"no log line for {code}",
        )

    def test_malformed_command_line(self) -> None:
        self.conn.send_bytes(b"GET\r\n\r\n")
        [answer] = self.conn.frames()
        self.assertEqual(answer.code, 500)
        self.assertLogged(500)
        self.assertSurvives()

    def test_unknown_command(self) -> None:
        self.assertEqual(self.conn.ask("FROB", "f").code, 502)
        self.assertLogged(502)
        self.assertSurvives()

    def test_duplicate_header(self) -> None:
        self.conn.send_bytes(b"LIST d\r\nLimit: 1\r\nlimit: 2\r\n\r\n")
        [answer] = self.conn.frames()
        self.assertEqual((answer.code, answer.tag), (501, "d"))
        self.assertSurvives()

    def test_bad_utf8(self) -> None:
        self.conn.send_bytes(b"LIST u\r\nType: \xff\xfe\r\n\r\n")
        [answer] = self.conn.frames()
        self.assertEqual(answer.code, 501)
        self.assertSurvives()

    def test_reply_instead_of_request(self) -> None:
        self.conn.send_bytes(b"200 r ok\r\n\r\n")
        [answer] = self.conn.frames()
        self.assertEqual(answer.code, 500)
        self.assertSurvives()

    def test_oversized_line_closes(self) -> None:
        self.conn.send_bytes(b"GET x " + b"a" * 300)
        [answer] = self.conn.frames()
        self.assertEqual(answer.code, 552)
        self.assertTrue(self.conn.transport.disconnecting)
        self.assertLogged(552)

    def test_oversized_body_closes(self) -> None:
        self.conn.send_bytes(b"PUT b\r\nType: post\r\nLength: 5000\r\n\r\n")
        [answer] = self.conn.frames()
        self.assertEqual(answer.code, 552)
        self.assertTrue(self.conn.transport.disconnecting)

    def test_length_that_lies_times_out(self) -> None:
        self.conn.send_bytes(b"PUT l\r\nType: post\r\nLength: 100\r\n\r\nshort")
        self.assertEqual(self.conn.frames(), [])
        self.clock.advance(self.services.frame_timeout)
        [answer] = self.conn.frames()
        self.assertEqual(answer.code, 420)
        self.assertTrue(self.conn.transport.disconnecting)

    def test_idle_connection_closes(self) -> None:
        self.clock.advance(self.services.idle_timeout - 1)
        self.assertFalse(self.conn.transport.disconnecting)
        self.conn.ask("CAPA")
        self.clock.advance(self.services.idle_timeout - 1)
        self.assertFalse(self.conn.transport.disconnecting)
        self.clock.advance(1)
        [answer] = self.conn.frames()
        self.assertEqual(answer.code, 421)
        self.assertTrue(self.conn.transport.disconnecting)

    def test_too_many_requests_in_flight_pauses_reading(self) -> None:
        from twisted.internet.defer import Deferred

        waiting: list[Deferred] = []

        async def slow(frame, client):
            d = Deferred()
            waiting.append(d)
            return await d

        self.conn.protocol.handler.groups[0].commands["SLOW"] = slow
        limit = FrameStreamProtocol.max_in_flight
        self.conn.send_bytes(b"".join(b"SLOW %d\r\n\r\n" % i for i in range(limit)))
        self.assertEqual(self.conn.transport.producerState, "paused")
        from fmtp.wire import reply

        for i, d in enumerate(waiting):
            d.callback(reply(200, str(i)))
        self.assertEqual(self.conn.transport.producerState, "producing")
        self.assertEqual(len(self.conn.frames()), limit)

    def test_store_failure_is_temporary(self) -> None:
        from twisted.internet.defer import fail

        from fmtp.errors import StoreUnavailable

        self.services.store.read_object = lambda *args: fail(StoreUnavailable())
        self.assertEqual(self.conn.ask("GET", argument="edgar@poe.net").code, 451)
        self.assertSurvives()

    def test_unexpected_error_is_temporary_and_logged(self) -> None:
        async def broken(frame, client):
            raise RuntimeError("bug")

        self.conn.protocol.handler.groups[0].commands["BROKEN"] = broken
        self.assertEqual(self.conn.ask("BROKEN").code, 451)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertSurvives()
