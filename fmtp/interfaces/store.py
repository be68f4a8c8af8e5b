"""
The stores every server has: objects, local accounts, and delivery (the
outbound queue, the inbox, the senders each user approved).
"""

from __future__ import annotations

from zope.interface import Interface


class IObjectStore(Interface):
    """
    Durable storage of fmtp objects.

    Every method returns a L{Deferred}; none may block the reactor.  A
    Deferred from a write fires only once the write is durable (on disk for
    a disk store), because a 2xx reply to a client is a promise that the
    object will not be lost.

    Failures are Deferred failures, never exceptions raised by the call:
    L{fmtp.errors.StoreUnavailable} when the store cannot serve now
    (closed, disk full, locked too long), so protocols answer "try again
    later" and keep serving.
    """

    def open():
        """
        Make the store ready: create or upgrade its schema, open files.

        @return: a L{Deferred} that fires with L{None} when the store can be
            used.
        """

    def close():
        """
        Release the store's files and threads.  Writes already acknowledged
        are durable; nothing is accepted afterwards.

        @return: a L{Deferred} that fires with L{None} when closed.
        """

    def put_object(obj):
        """
        Store an object, replacing any object with the same id, unless that
        object is sealed: once sent or filed for a recipient (by
        L{IDeliveryStore.enqueue} or L{IDeliveryStore.deliver_local}) an
        object is no longer only its owner's, and never changes again
        (DESIGN decision 15).

        A replaced object keeps its place in listings (listings follow the
        order objects were first stored in).

        @param obj: the L{fmtp.objects.FMTPObject} to store.
        @return: a L{Deferred} that fires with L{None} once the object is
            durable, or fails with L{fmtp.errors.InvalidObjectId} or
            L{fmtp.errors.InvalidObject} for an object that cannot be filed,
            or L{fmtp.errors.ObjectSealed} (and nothing changed) if a sealed
            object has its id.
        """

    def get_object(object_id):
        """
        Fetch one object by id, including one its owner removed but others
        still hold (see L{delete_object}): this is the server's own access,
        for delivery and checks.  What a user may read is decided from
        L{IDeliveryStore.read_object}.

        @param object_id: the object's id.
        @return: a L{Deferred} that fires with the L{fmtp.objects.FMTPObject},
            or with L{None} if no object has that id.
        """

    def delete_object(object_id):
        """
        Remove one object, as its owner asks.

        An object that is not sealed is removed with its queued deliveries.
        A sealed one (sent, or filed for a recipient) stays for those who
        hold it: it is only marked removed, which hides it from listings
        and from readers who do not hold it, and cancels nothing.

        @param object_id: the object's id.
        @return: a L{Deferred} that fires with C{True} if an object was
            removed, C{False} if there was none (or it was removed before).
        """

    def list_objects(start, limit, type=None, owner=None, public_only=True):
        """
        Page through objects in the order they were first stored, leaving
        out those their owner removed.

        @param start: how many matching objects to skip (0 for the first).
        @param limit: the largest number of summaries to return.
        @param type: only objects of this type, or L{None} for any type.
        @param owner: only objects owned by this address, or L{None}.
        @param public_only: only objects marked C{Public: yes}.
        @return: a L{Deferred} that fires with a L{list} of
            L{fmtp.objects.ObjectSummary}, or fails with L{ValueError} for a
            negative C{start} or C{limit}.
        """


