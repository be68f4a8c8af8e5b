"""
What the presence store (L{fmtp.interfaces.IPresenceStore}) and its users
share: the state of a subscription, the rules that change it, its values
and its errors.

A subscription is directed: a I{subscriber} asks to see a I{target}'s
presence, and the target approves or denies.  Each direction is one
L{Link}, stored as one row, so the XMPP states users know (none, pending
out, pending in, to, from, both: RFC 6121 appendix A) are the two links of
a pair seen from one side (L{Subscription.state}).  The rules of how a
link changes (L{after_request}, L{after_approval}) are here, once, so that
every store applies the same ones; a store only keeps the links.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fmtp.errors import FMTPError
from fmtp.store.checks import check_address, check_counts, check_time


class Link(enum.Enum):
    """
    One direction of a subscription: what the target decided about the
    subscriber seeing its presence.
    """

    #: Nothing: the subscriber does not see the target, and has not asked.
    NONE = "none"
    #: The subscriber asked; the target has not answered yet (the request
    #: waits in the store until the target is online to answer).
    PENDING = "pending"
    #: The target approved: the subscriber sees its presence.
    APPROVED = "approved"
    #: The target approved before the subscriber asked: their request, when
    #: it comes, is approved at once.  Only the target sees this link.
    PREAPPROVED = "preapproved"


def after_request(link: Link) -> Link:
    """
    The link once its subscriber asks: a pre-approval turns into an
    approval, and asking again changes nothing.
    """
    if link in (Link.APPROVED, Link.PREAPPROVED):
        return Link.APPROVED
    return Link.PENDING


def after_approval(link: Link) -> Link:
    """
    The link once its target approves: a waiting request is approved, and
    approving a subscriber who has not asked pre-approves them.
    """
    if link in (Link.PENDING, Link.APPROVED):
        return Link.APPROVED
    return Link.PREAPPROVED


#: The links a subscriber's L{unsubscribe
#: <fmtp.interfaces.IPresenceStore.unsubscribe>} removes: their request or
#: their subscription, never the target's pre-approval.
UNSUBSCRIBABLE = frozenset({Link.PENDING, Link.APPROVED})

#: The links a target's L{denial
#: <fmtp.interfaces.IPresenceStore.deny_subscription>} removes: any.
DENIABLE = frozenset({Link.PENDING, Link.APPROVED, Link.PREAPPROVED})


#: The XMPP name of each pair (outbound, inbound) as one side sees it; an
#: inbound pre-approval is not a subscription yet, so it reads as none.
_STATE_NAMES = {
    (Link.NONE, Link.NONE): "none",
    (Link.PENDING, Link.NONE): "pending out",
    (Link.NONE, Link.PENDING): "pending in",
    (Link.PENDING, Link.PENDING): "pending out+in",
    (Link.APPROVED, Link.NONE): "to",
    (Link.APPROVED, Link.PENDING): "to+pending in",
    (Link.NONE, Link.APPROVED): "from",
    (Link.PENDING, Link.APPROVED): "from+pending out",
    (Link.APPROVED, Link.APPROVED): "both",
}


@dataclass(frozen=True, slots=True)
class Subscription:
    """
    One contact of a user's subscription list, as that user sees it.

    @ivar user: whose list this is.
    @ivar contact: the other address (local or of another domain).
    @ivar outbound: the link from C{user} to C{contact}: whether the user
        sees the contact's presence (never L{Link.PREAPPROVED}: a
        contact's pre-approval is the contact's to know).
    @ivar inbound: the link from C{contact} to C{user}: whether the
        contact sees the user's presence, or asked to, or is pre-approved.
    """

    user: str
    contact: str
    outbound: Link = Link.NONE
    inbound: Link = Link.NONE

    @property
    def state(self) -> str:
        """
        The XMPP name of the subscription: C{"none"}, C{"pending out"},
        C{"pending in"}, C{"pending out+in"}, C{"to"}, C{"to+pending in"},
        C{"from"}, C{"from+pending out"} or C{"both"}.
        """
        inbound = Link.NONE if self.inbound is Link.PREAPPROVED else self.inbound
        return _STATE_NAMES[self.outbound, inbound]

    @property
    def preapproved(self) -> bool:
        """
        Whether the user approved the contact before the contact asked.
        """
        return self.inbound is Link.PREAPPROVED


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """
    A subscription request waiting for its target's answer.

    @ivar subscriber: who asked.
    @ivar target: whose presence they asked to see.
    @ivar created: when they asked, in seconds since the epoch.
    """

    subscriber: str
    target: str
    created: float


class PendingLimitReached(FMTPError):
    """
    A subscription request would make more requests wait than the cap
    allows, for its subscriber or for its target: a flood of requests is
    refused rather than stored (issue 10's "cap on pending requests").
    Temporary: once requests are answered or expire, asking again works.
    """

    code = 429
    default_message = "too many subscription requests waiting"


def check_cap(link: Link, pending_out: int, pending_in: int, max_pending: int) -> None:
    """
    Refuse a request that would be a new waiting one (C{link} is
    L{Link.NONE}) when its subscriber already has C{pending_out} requests
    waiting, or its target C{pending_in}, and either reached the cap.

    @raise PendingLimitReached: saying whose requests are too many.
    """
    if link is not Link.NONE:
        return
    if pending_out >= max_pending:
        raise PendingLimitReached("too many of your subscription requests wait")
    if pending_in >= max_pending:
        raise PendingLimitReached("too many subscription requests wait for them")


def check_pair(subscriber: object, target: object) -> None:
    """
    Refuse a subscription whose addresses are not in normal form, or that
    names one address twice: a user always sees their own presence.

    @raise ValueError: naming what is wrong.
    """
    check_address(subscriber=subscriber, target=target)
    if subscriber == target:
        raise ValueError(f"{subscriber} cannot subscribe to themselves")


def check_request(
    subscriber: object, target: object, now: object, max_pending: object
) -> None:
    """
    Refuse a subscription request with a bad pair, time or cap.

    @raise ValueError: naming what is wrong.
    """
    check_pair(subscriber, target)
    check_time(now=now)
    check_counts(max_pending=max_pending)
