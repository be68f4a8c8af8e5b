"""
Unit tests of L{fmtp.datadir}: which data directories a server and the
admin commands accept, and what they record.  The commands that use it
are tested as a user runs them in C{test_cli} and C{test_twistd_startup}.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fmtp import datadir
from fmtp.datadir import DataDirError, Found


def make_dir(path: Path, domain: str | None = None, files: tuple[str, ...] = ()):
    path.mkdir()
    if domain is not None:
        (path / datadir.DOMAIN_FILE).write_text(domain + "\n")
    for name in files:
        (path / name).write_bytes(b"")
    return str(path)


def test_first_start_makes_and_records(tmp_path: Path) -> None:
    path = str(tmp_path / "parent" / "fmtp-data")
    assert datadir.prepare_for_server(path, "poe.net") is Found.CREATED
    assert datadir.read_domain(path) == "poe.net"
    assert (Path(path) / "domain").read_text() == "poe.net\n"
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o700
    assert datadir.prepare_for_server(path, "poe.net") is Found.EXISTING


def test_server_refuses_another_domain(tmp_path: Path) -> None:
    path = make_dir(tmp_path / "d", "localhost", (datadir.KEY_FILE,))
    with pytest.raises(DataDirError) as e:
        datadir.prepare_for_server(path, "example.org")
    message = str(e.value)
    assert "of localhost, not example.org" in message
    assert "--data-dir /var/lib/fmtp/example.org" in message
    assert datadir.read_domain(path) == "localhost"


def test_server_adopts_an_older_data_dir(tmp_path: Path) -> None:
    """
    A directory an older fmtp made (a key, a store, no domain file) is
    recorded for the domain the server is started with.
    """
    path = make_dir(tmp_path / "d", None, (datadir.KEY_FILE, datadir.STORE_FILE))
    assert datadir.prepare_for_server(path, "poe.net") is Found.ADOPTED
    assert datadir.read_domain(path) == "poe.net"


def test_server_takes_an_empty_dir(tmp_path: Path) -> None:
    path = make_dir(tmp_path / "d")
    assert datadir.prepare_for_server(path, "poe.net") is Found.CREATED
    assert datadir.read_domain(path) == "poe.net"


def test_server_refuses_a_dir_of_other_files(tmp_path: Path) -> None:
    """
    C{--data-dir /var/lib} by mistake: nothing of fmtp's in it.
    """
    path = make_dir(tmp_path / "d", None, ("passwd", "hosts"))
    with pytest.raises(DataDirError, match="not an fmtp data directory"):
        datadir.prepare_for_server(path, "poe.net")
    assert not (Path(path) / datadir.DOMAIN_FILE).exists()


def test_bad_domain_file(tmp_path: Path) -> None:
    path = make_dir(tmp_path / "d", "not a domain")
    with pytest.raises(DataDirError, match="domain"):
        datadir.prepare_for_server(path, "poe.net")
    with pytest.raises(DataDirError, match="domain"):
        datadir.check_for_admin(path, "poe.net")


def test_domain_file_is_normalized(tmp_path: Path) -> None:
    path = make_dir(tmp_path / "d", "  Poe.NET ")
    assert datadir.read_domain(path) == "poe.net"
    assert datadir.check_for_admin(path, "poe.net") is Found.EXISTING


def test_admin_refuses_a_missing_dir(tmp_path: Path) -> None:
    path = str(tmp_path / "fmtp-data")
    with pytest.raises(DataDirError) as e:
        datadir.check_for_admin(path, "poe.net")
    assert str(tmp_path / "fmtp-data") in str(e.value)
    assert "--create-data-dir" in str(e.value)
    assert not Path(path).exists()


def test_admin_create_changes_nothing_until_asked(tmp_path: Path) -> None:
    path = str(tmp_path / "fmtp-data")
    assert datadir.check_for_admin(path, "poe.net", create=True) is Found.CREATED
    assert not Path(path).exists()
    datadir.create(path, "poe.net")
    assert datadir.read_domain(path) == "poe.net"
    assert datadir.check_for_admin(path, "poe.net") is Found.EXISTING


def test_admin_refuses_another_domain(tmp_path: Path) -> None:
    path = make_dir(tmp_path / "d", "localhost")
    for create in (False, True):
        with pytest.raises(DataDirError, match="of localhost; example.org is"):
            datadir.check_for_admin(path, "example.org", create=create)


def test_admin_refuses_a_dir_without_domain(tmp_path: Path) -> None:
    """
    Only a server decides the domain of a directory holding data; an
    empty one may be made a data directory with C{--create-data-dir}.
    """
    legacy = make_dir(tmp_path / "legacy", None, (datadir.STORE_FILE,))
    for create in (False, True):
        with pytest.raises(DataDirError, match="records no domain"):
            datadir.check_for_admin(legacy, "poe.net", create=create)
    empty = make_dir(tmp_path / "empty")
    with pytest.raises(DataDirError, match="records no domain"):
        datadir.check_for_admin(empty, "poe.net")
    assert datadir.check_for_admin(empty, "poe.net", create=True) is Found.CREATED


def test_default_paths() -> None:
    assert datadir.key_path("d") == str(Path("d") / "domain.key")
    assert datadir.store_url("d") == "sqlite:" + str(Path("d") / "fmtp.sqlite")
