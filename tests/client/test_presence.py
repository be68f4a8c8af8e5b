"""
The presence calls of the client library (L{fmtp.client.presence})
against a real server's presence port (its fixture serves the chat
calls' tests too) on loopback and an SQLite file:
subscribe, approve, status, buddies and the pushes, as typed values;
refusals as L{ReplyError} with their codes.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred

from fmtp.client import Chat, Client, ReplyError
from fmtp.client.presence import (
    SUBSCRIPTION_STATES,
    Buddy,
    Presence,
    PresenceChanged,
    PushesDropped,
    SessionStatus,
    SubscriptionChanged,
    SubscriptionRequested,
    parse_buddies,
    parse_event,
)
from fmtp.client.protocol import ProtocolError
from fmtp.wire import Frame
from tests.integration.test_server import RunningServer

EDGAR = "edgar@poe.net"
ANNABEL = "annabel@poe.net"
PASSWORD = "nevermore-quoth"
#: Seconds a push may take to come.
PUSH_TIMEOUT = 10.0


@pytest.fixture
def server(tmp_path):
    running = pytest_twisted.blockon(ensureDeferred(RunningServer(tmp_path).start()))
    for address in (EDGAR, ANNABEL):
        pytest_twisted.blockon(ensureDeferred(running.add_account(address, PASSWORD)))
    clients: list[Client] = []

    async def logged_in(endpoint: str, address: str) -> Client:
        connected = await Client.connect(reactor, endpoint, timeout=10)
        clients.append(connected)
        await connected.login(address, PASSWORD)
        return connected

    async def presence(address: str) -> Presence:
        return Presence(await logged_in(running.presence_tcp, address))

    async def chat(address: str) -> Chat:
        return Chat(await logged_in(running.chat_tcp, address))

    running.presence = presence
    running.chat = chat
    yield running
    for connected in clients:
        pytest_twisted.blockon(connected.close())
    pytest_twisted.blockon(running.stop())


async def next_event(session: Presence | Chat):
    """
    The next event pushed to a presence or chat session, with a deadline.
    """
    waiting = Deferred.fromCoroutine(session.next_event())
    waiting.addTimeout(PUSH_TIMEOUT, reactor)
    return await waiting


@pytest_twisted.ensureDeferred
async def test_subscribe_approve_status_buddies(server) -> None:
    edgar = await server.presence(EDGAR)
    annabel = await server.presence(ANNABEL)
    assert await edgar.status() == SessionStatus("offline", None, None, "offline")
    mine = await annabel.status("online", priority=5, resource="desk")
    assert mine == SessionStatus("online", 5, "desk", "online")

    assert await edgar.subscribe(ANNABEL) == "pending-out"
    assert await next_event(annabel) == SubscriptionRequested(EDGAR)
    assert await annabel.buddies() == [Buddy(EDGAR, "pending-in", "offline", "")]
    assert await annabel.approve(EDGAR) == "from"

    await edgar.status("away", note="in the chamber")
    # After his first STATUS: annabel's presence (he sees her now).
    assert await next_event(edgar) == PresenceChanged(ANNABEL, "online", "")
    await annabel.status("busy", note="writing  a poem")
    assert await next_event(edgar) == PresenceChanged(
        ANNABEL, "busy", "writing  a poem"
    )
    assert await edgar.buddies() == [Buddy(ANNABEL, "to", "busy", "writing  a poem")]

    # She cancels his subscription: he is told, and sees her offline.
    assert await annabel.deny(EDGAR) == "none"
    told = {await next_event(edgar), await next_event(edgar)}
    assert told == {
        SubscriptionChanged(ANNABEL, "none"),
        PresenceChanged(ANNABEL, "offline", ""),
    }
    assert await edgar.unsubscribe(ANNABEL) == "none"
    assert set(SUBSCRIPTION_STATES) >= {"none", "to", "from", "both"}


@pytest_twisted.ensureDeferred
async def test_refusals_carry_their_codes(server) -> None:
    edgar = await server.presence(EDGAR)
    for call, code in (
        (edgar.subscribe("lost@"), 553),
        (edgar.subscribe(EDGAR), 501),
        (edgar.status("offline"), 501),
        (edgar.status(None, note="no word"), 501),
    ):
        with pytest.raises(ReplyError) as refused:
            await call
        assert refused.value.code == code, refused.value


def test_parse_buddies() -> None:
    body = b"a@poe.net both online at  home\r\nb@poe.net none offline\r\n"
    assert parse_buddies(body) == [
        Buddy("a@poe.net", "both", "online", "at  home"),
        Buddy("b@poe.net", "none", "offline", ""),
    ]
    with pytest.raises(ProtocolError):
        parse_buddies(b"a@poe.net both\r\n")


def test_parse_dropped_pushes() -> None:
    frame = Frame("251", "*", "pushes dropped", {"Dropped": "3"})
    assert parse_event(frame) == PushesDropped(3)
    for bad in ({}, {"Dropped": "-1"}, {"Dropped": "many"}):
        with pytest.raises(ProtocolError):
            parse_event(Frame("251", "*", "pushes dropped", bad))
