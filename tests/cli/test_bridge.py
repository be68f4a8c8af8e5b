"""
C{fmtp bridge}: an admin adds, lists and removes ISP bridges in a
server's data directory, run as the admin runs it (a subprocess).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from fmtp.cli import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from tests.cli.test_main import adduser, assert_failed, fmtp


def data_dir(tmp_path: Path) -> Path:
    made = adduser(tmp_path, "alice@localhost", "--create-data-dir")
    assert made.status == EXIT_OK, made
    return tmp_path / "fmtp-data"


def test_add_prints_the_secret_once_and_list_and_remove(tmp_path: Path) -> None:
    """
    C{add} prints a random 32-byte secret (64 hex digits) once; the store
    keeps it for checking MACs; C{list} names the bridge and its
    patterns, never the secret; C{remove} forgets it.
    """
    store = data_dir(tmp_path)
    added = fmtp(["bridge", "add", "isp", "--users", "*@LOCALHOST"], tmp_path)
    assert added.status == EXIT_OK, added
    secrets = re.findall(r"^[0-9a-f]{64}$", added.out, re.MULTILINE)
    assert len(secrets) == 1, added
    other = fmtp(["bridge", "add", "dsl", "--users", "dsl-*@localhost"], tmp_path)
    assert secrets[0] not in other.out
    conn = sqlite3.connect(store / "fmtp.sqlite")
    try:
        rows = conn.execute("SELECT name, users, secret FROM bridges").fetchall()
    finally:
        conn.close()
    assert ("isp", "*@localhost", secrets[0]) in rows

    listed = fmtp(["bridge", "list"], tmp_path)
    assert listed.out.splitlines() == ["dsl dsl-*@localhost", "isp *@localhost"]
    assert secrets[0] not in listed.out + listed.err
    as_json = json.loads(fmtp(["bridge", "list", "--json"], tmp_path).out)
    assert as_json == {
        "bridges": [
            {"name": "dsl", "users": "dsl-*@localhost", "sources": [], "rate": 5000},
            {"name": "isp", "users": "*@localhost", "sources": [], "rate": 5000},
        ]
    }
    assert_failed(
        fmtp(["bridge", "add", "isp", "--users", "*@localhost"], tmp_path),
        EXIT_REFUSED,
        "a bridge isp exists",
    )
    removed = fmtp(["bridge", "remove", "isp"], tmp_path)
    assert removed.status == EXIT_OK, removed
    assert fmtp(["bridge", "list"], tmp_path).out.splitlines() == [
        "dsl dsl-*@localhost"
    ]
    assert_failed(fmtp(["bridge", "remove", "isp"], tmp_path), EXIT_REFUSED, "isp")


def test_patterns_only_of_the_servers_domain(tmp_path: Path) -> None:
    """
    A bridge may publish only for the server's own users: a pattern of
    another domain, or with a wildcard in its domain, is refused, and
    nothing is added.
    """
    data_dir(tmp_path)
    for users in ("*@example.org", "*@*", "*", "a@localhost *@poe.net"):
        assert_failed(
            fmtp(["bridge", "add", "isp", "--users", users], tmp_path),
            EXIT_REFUSED,
            "not of this server's domain",
        )
    assert fmtp(["bridge", "list"], tmp_path).out == ""


def test_sources_and_rate_are_given_and_changed(tmp_path: Path) -> None:
    """
    C{add} takes the bridge's source networks and rate (5000 by default),
    C{set} changes them (C{--source} replaces the networks, C{--no-sources}
    removes them) and keeps the secret; C{list} shows them.
    """
    store = data_dir(tmp_path)
    added = fmtp(
        [
            "bridge", "add", "isp", "--users", "*@localhost",
            "--source", "192.0.2.0/28", "--source", "2001:DB8::/64",
        ],
        tmp_path,
    )  # fmt: skip
    assert added.status == EXIT_OK, added
    assert fmtp(["bridge", "list"], tmp_path).out.splitlines() == [
        "isp *@localhost from 192.0.2.0/28,2001:db8::/64 at 5000/s"
    ]
    changed = fmtp(["bridge", "set", "isp", "--rate", "8000"], tmp_path)
    assert changed.status == EXIT_OK, changed
    assert changed.out.strip() == (
        "isp *@localhost from 192.0.2.0/28,2001:db8::/64 at 8000/s"
    )
    fmtp(["bridge", "set", "isp", "--source", "198.51.100.7/32"], tmp_path)
    as_json = json.loads(fmtp(["bridge", "list", "--json"], tmp_path).out)
    assert as_json["bridges"] == [
        {
            "name": "isp",
            "users": "*@localhost",
            "sources": ["198.51.100.7/32"],
            "rate": 8000,
        }
    ]
    fmtp(["bridge", "set", "isp", "--no-sources"], tmp_path)
    assert fmtp(["bridge", "list"], tmp_path).out.splitlines() == ["isp *@localhost"]
    conn = sqlite3.connect(store / "fmtp.sqlite")
    try:
        [(secret,)] = conn.execute("SELECT secret FROM bridges").fetchall()
    finally:
        conn.close()
    assert secret in added.out
    assert_failed(
        fmtp(["bridge", "set", "nope", "--rate", "9"], tmp_path),
        EXIT_REFUSED,
        "no bridge nope",
    )


def test_bad_sources_and_rates(tmp_path: Path) -> None:
    """
    A source that is not a network, has host bits set, or is wider than a
    /8 (IPv4) or /16 (IPv6), and a rate out of range, are refused.
    """
    data_dir(tmp_path)
    add = ["bridge", "add", "isp", "--users", "*@localhost"]
    for extra, words in (
        (["--source", "example.org"], "not a network"),
        (["--source", "192.0.2.7/24"], "host bits"),
        (["--source", "0.0.0.0/0"], "wider than a /8"),
        (["--source", "::/8"], "wider than a /16"),
        (["--rate", "0"], "--rate must be from 1"),
        (["--rate", "many"], "rate"),
    ):
        assert_failed(fmtp(add + extra, tmp_path), EXIT_USAGE, words)
    assert fmtp(["bridge", "list"], tmp_path).out == ""


def test_usage(tmp_path: Path) -> None:
    data_dir(tmp_path)
    for args in (
        ["bridge", "add", "isp"],
        ["bridge", "set", "isp"],
        ["bridge", "list", "--rate", "5"],
        ["bridge", "remove", "isp", "--source", "192.0.2.0/24"],
        ["bridge", "add", "isp", "--users", "*@localhost", "--no-sources"],
        ["bridge", "add", "bad name", "--users", "*@localhost"],
        ["bridge", "list", "--users", "*@localhost"],
        ["bridge", "rename", "isp"],
    ):
        assert_failed(fmtp(args, tmp_path), EXIT_USAGE)
