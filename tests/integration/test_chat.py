"""
The chat protocol end to end, on real sockets: a server on loopback port
0 with SQLite, users who create, join, say and page through history
whose chain and signatures they verify, and an entered session that
reconnects with C{Since} and misses nothing, twice nothing.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred

from fmtp.client import FrameClientProtocol, connect
from fmtp.protocols.chat.lines import entry_of_frame
from fmtp.store.rooms import verify_chain
from fmtp.wire import FrameParser, Limits
from tests.helpers import within
from tests.integration.test_server import EDGAR, PASSWORD, RunningServer

ANNABEL = "annabel@poe.net"
MALLORY = "mallory@poe.net"
LOUNGE = "lounge@poe.net"
#: The pushes of the chat protocol a client queues.
CHAT_PUSHES = frozenset({256, 257, 258, 259})


@pytest.fixture
def server(tmp_path):
    running = RunningServer(tmp_path)
    pytest_twisted.blockon(ensureDeferred(running.start()))
    for address in (EDGAR, ANNABEL, MALLORY):
        pytest_twisted.blockon(ensureDeferred(running.add_account(address, PASSWORD)))
    yield running
    pytest_twisted.blockon(running.stop())


async def chat_session(server: RunningServer, address: str) -> FrameClientProtocol:
    client = await within(connect(reactor, server.chat_tcp, timeout=5.0))
    client.push_codes = CHAT_PUSHES
    answer = await ask(
        client, "LOGIN", headers={"Address": address, "Password": PASSWORD}
    )
    assert answer.code == 230, answer
    return client


async def ask(client, verb, argument="", headers=None, body=b""):
    return await within(client.request(verb, argument, headers, body))


async def close(*clients) -> None:
    for client in clients:
        client.transport.loseConnection()
        await within(client.closed)


async def next_push(client):
    return await within(client.pushes.get())


def entries_of(body: bytes):
    return [entry_of_frame(f)[1] for f in FrameParser(Limits()).feed(body)]


@pytest_twisted.ensureDeferred
async def test_two_users_talk_and_verify_the_history(server) -> None:
    edgar = await chat_session(server, EDGAR)
    annabel = await chat_session(server, ANNABEL)
    try:
        capa = await ask(edgar, "CAPA")
        assert capa.headers["Protocol"] == "chat"
        made = await ask(edgar, "CREATE", LOUNGE, {"Name": "Lounge", "Public": "yes"})
        assert made.code == 201, made
        assert (await ask(annabel, "LIST")).body == b"lounge@poe.net Lounge\r\n"
        assert (await ask(annabel, "JOIN", LOUNGE)).code == 200
        for n in range(5):
            who = edgar if n % 2 else annabel
            said = await ask(who, "SAY", LOUNGE, body=f"line {n}".encode())
            assert said.headers["Seq"] == str(n + 1)
        assert (await ask(annabel, "RETRACT", LOUNGE, {"Seq": "1"})).code == 201
        first = await ask(edgar, "HISTORY", LOUNGE, {"Limit": "4"})
        rest = await ask(
            edgar, "HISTORY", LOUNGE, {"Since": first.headers["Next-Since"]}
        )
        entries = entries_of(first.body) + entries_of(rest.body)
        assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
        verify_chain(entries)
        for entry in entries[1:]:
            await within(server.services.keys.verify_object(entry.obj))
        assert entries[0].obj is None and entries[0].retracted_by == 6
        assert entries[5].obj.properties["Retracts"] == "1"
        who = await ask(annabel, "WHO", LOUNGE)
        assert who.body == b"annabel@poe.net member -\r\nedgar@poe.net owner -\r\n"
        assert (await ask(annabel, "MYROOMS")).body == b"lounge@poe.net\r\n"
    finally:
        await close(edgar, annabel)


@pytest_twisted.ensureDeferred
async def test_entered_session_reconnects_without_gap_or_duplicate(server) -> None:
    edgar = await chat_session(server, EDGAR)
    annabel = await chat_session(server, ANNABEL)
    try:
        await ask(edgar, "CREATE", LOUNGE)
        await ask(annabel, "JOIN", LOUNGE)
        await ask(edgar, "SAY", LOUNGE, body=b"before")
        entered = await ask(annabel, "ENTER", LOUNGE, {"Since": "0"})
        assert entered.headers["Seq"] == "1"
        seen = [(await next_push(annabel)).headers["Seq"]]
        await ask(edgar, "SAY", LOUNGE, body=b"live")
        seen.append((await next_push(annabel)).headers["Seq"])
        await close(annabel)
        for n in range(3):
            await ask(edgar, "SAY", LOUNGE, body=b"missed %d" % n)
        annabel = await chat_session(server, ANNABEL)
        entering = annabel.request("ENTER", LOUNGE, {"Since": seen[-1]})
        # Lines said while it catches up come once, after the catch-up.
        said = [edgar.request("SAY", LOUNGE, body=b"racing %d" % n) for n in range(5)]
        assert (await within(entering)).code == 200
        for d in said:
            assert (await within(d)).code == 201
        while len(seen) < 10:
            push = await next_push(annabel)
            assert push.code == 256
            seen.append(push.headers["Seq"])
        assert seen == [str(n) for n in range(1, 11)]
        await ask(edgar, "SAY", LOUNGE, body=b"last")
        assert (await next_push(annabel)).headers["Seq"] == "11"
        assert annabel.pushes.pending == []
    finally:
        await close(edgar, annabel)


@pytest_twisted.ensureDeferred
async def test_kicked_member_is_cut_off_and_others_keep_talking(server) -> None:
    edgar = await chat_session(server, EDGAR)
    mallory = await chat_session(server, MALLORY)
    try:
        await ask(edgar, "CREATE", LOUNGE, {"Moderated": "yes"})
        await ask(mallory, "JOIN", LOUNGE)
        assert (await ask(mallory, "SAY", LOUNGE, body=b"noise")).code == 554
        await ask(mallory, "ENTER", LOUNGE)
        kicked = await ask(edgar, "KICK", LOUNGE, {"Address": MALLORY, "Reason": "x"})
        assert kicked.code == 200
        assert (await next_push(mallory)).code == 257
        assert (await next_push(mallory)).code == 259
        mallory.transport.write(b"SAY 9 " + b"x" * 10000 + b"\r\n\r\n")
        assert (await ask(edgar, "SAY", LOUNGE, body=b"still here")).code == 201
        assert (await ask(edgar, "HISTORY", LOUNGE)).headers["Count"] == "1"
    finally:
        await close(edgar, mallory)


@pytest_twisted.ensureDeferred
async def test_pipelined_lines_are_all_stored_in_one_chain(server) -> None:
    """
    Lines said faster than the store answers, by two posters at once, are
    linked to each other before they are stored (and stored together):
    every one is answered, numbered in order, pushed once, and the chain
    verifies.  (Two hundred of them: waiting on each other, a stack of
    callbacks would once grow with each.)
    """
    from twisted.internet.defer import gatherResults

    edgar = await chat_session(server, EDGAR)
    annabel = await chat_session(server, ANNABEL)
    mallory = await chat_session(server, MALLORY)
    try:
        await ask(edgar, "CREATE", LOUNGE, {"Public": "yes"})
        await ask(annabel, "JOIN", LOUNGE)
        await ask(mallory, "JOIN", LOUNGE)
        # Owner and moderator: no line rate of their own.
        promoted = await ask(
            edgar, "ROLE", LOUNGE, {"Address": ANNABEL, "Role": "moderator"}
        )
        assert promoted.code == 200, promoted
        assert (await ask(mallory, "ENTER", LOUNGE)).code == 200
        count = 200
        said = await within(
            gatherResults(
                [
                    (edgar if n % 2 else annabel).request(
                        "SAY", LOUNGE, None, f"line {n}".encode()
                    )
                    for n in range(count)
                ]
            ),
            60.0,
        )
        assert [s.code for s in said] == [201] * count
        assert sorted(int(s.headers["Seq"]) for s in said) == list(range(1, count + 1))
        pushed = [await next_push(mallory) for _ in range(count)]
        assert [int(p.headers["Seq"]) for p in pushed] == list(range(1, count + 1))
        entries = []
        since = "0"
        while len(entries) < count:
            page = await ask(mallory, "HISTORY", LOUNGE, {"Since": since})
            entries += entries_of(page.body)
            since = page.headers.get("Next-Since", str(entries[-1].seq))
        assert [e.seq for e in entries] == list(range(1, count + 1))
        verify_chain(entries)
    finally:
        await close(edgar, annabel, mallory)
