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
    #: The subscriber asked, and the request waits as a pending one does,
    #: but is never put to the target: the target's policy refused it, no
    #: such user exists, or too many requests already wait for the target.
    #: Only the subscriber sees this link, as L{PENDING}; it counts under
    #: the subscriber's cap of waiting requests, never under the target's,
    #: so requests the target never sees cannot fill the target's.
    HIDDEN = "hidden"


def after_request(link: Link, hidden: bool = False) -> Link:
    """
    The link once its subscriber asks: a pre-approval turns into an
    approval; a new request waits, L{Link.HIDDEN} if C{hidden}; a hidden
    one asked again when it need no longer be hidden is put to the target;
    asking again changes nothing else (a request put to the target stays
    put).
    """
    if link in (Link.APPROVED, Link.PREAPPROVED):
        return Link.APPROVED
    if link is Link.PENDING or not hidden:
        return Link.PENDING
    return Link.HIDDEN


def after_approval(link: Link) -> Link:
    """
    The link once its target approves: a waiting request, hidden or not,
    is approved, and approving a subscriber who has not asked pre-approves
    them.
    """
    if link in (Link.PENDING, Link.HIDDEN, Link.APPROVED):
        return Link.APPROVED
    return Link.PREAPPROVED


def requested(
    link: Link, hidden: bool, pending_out: int, pending_in: int, max_pending: int
) -> Link:
    """
    The link once its subscriber asks (L{after_request}), under the cap:
    a new request is refused when C{pending_out} requests of its
    subscriber's (hidden or not) already wait and reached the cap; one
    that would be put to a target for whom C{pending_in} requests already
    wait, and reached the cap, waits hidden instead, so that the
    subscriber cannot tell a target with a full cap from any other.

    @raise PendingLimitReached: for the subscriber's own cap only.
    """
    if link is Link.NONE and pending_out >= max_pending:
        raise PendingLimitReached("too many of your subscription requests wait")
    return after_request(link, hidden or pending_in >= max_pending)


#: The links that are requests waiting for an answer: what the
#: subscriber's cap counts, and what expires.
WAITING = frozenset({Link.PENDING, Link.HIDDEN})

#: The links a subscriber's L{unsubscribe
#: <fmtp.interfaces.IPresenceStore.unsubscribe>} removes: their request or
#: their subscription, never the target's pre-approval.
UNSUBSCRIBABLE = WAITING | {Link.APPROVED}

#: The links a target's L{denial
#: <fmtp.interfaces.IPresenceStore.deny_subscription>} removes: any.
DENIABLE = UNSUBSCRIBABLE | {Link.PREAPPROVED}


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


def seen_by_user(
    user: str, contact: str, outbound: Link, inbound: Link
) -> Subscription:
    """
    The links between C{user} and C{contact} as C{user} is shown them:
    the contact's pre-approval of the user is the contact's to know, and
    a hidden request is a waiting one to its subscriber and nothing to
    its target.
    """
    if outbound is Link.PREAPPROVED:
        outbound = Link.NONE
    elif outbound is Link.HIDDEN:
        outbound = Link.PENDING
    if inbound is Link.HIDDEN:
        inbound = Link.NONE
    return Subscription(user, contact, outbound, inbound)


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
    A subscription request would make more of its subscriber's requests
    wait than the cap allows: a flood of requests is refused rather than
    stored (issue 10's "cap on pending requests").  Only ever about the
    subscriber's own requests (a target with a full cap is not told
    apart, L{requested}).  Temporary: once requests are answered or
    expire, asking again works.
    """

    code = 429
    default_message = "too many subscription requests waiting"


def check_pair(subscriber: object, target: object) -> None:
    """
    Refuse a subscription whose addresses are not in normal form, or that
    names one address twice: a user always sees their own presence.

    @raise ValueError: naming what is wrong.
    """
    check_address(subscriber=subscriber, target=target)
    if subscriber == target:
        raise ValueError(f"{subscriber} cannot subscribe to themselves")


def check_ms(before: object) -> None:
    """
    Refuse a time in milliseconds that is not a whole number.

    @raise ValueError: if it is not.
    """
    if not isinstance(before, int) or isinstance(before, bool):
        raise ValueError(f"a time in milliseconds is a whole number, not {before!r}")


def check_action(actor: object, user: object, ms: object, object_id: object) -> None:
    """
    Refuse a subscription action whose pair, time or id is malformed.

    @raise ValueError: naming what is wrong.
    """
    check_pair(actor, user)
    check_ms(ms)
    if not isinstance(object_id, str) or not object_id:
        raise ValueError(f"bad object id {object_id!r}")


def check_request(
    subscriber: object,
    target: object,
    now: object,
    max_pending: object,
    hidden: object = False,
) -> None:
    """
    Refuse a subscription request with a bad pair, time, cap or flag.

    @raise ValueError: naming what is wrong.
    """
    check_pair(subscriber, target)
    check_time(now=now)
    check_counts(max_pending=max_pending)
    if not isinstance(hidden, bool):
        raise ValueError(f"hidden must be True or False, not {hidden!r}")
