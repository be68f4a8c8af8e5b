"""
A local user's SEND in memory (L{fmtp.interfaces.IDeliveryStore}'s
C{send_message}): what C{enqueue} does, and the filing for local
recipients, in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred

from fmtp.delivery import Filing, QueuedDelivery, SendKey, results_text, sender_of
from fmtp.objects import FMTPObject
from fmtp.store.memory.base import MemoryBase


class MemorySending(MemoryBase):
    """
    C{send_message} over the other memory mixins' dicts: their checks all
    come first (in C{_enqueue}), so nothing is changed if one fails.
    """

    def send_message(
        self,
        obj: FMTPObject,
        deliveries: list[QueuedDelivery],
        send_key: SendKey | None,
        local: Sequence[str],
        choose: Callable[[str, FMTPObject | None, FMTPObject, bool], Filing],
    ) -> Deferred[list[Filing]]:
        return self._call(
            self._send_message, obj, deliveries, send_key, list(local), choose
        )

    def _send_message(
        self,
        obj: FMTPObject,
        deliveries: list[QueuedDelivery],
        send_key: SendKey | None,
        local: list[str],
        choose: Callable[[str, FMTPObject | None, FMTPObject, bool], Filing],
    ) -> list[Filing]:
        # Chosen before anything changes, so that a choice that raises
        # leaves the store as it was.
        choices = self._choose_for(obj, local, choose)
        self._enqueue(obj, deliveries, send_key)
        filings = self._follow(obj, choices)
        if send_key is not None:
            results = results_text([filing.result for filing in filings])
            self._finish_send(send_key.sender, send_key.key, results)
        return filings

    def _choose_for(
        self,
        obj: FMTPObject,
        local: list[str],
        choose: Callable[[str, FMTPObject | None, FMTPObject, bool], Filing],
    ) -> list[Filing]:
        """
        What C{choose} says for each address of C{local}, given its user
        object and approval; changes nothing.
        """
        sender = sender_of(obj)
        return [
            choose(
                address, self._get(address), obj, (address, sender) in self._approved
            )
            for address in local
        ]

    def _follow(self, obj: FMTPObject, choices: list[Filing]) -> list[Filing]:
        """
        File C{obj} as each of C{choices} says (as C{deliver_local}).
        """
        filings = []
        for filing in choices:
            seq = None
            if filing.file:
                seq = self._deliver_local(filing.result.address, obj, filing.held)
            filings.append(filing.followed(seq))
        return filings
