"""
The router events presence sessions take: their kinds, and what each
carries (rendered by L{fmtp.protocols.presence.commands}).
"""

from __future__ import annotations

from dataclasses import dataclass

from fmtp.protocols.presence.status import Shown

#: The router event kinds presence sessions take.
PRESENCE = "presence"
REQUEST = "subscription-request"
SUBSCRIPTION = "subscription"


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """
    The payload of a C{presence} event: C{contact} now shows C{shown}.
    """

    contact: str
    shown: Shown


@dataclass(frozen=True, slots=True)
class SubscriptionChanged:
    """
    The payload of a C{subscription} event: C{contact} approved or removed
    the user's subscription, which is now C{state} as the user sees it.
    """

    contact: str
    state: str
