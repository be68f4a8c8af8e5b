"""
GETs answered from the store's cache of public objects
(L{fmtp.store.sql.readcache}) keep every access rule, and see every write
at once: a real server on loopback, a real SQLite file.
"""

from __future__ import annotations

import sqlite3

import pytest_twisted
from twisted.internet import reactor

from fmtp.client import connect
from tests.integration.test_server import EDGAR, PASSWORD, server  # noqa: F401

LOST = "lost@poe.net"


async def two_users(server):  # noqa: F811
    await server.add_account(EDGAR, PASSWORD)
    await server.add_account(LOST, PASSWORD)
    return await server.login(EDGAR), await server.login(LOST, PASSWORD)


async def close(*connections) -> None:
    for connection in connections:
        connection.transport.loseConnection()
        await connection.closed


async def get_twice(connection, object_id: str):
    """
    GET an object twice: the second answer comes from the cache if the
    first put it there.
    """
    first = await connection.request("GET", object_id)
    second = await connection.request("GET", object_id)
    assert (first.code, first.body) == (second.code, second.body)
    return second


@pytest_twisted.ensureDeferred
async def test_a_public_object_read_is_cached(server) -> None:  # noqa: F811
    edgar, lost = await two_users(server)
    stored = await edgar.request(
        "PUT", headers={"Type": "post", "Public": "yes"}, body=b"hot"
    )
    object_id = stored.headers["Id"]
    got = await get_twice(lost, object_id)
    assert (got.code, got.body) == (200, b"hot")
    assert got.headers["Digest"] == stored.headers["Digest"]
    assert server.services.store.public_objects.get(object_id) is not None
    await close(edgar, lost)


@pytest_twisted.ensureDeferred
async def test_a_private_object_is_never_served_to_another(server) -> None:  # noqa: F811
    edgar, lost = await two_users(server)
    anonymous = await connect(reactor, server.tcp)
    stored = await edgar.request("PUT", headers={"Type": "note"}, body=b"secret")
    object_id = stored.headers["Id"]
    assert (await get_twice(edgar, object_id)).body == b"secret"
    assert (await get_twice(lost, object_id)).code == 550
    assert (await get_twice(anonymous, object_id)).code == 550
    assert server.services.store.public_objects.get(object_id) is None
    await close(edgar, lost, anonymous)


@pytest_twisted.ensureDeferred
async def test_a_public_object_made_private_is_hidden_at_once(server) -> None:  # noqa: F811
    edgar, lost = await two_users(server)
    stored = await edgar.request(
        "PUT", headers={"Type": "post", "Public": "yes"}, body=b"open"
    )
    object_id = stored.headers["Id"]
    assert (await get_twice(lost, object_id)).code == 200
    hidden = await edgar.request(
        "PUT", headers={"Id": object_id, "Type": "post", "Public": "no"}, body=b"shut"
    )
    assert hidden.code == 201
    assert (await lost.request("GET", object_id)).code == 550
    assert (await edgar.request("GET", object_id)).body == b"shut"
    await close(edgar, lost)


@pytest_twisted.ensureDeferred
async def test_a_put_is_seen_by_the_next_get(server) -> None:  # noqa: F811
    edgar, lost = await two_users(server)
    stored = await edgar.request(
        "PUT", headers={"Type": "post", "Public": "yes"}, body=b"v0"
    )
    object_id = stored.headers["Id"]
    for version in range(1, 6):
        assert (await get_twice(lost, object_id)).body == b"v%d" % (version - 1)
        changed = await edgar.request(
            "PUT",
            headers={"Id": object_id, "Type": "post", "Public": "yes"},
            body=b"v%d" % version,
        )
        assert changed.code == 201
        got = await lost.request("GET", object_id)
        assert got.body == b"v%d" % version
        assert got.headers["Digest"] == changed.headers["Digest"]
    await close(edgar, lost)


@pytest_twisted.ensureDeferred
async def test_a_delete_is_seen_by_the_next_get(server) -> None:  # noqa: F811
    edgar, lost = await two_users(server)
    stored = await edgar.request(
        "PUT", headers={"Type": "post", "Public": "yes"}, body=b"soon gone"
    )
    object_id = stored.headers["Id"]
    assert (await get_twice(lost, object_id)).code == 200
    assert (await edgar.request("DELETE", object_id)).code == 200
    assert (await lost.request("GET", object_id)).code == 550
    await close(edgar, lost)


@pytest_twisted.ensureDeferred
async def test_a_sent_object_removed_by_its_owner_is_not_served(server) -> None:  # noqa: F811
    edgar, lost = await two_users(server)
    anonymous = await connect(reactor, server.tcp)
    # A message is sealed as it is sent; its owner's DELETE then only
    # removes it from the owner's view: its recipient still holds it,
    # nobody else sees it.
    sent = await edgar.request(
        "SEND", headers={"To": LOST, "Public": "yes"}, body=b"sealed"
    )
    assert sent.code == 201, sent
    object_id = sent.headers["Id"]
    assert (await get_twice(anonymous, object_id)).body == b"sealed"
    assert (await edgar.request("DELETE", object_id)).code == 200
    assert (await anonymous.request("GET", object_id)).code == 550
    assert (await edgar.request("GET", object_id)).code == 550
    assert (await get_twice(lost, object_id)).body == b"sealed"
    assert (await anonymous.request("GET", object_id)).code == 550
    await close(edgar, lost, anonymous)


@pytest_twisted.ensureDeferred
async def test_another_process_writing_the_file_is_seen(server, tmp_path) -> None:  # noqa: F811
    """
    What another process changes (an admin's C{fmtp users delete} while
    the server runs) fires no trigger here; the next read of the store
    sees C{data_version} changed and drops the cache.
    """
    edgar, lost = await two_users(server)
    stored = await edgar.request(
        "PUT", headers={"Type": "post", "Public": "yes"}, body=b"admin"
    )
    object_id = stored.headers["Id"]
    assert (await get_twice(lost, object_id)).code == 200
    other = sqlite3.connect(tmp_path / "fmtp.sqlite", isolation_level=None)
    try:
        other.execute("UPDATE objects SET removed = 1 WHERE id = ?", (object_id,))
    finally:
        other.close()
    cache = server.services.store.public_objects
    # Not yet checked again: served from the cache until it is.
    assert cache.get(object_id) is not None
    found = await server.services.store.read_object(object_id, None)
    assert found.removed
    assert cache.get(object_id) is None
    assert (await lost.request("GET", object_id)).code == 550
    await close(edgar, lost)
