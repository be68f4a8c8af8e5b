"""
Who may speak for what (DESIGN decision 15), tried as an attacker would
against a server on real loopback sockets and a real SQLite file: a user
forging another's C{From}, a sender rewriting or withdrawing what a
recipient already holds, and a client retrying a SEND.

The cross-domain attacks (a peer planting objects, a forged countersign)
are in C{tests/integration/test_federation_authority.py}.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred

from fmtp.client import connect
from tests.integration.test_server import RunningServer
from tests.integration.test_server import server as server_fixture  # noqa: F401

EDGAR = "edgar@poe.net"
ANNABEL = "annabel@poe.net"
PASSWORD = "nevermore-quoth"


@pytest.fixture
def people(tmp_path):
    """
    A server with two accounts; it and the connections made through it
    are closed at the end.
    """
    server = pytest_twisted.blockon(ensureDeferred(RunningServer(tmp_path).start()))
    for address in (EDGAR, ANNABEL):
        pytest_twisted.blockon(ensureDeferred(server.add_account(address, PASSWORD)))
    opened = []

    async def login(address: str):
        connection = await server.login(address, PASSWORD)
        opened.append(connection)
        return connection

    server.as_user = login
    yield server
    for connection in opened:
        connection.transport.loseConnection()
    pytest_twisted.blockon(server.stop())


async def fetch_ids(connection) -> list[str]:
    answer = await connection.request("FETCH", headers={"Limit": "200"})
    assert answer.code == 200, answer
    return [line.split()[1] for line in answer.body.decode().splitlines()]


@pytest_twisted.ensureDeferred
async def test_a_user_cannot_store_a_message_from_another(people) -> None:
    """
    Before: edgar PUT a message C{From: annabel@poe.net}; it was stored
    and shown as annabel's.  Now no command stores an object whose From
    is not its owner's address.
    """
    edgar = await people.as_user(EDGAR)
    forged = await edgar.request(
        "PUT",
        headers={"Type": "message", "From": ANNABEL, "To": EDGAR, "Public": "yes"},
        body=b"I owe edgar 10,000 EUR",
    )
    assert forged.code == 554, forged
    assert "your own address" in forged.argument
    mine = await edgar.request("LIST", headers={"Owner": EDGAR, "Type": "message"})
    assert mine.body == b""
    own = await edgar.request(
        "PUT", headers={"Type": "message", "From": "Edgar@POE.net", "To": ANNABEL}
    )
    assert own.code == 201, own


@pytest_twisted.ensureDeferred
async def test_a_countersign_is_only_for_servers(people) -> None:
    """
    Before: CONFIRM answered anyone, yes for any stored object.  Now it
    needs a HELLO, and vouches only for what was sent to the asker.
    """
    edgar = await people.as_user(EDGAR)
    stored = await edgar.request(
        "PUT", headers={"Type": "message", "To": "lost@lenore.org"}, body=b"x"
    )
    anyone = await connect(reactor, people.tcp)
    try:
        answer = await anyone.request(
            "CONFIRM", stored.headers["Id"], {"Digest": stored.headers["Digest"]}
        )
        assert answer.code == 530, answer
    finally:
        anyone.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_a_sent_message_is_the_recipients(people) -> None:
    """
    Before: after a SEND, edgar's PUT of the same id replaced annabel's
    copy ("I agree to pay 0 EUR") and edgar's DELETE made it vanish from
    her inbox.  Now what was filed for her stays as it was until she
    removes it.
    """
    edgar = await people.as_user(EDGAR)
    annabel = await people.as_user(ANNABEL)
    sent = await edgar.request(
        "SEND",
        headers={"To": ANNABEL, "Subject": "Deal"},
        body=b"I agree to pay 100 EUR",
    )
    assert sent.code == 201, sent
    message_id = sent.headers["Id"]
    pushed = await annabel.pushes.get()
    assert pushed.headers["Id"] == message_id

    rewrite = await edgar.request(
        "PUT",
        headers={"Id": message_id, "Type": "message", "To": ANNABEL},
        body=b"I agree to pay 0 EUR",
    )
    assert rewrite.code == 554, rewrite
    withdrawn = await edgar.request("DELETE", message_id)
    assert (withdrawn.code, withdrawn.argument) == (200, "deleted")

    # Gone from edgar's view...
    assert (await edgar.request("GET", message_id)).code == 550
    assert (
        message_id
        not in (await edgar.request("LIST", headers={"Owner": EDGAR})).body.decode()
    )
    # ...but annabel holds it, unchanged.
    assert await fetch_ids(annabel) == [message_id]
    held = await annabel.request("GET", message_id)
    assert (held.code, held.body) == (200, b"I agree to pay 100 EUR")
    assert held.headers["Digest"] == sent.headers["Digest"]
    assert (
        await edgar.request("PUT", headers={"Id": message_id, "Type": "message"})
    ).code == 554

    # Only she removes it from her inbox.
    removed = await annabel.request("DELETE", message_id)
    assert (removed.code, removed.argument) == (200, "removed from your inbox")
    assert await fetch_ids(annabel) == []
    assert (await annabel.request("DELETE", message_id)).code == 550


@pytest_twisted.ensureDeferred
async def test_a_retried_send_is_sent_once(people) -> None:
    """
    Before: SEND was at-least-once, so a client retrying after a lost
    reply sent twice.  Now a SEND repeated with its Idempotency-Key
    answers with the first message.
    """
    edgar = await people.as_user(EDGAR)
    annabel = await people.as_user(ANNABEL)
    headers = {"To": ANNABEL, "Subject": "Once", "Idempotency-Key": "send-1"}
    first = await edgar.request("SEND", headers=headers, body=b"only once")
    again = await edgar.request("SEND", headers=headers, body=b"only once")
    assert first.code == again.code == 201
    assert again.headers["Id"] == first.headers["Id"]
    assert again.body == first.body == f"{ANNABEL} 201 delivered\r\n".encode()
    assert await fetch_ids(annabel) == [first.headers["Id"]]
    # The same key for another message is a client bug, refused: another
    # body, or the same body with other headers.
    other = await edgar.request("SEND", headers=headers, body=b"another")
    assert other.code == 554, other
    assert other.argument == (
        f"Idempotency-Key send-1 was used for another message, {first.headers['Id']}"
    )
    retitled = {**headers, "Subject": "Twice"}
    other = await edgar.request("SEND", headers=retitled, body=b"only once")
    assert other.code == 554, other
    # Keys are per sender: annabel's "send-1" is hers.
    hers = await annabel.request(
        "SEND", headers={"To": EDGAR, "Idempotency-Key": "send-1"}, body=b"hi"
    )
    assert hers.code == 201 and hers.headers["Id"] != first.headers["Id"]
    bad = await edgar.request(
        "SEND", headers={"To": ANNABEL, "Idempotency-Key": "no spaces"}, body=b"x"
    )
    assert bad.code == 501, bad
    assert bad.argument == "Idempotency-Key must be 1 to 64 letters, digits or . _ : -"
    # Without a key, two SENDs are two messages.
    plain = {"To": ANNABEL}
    one = await edgar.request("SEND", headers=plain, body=b"same")
    two = await edgar.request("SEND", headers=plain, body=b"same")
    assert one.headers["Id"] != two.headers["Id"]


@pytest_twisted.ensureDeferred
async def test_pipelined_retries_of_one_key_send_once(people) -> None:
    """
    A client that retries before its first try was answered: both tries
    race through the server, and one message is sent.
    """
    edgar = await people.as_user(EDGAR)
    annabel = await people.as_user(ANNABEL)
    headers = {"To": ANNABEL, "Idempotency-Key": "raced"}
    answers = [
        await d
        for d in [
            edgar.request("SEND", headers=headers, body=b"raced") for _ in range(5)
        ]
    ]
    assert {a.code for a in answers} == {201}
    assert len({a.headers["Id"] for a in answers}) == 1
    assert len(await fetch_ids(annabel)) == 1


@pytest_twisted.ensureDeferred
async def test_parent_digest_without_parent(people) -> None:
    """
    A Parent-Digest names the digest of a parent; without the Parent it
    names nothing and would pass for a thread link it is not.
    """
    edgar = await people.as_user(EDGAR)
    digest = {"Parent-Digest": "0" * 64}
    put = await edgar.request("PUT", headers={"Type": "post", **digest})
    sent = await edgar.request("SEND", headers={"To": ANNABEL, **digest})
    assert (put.code, sent.code) == (501, 501)
