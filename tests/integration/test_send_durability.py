"""
A 201 means the message is on disk, with group commit too: a real
C{twistd -n fmtp} is killed (SIGKILL) in the middle of a pipelined burst
of SENDs without idempotency keys, many of them committed together, and
after a restart every acknowledged message is in its recipient's inbox,
exactly once.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.integration.test_send_retry import BOB, add_user, logged_in
from tests.integration.test_twistd import (  # noqa: F401
    ALICE,
    POLL_INTERVAL,
    close,
    processes,
    start_server,
    wait_for_exit,
)

#: Messages in the burst; the server is killed after KILL_AFTER answers.
BURST = 400
KILL_AFTER = 60


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


@pytest_twisted.ensureDeferred
async def test_every_acknowledged_send_survives_a_kill(processes, tmp_path) -> None:  # noqa: F811
    server = await start_server(processes, tmp_path, "first")
    await add_user(processes, tmp_path, ALICE)
    await add_user(processes, tmp_path, BOB)

    alice = await logged_in(server, ALICE)
    acknowledged: dict[int, str] = {}

    def answered(frame, n: int) -> None:
        if frame.code == 201:
            acknowledged[n] = frame.headers["Id"]

    for n in range(BURST):
        alice.request("SEND", headers={"To": BOB}, body=b"burst %d" % n).addCallbacks(
            answered, lambda _: None, (n,)
        )
    deadline = reactor.seconds() + 60
    while len(acknowledged) < KILL_AFTER:
        assert reactor.seconds() < deadline, f"only {len(acknowledged)} answered"
        await deferLater(reactor, POLL_INTERVAL / 5, lambda: None)
    server.process.send_signal(signal.SIGKILL)
    assert await wait_for_exit(server.process, 10) == -signal.SIGKILL
    await alice.closed
    # Killed in the middle: some answered, not all.
    assert KILL_AFTER <= len(acknowledged) < BURST

    server = await start_server(processes, tmp_path, "second")
    bob = await logged_in(server, BOB)
    try:
        ids = await inbox_ids(bob)
        bodies = {}
        for message_id in acknowledged.values():
            got = await bob.request("GET", message_id)
            assert got.code == 200, message_id
            bodies[message_id] = got.body
    finally:
        await close(bob)
    counts = Counter(ids)
    # Exactly once: no id twice, and every acknowledged one there.
    assert max(counts.values()) == 1
    assert set(acknowledged.values()) <= set(counts)
    for n, message_id in acknowledged.items():
        assert bodies[message_id] == b"burst %d" % n
    # Nothing that was not sent: at most the burst.
    assert len(ids) <= BURST
    await server.terminate()
