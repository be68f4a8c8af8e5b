"""
The store of presence subscriptions.
"""

from __future__ import annotations

from zope.interface import Interface


class IPresenceStore(Interface):
    """
    Durable storage of presence subscriptions: who may see whose status,
    and the requests waiting for an answer (the presence protocol, issue
    10).

    A subscription is directed (see L{fmtp.store.presence}): a subscriber
    asks to see a target's presence (L{request_subscription}); the target
    approves or denies, now or when next online, the request waiting here
    meanwhile; a target may approve before being asked (pre-approval).
    Each direction is one L{fmtp.store.presence.Link}, and the states XMPP
    users know (none, pending out, pending in, to, from, both) are the two
    links of a pair seen from one side
    (L{fmtp.store.presence.Subscription.state}).  Addresses may be of any
    domain: a server keeps the links that involve its own users, both
    ways, and the other domain keeps its own view.

    Not here: anyone's current status.  Status is volatile: a local user's
    comes from their live sessions, and a remote user's last known status
    is held in memory by the presence service, unknown after a restart or
    once the link to its domain has been down past a timeout, until that
    domain sends it again.  A stored status would show as online a user
    nobody can vouch for any more ("never online forever"), and would cost
    a durable write per change of a value that UDP bridges change
    thousands of times a second.  A user's chosen status and note, which
    outlive a session, are their user object's C{Status} property.

    Privacy: L{subscriptions} and L{subscription} show one user their own
    list.  L{subscribers}, L{pending_requests}, L{shared_with_domain} and
    L{followed_domains} serve the server itself (a status change's
    fan-out, putting requests to their target when online, a link to a
    domain going and coming); what they return is shown to nobody but
    the user it is about.

    Every method returns a L{Deferred}; one from a write fires only once
    the write is durable.  Addresses must be in normal form
    (L{fmtp.objects.normalize_address}) and times are seconds since the
    epoch from the caller's clock; a bad argument fails with L{ValueError}
    (L{fmtp.errors.InvalidAddress} for an address), changing nothing.
    """

    def request_subscription(subscriber, target, now, max_pending, hidden=False):
        """
        C{subscriber} asks to see C{target}'s presence.

        A request already waiting, or already approved, is not recorded
        again; one the target pre-approved is approved at once.  A new
        request waits; it is refused if it would make more than
        C{max_pending} requests wait from C{subscriber} (hidden ones
        included).

        A request waits I{hidden} (L{fmtp.store.presence.Link.HIDDEN})
        when C{hidden} is true (the caller's policy refuses it, or there
        is no such user), or when C{max_pending} requests put to
        C{target} already wait: it is never among C{target}'s
        L{pending_requests} or L{subscriptions}, does not count under
        C{target}'s cap, and looks to C{subscriber} exactly as a waiting
        request does, so that nobody can fill a user's cap with requests
        the user never sees, nor tell a user with a full cap from any
        other.  A hidden request asked again with C{hidden} false is put
        to C{target} if their cap allows (a request is never hidden again
        once put).  The check and the write are one step, so concurrent
        requests cannot pass the cap together.

        @param now: when it was asked (orders and expires requests).
        @param max_pending: the cap on waiting requests, per subscriber
            and per target.
        @param hidden: whether the request is never to be put to the
            target.
        @return: a L{Deferred} that fires with the link from subscriber to
            target afterwards, L{fmtp.store.presence.Link.PENDING},
            L{fmtp.store.presence.Link.HIDDEN} or
            L{fmtp.store.presence.Link.APPROVED}; or fails with
            L{fmtp.store.presence.PendingLimitReached} (the subscriber's
            cap), nothing recorded.
        """

    def approve_subscription(target, subscriber, now):
        """
        C{target} lets C{subscriber} see its presence: a waiting request,
        hidden or not, is approved; approving someone who has not asked pre-approves
        them; approving again changes nothing.

        @param now: when, recorded for a pre-approval.
        @return: a L{Deferred} that fires with the link afterwards,
            L{fmtp.store.presence.Link.APPROVED} or
            L{fmtp.store.presence.Link.PREAPPROVED}.
        """

    def deny_subscription(target, subscriber):
        """
        C{target} removes the link from C{subscriber}, whatever it is:
        denies a waiting request, cancels an approved subscription, or
        withdraws a pre-approval (the target's side of removal).

        @return: a L{Deferred} that fires with C{True} if there was a link
            to remove, C{False} otherwise.
        """

    def unsubscribe(subscriber, target):
        """
        C{subscriber} stops seeing C{target}'s presence, or withdraws a
        request (the subscriber's side of removal).  A pre-approval by the
        target stays: it is the target's decision.

        @return: a L{Deferred} that fires with C{True} if a request or
            subscription was removed, C{False} otherwise.
        """

    def subscription(user, contact):
        """
        How C{user} and C{contact} are linked, as C{user} sees it.

        @return: a L{Deferred} that fires with a
            L{fmtp.store.presence.Subscription} (both links
            L{fmtp.store.presence.Link.NONE} if there is nothing).
        """

    def subscriptions(user):
        """
        C{user}'s own subscription list: every contact linked to C{user}
        in either direction, as C{user} sees it.  A contact's pre-approval
        of C{user} is not shown, nor a hidden request for C{user}; one of
        C{user}'s is shown waiting.

        @return: a L{Deferred} that fires with a L{list} of
            L{fmtp.store.presence.Subscription}, by ascending contact.
        """

    def subscribers(target):
        """
        Who sees C{target}'s presence: the addresses, local and of other
        domains, whose subscription C{target} approved; what a status
        change fans out to.

        @return: a L{Deferred} that fires with a L{list} of addresses, in
            ascending order.
        """

    def pending_requests(target):
        """
        The requests waiting for C{target}'s answer, to put to them when
        they are online (hidden ones are not).

        @return: a L{Deferred} that fires with a L{list} of
            L{fmtp.store.presence.PendingRequest}, oldest first (ties by
            subscriber).
        """

    def waiting_from(target, domain):
        """
        How many requests from users of C{domain} wait for C{target},
        hidden or not: what keeps one other domain from filling a user's
        requests, counted the same whether C{target} exists, blocks them
        or not, so that it tells that domain nothing but what its own
        users asked.

        @return: a L{Deferred} that fires with the number.
        """

    def shared_with_domain(domain):
        """
        Every approved subscription with a subscriber or a target at
        C{domain}: what a server resends when the link to C{domain} comes
        back, and turns to unknown when it goes away past its timeout.

        @return: a L{Deferred} that fires with a L{list} of
            C{(subscriber, target)} pairs, in ascending order.
        """

    def followed_domains(domain):
        """
        The other domains whose users' presence users of C{domain} are
        approved to see: those a server asks for the status it shows its
        users (at start, and as the links to them come and go).

        @return: a L{Deferred} that fires with a L{list} of domains, in
            ascending order.
        """

    def last_action(actor, user):
        """
        The last subscription action (doc/protocol.md 9.7) that C{actor},
        of another domain, took about local C{user} and this server
        applied: what refuses the same action delivered again, or an older
        one it overtook, after a restart as before it.

        @return: a L{Deferred} that fires with C{(ms, object_id)}, the
            time in its id and the id, or L{None}.
        """

    def record_action(actor, user, ms, object_id):
        """
        Record the action C{object_id}, of time C{ms}, as the last
        C{actor} took about C{user}, unless a newer one is recorded.

        @return: a L{Deferred} that fires once it is durable.
        """

    def forget_actions(before):
        """
        Forget the actions recorded whose time (milliseconds) is before
        C{before}: once older than any signature a receiver accepts, they
        cannot be delivered again.

        @return: a L{Deferred} that fires with the number forgotten.
        """

    def expire_requests(before):
        """
        Forget the requests still waiting, hidden or not, that were made
        before C{before}: a request nobody answered does not hold its
        place under the cap for ever.

        @return: a L{Deferred} that fires with the number forgotten.
        """


