"""
L{fmtp.fairness}: the store's calls take turns by principal, so one
flooding client cannot starve the others.  Unit tests of the queue and the
scheduler, the principal carried by each request, and a count-based test
over real sockets.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import SynchronousTestCase

from fmtp.fairness import FairQueue, FairScheduler, current_principal
from fmtp.framing.session import Session
from fmtp.store.sqlite import SQLiteStore
from fmtp.wire import reply
from tests.helpers import StreamHarness, add_account, make_services
from tests.integration.test_server import EDGAR, PASSWORD, RunningServer


class FairQueueTests(SynchronousTestCase):
    def test_turns_across_principals_order_within_each(self) -> None:
        queue: FairQueue[str] = FairQueue()
        for i in range(4):
            queue.put("flooder", f"f{i}")
        queue.put("victim", "v0")
        queue.put("victim", "v1")
        queue.put(None, "q0")
        self.assertEqual((len(queue), queue.principals()), (7, 3))
        taken = [queue.take() for _ in range(len(queue))]
        self.assertEqual(taken, ["f0", "v0", "q0", "f1", "v1", "f2", "f3"])
        self.assertEqual(queue.principals(), 0)

    def test_a_newcomer_waits_one_turn_of_each_other(self) -> None:
        queue: FairQueue[str] = FairQueue()
        for i in range(100):
            queue.put("a", f"a{i}")
            queue.put("b", f"b{i}")
        self.assertEqual(queue.take(), "a0")
        queue.put("c", "c0")
        self.assertEqual([queue.take() for _ in range(3)], ["b0", "a1", "c0"])

    def test_empty(self) -> None:
        with self.assertRaises(IndexError):
            FairQueue().take()


class FakeThread:
    """
    Stands for the worker thread and the reactor: the test says when each
    runs what it was given.
    """

    def __init__(self) -> None:
        self.work: list = []
        self.delivered: list = []

    def in_thread(self, work) -> None:
        self.work.append(work)

    def from_thread(self, f, *args) -> None:
        self.delivered.append((f, args))

    def run_thread(self) -> None:
        while self.work:
            self.work.pop(0)()

    def run_reactor(self) -> None:
        while self.delivered:
            f, args = self.delivered.pop(0)
            f(*args)


class FairSchedulerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.thread = FakeThread()
        self.scheduler = FairScheduler(self.thread.in_thread, self.thread.from_thread)
        self.ran: list[str] = []

    def call(self, principal: str, name: str) -> Deferred:
        def record() -> str:
            self.ran.append(name)
            return name

        return self.scheduler.run(principal, record)

    def test_the_thread_takes_calls_in_turn(self) -> None:
        flood = [self.call("flooder", f"f{i}") for i in range(4)]
        mine = self.call("victim", "v")
        self.assertEqual(len(self.scheduler), 5)
        self.assertEqual(len(self.thread.work), 1)
        self.thread.run_thread()
        self.assertEqual(self.ran, ["f0", "v", "f1", "f2", "f3"])
        self.assertNoResult(mine)
        self.thread.run_reactor()
        self.assertEqual(self.successResultOf(mine), "v")
        self.assertEqual([self.successResultOf(d) for d in flood][-1], "f3")

    def test_calls_made_while_it_works_take_their_turn(self) -> None:
        def first() -> None:
            self.ran.append("f0")
            self.call("victim", "v")
            self.call("flooder", "f2")

        self.scheduler.run("flooder", first)
        self.call("flooder", "f1")
        self.thread.run_thread()
        # The victim arrived while f1 waited: it goes after f1, not after f2.
        self.assertEqual(self.ran, ["f0", "f1", "v", "f2"])
        self.assertEqual(len(self.thread.work), 0)
        self.call("victim", "later")
        self.assertEqual(len(self.thread.work), 1)

    def test_failures_reach_their_caller(self) -> None:
        d = self.scheduler.run(None, lambda: 1 / 0)
        self.thread.run_thread()
        self.thread.run_reactor()
        self.failureResultOf(d, ZeroDivisionError)

    def test_when_idle(self) -> None:
        d = self.call("p", "a")
        idle = self.scheduler.when_idle()
        self.thread.run_thread()
        self.assertNoResult(idle)
        self.thread.run_reactor()
        self.successResultOf(d)
        self.successResultOf(idle)
        idle = self.scheduler.when_idle()
        self.thread.run_reactor()
        self.successResultOf(idle)


class PrincipalTests(SynchronousTestCase):
    """
    Each request runs with its client's principal; nothing else does.
    """

    def test_principals(self) -> None:
        client = Session(host="192.0.2.1")
        self.assertEqual(client.principal, ("host", "192.0.2.1"))
        client.peer_domain = "lenore.org"
        self.assertEqual(client.principal, ("host", "192.0.2.1"))
        client.peer_verified = True
        self.assertEqual(client.principal, ("domain", "lenore.org"))
        client.address = "edgar@poe.net"
        self.assertEqual(client.principal, ("user", "edgar@poe.net"))

    def test_set_inside_each_request(self) -> None:
        services = make_services()
        add_account(services.store, "edgar@poe.net", "a long password")
        conn = StreamHarness(services)
        seen = []

        async def whoami(frame, client):
            seen.append(current_principal.get())
            return reply(200, frame.tag)

        conn.protocol.handler.groups[0].commands["WHOAMI"] = whoami
        conn.ask("WHOAMI")
        conn.login("edgar@poe.net", "a long password")
        conn.ask("WHOAMI")
        self.assertEqual(seen, [("host", "192.0.2.1"), ("user", "edgar@poe.net")])
        self.assertIsNone(current_principal.get())


@pytest_twisted.ensureDeferred
async def test_store_keeps_each_principals_order(tmp_path) -> None:
    """
    A principal's calls run in the order made, whatever others do: a read
    after a write sees it.
    """
    store = SQLiteStore(tmp_path / "x.sqlite", reactor)
    await store.open()
    seen = []

    def note(conn, who, i):
        seen.append((who, i))

    def call(who, i):
        token = current_principal.set(who)
        try:
            return store.run_interaction(note, who, i)
        finally:
            current_principal.reset(token)

    try:
        await gatherResults([call(who, i) for i in range(20) for who in "ab"])
    finally:
        await store.close()
    for who in "ab":
        assert [i for w, i in seen if w == who] == list(range(20))


@pytest_twisted.ensureDeferred
async def test_a_flooders_calls_do_not_go_before_others(tmp_path) -> None:
    """
    edgar floods on eight connections, 100 PUTs each, up to 256 of them
    in progress; lost's one GET, sent after, is answered before most of
    edgar's PUTs: it waits its turn, not behind the flood.
    """
    server = await RunningServer(tmp_path).start()
    lost_address = "lost@poe.net"
    await server.add_account(EDGAR, PASSWORD)
    await server.add_account(lost_address, PASSWORD)
    flooders = [await server.login() for _ in range(8)]
    lost = await server.login(lost_address, PASSWORD)
    answered = 0
    first: Deferred = Deferred()

    def count(answer):
        nonlocal answered
        answered += 1
        if not first.called:
            first.callback(None)
        return answer

    puts = [
        flooder.request("PUT", headers={"Type": "post"}, body=b"flood").addCallback(
            count
        )
        for flooder in flooders
        for _ in range(100)
    ]
    try:
        await first.addTimeout(30, reactor)
        reply = await lost.request("GET", EDGAR).addTimeout(30, reactor)
        before = answered
        assert reply.code == 200
        assert before < 100, before
        assert {a.code for a in await gatherResults(puts)} == {201}
    finally:
        for connection in [*flooders, lost]:
            connection.transport.loseConnection()
            await connection.closed.addTimeout(30, reactor)
        await server.stop()