class IAccountStore(Interface):
    """
    Durable storage of local accounts: an address and its password hash.

    Passwords never reach a store in clear; see L{fmtp.accounts}.
    """

    def add_account(address, password_hash):
        """
        Create an account.

        @param address: the normalized C{user@domain} address.
        @param password_hash: the encoded hash from
            L{fmtp.accounts.hash_password}.
        @return: a L{Deferred} that fires with L{None}, or fails with
            L{fmtp.errors.AccountExists} if the address is taken.
        """

    def set_password_hash(address, password_hash):
        """
        Replace an account's password hash: the password changed, so the
        account's resumption tokens (L{fmtp.interfaces.ITokenStore}) are
        deleted in the same durable step.

        @return: a L{Deferred} that fires with C{True} if the account
            exists, C{False} otherwise.
        """

    def replace_password_hash(address, expected, password_hash):
        """
        Replace an account's password hash if it is still C{expected}: the
        same password hashed again at a higher cost.  Its resumption
        tokens stay (the password did not change); a password changed
        meanwhile is not overwritten.

        @return: a L{Deferred} that fires with C{True} if the hash was
            replaced, C{False} (and nothing changed) otherwise.
        """

    def get_password_hash(address):
        """
        Look up the password hash of an account.

        @return: a L{Deferred} that fires with the encoded hash, or L{None}
            if there is no such account.
        """

    def list_accounts():
        """
        Every account, for the admin.

        @return: a L{Deferred} that fires with a L{list} of addresses, in
            ascending order.
        """

    def delete_account(address):
        """
        Delete an account and what only it could use, in one durable step,
        so that the address can be given to someone else without handing
        them anything of the old account:

          - the account (the password hash): nobody logs in as it;
          - every object it owns, as its owner's C{delete_object} would:
            its user object and drafts go, what it sent stays for those
            who hold it (recipients, the outbound queue), hidden from any
            later owner of the address and never changed;
          - its inbox: every entry is removed (kept, unlisted, as
            C{remove_from_inbox} keeps them, so a replayed id is not filed
            again); the messages stay for their other recipients;
          - the senders it approved;
          - its presence subscriptions, both ways, with the requests it
            made and those waiting for it (L{IPresenceStore});
          - its memberships of rooms and its invitations (L{IRoomStore});
            a ban stays, so the address cannot come back through it.

        @return: a L{Deferred} that fires with C{True}, or C{False} (and
            nothing changed) if there is no such account.
        """


