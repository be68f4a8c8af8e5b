"""
L{fmtp.fairness}: the store's calls take turns by principal, so one
flooding client cannot starve the others.  Unit tests of the queue and the
scheduler, the principal carried by each request, and a count-based test
over real sockets.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.trial.unittest import SynchronousTestCase

from fmtp.fairness import FairQueue, FairScheduler, current_principal
from fmtp.protocols.framing import Client
from fmtp.store.sqlite import SQLiteStore
from fmtp.wire import reply
from tests.helpers import StreamHarness, add_account, make_services
from tests.test_integration import EDGAR, PASSWORD, RunningServer


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


class FairSchedulerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.started: list[tuple[str, Deferred]] = []
        self.scheduler = FairScheduler(self.start, window=2)

    def start(self, f, name: str) -> Deferred:
        """
        Stands for the thread pool: C{f} would run there; the test says
        when it is done.
        """
        d: Deferred = Deferred()
        self.started.append((name, d))
        return d

    def finish(self, result: object = None) -> None:
        name, d = self.started.pop(0)
        d.callback(result if result is not None else name)

    def names(self) -> list[str]:
        return [name for name, _ in self.started]

    def test_window_and_turns(self) -> None:
        results = [self.scheduler.run("flooder", str, f"f{i}") for i in range(5)]
        mine = self.scheduler.run("victim", str, "v")
        self.assertEqual(self.names(), ["f0", "f1"])
        self.assertEqual(len(self.scheduler), 4)
        self.finish()
        self.assertEqual(self.names(), ["f1", "f2"])
        self.finish()
        self.assertEqual(self.names(), ["f2", "v"])
        self.finish()
        self.finish()
        self.assertEqual(self.successResultOf(mine), "v")
        self.assertEqual(self.successResultOf(results[0]), "f0")
        while self.started:
            self.finish()
        self.assertEqual([self.successResultOf(d) for d in results][-1], "f4")

    def test_failures_reach_their_caller(self) -> None:
        d = self.scheduler.run(None, str, "x")
        _, started = self.started.pop()
        started.errback(ZeroDivisionError())
        self.failureResultOf(d, ZeroDivisionError)

    def test_a_synchronous_start(self) -> None:
        scheduler = FairScheduler(lambda f, *a: succeed(f(*a)))
        self.assertEqual(self.successResultOf(scheduler.run("p", pow, 2, 10)), 1024)
        self.successResultOf(scheduler.when_idle())

    def test_when_idle_and_flush(self) -> None:
        for i in range(4):
            self.scheduler.run("p", str, f"c{i}")
        idle = self.scheduler.when_idle()
        self.scheduler.flush()
        self.assertEqual(self.names(), ["c0", "c1", "c2", "c3"])
        for _ in range(3):
            self.finish()
        self.assertNoResult(idle)
        self.finish()
        self.successResultOf(idle)


class PrincipalTests(SynchronousTestCase):
    """
    Each request runs with its client's principal; nothing else does.
    """

    def test_principals(self) -> None:
        client = Client(host="192.0.2.1")
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

        conn.protocol.handler.commands["WHOAMI"] = whoami
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
