"""
The SQL of resumption tokens (L{fmtp.interfaces.ITokenStore}).
"""

from __future__ import annotations

import sqlite3

from twisted.internet.defer import Deferred

from fmtp.store.sql.engine import SQLiteEngine, transaction


def _add_token(
    conn: sqlite3.Connection,
    address: str,
    token_hash: str,
    expires: float,
    now: float,
    keep: int,
) -> bool:
    with transaction(conn):
        added = conn.execute(
            "INSERT INTO resumption_tokens (token_hash, address, issued, expires) "
            "SELECT ?, ?, ?, ? WHERE EXISTS "
            "(SELECT 1 FROM accounts WHERE address = ?)",
            (token_hash, address, now, expires, address),
        )
        if added.rowcount == 0:
            return False
        conn.execute(
            "DELETE FROM resumption_tokens WHERE address = ? AND expires <= ?",
            (address, now),
        )
        conn.execute(
            "DELETE FROM resumption_tokens WHERE address = ? AND token_hash NOT IN "
            "(SELECT token_hash FROM resumption_tokens WHERE address = ? "
            "ORDER BY rowid DESC LIMIT ?)",
            (address, address, max(1, keep)),
        )
    return True


def _find_token(conn: sqlite3.Connection, token_hash: str, now: float) -> str | None:
    row = conn.execute(
        "SELECT address FROM resumption_tokens WHERE token_hash = ? AND expires > ?",
        (token_hash, now),
    ).fetchone()
    return None if row is None else row[0]


def _revoke_token(conn: sqlite3.Connection, token_hash: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM resumption_tokens WHERE token_hash = ?", (token_hash,)
    )
    return cursor.rowcount > 0


def _forget_expired_tokens(conn: sqlite3.Connection, now: float) -> int:
    cursor = conn.execute("DELETE FROM resumption_tokens WHERE expires <= ?", (now,))
    return cursor.rowcount


def _forget_tokens(conn: sqlite3.Connection, address: str) -> None:
    """
    Delete every token of C{address} (its password changed, or it was
    deleted), inside the caller's transaction.
    """
    conn.execute("DELETE FROM resumption_tokens WHERE address = ?", (address,))


class SQLTokens(SQLiteEngine):
    """
    L{fmtp.interfaces.ITokenStore}'s methods, over the engine.
    """

    def add_token(
        self, address: str, token_hash: str, expires: float, now: float, keep: int
    ) -> Deferred[bool]:
        return self.run_interaction(_add_token, address, token_hash, expires, now, keep)

    def find_token(self, token_hash: str, now: float) -> Deferred[str | None]:
        return self.run_query(_find_token, token_hash, now)

    def revoke_token(self, token_hash: str) -> Deferred[bool]:
        return self.run_interaction(_revoke_token, token_hash)

    def forget_expired_tokens(self, now: float) -> Deferred[int]:
        return self.run_interaction(_forget_expired_tokens, now)
