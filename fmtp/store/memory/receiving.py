"""
A message a peer delivers, in memory (L{fmtp.interfaces.IDeliveryStore}'s
C{receive_message}): the filing for its local recipients, in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred

from fmtp.delivery import Filing
from fmtp.errors import ObjectSealed
from fmtp.objects import FMTPObject
from fmtp.store.memory.base import MemoryBase


class MemoryReceiving(MemoryBase):
    """
    C{receive_message} over the other memory mixins' dicts: the id is
    checked and every choice made before anything changes.
    """

    def receive_message(
        self,
        obj: FMTPObject,
        local: Sequence[str],
        choose: Callable[[str, FMTPObject | None, FMTPObject, bool], Filing],
    ) -> Deferred[list[Filing]]:
        return self._call(self._receive_message, obj, list(local), choose)

    def _receive_message(
        self,
        obj: FMTPObject,
        local: list[str],
        choose: Callable[[str, FMTPObject | None, FMTPObject, bool], Filing],
    ) -> list[Filing]:
        existing = self._objects.get(obj.id)
        if existing is not None and existing.obj.digest() != obj.digest():
            raise ObjectSealed(f"{obj.id} is already held with other content")
        # The helpers of MemorySending, the mixin beside this one.
        return self._follow(obj, self._choose_for(obj, local, choose))