class IPresenceView(Interface):
    """
    What one user may see of another's presence, for the protocols other
    than presence: the object protocol's GET of a user object carries the
    user's C{Status} (the FMTP draft's property) to those allowed to see
    it, and to nobody else.

    A platform seam (DESIGN decision 16): the presence plugin registers
    its service on C{services.presence}; without it nobody sees a status.
    """

    def shown_to(viewer, contact):
        """
        What C{viewer} may see of the presence of the user C{contact}: the
        user themselves and their approved subscribers get an answer
        (offline too, and offline for a subscriber the contact's policy
        blocks now); anybody else gets L{None}, as for a user who does not
        exist, so that the answer says nothing of who subscribes to whom.

        @return: a L{Deferred} that fires with a
            L{fmtp.protocols.presence.status.Shown} or L{None}.
        """


class IPresenceService(Interface):
    """
    The presence of this server's users, and their subscriptions (the
    presence protocol, doc/protocol.md section 9), apart from any socket:
    one per server, reached by the presence commands.

    Every method acts for the user a router session
    (L{fmtp.interfaces.ISession}) was opened for, or for an address the
    commands took from such a session: no method takes another user as
    its actor.  Pushes to users' sessions go through the router as events
    of the kinds C{presence}, C{subscription-request} and
    C{subscription}, to the sessions that made themselves available (a
    first STATUS) only.
    """

    def set_status(login, status, note="", priority=0, resource=None):
        """
        Set the presence of C{login}'s session.  The first call makes the
        session available: it counts for its user's presence, receives
        pushes, and is sent its buddies' presence and the requests that
        wait for its user.  A session reconnecting within the grace
        period with the same user and resource takes the old one's place.

        @param status: a settable status word (checked by the caller).
        @param priority: the session's priority (each call sets the whole
            presence: status, note and priority).
        @param resource: the session's resource name at the first call
            (L{None}: a random one); later it must be the same or L{None}.
        @return: the session's L{fmtp.protocols.presence.status.SessionPresence}.
        @raise fmtp.errors.TooManyRequests: over the session's rate.
        @raise fmtp.errors.InvalidObject: for a resource changed later.
        """

    def session_presence(login):
        """
        @return: the L{fmtp.protocols.presence.status.SessionPresence} of
            C{login}'s session, or L{None} before its first STATUS.
        """

    def user_presence(address):
        """
        What approved subscribers of the local user C{address} see now.

        @return: a L{fmtp.protocols.presence.status.Shown}.
        """

    def seen_by(viewer, contact):
        """
        The one answer to "what does C{viewer} see of C{contact}'s
        presence": the contact's presence if C{viewer}'s subscription was
        approved and the contact's policy does not block C{viewer} now,
        else offline (also for a contact of another domain, until
        presence federates).

        @return: a L{Deferred} that fires with a
            L{fmtp.protocols.presence.status.Shown}.
        """

    def session_ended(login):
        """
        C{login}'s session logged out or quit: its presence ends at once.
        """

    def session_lost(login):
        """
        C{login}'s connection was lost: its presence stays for the grace
        period, then ends, unless a session of the same user and resource
        takes its place.
        """

    def subscribe(subscriber, target):
        """
        C{subscriber} asks to see C{target}'s presence (the target's policy
        decides whether it is approved at once, waits, or is politely
        blocked).

        @return: a L{Deferred} that fires with the state token as the
            subscriber sees it afterwards.
        """

    def unsubscribe(subscriber, target):
        """
        C{subscriber} stops seeing C{target}, or withdraws a request.

        @return: a L{Deferred} that fires with the state token afterwards.
        """

    def approve(target, subscriber):
        """
        C{target} approves C{subscriber}'s request, or pre-approves them;
        the subscriber's available sessions are told, with the target's
        presence.

        @return: a L{Deferred} that fires with the state token as the
            target sees it afterwards.
        """

    def deny(target, subscriber):
        """
        C{target} denies a request, cancels a subscription or withdraws a
        pre-approval; a subscriber who saw C{target} is told.

        @return: a L{Deferred} that fires with the state token as the
            target sees it afterwards.
        """

    def buddies(user):
        """
        C{user}'s own subscription list, with what they see of each
        contact.

        @return: a L{Deferred} that fires with a list of
            C{(contact, state token, Shown)}, by contact.
        """
