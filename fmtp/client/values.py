"""
What L{fmtp.client.Client} calls return, besides objects: pages of an
inbox or a listing, and the outcome of a send.
"""

from __future__ import annotations

from dataclasses import dataclass

from fmtp.delivery import RecipientResult
from fmtp.objects import ObjectSummary


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """
    One line of a FETCH: a message waiting for the user.
    """

    seq: int
    id: str
    sender: str
    digest: str


@dataclass(frozen=True, slots=True)
class InboxPage:
    entries: list[InboxEntry]
    #: The C{since} to ask for next.
    next_since: int


@dataclass(frozen=True, slots=True)
class ObjectPage:
    items: list[ObjectSummary]
    #: The C{start} of the next page, or L{None} at the end.
    next_start: int | None


@dataclass(frozen=True, slots=True)
class SendResult:
    """
    A sent message: its id and digest, the outcome for each local
    recipient (remote ones are queued), and the key that names the send.
    """

    id: str
    digest: str
    results: list[RecipientResult]
    key: str
