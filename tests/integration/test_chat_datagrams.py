"""
Light chat clients end to end, on real sockets (doc/protocol.md 10.10): a
server on loopback TCP and UDP port 0 with SQLite; Annabel logs in over
TCP, LISTENs and SAYs over UDP, receives Edgar's lines as datagrams, sees
the gap a lost datagram leaves and fills it with HISTORY over TCP; her
session's end ends what it can do over UDP.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred

from fmtp.auth.router import session_id
from fmtp.client import ChatDatagramClient, connect
from fmtp.protocols.chat.lines import entry_of_frame
from fmtp.store.rooms import verify_chain
from tests.helpers import within
from tests.integration.test_chat import (
    ANNABEL,
    CHAT_PUSHES,
    LOUNGE,
    ask,
    close,
    entries_of,
)
from tests.integration.test_server import EDGAR, PASSWORD, RunningServer

LISTENERS = ["tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"]


class LossyClient(ChatDatagramClient):
    """
    A light client on a network that loses the datagrams C{lose} names
    (by the room Seq they carry), once each.
    """

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.lose: set[int] = set()

    def datagramReceived(self, data: bytes, addr) -> None:
        for seq in list(self.lose):
            if f"\r\nSeq: {seq}\r\n".encode() in data:
                self.lose.discard(seq)
                return
        super().datagramReceived(data, addr)


@pytest.fixture
def server(tmp_path):
    running = RunningServer(tmp_path, chat_listeners=LISTENERS)
    pytest_twisted.blockon(ensureDeferred(running.start()))
    for address in (EDGAR, ANNABEL):
        pytest_twisted.blockon(ensureDeferred(running.add_account(address, PASSWORD)))
    yield running
    pytest_twisted.blockon(running.stop())


async def login(server: RunningServer, address: str):
    """
    A chat session over TCP, and its session key.
    """
    client = await within(connect(reactor, server.chat_tcp, timeout=5.0))
    client.push_codes = CHAT_PUSHES
    answer = await ask(
        client, "LOGIN", headers={"Address": address, "Password": PASSWORD}
    )
    assert answer.code == 230, answer
    return client, answer.headers["Session"]


@pytest_twisted.ensureDeferred
async def test_a_light_client_listens_says_and_fills_gaps(server) -> None:
    edgar, _ = await login(server, EDGAR)
    annabel, key = await login(server, ANNABEL)
    light = LossyClient(reactor, "127.0.0.1", server.chat_udp_port, key, timeout=2.0)
    port = reactor.listenUDP(0, light, interface="127.0.0.1")
    try:
        assert (await ask(edgar, "CREATE", LOUNGE, {"Public": "yes"})).code == 201
        assert (await ask(annabel, "JOIN", LOUNGE)).code == 200
        await ask(edgar, "SAY", LOUNGE, body=b"before")

        listening = await within(light.listen(LOUNGE))
        assert (listening.code, listening.headers["Seq"]) == (200, "1"), listening
        assert light.cookie

        said = await ask(edgar, "SAY", LOUNGE, body=b"Once upon a midnight dreary")
        line = await within(light.pushes.get())
        assert (line.code, line.headers["Seq"]) == (256, said.headers["Seq"])
        assert line.body == b"Once upon a midnight dreary"

        mine = await within(light.say(LOUNGE, "while I pondered"))
        assert (mine.code, mine.headers["Seq"]) == (201, "3"), mine
        echoed = await within(light.pushes.get())
        assert (echoed.headers["Seq"], echoed.headers["From"]) == ("3", ANNABEL)

        # Line 4 is lost on the way; line 5 shows the gap.
        light.lose.add(4)
        await ask(edgar, "SAY", LOUNGE, body=b"weak and weary")
        await ask(edgar, "SAY", LOUNGE, body=b"over many a quaint")
        after_gap = await within(light.pushes.get())
        last = int(echoed.headers["Seq"])
        assert int(after_gap.headers["Seq"]) == last + 2
        filled = await ask(annabel, "HISTORY", LOUNGE, {"Since": str(last)})
        assert filled.headers["Head"] == "5"
        got = entries_of(filled.body)
        assert [e.seq for e in got] == [4, 5]
        assert got[0].obj.body == b"weak and weary"
        pushed = [entry_of_frame(f)[1] for f in (line, echoed, after_gap)]
        assert got[1].digest == pushed[2].digest
        verify_chain([pushed[0], pushed[1], *got], pushed[0].parent_digest)
        assert light.forged == 0

        # Her session ends: her datagrams prove nothing any more.
        assert (await ask(annabel, "LOGOUT")).code == 200
        refused = await within(light.say(LOUNGE, "still here?"))
        assert refused.code == 535
        chat = server.services.protocol_handlers["chat"].groups[1].chat
        assert chat.live.entered(LOUNGE) == []
    finally:
        await port.stopListening()
        await close(edgar, annabel)


@pytest.mark.parametrize("verb", ["SAY", "LISTEN"])
@pytest_twisted.ensureDeferred
async def test_a_forged_datagram_is_refused(server, verb) -> None:
    """
    A client that names Annabel's session without her key is refused,
    and nothing is posted or pushed.
    """
    edgar, _ = await login(server, EDGAR)
    annabel, key = await login(server, ANNABEL)
    forger = ChatDatagramClient(
        reactor, "127.0.0.1", server.chat_udp_port, "not-her-key", timeout=2.0
    )
    port = reactor.listenUDP(0, forger, interface="127.0.0.1")
    try:
        assert (await ask(edgar, "CREATE", LOUNGE, {"Public": "yes"})).code == 201
        assert (await ask(annabel, "JOIN", LOUNGE)).code == 200
        hers = {"Session-Id": session_id(key)}
        answer = await within(forger.request(verb, LOUNGE, hers, b"forged"))
        assert answer.code == 535, answer
        assert (await ask(edgar, "HISTORY", LOUNGE)).headers["Head"] == "0"
    finally:
        await port.stopListening()
        await close(edgar, annabel)
