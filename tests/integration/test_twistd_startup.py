"""
C{twistd -n fmtp} refusing to start, as a service manager sees it: a
non-zero exit status, so that restart-on-failure fires and the admin
looks, and the reason in its output.

Each case runs a real twistd (port-0 listeners) to its end; the helpers
are C{test_twistd}'s.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest_twisted

from fmtp import datadir
from tests.integration.test_twistd import (
    FMTP,
    LISTENERS,
    Processes,
    child_environment,
    processes,  # noqa: F401 (a fixture)
    run_twistd,
    start_server,
)


def data_dir(cwd: Path, domain: str | None = "localhost") -> Path:
    """
    A data directory as a server of C{domain} leaves it (or, without a
    domain, as an older fmtp did), with no store yet.
    """
    path = cwd / "fmtp-data"
    path.mkdir(mode=0o700)
    if domain is not None:
        (path / "domain").write_text(domain + "\n")
    return path


def assert_refused(status: int, output: str, reason: str) -> None:
    assert status != 0, output
    assert reason in output, output
    assert "Traceback" not in output, output


def test_corrupt_database(tmp_path: Path) -> None:
    """
    A store that cannot be opened (it opens on a thread once the reactor
    runs, out of twistd's own error handling) stops the server with a
    non-zero status and the reason.
    """
    path = data_dir(tmp_path)
    (path / "fmtp.sqlite").write_bytes(b"this is no SQLite file" * 300)
    status, output = run_twistd(["-n", "fmtp", *LISTENERS], tmp_path)
    assert status == 1, output
    assert "Cannot open the store sqlite:" in output, output
    assert "file is not a database" in output, output


def test_store_path_unusable(tmp_path: Path) -> None:
    """
    The same for a store whose directory cannot be made: a failure only
    the store's own thread finds.
    """
    (tmp_path / "a-file").write_text("")
    store = f"sqlite:{tmp_path / 'a-file' / 'fmtp.sqlite'}"
    status, output = run_twistd(["-n", "fmtp", *LISTENERS, "--store", store], tmp_path)
    assert status == 1, output
    assert f"Cannot open the store {store}" in output, output


def test_another_domains_data_dir(tmp_path: Path) -> None:
    """
    The README's "Joining the federation" run in the directory of a
    localhost test server: refused, before any key is made or port bound.
    """
    path = data_dir(tmp_path)
    status, output = run_twistd(
        ["-n", "fmtp", "--domain", "example.org", *LISTENERS], tmp_path
    )
    assert_refused(
        status,
        output,
        "fmtp: cannot start: fmtp-data is the data directory of localhost, "
        "not example.org",
    )
    assert "--data-dir /var/lib/fmtp/example.org" in output
    assert "Serving" not in output
    assert not (path / "domain.key").exists()
    assert (path / "domain").read_text() == "localhost\n"


def test_not_a_data_dir(tmp_path: Path) -> None:
    """
    C{--data-dir} naming a directory of other files (C{/var/lib} by
    mistake) is refused, and nothing is written in it.
    """
    (tmp_path / "notes.txt").write_text("not fmtp's")
    status, output = run_twistd(
        ["-n", "fmtp", "--data-dir", str(tmp_path), *LISTENERS],
        tmp_path,
    )
    assert_refused(status, output, "is not an fmtp data directory")
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_key_file_unreadable(tmp_path: Path) -> None:
    """
    A key others may read, and a file that is no key: each refused in
    one line naming the file.
    """
    path = data_dir(tmp_path)
    key = path / "domain.key"
    key.write_text("not a key")
    key.chmod(0o644)
    status, output = run_twistd(["-n", "fmtp", *LISTENERS], tmp_path)
    assert_refused(status, output, "permissions 0644 are too open")
    key.chmod(0o600)
    status, output = run_twistd(["-n", "fmtp", *LISTENERS], tmp_path)
    assert_refused(status, output, "not an unencrypted PEM private key")


@pytest_twisted.ensureDeferred
async def test_older_data_dir_is_adopted(
    tmp_path: Path,
    processes: Processes,  # noqa: F811
) -> None:
    """
    A data directory an older fmtp made (its key, no domain file) is
    recorded for the domain the server starts with, and the log says so.
    """
    path = data_dir(tmp_path, domain=None)
    made = subprocess.run(
        [*FMTP, "keygen", "--domain", "localhost"],
        cwd=tmp_path,
        env=child_environment(),
        capture_output=True,
        timeout=30,
    )
    assert made.returncode == 0, made
    assert sorted(os.listdir(path)) == ["domain.key"]
    server = await start_server(processes, tmp_path, "server")
    assert "made by an older fmtp" in server.log()
    assert "Made a new key" not in server.log()
    assert datadir.read_domain(str(path)) == "localhost"
    await server.terminate()