class IDeliveryStore(IObjectStore):
    """
    Durable storage for delivery: the outbound queue of objects waiting to
    reach other domains, the inbox of objects waiting for local users to
    fetch them, and the senders each user has approved.

    It extends L{IObjectStore} because the objects it queues and files are
    the store's objects: a queue row and an inbox entry name an object by
    id, and C{get_object} fetches it.  As for every store, each method
    returns a L{Deferred}, and one from a write fires only once the write
    is durable: a 2xx reply to a sending client or server promises that the
    object will be delivered or bounced, never lost (design decision 6).

    Rules that tie the tables together:

      - C{enqueue} and C{deliver_local} seal the object (see
        C{put_object}): from then on it is immutable, and its owner's
        C{delete_object} only hides it from the owner and from listings;
        recipients keep it in their inboxes and the queue still sends it.
        Only C{forget_delivered} deletes a sealed object: a protocol's,
        once delivered.
      - Deleting an object that is not sealed cancels its queued
        deliveries (there are none in normal use: queueing seals).
      - An inbox entry is removed only by its recipient
        (C{remove_from_inbox}, or C{drop_held} for held ones), and a
        removed entry is kept, unlisted, so that a replayed id is still
        recognised and not filed again.
      - An entry whose object is gone (deleted before it was sealed, by
        a store older than sealing) is not listed by C{inbox} or
        C{held_senders} (nor counted by C{release_held} and C{drop_held}).
      - Addresses (recipients, senders) are compared as given; callers
        pass normalized addresses (L{fmtp.objects.normalize_address}).
      - A C{limit} or C{since} that is not a non-negative L{int} fails with
        L{ValueError}, as a listing page does.
    """

    def enqueue(obj, deliveries, send_key=None):
        """
        Store an object, seal it, queue its deliveries and record that it
        was sent to each of their domains, in one durable step.

        The sender's 2xx depends on all of it: an object stored without its
        queue rows would never be sent, queue rows without their object
        could not be, and without the record of where it was sent this
        server could not vouch for it when asked (C{was_sent}).  The object
        replaces a stored object of the same id that is not sealed (an
        unsigned draft); a sealed one must have the same content (a relay
        queueing a message again), else nothing is stored.  A delivery
        whose C{(object_id, domain)} is already queued is ignored, keeping
        the first row with its attempts and schedule: a repeated send does
        not reset the backoff.

        @param obj: the L{fmtp.objects.FMTPObject} to send.
        @param deliveries: a L{list} of L{fmtp.delivery.QueuedDelivery},
            each with C{object_id} equal to C{obj.id}, at most one per
            domain (a repeated domain keeps its first); empty for a
            message to local recipients only, which is still sealed.
        @param send_key: a L{fmtp.delivery.SendKey} to record with the
            message (see C{find_send}), or L{None}.
        @return: a L{Deferred} that fires with L{None} once everything is
            durable; or fails, with nothing stored, with L{ValueError} (a
            delivery for another object), L{fmtp.errors.ObjectSealed} (a
            sealed object of that id with other content),
            L{fmtp.errors.SendKeyUsed} (the sender already used that key),
            or as C{put_object} does.
        """

    def send_message(obj, deliveries, send_key, local, choose):
        """
        Everything a local user's SEND stores, in one durable step (one
        transaction, one trip to the store): what C{enqueue} does, and
        the message filed for the local recipients, and, with a
        C{send_key}, the results recorded with it (as C{finish_send}).

        Filing reads what each recipient's policy needs in the same step,
        so the sender pays one round trip however many recipients: for
        each address of C{local}, in order, the store calls
        C{choose(address, profile, obj, approved)} with the recipient's
        user object (the object whose id is the address, or L{None}) and
        whether the recipient approved the message's sender
        (C{is_approved}), and follows the L{fmtp.delivery.Filing} it
        returns: files the message (as C{deliver_local}, held or not) if
        it says so.  C{choose} must be quick and pure: it may run on the
        store's thread, and more than once.

        @param obj: the L{fmtp.objects.FMTPObject} sent, signed.
        @param deliveries: as for C{enqueue}.
        @param send_key: as for C{enqueue}.
        @param local: the recipients of this server, normalized.
        @param choose: L{fmtp.delivery.choose_filing}, or a function like
            it.
        @return: a L{Deferred} that fires, once it is all durable, with a
            L{fmtp.delivery.Filing} per recipient of C{local}, in order,
            as followed: one whose recipient already had this id is not
            filed again and says C{already delivered}; or fails, with
            nothing stored, as C{enqueue} does.
        """

    def receive_message(obj, local, choose):
        """
        File a message a peer delivered for local recipients, in one
        durable step (one transaction, one trip to the store): for each
        address of C{local}, in order, the store calls C{choose(address,
        profile, obj, approved)} as C{send_message} does and follows the
        L{fmtp.delivery.Filing} it returns, filing the message as
        C{deliver_local} does (held or not) if it says so.  C{choose} must
        be quick and pure: it may run on the store's thread, and more than
        once.

        @param obj: the L{fmtp.objects.FMTPObject} delivered.
        @param local: the recipients of this server, normalized.
        @param choose: L{fmtp.delivery.choose_filing}, or a function like
            it.
        @return: a L{Deferred} that fires, once it is all durable, with a
            L{fmtp.delivery.Filing} per address of C{local}, in order, as
            followed (one whose recipient already had this id is not filed
            again and says C{already delivered}); or fails with
            L{fmtp.errors.ObjectSealed}, nothing stored, if an object with
            other content holds the id (whether or not any recipient would
            file it).
        """

    def was_sent(object_id, domain, digest):
        """
        Whether this server queued the object with this id and digest for
        C{domain}: what a countersign vouches for (doc/protocol.md 8.5),
        and nothing else, so that no object a user merely stored is ever
        confirmed.

        @return: a L{Deferred} that fires with C{True} or C{False}.
        """

    def forget_sent(before):
        """
        Forget the records of objects queued before C{before} (seconds
        since the epoch): a receiver refuses a signature that old anyway,
        so it no longer needs confirming.

        @return: a L{Deferred} that fires with the number forgotten.
        """

    def find_send(sender, key):
        """
        The message C{sender} sent with this C{Idempotency-Key}, if the key
        is still remembered.

        @return: a L{Deferred} that fires with a L{fmtp.delivery.SendRecord}
            or L{None}.
        """

    def finish_send(sender, key, results):
        """
        Record the per-recipient results of a keyed send once its local
        delivery is done, so a repeat answers exactly as the first did.

        @param results: the reply body's lines, as text.
        @return: a L{Deferred} that fires with L{None} once durable.
        """

    def forget_send_keys(before):
        """
        Forget the keys recorded before C{before} (seconds since the
        epoch): clients retry within minutes, and a day covers them.

        @return: a L{Deferred} that fires with the number forgotten.
        """

    def forget_delivered(types, before):
        """
        Delete the objects of C{types} that were sent and are done with:
        sealed, with no queue row left (delivered, or given up), and last
        queued before C{before} (seconds since the epoch), by their
        records of what was sent; one whose records are already forgotten
        (C{forget_sent}) was queued long before.

        C{enqueue} keeps the object it queues for good, as its sender's
        copy of a sent message.  For a user's message that is right, but
        the objects a protocol sends another domain (a room's pushes, a
        subscription's actions: the types a protocol takes instead of
        inboxes) are nobody's mail: once their rows are gone nothing
        reads them again, and a busy room would otherwise add one object
        per push for ever.  Their records of what was sent are not
        touched (they go with C{forget_sent}); a countersign asked about
        a forgotten object is answered no, which is safe because a
        receiver asks while the delivery is under way, when its row is
        still queued.

        @param types: the object types to forget, never C{message} in
            use; empty forgets nothing.
        @return: a L{Deferred} that fires with the number deleted.
        """

    def due_deliveries(now, limit, skip=frozenset()):
        """
        The deliveries whose time has come, for the queue service to try.

        @param now: the current time, in seconds since the epoch; a
            delivery is due when its C{next_attempt <= now}.
        @param limit: the largest number of deliveries to return, so that a
            long queue is worked through in batches.
        @param skip: C{(object_id, domain)} keys of deliveries the caller
            holds already: they are neither returned nor counted against
            C{limit}, so that a queue service holding a thousand rows in
            flight does not read them again on every pass.
        @return: a L{Deferred} that fires with a L{list} of
            L{fmtp.delivery.QueuedDelivery}, the longest overdue first
            (ascending C{next_attempt}, ties by object id then domain).
        """

    def next_due_time():
        """
        When the next delivery falls due, so the queue service can sleep
        until then instead of polling.

        @return: a L{Deferred} that fires with the smallest C{next_attempt}
            of the queue (possibly in the past), or L{None} if the queue is
            empty.
        """

    def reschedule(object_id, domain, next_attempt, error, recipients=None):
        """
        Record a failed attempt: count it, keep why it failed, and set when
        to try again.

        The count and the error survive a restart, so backoff continues
        where it was and a bounce can say what went wrong.

        @param next_attempt: when to try next, in seconds since the epoch.
        @param error: why the attempt failed (stored as C{last_error}).
        @param recipients: if given, the recipients still to deliver to
            (the others were delivered or bounced), replaced in the same
            write so that a crash cannot lose or repeat any of them.
        @return: a L{Deferred} that fires with C{True} once the row is
            updated (C{attempts} one more), or C{False} if no such delivery
            is queued.
        """

    def finish_delivery(object_id, domain):
        """
        Remove a delivery from the queue: it was delivered, or bounced.

        The object itself stays: it is the sender's copy.

        @return: a L{Deferred} that fires with C{True} if a row was
            removed, C{False} if there was none.
        """

    def finish_deliveries(keys):
        """
        Remove many deliveries from the queue in one durable step, as
        C{finish_delivery} does for each: the outbound queue settles the
        replies of a pipelined burst together.

        @param keys: C{(object_id, domain)} pairs.
        @return: a L{Deferred} that fires, once it is durable, with one
            C{True} or C{False} per key, in order, as C{finish_delivery}.
        """

    def queued_objects(object_ids):
        """
        The objects of many queued deliveries, in one read: what
        C{get_object} gives for each id, read together so that a burst of
        deliveries costs one trip to the store.

        @return: a L{Deferred} that fires with one
            L{fmtp.objects.FMTPObject} or L{None} per id, in order.
        """

    def make_due(now, domain=None):
        """
        Bring every queued delivery (to C{domain}, or to any domain) that
        is not yet due forward to C{now}: the admin's "retry now".  The
        count of attempts and the last error are kept, so the retry
        schedule goes on from where it was if this attempt fails too.

        @param now: the current time, in seconds since the epoch.
        @return: a L{Deferred} that fires with the number of deliveries
            brought forward.
        """

    def queued_for(domain):
        """
        Every delivery queued for one domain, due or not.

        When a link to a domain opens (the other server connected, or a
        delivery just succeeded) its whole queue can be pushed at once,
        rather than each item waiting out its backoff.

        @return: a L{Deferred} that fires with a L{list} of
            L{fmtp.delivery.QueuedDelivery}, oldest first (ascending
            C{created}, ties by object id).
        """

    def deliver_local(recipient, obj, held):
        """
        File an inbound object in a local user's inbox, in one durable step
        with storing and sealing the object.

        The object is stored only if no object of its id exists: an
        inbound copy never replaces what is already stored, and one whose
        content differs from the stored object is refused.  The inbox
        entry records who the object is from (L{fmtp.delivery.sender_of})
        for the confirm policy.

        Delivery is idempotent per recipient, which is how replayed ids are
        found: a second delivery of the same id to the same recipient
        changes nothing (not even a deleted object is stored again) and
        fires with L{None}, and the caller answers as for a duplicate.

        @param recipient: the local address.
        @param obj: the L{fmtp.objects.FMTPObject} delivered.
        @param held: C{True} to hold the entry until the recipient approves
            its sender (the C{confirm} policy): held entries are not listed
            by C{inbox}.
        @return: a L{Deferred} that fires with the entry's sequence number
            (an L{int}, larger than any this store gave before, for any
            recipient), or L{None} if the recipient already had this id
            (even if they removed it since); or fails with
            L{fmtp.errors.ObjectSealed} if another object has that id, or
            as C{put_object} does, and then nothing was stored.
        """

    def read_object(object_id, reader):
        """
        An object with what decides who may read it: whether its owner
        removed it, and whether it is filed in C{reader}'s inbox (neither
        held nor removed), in which case the reader holds it whatever its
        owner did since.  One call, since every GET needs both.

        @param reader: the logged-in address, or L{None}.
        @return: a L{Deferred} that fires with a
            L{fmtp.delivery.StoredObject}, or L{None} if no object has
            that id.
        """

    def remove_from_inbox(recipient, object_id):
        """
        The recipient removes an entry (held or not) from their inbox: the
        only way an entry goes.  The entry is kept, unlisted, so that the
        id is not filed again if a peer replays it.

        @return: a L{Deferred} that fires with C{True} if an entry was
            removed, C{False} if there was none (or it was removed before).
        """

    def inbox(recipient, since, limit):
        """
        Page through a user's inbox, oldest first.

        A device remembers the last sequence number it has seen and asks
        for what came after; a second device asks from 0 and gets the
        history.  Sequence numbers are never reused, so C{since} always
        means the same place.

        @param since: only entries with a larger sequence number (0 for
            all).
        @param limit: the largest number of entries to return.
        @return: a L{Deferred} that fires with a L{list} of
            C{(seq, FMTPObject)} in ascending C{seq}, without held or
            removed entries; an object its owner removed after sending is
            still listed.
        """

    def held_senders(recipient):
        """
        Who has messages held for a user, so the user can be asked to
        approve or refuse each sender (the C{confirm} policy).

        @return: a L{Deferred} that fires with a L{list} of distinct sender
            addresses, in the order of each one's first held entry.
        """

    def release_held(recipient, sender):
        """
        Un-hold every entry from C{sender}: they join the inbox in their
        original order, with new sequence numbers after every existing
        entry, so a device reading with its usual C{since} finds them.

        @return: a L{Deferred} that fires with the number of entries
            released.
        """

    def drop_held(recipient, sender):
        """
        Remove every held entry from C{sender}: the user refused them.  As
        with C{remove_from_inbox}, the entries are kept unlisted, so a
        replay is not held again.

        The objects themselves stay in the store (another local recipient
        may have them in its inbox); removing objects no one refers to any
        more is a separate clean-up.

        @return: a L{Deferred} that fires with the number of entries
            dropped.
        """

    def has_object(object_id):
        """
        Whether an object of this id is stored (removed by its owner or
        not), without reading it: a cheap check for a receiver that
        de-duplicates ids.

        @return: a L{Deferred} that fires with C{True} or C{False}.
        """

    def approve_sender(recipient, sender):
        """
        Add C{sender} to the senders C{recipient} has accepted, so later
        messages from them are not held.  Approving twice changes nothing.

        Kept apart from the user object's C{Whitelist}, which the user
        writes and which would otherwise grow with every approval.

        @return: a L{Deferred} that fires with L{None} once durable.
        """

    def is_approved(recipient, sender):
        """
        Whether C{recipient} has approved C{sender}.

        @return: a L{Deferred} that fires with C{True} or C{False}.
        """
