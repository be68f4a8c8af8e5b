"""
A 201 means the message is on disk, with group commit too: a real
C{twistd -n fmtp} is killed (SIGKILL) in the middle of a pipelined burst
of SENDs without idempotency keys, many of them committed together, and
after a restart every acknowledged message is in its recipient's inbox,
exactly once.
"""

from __future__ import annotations

from collections import Counter

import pytest_twisted

from tests.integration.test_send_retry import (
    BOB,
    add_user,
    burst_then_kill,
    inbox_ids,
    logged_in,
)
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


def unkeyed_send(connection, n: int):
    return connection.request("SEND", headers={"To": BOB}, body=b"burst %d" % n)


@pytest_twisted.ensureDeferred
async def test_every_acknowledged_send_survives_a_kill(processes, tmp_path) -> None:  # noqa: F811
    server = await start_server(processes, tmp_path, "first")
    await add_user(processes, tmp_path, ALICE)
    await add_user(processes, tmp_path, BOB)

    alice = await logged_in(server, ALICE)
    acknowledged = await burst_then_kill(server, alice, unkeyed_send, BURST, KILL_AFTER)
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
