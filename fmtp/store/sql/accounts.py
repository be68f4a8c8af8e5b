"""
The SQL of local accounts (L{fmtp.interfaces.IAccountStore}).
"""

from __future__ import annotations

import sqlite3

from twisted.internet.defer import Deferred

from fmtp.errors import AccountExists
from fmtp.store.sql.engine import SQLiteEngine, transaction
from fmtp.store.sql.presence import _forget_subscriptions
from fmtp.store.sql.rooms import _forget_memberships


def _add_account(
    conn: sqlite3.Connection, address: str, password_hash: str, created: int
) -> None:
    try:
        conn.execute(
            "INSERT INTO accounts (address, password_hash, created) VALUES (?, ?, ?)",
            (address, password_hash, created),
        )
    except sqlite3.IntegrityError:
        raise AccountExists(f"account {address} exists")


def _set_password_hash(
    conn: sqlite3.Connection, address: str, password_hash: str
) -> bool:
    cursor = conn.execute(
        "UPDATE accounts SET password_hash = ? WHERE address = ?",
        (password_hash, address),
    )
    return cursor.rowcount > 0


def _get_password_hash(conn: sqlite3.Connection, address: str) -> str | None:
    row = conn.execute(
        "SELECT password_hash FROM accounts WHERE address = ?", (address,)
    ).fetchone()
    return None if row is None else row[0]


def _list_accounts(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT address FROM accounts ORDER BY 1")]


def _delete_account(conn: sqlite3.Connection, address: str) -> bool:
    # What only the account could use goes with it; what it sent stays
    # for those who hold it (see IAccountStore.delete_account).
    with transaction(conn):
        gone = conn.execute("DELETE FROM accounts WHERE address = ?", (address,))
        if gone.rowcount == 0:
            return False
        drafts = "SELECT id FROM objects WHERE owner = ? AND sealed = 0"
        conn.execute(f"DELETE FROM queue WHERE object_id IN ({drafts})", (address,))
        conn.execute("DELETE FROM objects WHERE owner = ? AND sealed = 0", (address,))
        conn.execute("UPDATE objects SET removed = 1 WHERE owner = ?", (address,))
        conn.execute("UPDATE inbox SET removed = 1 WHERE recipient = ?", (address,))
        conn.execute("DELETE FROM approved_senders WHERE recipient = ?", (address,))
        _forget_subscriptions(conn, address)
        _forget_memberships(conn, address)
    return True


class SQLAccounts(SQLiteEngine):
    """
    L{fmtp.interfaces.IAccountStore}'s methods, over the engine.
    """

    # IAccountStore

    def add_account(self, address: str, password_hash: str) -> Deferred[None]:
        created = int(self._reactor.seconds())
        return self.run_interaction(_add_account, address, password_hash, created)

    def set_password_hash(self, address: str, password_hash: str) -> Deferred[bool]:
        return self.run_interaction(_set_password_hash, address, password_hash)

    def get_password_hash(self, address: str) -> Deferred[str | None]:
        return self.run_interaction(_get_password_hash, address)

    def list_accounts(self) -> Deferred[list[str]]:
        return self.run_interaction(_list_accounts)

    def delete_account(self, address: str) -> Deferred[bool]:
        return self.run_interaction(_delete_account, address)
