"""
The presence protocol end to end, on real sockets: a server on loopback
port 0 with SQLite, two users logged in over TCP who subscribe, approve
and see each other's changes, and a dropped connection that goes offline
once its grace period is over.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred

from fmtp.client import FrameClientProtocol, connect
from fmtp.protocols.presence.service import PresenceSettings
from fmtp.wire import Frame
from tests.helpers import eventually, within
from tests.integration.test_server import EDGAR, PASSWORD, RunningServer

ANNABEL = "annabel@poe.net"
#: Short, so the test sees a grace period end without waiting long.
GRACE = 0.5


@pytest.fixture
def server(tmp_path):
    running = RunningServer(
        tmp_path, plugin_options={"presence": PresenceSettings(grace_period=GRACE)}
    )
    pytest_twisted.blockon(ensureDeferred(running.start()))
    yield running
    pytest_twisted.blockon(running.stop())


async def presence_session(server: RunningServer, address: str) -> FrameClientProtocol:
    client = await within(connect(reactor, server.presence_tcp, timeout=5.0))
    answer = await within(
        client.request("LOGIN", headers={"Address": address, "Password": PASSWORD})
    )
    assert answer.code == 230, answer
    return client


async def pushed(client: FrameClientProtocol, code: int, **headers: str) -> Frame:
    """
    Wait for a push of C{code} with C{headers} (taken off what the client
    keeps, so the next wait sees only newer ones).
    """

    def found():
        for frame in client.unsolicited:
            wanted = frame.code == code and all(
                frame.headers.get(name) == value for name, value in headers.items()
            )
            if wanted:
                client.unsolicited.remove(frame)
                return frame
        return None

    return await eventually(found, timeout=10.0)


async def ask(client: FrameClientProtocol, verb: str, argument="", headers=None):
    return await within(client.request(verb, argument, headers))


@pytest_twisted.ensureDeferred
async def test_two_users_subscribe_approve_and_see_changes(server) -> None:
    await server.add_account(EDGAR, PASSWORD)
    await server.add_account(ANNABEL, PASSWORD)
    edgar = await presence_session(server, EDGAR)
    annabel = await presence_session(server, ANNABEL)
    clients = [edgar, annabel]
    try:
        capa = await ask(edgar, "CAPA")
        assert capa.headers["Protocol"] == "presence"
        assert (await ask(edgar, "STATUS", "online")).code == 200
        answer = await ask(annabel, "STATUS", "busy", {"Note": "writing"})
        assert answer.headers["User-Status"] == "busy"

        asked = await ask(edgar, "SUBSCRIBE", ANNABEL)
        assert asked.headers == {"Subscription": "pending-out"}, asked
        await pushed(annabel, 253, From=EDGAR)
        approved = await ask(annabel, "APPROVE", EDGAR)
        assert approved.headers == {"Subscription": "from"}, approved
        await pushed(edgar, 254, From=ANNABEL, Subscription="to")
        await pushed(edgar, 252, From=ANNABEL, Status="busy", Note="writing")

        # And the other way, approved before asked.
        assert (await ask(edgar, "APPROVE", ANNABEL)).code == 200
        both = await ask(annabel, "SUBSCRIBE", EDGAR)
        assert both.headers == {"Subscription": "both"}, both
        await pushed(annabel, 252, From=EDGAR, Status="online")

        await ask(annabel, "STATUS", "away")
        await pushed(edgar, 252, From=ANNABEL, Status="away")
        buddies = await ask(edgar, "BUDDIES")
        assert buddies.body == f"{ANNABEL} both away\r\n".encode()

        # Annabel's connection drops: once the grace period is over (its
        # timing is tested on a Clock), she goes offline.
        annabel.transport.abortConnection()
        await within(annabel.closed)
        clients.remove(annabel)
        await pushed(edgar, 252, From=ANNABEL, Status="offline")
        gone = await ask(edgar, "BUDDIES")
        assert gone.body == f"{ANNABEL} both offline\r\n".encode()
    finally:
        for client in clients:
            client.transport.loseConnection()
            await within(client.closed)


@pytest_twisted.ensureDeferred
async def test_stopping_the_server_cancels_every_presence_timer(tmp_path) -> None:
    """
    A server stopping with a presence session connected: closing the
    connection starts its grace period, which must not outlive the server
    (it would run against the closed store); nor may the sweep of old
    requests.
    """
    running = RunningServer(
        tmp_path, plugin_options={"presence": PresenceSettings(grace_period=300.0)}
    )
    await running.start()
    presence = running.services.protocol_handlers["presence"].groups[1].presence
    stopped = False
    try:
        assert presence.running
        await running.add_account(EDGAR, PASSWORD)
        edgar = await presence_session(running, EDGAR)
        assert (await ask(edgar, "STATUS", "online")).code == 200
        await within(running.stop())
        stopped = True
        await within(edgar.closed)
        assert not presence.running
        assert presence.timers.getDelayedCalls() == []
        assert [
            call for call in reactor.getDelayedCalls() if "Timers" in repr(call)
        ] == []
    finally:
        if not stopped:
            await within(running.stop())


@pytest_twisted.ensureDeferred
async def test_a_user_object_shows_presence_to_approved_subscribers(server) -> None:
    """
    The object protocol's GET of a user object carries the user's live
    presence (doc/protocol.md 9.2) to the user's approved subscribers, and
    to nobody else, over real sockets with both protocols running.
    """
    stranger = "stranger@poe.net"
    for address in (EDGAR, ANNABEL, stranger):
        await server.add_account(address, PASSWORD)
    edgar = await presence_session(server, EDGAR)
    annabel = await presence_session(server, ANNABEL)
    readers = [await server.login(EDGAR), await server.login(stranger)]
    try:
        await ask(annabel, "STATUS", "busy", {"Note": "writing"})
        await ask(edgar, "SUBSCRIBE", ANNABEL)
        await ask(annabel, "APPROVE", EDGAR)
        edgar_reads, stranger_reads = readers
        seen = await within(edgar_reads.request("GET", ANNABEL))
        assert (seen.code, seen.headers.get("Status")) == (200, "busy"), seen
        assert seen.headers["Status-Note"] == "writing"
        unseen = await within(stranger_reads.request("GET", ANNABEL))
        assert unseen.code == 200
        assert "Status" not in unseen.headers and "Status-Note" not in unseen.headers

        await ask(annabel, "DENY", EDGAR)
        denied = await within(edgar_reads.request("GET", ANNABEL))
        assert "Status" not in denied.headers, denied
    finally:
        for client in (edgar, annabel, *readers):
            client.transport.loseConnection()
            await within(client.closed)
