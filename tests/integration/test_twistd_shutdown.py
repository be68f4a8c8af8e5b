"""
SIGTERM to a real C{twistd fmtp}: every open stream is told the server is
going away (C{421}) before it closes, rather than being cut off or
answered C{451} by a store already closed.
"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted
from twisted.internet import reactor

from tests.integration.test_twistd import (  # noqa: F401 (processes is a fixture)
    STOP_TIMEOUT,
    Processes,
    processes,
    start_server,
)


@pytest_twisted.ensureDeferred
async def test_sigterm_closes_streams_with_421(
    tmp_path: Path,
    processes: Processes,  # noqa: F811
) -> None:
    server = await start_server(processes, tmp_path, "twistd")
    idle = await server.connect()
    assert (await idle.request("CAPA")).code == 200
    await server.terminate()
    await idle.closed.addTimeout(STOP_TIMEOUT, reactor)
    [last] = idle.unsolicited
    assert (last.code, last.tag, last.argument) == (421, "*", "shutting down")
    assert "Closing 1 open connections" in server.log()
