"""
Unit tests of the messaging and server-link commands over StringTransport:
SEND, push to live sessions, FETCH, held senders, HELLO, DELIVER, CONFIRM.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from fmtp.federation.hello import make_hello
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.objects import FMTPObject, new_object_id, user_object
from tests.helpers import StreamHarness, add_account, make_services

EDGAR = "edgar@poe.net"
ANNABEL = "annabel@poe.net"
LOST = "lost@lenore.org"
PASSWORD = "nevermore-quoth"


class LocalMessagingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1_800_000_000)
        self.services = make_services(self.clock)
        self.store = self.services.store
        for address in (EDGAR, ANNABEL):
            add_account(self.store, address, PASSWORD)

    def logged_in(self, address: str) -> StreamHarness:
        conn = StreamHarness(self.services)
        self.assertEqual(conn.login(address, PASSWORD).code, 230)
        return conn

    def test_send_to_a_live_local_user(self) -> None:
        edgar, annabel = self.logged_in(EDGAR), self.logged_in(ANNABEL)
        sent = edgar.ask(
            "SEND", headers={"To": "Annabel@POE.net", "Subject": "Hi"}, body=b"x"
        )
        self.assertEqual(sent.code, 201)
        self.assertEqual(sent.body, b"annabel@poe.net 201 delivered\r\n")
        [pushed] = annabel.frames()
        self.assertEqual((pushed.code, pushed.tag), (250, "*"))
        self.assertEqual(pushed.headers["Id"], sent.headers["Id"])
        self.assertEqual(pushed.headers["From"], EDGAR)
        self.assertIn("Signature", pushed.headers)
        self.assertEqual(pushed.body, b"x")

    def test_fetch_and_get_by_recipient(self) -> None:
        edgar = self.logged_in(EDGAR)
        ids = [
            edgar.ask("SEND", str(i), headers={"To": ANNABEL}, body=b"%d" % i).headers[
                "Id"
            ]
            for i in range(3)
        ]
        annabel = self.logged_in(ANNABEL)
        page = annabel.ask("FETCH", headers={"Limit": "2"})
        lines = page.body.decode().splitlines()
        self.assertEqual([line.split()[1] for line in lines], ids[:2])
        self.assertEqual(lines[0].split()[2], EDGAR)
        rest = annabel.ask("FETCH", headers={"Since": page.headers["Next-Since"]})
        self.assertEqual(
            [line.split()[1] for line in rest.body.decode().splitlines()], ids[2:]
        )
        self.assertEqual(annabel.ask("GET", argument=ids[0]).body, b"0")
        stranger = StreamHarness(self.services)
        self.assertEqual(stranger.ask("GET", argument=ids[0]).code, 550)

    def test_send_needs_login_and_recipients(self) -> None:
        self.assertEqual(StreamHarness(self.services).ask("SEND").code, 530)
        edgar = self.logged_in(EDGAR)
        self.assertEqual(edgar.ask("SEND", headers={}).code, 501)
        self.assertEqual(edgar.ask("SEND", headers={"To": "not an address"}).code, 553)
        forged = edgar.ask("SEND", headers={"To": ANNABEL, "From": LOST})
        self.assertEqual(
            (forged.code, forged.argument),
            (501, "From is set by the server: it is you"),
        )

    def test_remote_recipients_are_queued_before_2xx(self) -> None:
        edgar = self.logged_in(EDGAR)
        sent = edgar.ask("SEND", headers={"To": f"{LOST} {ANNABEL}"}, body=b"x")
        self.assertEqual(sent.code, 201)
        [queued] = self.successResultOf(self.store.queued_for("lenore.org"))
        self.assertEqual(
            (queued.object_id, queued.recipients), (sent.headers["Id"], (LOST,))
        )

    def test_send_answers_only_once_durable(self) -> None:
        """
        A 2xx promises the message is on disk: no reply while the store's
        write is in flight, and a temporary error, not a 201, if it fails.
        """
        from twisted.internet.defer import Deferred

        from fmtp.errors import StoreUnavailable

        writes: list[Deferred] = []
        send_message = self.store.send_message

        def slow_send_message(*args, **kwargs):
            d = Deferred()
            done = send_message(*args, **kwargs)
            writes.append(d)
            return d.addCallback(lambda _: done)

        # A message's writes are one store call.
        self.store.send_message = slow_send_message
        edgar = self.logged_in(EDGAR)
        self.assertEqual(edgar.send("SEND", headers={"To": ANNABEL}), [])
        writes.pop().callback(None)
        [sent] = edgar.frames()
        self.assertEqual(sent.code, 201)

        self.assertEqual(edgar.send("SEND", "2", headers={"To": ANNABEL}), [])
        writes.pop().errback(StoreUnavailable())
        [failed] = edgar.frames()
        self.assertEqual(failed.code, 451)

    def test_repeated_send_to_several_answers_alike(self) -> None:
        """
        A keyed SEND repeated answers with the results of the first, line
        for line, reasons with spaces included.
        """
        profile = self.successResultOf(self.store.get_object(ANNABEL))
        profile.properties["Policy"] = "confirm"
        self.store.put_object(profile)
        edgar = self.logged_in(EDGAR)
        headers = {"To": f"{ANNABEL} nobody@poe.net", "Idempotency-Key": "k2"}
        first = edgar.ask("SEND", headers=headers, body=b"x")
        self.assertEqual(
            first.body,
            f"{ANNABEL} 201 held until the recipient approves\r\n"
            "nobody@poe.net 550 no such user\r\n".encode(),
        )
        again = edgar.ask("SEND", headers=headers, body=b"x")
        self.assertEqual((again.code, again.body), (first.code, first.body))

    def test_repeat_finishes_a_send_stored_without_its_filing(self) -> None:
        """
        A keyed send that a store older than C{send_message} queued but
        never filed (the server stopped in between) is finished by the
        client's retry: each local recipient gets the message as their
        policy says, once, and the answer is recorded for later repeats.
        """
        from twisted.internet.defer import fail

        from fmtp.errors import StoreUnavailable

        ligeia, morella = "ligeia@poe.net", "morella@poe.net"
        for address, policy in (
            (ANNABEL, "confirm"),
            (ligeia, "confirm"),
            (morella, "reject"),
        ):
            if address != ANNABEL:
                add_account(self.store, address, PASSWORD)
            profile = self.successResultOf(self.store.get_object(address))
            profile.properties["Policy"] = policy
            self.successResultOf(self.store.put_object(profile))
        self.successResultOf(self.store.approve_sender(ANNABEL, EDGAR))

        def queue_only(obj, deliveries, send_key, local, choose):
            stored = self.store.enqueue(obj, deliveries, send_key)
            return stored.addCallback(lambda _: fail(StoreUnavailable()))

        send_message = self.store.send_message
        self.store.send_message = queue_only
        edgar, annabel = self.logged_in(EDGAR), self.logged_in(ANNABEL)
        headers = {
            "To": f"{ANNABEL} {ligeia} {morella} nobody@poe.net {LOST}",
            "Idempotency-Key": "k3",
        }
        self.assertEqual(edgar.ask("SEND", headers=headers, body=b"x").code, 451)
        self.assertEqual(annabel.frames(), [])

        self.store.send_message = send_message
        again = edgar.ask("SEND", headers=headers, body=b"x")
        self.assertEqual(
            (again.code, again.body),
            (
                201,
                f"{ANNABEL} 201 delivered\r\n"
                f"{ligeia} 201 held until the recipient approves\r\n"
                f"{morella} 554 refused by the recipient's policy\r\n"
                "nobody@poe.net 550 no such user\r\n".encode(),
            ),
        )
        [pushed] = annabel.frames()
        self.assertEqual(pushed.headers["Id"], again.headers["Id"])
        self.assertEqual(pushed.body, b"x")
        self.assertEqual(self.successResultOf(self.store.held_senders(ligeia)), [EDGAR])

        third = edgar.ask("SEND", headers=headers, body=b"x")
        self.assertEqual((third.code, third.body), (again.code, again.body))
        self.assertEqual(annabel.frames(), [])

    def test_send_sets_id_type_and_recipients(self) -> None:
        """
        The server names the message: a client's C{Id} is ignored, its
        C{Type} kept, its C{To} written in normal form; local recipients
        are not queued as if remote.
        """
        edgar, annabel = self.logged_in(EDGAR), self.logged_in(ANNABEL)
        sent = edgar.ask(
            "SEND",
            headers={
                "Id": f"1700000000000.ab.{EDGAR}",
                "Type": "post",
                "To": f"Annabel@POE.net, {ANNABEL} {LOST}",
            },
        )
        self.assertEqual(sent.code, 201)
        [pushed] = annabel.frames()
        self.assertEqual(pushed.headers["Id"], sent.headers["Id"])
        self.assertNotEqual(sent.headers["Id"], f"1700000000000.ab.{EDGAR}")
        self.assertEqual(pushed.headers["Type"], "post")
        self.assertEqual(pushed.headers["To"], f"{ANNABEL} {LOST}")
        stored = self.successResultOf(self.store.get_object(sent.headers["Id"]))
        self.assertNotIn("Id", stored.properties)
        self.assertNotIn("Type", stored.properties)
        self.assertEqual(stored.type, "post")
        self.assertEqual(self.successResultOf(self.store.queued_for("poe.net")), [])
        self.assertEqual(
            len(self.successResultOf(self.store.queued_for("lenore.org"))), 1
        )

    def test_send_recipient_bounds(self) -> None:
        edgar = self.logged_in(EDGAR)
        hundred = " ".join(f"u{n}@lenore.org" for n in range(100))
        self.assertEqual(edgar.ask("SEND", headers={"To": hundred}).code, 201)
        for to, code, text in [
            (f"{hundred} u100@lenore.org", 501, "at most 100 recipients"),
            (" , ", 501, "a message needs a To header"),
            (
                "nobody",
                553,
                "To: bad address 'nobody': expected user@domain",
            ),
        ]:
            answer = edgar.ask("SEND", headers={"To": to})
            self.assertEqual((answer.code, answer.argument), (code, text))

    def test_a_used_key_is_refused_for_another_message(self) -> None:
        """
        A key used before, sent again with another message, is refused as
        such, naming the message it was used for.
        """
        edgar = self.logged_in(EDGAR)
        first = edgar.ask("SEND", headers={"To": ANNABEL, "Idempotency-Key": "k"})
        again = edgar.ask("SEND", headers={"To": EDGAR, "Idempotency-Key": "k"})
        self.assertEqual(
            (again.code, again.argument),
            (
                554,
                "Idempotency-Key k was used for another message, "
                f"{first.headers['Id']}",
            ),
        )

    def test_delete_what_one_sent_oneself(self) -> None:
        edgar = self.logged_in(EDGAR)
        pushed, sent = edgar.send("SEND", headers={"To": EDGAR}, body=b"to self")
        self.assertEqual((pushed.code, sent.code), (250, 201))
        deleted = edgar.ask("DELETE", argument=sent.headers["Id"])
        self.assertEqual(
            (deleted.code, deleted.argument),
            (200, "removed from your inbox and deleted"),
        )

    def test_parent_digest_needs_a_parent(self) -> None:
        edgar = self.logged_in(EDGAR)
        digest = {"Parent-Digest": "0" * 64}
        self.assertEqual(edgar.ask("SEND", headers={"To": ANNABEL, **digest}).code, 501)
        self.assertEqual(edgar.ask("PUT", headers={"Type": "post", **digest}).code, 501)

    def test_reply_to_a_parent_one_cannot_read_must_name_its_digest(self) -> None:
        """
        A reply to a message held here that its sender may not read is
        refused unless it names that message's digest: a local recipient is
        never handed a broken link of a thread, with or without a claim.
        """
        annabel = self.logged_in(ANNABEL)
        pushed, note = annabel.send("SEND", headers={"To": ANNABEL}, body=b"private")
        self.assertEqual((pushed.code, note.code), (250, 201))
        parent = note.headers["Id"]
        edgar = self.logged_in(EDGAR)
        self.assertEqual(edgar.ask("GET", argument=parent).code, 550)
        refused = (554, f"Parent-Digest does not match {parent}")
        for claim in ({}, {"Parent-Digest": "0" * 64}):
            sent = edgar.ask("SEND", headers={"To": ANNABEL, "Parent": parent, **claim})
            self.assertEqual((sent.code, sent.argument), refused)
        self.assertEqual(annabel.frames(), [])
        linked = {"Parent": parent, "Parent-Digest": note.headers["Digest"].upper()}
        sent = edgar.ask("SEND", headers={"To": ANNABEL, **linked}, body=b"re")
        self.assertEqual(sent.code, 201)
        [pushed] = annabel.frames()
        self.assertEqual(pushed.headers["Parent"], parent)

    def test_held_and_approved(self) -> None:
        profile = user_object(ANNABEL)
        profile.properties["Policy"] = "confirm"
        self.store.put_object(profile)
        edgar = self.logged_in(EDGAR)
        sent = edgar.ask("SEND", headers={"To": ANNABEL}, body=b"first")
        self.assertIn(b"held", sent.body)
        annabel = self.logged_in(ANNABEL)
        self.assertEqual(annabel.ask("FETCH").headers["Count"], "0")
        held = annabel.ask("HELD")
        self.assertEqual(held.body, f"{EDGAR}\r\n".encode())
        self.assertEqual(
            annabel.ask("APPROVE", argument=EDGAR).headers["Released"], "1"
        )
        self.assertEqual(annabel.ask("FETCH").headers["Count"], "1")
        later = edgar.ask("SEND", headers={"To": ANNABEL}, body=b"second")
        self.assertIn(b"delivered", later.body)
        [pushed] = annabel.frames()
        self.assertEqual((pushed.code, pushed.body), (250, b"second"))
        self.assertEqual(annabel.ask("REFUSE", argument=EDGAR).headers["Dropped"], "0")


class ServerLinkTests(SynchronousTestCase):
    """
    The receiving side of the server link, as a peer server speaks it.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1_800_000_000)
        self.services = make_services(self.clock, domain="lenore.org")
        add_account(self.services.store, LOST, PASSWORD)
        self.poe = DomainSigner(generate_private_key(), "poe.net")
        self.services.keys.add_signer(self.poe)
        self.peer = StreamHarness(self.services, host="192.0.2.50")

    def hello(self) -> None:
        headers = make_hello(self.poe, "lenore.org", self.clock.seconds())
        answer = self.peer.ask("HELLO", headers=headers)
        self.assertEqual(answer.code, 200, answer)
        self.assertEqual(answer.headers["In-Reply-To"], headers["Nonce"])
        self.assertEqual(answer.headers["Domain"], "lenore.org")

    def message(self, to: str = LOST) -> FMTPObject:
        obj = FMTPObject(
            new_object_id(EDGAR, self.clock.seconds()),
            "message",
            {"From": EDGAR, "To": to},
            b"Nevermore",
        )
        return self.poe.sign_object(obj, self.clock.seconds())

    def test_deliver_needs_hello(self) -> None:
        obj = self.message()
        answer = self.peer.ask("DELIVER", argument=LOST, headers=obj.to_headers())
        self.assertEqual(answer.code, 530)

    def test_deliver_to_a_live_session(self) -> None:
        lost = StreamHarness(self.services)
        self.assertEqual(lost.login(LOST, PASSWORD).code, 230)
        self.hello()
        obj = self.message()
        answer = self.peer.ask(
            "DELIVER", argument=LOST, headers=obj.to_headers(), body=obj.body
        )
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.body, f"{LOST} 201 delivered\r\n".encode())
        [pushed] = lost.frames()
        self.assertEqual((pushed.code, pushed.headers["Id"]), (250, obj.id))
        again = self.peer.ask(
            "DELIVER", argument=LOST, headers=obj.to_headers(), body=obj.body
        )
        self.assertIn(b"already delivered", again.body)

    def test_deliver_refusals(self) -> None:
        self.hello()
        obj = self.message()
        tampered = self.peer.ask(
            "DELIVER", argument=LOST, headers=obj.to_headers(), body=b"x"
        )
        self.assertEqual(tampered.code, 554)
        relay = self.message(to="x@elsewhere.org")
        answer = self.peer.ask(
            "DELIVER", argument="x@elsewhere.org", headers=relay.to_headers()
        )
        self.assertEqual(answer.code, 554)
        self.assertIn("does not relay", answer.argument)
        self.assertEqual(self.peer.ask("DELIVER", headers=obj.to_headers()).code, 501)

    def relaying_for_poe(self, lookup=None) -> None:
        from fmtp.federation.node import FederationSettings, build_server_links

        services = self.services
        links, _ = build_server_links(
            services.domain,
            services.store,
            services.keys,
            services.signer,
            self.clock,
            lambda address, obj: None,
            settings=FederationSettings(relay_for=frozenset({"poe.net"})),
        )
        # A parent's lookups of other domains' users, as the test scripts
        # them.
        links.lookup = lookup
        self.services = make_services(
            self.clock,
            services.store,
            services.domain,
            keys=services.keys,
            signer=services.signer,
            links=links,
        )
        self.peer = StreamHarness(self.services, host="192.0.2.50")

    def test_child_delivery_is_split_between_relay_and_local(self) -> None:
        self.relaying_for_poe()
        self.hello()
        obj = self.message(to=f"{LOST} usher@usher.example")
        answer = self.peer.ask(
            "DELIVER",
            argument=f"usher@usher.example {LOST}",
            headers=obj.to_headers(),
            body=obj.body,
        )
        self.assertEqual(
            answer.body,
            b"usher@usher.example 201 queued for relay\r\n"
            + f"{LOST} 201 delivered\r\n".encode(),
        )
        [queued] = self.successResultOf(self.services.store.queued_for("usher.example"))
        self.assertEqual(
            (queued.object_id, queued.recipients), (obj.id, ("usher@usher.example",))
        )

    def test_child_relay_checks_the_message(self) -> None:
        """
        A parent relays only what the origin's signature proves, for
        recipients the message names: never a tampered message, and never
        one replayed to recipients of the child's choosing.
        """
        self.relaying_for_poe()
        self.hello()
        obj = self.message(to="usher@usher.example")
        tampered = self.peer.ask(
            "DELIVER",
            argument="usher@usher.example",
            headers=obj.to_headers(),
            body=b"tampered",
        )
        self.assertEqual(tampered.code, 554)
        replayed = self.peer.ask(
            "DELIVER",
            argument="other@usher.example",
            headers=obj.to_headers(),
            body=obj.body,
        )
        self.assertEqual(replayed.code, 554)
        self.assertIn("not a recipient", replayed.argument)
        self.assertEqual(
            self.successResultOf(self.services.store.queued_for("usher.example")), []
        )

    def test_relayed_message_is_not_confirmed(self) -> None:
        """
        A parent queued its child's message for usher.example, but did
        not send it: asked by usher.example, it does not vouch for it (only
        the child's domain can).
        """
        self.relaying_for_poe()
        self.hello()
        obj = self.message(to="usher@usher.example")
        relayed = self.peer.ask(
            "DELIVER",
            argument="usher@usher.example",
            headers=obj.to_headers(),
            body=obj.body,
        )
        self.assertEqual(relayed.code, 200)
        usher = DomainSigner(generate_private_key(), "usher.example")
        self.services.keys.add_signer(usher)
        asker = StreamHarness(self.services, host="192.0.2.51")
        hello = make_hello(usher, "lenore.org", self.clock.seconds())
        self.assertEqual(asker.ask("HELLO", headers=hello).code, 200)
        answer = asker.ask("CONFIRM", argument=obj.id, headers={"Digest": obj.digest()})
        self.assertEqual(answer.code, 550)

    def test_parent_looks_up_for_children_only(self) -> None:
        usher = user_object("usher@usher.example")
        asked = []

        async def lookup(address, cache_only):
            asked.append((address, cache_only))
            return usher if address == usher.id and not cache_only else None

        self.relaying_for_poe(lookup)
        stranger = StreamHarness(self.services)
        self.assertEqual(stranger.ask("GET", argument=usher.id).code, 550)
        self.assertEqual(asked, [])

        self.hello()
        cached = self.peer.ask("GET", argument=usher.id, headers={"Cache-Only": "yes"})
        self.assertEqual(cached.code, 550)
        found = self.peer.ask("GET", argument=usher.id)
        self.assertEqual((found.code, found.headers["Id"]), (200, usher.id))
        self.assertEqual(asked, [(usher.id, True), (usher.id, False)])
        # Its own users are served as to anyone.
        self.assertEqual(self.peer.ask("GET", argument=LOST).code, 200)

    def test_hello_refusals(self) -> None:
        spoofer = DomainSigner(generate_private_key(), "poe.net")
        answer = self.peer.ask(
            "HELLO", headers=make_hello(spoofer, "lenore.org", self.clock.seconds())
        )
        self.assertEqual(answer.code, 554)
        self.hello()
        again = self.peer.ask(
            "HELLO", headers=make_hello(self.poe, "lenore.org", self.clock.seconds())
        )
        self.assertEqual(again.code, 503)

    def confirm(self, conn: StreamHarness, sent) -> int:
        return conn.ask(
            "CONFIRM",
            argument=sent.headers["Id"],
            headers={"Digest": sent.headers["Digest"]},
        ).code

    def test_confirm(self) -> None:
        lost = StreamHarness(self.services)
        lost.login(LOST, PASSWORD)
        sent = lost.ask("SEND", headers={"To": EDGAR}, body=b"hi")
        # Only a server that said who it is may ask.
        self.assertEqual(self.confirm(StreamHarness(self.services), sent), 530)
        self.hello()
        self.assertEqual(self.confirm(self.peer, sent), 200)
        no = self.peer.ask(
            "CONFIRM", argument=sent.headers["Id"], headers={"Digest": "0" * 64}
        )
        self.assertEqual(no.code, 550)
        self.assertEqual(
            self.peer.ask("CONFIRM", argument=sent.headers["Id"]).code, 501
        )

    def test_confirm_vouches_only_for_what_was_sent_to_the_asker(self) -> None:
        """
        The countersign is no oracle for whatever a user stored: a message
        a user PUT (never sent), or sent to another domain, is not
        confirmed.
        """
        lost = StreamHarness(self.services)
        lost.login(LOST, PASSWORD)
        stored = lost.ask(
            "PUT", headers={"Type": "message", "From": LOST, "To": EDGAR}, body=b"x"
        )
        self.assertEqual(stored.code, 201)
        elsewhere = lost.ask("SEND", headers={"To": "usher@usher.example"}, body=b"y")
        self.hello()
        self.assertEqual(self.confirm(self.peer, stored), 550)
        self.assertEqual(self.confirm(self.peer, elsewhere), 550)
