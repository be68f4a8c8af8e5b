"""
Objects in memory (L{fmtp.interfaces.IObjectStore}).
"""

from __future__ import annotations

import sys
from itertools import islice

from twisted.internet.defer import Deferred

from fmtp.errors import ObjectSealed
from fmtp.objects import FMTPObject, ObjectSummary, owner_of
from fmtp.store.checks import check_page
from fmtp.store.memory.base import MemoryBase


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
    computed once at put time, and whether it is sealed (sent or filed)
    and removed by its owner.
    """

    __slots__ = ("obj", "owner", "public", "summary", "sealed", "removed")

    def __init__(self, obj: FMTPObject) -> None:
        self.obj = obj
        self.owner = owner_of(obj.id)
        self.public = obj.public
        self.summary = obj.summary()
        self.sealed = False
        self.removed = False


def check_sealable(stored: _Stored | None, obj: FMTPObject, replace: bool) -> None:
    """
    Refuse to store C{obj} over C{stored} where that would change a
    sealed object: replacing it at all (C{replace}, a PUT), or with other
    content (queueing or filing a copy of it).

    @raise ObjectSealed: naming the id.
    """
    if stored is None or not stored.sealed:
        return
    if replace:
        raise ObjectSealed(f"{obj.id} was sent and cannot be changed")
    if stored.summary.digest != obj.digest():
        raise ObjectSealed(f"{obj.id} is already held with other content")


class MemoryObjects(MemoryBase):
    """
    L{fmtp.interfaces.IObjectStore}'s methods, over a L{dict}.

    Objects are copied on the way in and on the way out, so neither the
    caller that stored an object nor one that fetched it can change what
    the store holds, just as with a store that serializes to disk.

    Listing order is the insertion order of a L{dict}: replacing the value
    of an existing key keeps its place, and deleting then re-adding a key
    moves it to the end, exactly as "first stored" means in the SQLite
    store.
    """

    def __init__(self) -> None:
        super().__init__()
        self._objects: dict[str, _Stored] = {}

    def put_object(self, obj: FMTPObject) -> Deferred[None]:
        return self._call(self._put, obj)

    def _put(self, obj: FMTPObject) -> None:
        stored = _Stored(copy_object(obj))
        check_sealable(self._objects.get(obj.id), obj, replace=True)
        self._objects[obj.id] = stored

    def get_object(self, object_id: str) -> Deferred[FMTPObject | None]:
        return self._call(self._get, object_id)

    def _get(self, object_id: str) -> FMTPObject | None:
        stored = self._objects.get(object_id)
        return None if stored is None else copy_object(stored.obj)

    def delete_object(self, object_id: str) -> Deferred[bool]:
        return self._call(self._delete, object_id)

    def _delete(self, object_id: str) -> bool:
        stored = self._objects.get(object_id)
        if stored is None or stored.removed:
            return False
        if stored.sealed:
            # Sent: it stays for its recipients and the queue.
            stored.removed = True
            return True
        del self._objects[object_id]
        for key in [key for key in self._queue if key[0] == object_id]:
            del self._queue[key]
        return True

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
            if not stored.removed
            and (type is None or stored.obj.type == type)
            and (owner is None or stored.owner == owner)
            and (not public_only or stored.public)
        )
        # islice takes at most sys.maxsize; no list is longer anyway.
        start = min(start, sys.maxsize)
        return list(islice(matching, start, min(start + limit, sys.maxsize)))
