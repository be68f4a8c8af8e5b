"""
Installed protocol plugins, as an admin meets them with a real
C{twistd -n fmtp}: an installed plugin serves nothing until enabled
(installing the fmtp-time example used to make every later server bind
127.0.0.1:7079), C{--help} lists what was found and how to enable it, and
a plugin that fails to load or to bind is reported in one line while the
others are served.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest_twisted

from tests.helpers import HeldPort
from tests.integration.test_twistd import (  # noqa: F401
    CHECKOUT,
    LISTENERS,
    TWISTD,
    Processes,
    ServerProcess,
    child_environment,
    processes,
)

EXAMPLE = CHECKOUT / "plugins" / "fmtp-time"
BROKEN_PLUGIN = "raise ImportError('this plugin needs a module nobody installed')\n"


def installed(tmp_path: Path) -> dict[str, str]:
    """
    The environment of a machine where the time example and a broken
    plugin are installed.
    """
    broken = tmp_path / "broken" / "fmtp" / "plugins"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "fmtp_broken.py").write_text(BROKEN_PLUGIN)
    env = child_environment()
    env["PYTHONPATH"] = os.pathsep.join(
        [env["PYTHONPATH"], str(EXAMPLE), str(tmp_path / "broken")]
    )
    return env


async def serve(processes, tmp_path, env, *options) -> ServerProcess:  # noqa: F811
    log = tmp_path / "twistd.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*TWISTD, "-n", "fmtp", *LISTENERS, *options],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    processes._started.append(process)
    server = ServerProcess(process, log)
    await server.wait_until_serving()
    return server


@pytest_twisted.ensureDeferred
async def test_installed_plugins_serve_nothing_until_enabled(
    processes,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = await serve(processes, tmp_path, installed(tmp_path))
    log = server.log()
    assert "Serving the time protocol" not in log
    assert "7079" not in log
    [line] = [line for line in log.splitlines() if "fmtp_broken" in line]
    assert "cannot be loaded, skipped: ImportError: this plugin needs" in line
    assert "Traceback" not in log
    await server.terminate()


@pytest_twisted.ensureDeferred
async def test_an_enabled_plugin_that_cannot_bind_takes_nothing_down(
    processes,  # noqa: F811
    tmp_path: Path,
) -> None:
    taken = HeldPort()
    taken.socket.listen()
    try:
        server = await serve(
            processes,
            tmp_path,
            installed(tmp_path),
            "--listen-time",
            f"tcp:{taken.port}:interface=127.0.0.1",
        )
        log = server.log()
        [line] = [line for line in log.splitlines() if "for the time protocol" in line]
        assert "Cannot listen on tcp:" in line and "not served" in line
        assert "Traceback" not in log
        await server.terminate()
    finally:
        taken.close()


@pytest_twisted.ensureDeferred
async def test_enable_serves_a_plugin(processes, tmp_path: Path) -> None:  # noqa: F811
    server = await serve(
        processes,
        tmp_path,
        installed(tmp_path),
        "--enable",
        "time",
        "--listen-time",
        "tcp:0:interface=127.0.0.1",
    )
    assert "Serving the time protocol on tcp:0" in server.log()
    await server.terminate()


def test_help_lists_the_plugins_found(tmp_path: Path) -> None:
    result = subprocess.run(
        [*TWISTD, "fmtp", "--help"],
        cwd=tmp_path,
        env=installed(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "  object: objects" in result.stdout
    assert (
        "  time: the server's clock: TIME (installed, off: enable with --enable "
        "time or --listen-time ...)" in result.stdout
    )
    refused = subprocess.run(
        [*TWISTD, "fmtp", "--enable", "nosuch"],
        cwd=tmp_path,
        env=installed(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "--enable nosuch: no such plugin" in refused.stdout + refused.stderr


def test_a_tcp_only_protocol_refuses_udp_in_one_line(tmp_path: Path) -> None:
    """
    The nudge example offers nothing over datagrams but the shared CAPA:
    a udp: listener for it stops the start-up with one line, not a
    traceback.
    """
    env = installed(tmp_path)
    env["PYTHONPATH"] += os.pathsep + str(CHECKOUT / "plugins" / "fmtp-nudge")
    result = subprocess.run(
        [*TWISTD, "-n", "fmtp", *LISTENERS, "--listen-nudge", "udp:0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "fmtp: cannot start: the nudge protocol is not offered over UDP" in output
    assert "Traceback" not in output


@pytest_twisted.ensureDeferred
async def test_presence_serves_udp_for_bridges(processes, tmp_path: Path) -> None:  # noqa: F811
    """
    The presence protocol has a datagram command (the ISP bridges'
    PUBLISH), so twistd serves a udp: listener for it.
    """
    server = await serve(
        processes,
        tmp_path,
        child_environment(),
        "--listen-presence",
        "udp:0:interface=127.0.0.1",
    )
    assert "Serving the presence protocol on udp:0" in server.log()
    await server.terminate()
