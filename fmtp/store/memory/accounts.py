"""
Local accounts in memory (L{fmtp.interfaces.IAccountStore}).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from fmtp.errors import AccountExists
from fmtp.store.memory.base import MemoryBase


class MemoryAccounts(MemoryBase):
    """
    L{fmtp.interfaces.IAccountStore}'s methods, over a L{dict}.

    Deleting an account reaches into the other features' state (objects,
    inboxes, approvals, subscriptions, room memberships), as the SQL
    store's does into their tables: it needs the whole composed store.
    """

    def __init__(self) -> None:
        super().__init__()
        self._accounts: dict[str, str] = {}

    def add_account(self, address: str, password_hash: str) -> Deferred[None]:
        return self._call(self._add_account, address, password_hash)

    def _add_account(self, address: str, password_hash: str) -> None:
        if address in self._accounts:
            raise AccountExists(f"account {address} exists")
        self._accounts[address] = password_hash

    def set_password_hash(self, address: str, password_hash: str) -> Deferred[bool]:
        return self._call(self._set_password_hash, address, password_hash)

    def _set_password_hash(self, address: str, password_hash: str) -> bool:
        if address not in self._accounts:
            return False
        self._accounts[address] = password_hash
        return True

    def get_password_hash(self, address: str) -> Deferred[str | None]:
        return self._call(self._accounts.get, address)

    def list_accounts(self) -> Deferred[list[str]]:
        return self._call(sorted, self._accounts)

    def delete_account(self, address: str) -> Deferred[bool]:
        return self._call(self._delete_account, address)

    def _delete_account(self, address: str) -> bool:
        if self._accounts.pop(address, None) is None:
            return False
        for object_id, stored in list(self._objects.items()):
            if stored.owner == address:
                self._delete(object_id)
        for entry in self._inboxes.get(address, {}).values():
            entry.removed = True
        self._approved = {pair for pair in self._approved if pair[0] != address}
        self._forget_subscriptions(address)
        self._forget_memberships(address)
        return True
