"""
A SEND is sent once, even across a crash: a real C{twistd -n fmtp} is
killed (SIGKILL) in the middle of a pipelined burst of keyed SENDs, and a
client that retries every SEND it was not answered, with the same
C{Idempotency-Key}, finds each acknowledged message kept, and each message
delivered exactly once.
"""

from __future__ import annotations

import signal

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater

from tests.integration.test_twistd import (  # noqa: F401
    ALICE,
    FMTP,
    PASSWORD,
    POLL_INTERVAL,
    close,
    processes,
    run_command,
    start_server,
    wait_for_exit,
)

BOB = "bob@localhost"
#: Messages in the burst; the server is killed after KILL_AFTER answers.
BURST = 300
KILL_AFTER = 40


async def add_user(processes, cwd, address: str) -> None:  # noqa: F811
    status, output = await run_command(
        processes,
        [*FMTP, "adduser", "--data-dir", "fmtp-data", "--password-file", "-", address],
        cwd,
        f"adduser-{address}",
        stdin=PASSWORD.encode() + b"\n",
    )
    assert status == 0, output


async def logged_in(server, address: str):
    connection = await server.connect()
    answer = await connection.request(
        "LOGIN", headers={"Address": address, "Password": PASSWORD}
    )
    assert answer.code == 230, answer
    return connection


async def burst_then_kill(server, alice, send, burst: int, kill_after: int) -> dict:
    """
    Pipeline C{send(alice, n)} for C{n} in C{range(burst)}, SIGKILL the
    server once C{kill_after} are answered, and return what was
    acknowledged: C{n} to the id its 201 gave.
    """
    acknowledged: dict[int, str] = {}

    def answered(frame, n: int) -> None:
        if frame.code == 201:
            acknowledged[n] = frame.headers["Id"]

    for n in range(burst):
        send(alice, n).addCallbacks(answered, lambda _: None, (n,))
    deadline = reactor.seconds() + 60
    while len(acknowledged) < kill_after:
        assert reactor.seconds() < deadline, f"only {len(acknowledged)} answered"
        await deferLater(reactor, POLL_INTERVAL / 5, lambda: None)
    server.process.send_signal(signal.SIGKILL)
    assert await wait_for_exit(server.process, 10) == -signal.SIGKILL
    await alice.closed
    return acknowledged


async def inbox_ids(bob) -> list[str]:
    """
    Every id in C{bob}'s inbox, page by page, in order.
    """
    ids: list[str] = []
    since = "0"
    while True:
        page = await bob.request("FETCH", headers={"Since": since, "Limit": "200"})
        lines = page.body.decode().splitlines()
        if not lines:
            return ids
        ids.extend(line.split()[1] for line in lines)
        since = page.headers["Next-Since"]


def keyed_send(connection, n: int) -> Deferred:
    return connection.request(
        "SEND",
        headers={"To": BOB, "Idempotency-Key": f"burst-{n}"},
        body=b"message %d" % n,
    )


@pytest_twisted.ensureDeferred
async def test_killed_mid_burst_then_retried(processes, tmp_path) -> None:  # noqa: F811
    server = await start_server(processes, tmp_path, "first")
    await add_user(processes, tmp_path, ALICE)
    await add_user(processes, tmp_path, BOB)

    alice = await logged_in(server, ALICE)
    acknowledged = await burst_then_kill(server, alice, keyed_send, BURST, KILL_AFTER)
    assert KILL_AFTER <= len(acknowledged) < BURST

    server = await start_server(processes, tmp_path, "second")
    alice = await logged_in(server, ALICE)
    try:
        retried = await gatherResults([keyed_send(alice, n) for n in range(BURST)])
    finally:
        await close(alice)
    assert {frame.code for frame in retried} == {201}
    for n, message_id in acknowledged.items():
        assert retried[n].headers["Id"] == message_id, n

    bob = await logged_in(server, BOB)
    try:
        bodies = []
        for message_id in await inbox_ids(bob):
            got = await bob.request("GET", message_id)
            bodies.append(got.body)
    finally:
        await close(bob)
    assert sorted(bodies) == sorted(b"message %d" % n for n in range(BURST))
    await server.terminate()
