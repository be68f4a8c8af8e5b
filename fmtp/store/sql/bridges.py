"""
The SQL of ISP bridges (L{fmtp.interfaces.IBridgeStore}).
"""

from __future__ import annotations

import sqlite3

from twisted.internet.defer import Deferred

from fmtp.store.bridges import Bridge
from fmtp.store.sql.engine import SQLiteEngine

_COLUMNS = "name, users, secret, created, sources, rate"


def _row(bridge: Bridge) -> tuple:
    return (
        bridge.name,
        bridge.users,
        bridge.secret,
        bridge.created,
        " ".join(bridge.sources),
        bridge.rate,
    )


def _bridge(row: tuple) -> Bridge:
    name, users, secret, created, sources, rate = row
    return Bridge(name, users, secret, created, tuple(sources.split()), rate)


def _add_bridge(conn: sqlite3.Connection, bridge: Bridge) -> bool:
    cursor = conn.execute(
        f"INSERT OR IGNORE INTO bridges ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        _row(bridge),
    )
    return cursor.rowcount > 0


def _update_bridge(conn: sqlite3.Connection, bridge: Bridge) -> bool:
    name, *rest = _row(bridge)
    cursor = conn.execute(
        "UPDATE bridges SET users = ?, secret = ?, created = ?, sources = ?,"
        " rate = ? WHERE name = ?",
        (*rest, name),
    )
    return cursor.rowcount > 0


def _get_bridge(conn: sqlite3.Connection, name: str) -> Bridge | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM bridges WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else _bridge(row)


def _list_bridges(conn: sqlite3.Connection) -> list[Bridge]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM bridges ORDER BY name").fetchall()
    return [_bridge(row) for row in rows]


def _remove_bridge(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("DELETE FROM bridges WHERE name = ?", (name,)).rowcount > 0


class SQLBridges(SQLiteEngine):
    """
    L{fmtp.interfaces.IBridgeStore}'s methods, over the engine.
    """

    def add_bridge(self, bridge: Bridge) -> Deferred[bool]:
        return self.run_interaction(_add_bridge, bridge)

    def update_bridge(self, bridge: Bridge) -> Deferred[bool]:
        return self.run_interaction(_update_bridge, bridge)

    def get_bridge(self, name: str) -> Deferred[Bridge | None]:
        return self.run_query(_get_bridge, name)

    def list_bridges(self) -> Deferred[list[Bridge]]:
        return self.run_query(_list_bridges)

    def remove_bridge(self, name: str) -> Deferred[bool]:
        return self.run_interaction(_remove_bridge, name)
