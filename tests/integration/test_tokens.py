"""
Resumption tokens end to end: a server built by L{build_server} on a
loopback port and a real SQLite file, the client library over TCP.  A
client logs in with its password once, then reconnects with its token;
the token is refused, with a clear reply, for another address, after
LOGOUT, after a password change and after the account is deleted, and it
survives a restart of the server.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor

from fmtp.client import Client, ReplyError
from fmtp.store.sqlite import SQLiteStore
from tests.helpers import within
from tests.integration.test_server import EDGAR, PASSWORD, RunningServer

LOST = "lost@poe.net"


async def start(tmp_path, **options) -> RunningServer:
    server = await RunningServer(tmp_path, **options).start()
    await server.add_account(EDGAR, PASSWORD)
    await server.add_account(LOST, PASSWORD)
    return server


async def client(server: RunningServer) -> Client:
    return await Client.connect(reactor, server.tcp, timeout=10)


async def refused(server: RunningServer, address: str, token: str) -> ReplyError:
    c = await client(server)
    try:
        with pytest.raises(ReplyError) as caught:
            await c.login_with_token(address, token)
    finally:
        await c.close()
    return caught.value


@pytest_twisted.ensureDeferred
async def test_reconnect_with_a_token_and_its_limits(tmp_path) -> None:
    server = await start(tmp_path)
    try:
        first = await client(server)
        assert await first.login(EDGAR, PASSWORD, issue_token=True) == EDGAR
        token = first.token
        assert token and first.token_expires
        await first.close()

        # The connection dropped: back in with the token, again and again.
        for _ in range(3):
            again = await client(server)
            assert await again.login_with_token(EDGAR, token) == EDGAR
            assert (await again.call("FETCH")).code == 200
            await again.close()

        error = await refused(server, LOST, token)
        assert error.code == 535
        assert "token" in error.frame.argument

        # LOGOUT revokes it.
        last = await client(server)
        await last.login_with_token(EDGAR, token)
        await last.logout()
        await last.close()
        assert (await refused(server, EDGAR, token)).code == 535
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_tokens_survive_a_restart_not_a_password_change(tmp_path) -> None:
    server = await start(tmp_path)
    c = await client(server)
    await c.login(EDGAR, PASSWORD, issue_token=True)
    edgar = c.token
    await c.close()
    c = await client(server)
    await c.login(LOST, PASSWORD, issue_token=True)
    lost = c.token
    await c.close()
    await server.stop()

    server = await RunningServer(tmp_path).start()
    try:
        c = await client(server)
        assert await c.login_with_token(EDGAR, edgar) == EDGAR
        await c.close()
        store = server.services.store
        await store.set_password_hash(EDGAR, "scrypt$changed")
        assert (await refused(server, EDGAR, edgar)).code == 535
        await store.delete_account(LOST)
        assert (await refused(server, LOST, lost)).code == 535
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_no_tokens_when_the_lifetime_is_zero(tmp_path) -> None:
    server = await start(tmp_path, token_lifetime=0)
    try:
        c = await client(server)
        assert "Token-Lifetime" not in await c.capa()
        await c.login(EDGAR, PASSWORD, issue_token=True)
        assert c.token is None
        await within(c.close())
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_revocation_is_seen_at_once_on_every_connection(tmp_path) -> None:
    """
    Attack: a stolen token is used on a second connection while its owner
    logs out on the first, or while the admin changes the password with
    C{fmtp passwd} (another connection to the store file, as from another
    process).  From the moment the LOGOUT or the new password is
    acknowledged, the token logs in nowhere: no copy of it cached by the
    server may outlive its revocation.
    """
    server = await start(tmp_path)
    owner = thief = None
    try:
        first = await client(server)
        await first.login(EDGAR, PASSWORD, issue_token=True)
        token = first.token
        await first.close()

        # Both in with the token, and a third login with it just before
        # the LOGOUT, so that any cache would hold it.
        owner = await client(server)
        assert await owner.login_with_token(EDGAR, token) == EDGAR
        thief = await client(server)
        assert await thief.login_with_token(EDGAR, token) == EDGAR
        await thief.close()
        await owner.logout()
        assert (await refused(server, EDGAR, token)).code == 535

        # A fresh token, used, then the password changed behind the
        # server's back through a store of its own on the same file.
        c = await client(server)
        await c.login(EDGAR, PASSWORD, issue_token=True)
        token = c.token
        await c.close()
        c = await client(server)
        assert await c.login_with_token(EDGAR, token) == EDGAR
        await c.close()
        admin = SQLiteStore(tmp_path / "fmtp.sqlite", reactor)
        await admin.open()
        try:
            assert await admin.set_password_hash(EDGAR, "scrypt$changed")
        finally:
            await admin.close()
        assert (await refused(server, EDGAR, token)).code == 535
    finally:
        for c in (owner, thief):
            if c is not None:
                await c.close()
        await server.stop()
