"""
The server's log as JSON (L{fmtp.logs}), as an admin turns it on: a real
C{twistd -n --logger fmtp.logs.json_to_stdout fmtp}, whose every line of
output must be one JSON event.
"""

from __future__ import annotations

import json
import signal

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.integration.test_twistd import (  # noqa: F401
    LISTENERS,
    POLL_INTERVAL,
    TWISTD,
    processes,
    wait_for_exit,
)


def events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest_twisted.ensureDeferred
async def test_json_log_on_standard_output(processes, tmp_path) -> None:  # noqa: F811
    log = tmp_path / "stdout"
    server = processes.start(
        [*TWISTD, "-n", "--logger", "fmtp.logs.json_to_stdout", "fmtp", *LISTENERS],
        tmp_path,
        log,
    )
    deadline = reactor.seconds() + 15
    while "Serving the {protocol} protocol" not in log.read_text():
        assert server.poll() is None, log.read_text()
        assert reactor.seconds() < deadline, log.read_text()
        await deferLater(reactor, POLL_INTERVAL, lambda: None)
    server.send_signal(signal.SIGTERM)
    assert await wait_for_exit(server, 10) is not None
    found = events(log.read_text())
    formats = [event.get("log_format", "") for event in found]
    assert any("Serving the {protocol} protocol" in f for f in formats), formats
    assert all("log_time" in event for event in found)


@pytest_twisted.ensureDeferred
async def test_json_log_file_needs_its_path(processes, tmp_path) -> None:  # noqa: F811
    log = tmp_path / "stdout"
    server = processes.start(
        [*TWISTD, "-n", "--logger", "fmtp.logs.json_to_file", "fmtp", *LISTENERS],
        tmp_path,
        log,
    )
    assert await wait_for_exit(server, 15) not in (None, 0)
    assert "FMTP_JSON_LOG" in log.read_text()


@pytest_twisted.ensureDeferred
async def test_json_log_file(processes, tmp_path, monkeypatch) -> None:  # noqa: F811
    path = tmp_path / "fmtp.json"
    monkeypatch.setenv("FMTP_JSON_LOG", str(path))
    server = processes.start(
        [*TWISTD, "-n", "--logger", "fmtp.logs.json_to_file", "fmtp", *LISTENERS],
        tmp_path,
        tmp_path / "stdout",
    )
    deadline = reactor.seconds() + 15
    while not path.exists() or "Serving the {protocol}" not in path.read_text():
        assert server.poll() is None, (tmp_path / "stdout").read_text()
        assert reactor.seconds() < deadline
        await deferLater(reactor, POLL_INTERVAL, lambda: None)
    server.send_signal(signal.SIGTERM)
    assert await wait_for_exit(server, 10) is not None
    assert events(path.read_text())
