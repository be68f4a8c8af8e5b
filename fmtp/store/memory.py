"""
A store that keeps everything in process memory.

It exists for tests and for trying fmtp out (C{--store memory:}): nothing
survives a restart.  It follows the same contract as the SQLite store,
checked by the same conformance suite (C{tests/store_conformance.py}), so
code tested against it behaves the same against a durable store.
"""

from __future__ import annotations

import sys
from itertools import islice
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from fmtp.errors import AccountExists, StoreUnavailable
from fmtp.interfaces import IAccountStore, IObjectStore
from fmtp.objects import FMTPObject, ObjectSummary, owner_of


def check_page(start: object, limit: object) -> None:
    """
    Refuse a listing page that is not two non-negative integers.

    Shared by every store so that they reject the same arguments: a
    negative C{start} or C{limit} has no meaning, and SQLite would read a
    negative C{LIMIT} as "no limit" where a list slice would count from the
    end.

    @raise ValueError: if C{start} or C{limit} is not a non-negative L{int}.
    """
    for name, value in (("start", start), ("limit", limit)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {value!r}")


def copy_object(obj: FMTPObject) -> FMTPObject:
    """
    A copy of C{obj} that shares no mutable state with it.

    The body is converted with L{bytes} as well, so a caller that passed a
    L{bytearray} or L{memoryview} cannot change the stored body afterwards.
    """
    return FMTPObject(obj.id, obj.type, dict(obj.properties), bytes(obj.body))


class _Stored:
    """
    An object as the memory store holds it, with what listings need
    computed once at put time.
    """

    __slots__ = ("obj", "owner", "public", "summary")

    def __init__(self, obj: FMTPObject) -> None:
        self.obj = obj
        self.owner = owner_of(obj.id)
        self.public = obj.public
        self.summary = obj.summary()


@implementer(IObjectStore, IAccountStore)
class MemoryStore:
    """
    L{IObjectStore} and L{IAccountStore} in a pair of dicts.

    Every method returns an already-fired L{Deferred}, which is allowed by
    the interfaces and keeps tests that use this store deterministic.

    Objects are copied on the way in and on the way out, so neither the
    caller that stored an object nor one that fetched it can change what
    the store holds, just as with a store that serializes to disk.

    Listing order is the insertion order of a L{dict}: replacing the value
    of an existing key keeps its place, and deleting then re-adding a key
    moves it to the end, exactly as "first stored" means in the SQLite
    store.

    The store needs no L{open} (there is nothing to prepare) but honours
    L{close}: afterwards every call fails with L{StoreUnavailable}, so a
    test catches code that keeps using a store the server has shut down.
    L{open} after L{close} makes it usable again with its data intact.
    """

    def __init__(self) -> None:
        self._objects: dict[str, _Stored] = {}
        self._accounts: dict[str, str] = {}
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<MemoryStore {state}, {len(self._objects)} objects>"

    def _call(self, func: Any, *args: Any) -> Deferred[Any]:
        """
        Run C{func} now and wrap its result or exception in a fired
        L{Deferred}, failing with L{StoreUnavailable} once closed.
        """
        if self._closed:
            return fail(StoreUnavailable("store is closed"))
        try:
            result = func(*args)
        except Exception as e:
            return fail(e)
        return succeed(result)

    # Lifecycle

    def open(self) -> Deferred[None]:
        self._closed = False
        return succeed(None)

    def close(self) -> Deferred[None]:
        self._closed = True
        return succeed(None)

    # IObjectStore

    def put_object(self, obj: FMTPObject) -> Deferred[None]:
        return self._call(self._put, obj)

    def _put(self, obj: FMTPObject) -> None:
        self._objects[obj.id] = _Stored(copy_object(obj))

    def get_object(self, object_id: str) -> Deferred[FMTPObject | None]:
        return self._call(self._get, object_id)

    def _get(self, object_id: str) -> FMTPObject | None:
        stored = self._objects.get(object_id)
        return None if stored is None else copy_object(stored.obj)

    def delete_object(self, object_id: str) -> Deferred[bool]:
        return self._call(self._delete, object_id)

    def _delete(self, object_id: str) -> bool:
        return self._objects.pop(object_id, None) is not None

    def list_objects(
        self,
        start: int,
        limit: int,
        type: str | None = None,
        owner: str | None = None,
        public_only: bool = True,
    ) -> Deferred[list[ObjectSummary]]:
        return self._call(self._list, start, limit, type, owner, public_only)

    def _list(
        self,
        start: int,
        limit: int,
        type: str | None,
        owner: str | None,
        public_only: bool,
    ) -> list[ObjectSummary]:
        check_page(start, limit)
        matching = (
            stored.summary
            for stored in self._objects.values()
            if (type is None or stored.obj.type == type)
            and (owner is None or stored.owner == owner)
            and (not public_only or stored.public)
        )
        # islice takes at most sys.maxsize; no list is longer anyway.
        start = min(start, sys.maxsize)
        return list(islice(matching, start, min(start + limit, sys.maxsize)))

    # IAccountStore

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
