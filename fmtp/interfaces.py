"""
Every zope interface of fmtp.

The server is a set of shared services (a store, a key verifier, a signer,
a router of live sessions, the links to other servers) handed to protocol
plugins in one frozen L{fmtp.services.SharedServices}.  Each of those
services is named here so that an implementation can be swapped (a
PostgreSQL store for SQLite, a DNS key verifier for a static file) and so
that tests can check an implementation with
L{zope.interface.verify.verifyObject}.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


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
        Replace an account's password hash.

        @return: a L{Deferred} that fires with C{True} if the account
            exists, C{False} otherwise.
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


class IKeyVerifier(Interface):
    """
    Finds the public keys a domain publishes and checks signatures made with
    them.

    Failures are told apart because they call for different replies: a
    domain that publishes no key (permanent), a lookup that failed
    (temporary: retry later), and a signature that does not verify
    (reject).
    """

    def keys_for_domain(domain):
        """
        Find the keys a domain publishes, including revoked and expired
        ones (so a verifier can say why a signature is refused).

        @param domain: the domain, as an IDNA A-label string.
        @return: a L{Deferred} that fires with a L{list} of
            L{fmtp.keys.records.DomainPublicKey}, or fails with
            L{fmtp.errors.NoKeyPublished} or L{fmtp.errors.KeyLookupFailed}.
        """

    def verify_object(obj):
        """
        Check the C{Signature} property of an object against the keys its
        signing domain publishes.

        @param obj: a signed L{fmtp.objects.FMTPObject}.
        @return: a L{Deferred} that fires with the
            L{fmtp.keys.records.DomainPublicKey} that verified it, or fails with
            L{fmtp.errors.BadSignature}, L{fmtp.errors.NoKeyPublished} or
            L{fmtp.errors.KeyLookupFailed}.
        """


class IDomainSigner(Interface):
    """
    Holds this server's domain private key and signs objects with it.
    """

    domain = Attribute("The domain this signer signs for (IDNA A-label).")
    fingerprint = Attribute("The fingerprint that names the public key.")

    def public_key():
        """
        @return: the L{fmtp.keys.records.DomainPublicKey} to publish in DNS.
        """

    def sign_bytes(data, now):
        """
        Sign arbitrary bytes as this domain, for a handshake.  C{data} must
        begin with a label naming its purpose, so that no signature made
        for one purpose verifies for another.

        @param now: the signing time, in seconds since the epoch.
        @return: a L{fmtp.keys.records.SignatureInfo}.
        """

    def sign_object(obj, now):
        """
        Sign an object as this domain.

        @param obj: the L{fmtp.objects.FMTPObject} to sign.
        @param now: the signing time, in seconds since the epoch.
        @return: a copy of C{obj} carrying a C{Signature} property.
        """


class IAccount(Interface):
    """
    The avatar a successful LOGIN yields: an authenticated local user.
    """

    address = Attribute("The account's normalized user@domain address.")


class IProtocolPlugin(Interface):
    """
    A protocol fmtp serves, found through L{twisted.plugin}
    (L{fmtp.discovery}): an object providing this interface and
    L{twisted.plugin.IPlugin} in a module of the C{fmtp.plugins} package.
    The built-in object protocol is registered exactly so
    (L{fmtp.plugins.fmtp_builtin}); most plugins subclass
    L{fmtp.framing.plugin.FramedProtocolPlugin}, which provides the two
    builders from a tuple of command groups.

    A built-in protocol is served unless switched off; a third-party one
    only once the admin enables it (C{--enable NAME} or
    C{--listen-NAME}), and a third-party plugin that fails to build or to
    bind is logged in one line while the others are served.

    What a plugin receives is the server's L{fmtp.services.SharedServices}:
    frozen, built once per server, shared with every other protocol; a
    plugin reads it and never changes it.  The builders run before the
    reactor does, so they must be quick and do no I/O.
    """

    name = Attribute(
        "1 to 32 lower-case letters, digits or dashes, starting with a "
        "letter; unique (a built-in name is never taken by a plugin).  "
        "C{--enable NAME} and C{--listen-NAME} name it, the greeting and "
        "C{CAPA} show it, and its router sessions are opened under it."
    )
    description = Attribute("One line for C{twistd fmtp --help}.")
    default_listeners = Attribute(
        "Listener descriptions used once the protocol is served and no "
        "C{--listen-NAME} is given: stream endpoint strings such as "
        "C{tcp:7079:interface=127.0.0.1} and C{udp:PORT[:interface=ADDR]} "
        "for datagrams; loopback, so that enabling a plugin opens no port "
        "to the world."
    )

    def stream_factory(services):
        """
        Build the factory for stream (TCP or TLS) connections: called once
        per server that serves the protocol, even if only datagram
        listeners are given, and shared by all its stream listeners.

        @param services: the frozen L{fmtp.services.SharedServices} of this
            server.
        @return: an L{twisted.internet.interfaces.IProtocolFactory}.
        """

    def datagram_protocol(services):
        """
        Build the protocol of one datagram (UDP) listener: called once per
        C{udp:} listener, after L{stream_factory}.  A
        L{fmtp.framing.plugin.FramedProtocolPlugin} gives each its own
        cookies and rate limits over the one set of commands of the server.

        @param services: the frozen L{fmtp.services.SharedServices} of this
            server.
        @return: a L{twisted.internet.protocol.DatagramProtocol}, or L{None}
            if the protocol is not offered over UDP (a C{udp:} listener for
            it is then refused at start-up).
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

    def due_deliveries(now, limit):
        """
        The deliveries whose time has come, for the queue service to try.

        @param now: the current time, in seconds since the epoch; a
            delivery is due when its C{next_attempt <= now}.
        @param limit: the largest number of deliveries to return, so that a
            long queue is worked through in batches.
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


class IRouter(Interface):
    """
    The live sessions of this server, and typed events delivered to them.

    A session is one login of one address on one protocol (a stream
    connection of the object protocol, a presence client, a chat client,
    a UDP client proving itself with the session key), with a sink that
    takes events.  Each protocol says which kinds of event its sessions
    take, so an event reaches only the sessions that asked for its kind:
    a presence change is never written to an object-protocol stream, a
    plugin's own events reach only that plugin's sessions.

    Everything here happens in memory, on the reactor: a router holds no
    durable state (what must survive a restart is in the store), and
    delivering an event never waits.
    """

    def open(address, protocol, sink, kinds):
        """
        Open a session.

        @param address: the logged-in, normalized address.
        @param protocol: the name of the protocol that opens it (the
            plugin's name).
        @param sink: called with each L{fmtp.auth.router.Event} for this
            session, on the reactor; it must not block, and should drop
            rather than buffer without bound (the stream protocols do).
        @param kinds: the event kinds this session takes (a collection of
            strings).
        @return: an L{ISession}; its C{key} is the PAME session key.
        """

    def close(session):
        """
        Close a session: it gets no more events, and its key no longer
        proves anything.  Closing twice does nothing.
        """

    def deliver(address, event):
        """
        Hand C{event} to every open session of C{address} that takes
        C{event.kind}.

        @return: how many sessions it reached.
        """

    def fan_out(addresses, event):
        """
        L{deliver} to each of C{addresses} (each once), what a room or a
        subscription list builds on.

        @return: how many sessions it reached, in all.
        """

    def online(address):
        """
        Where C{address} is logged in here.

        @return: a C{frozenset} of protocol names, empty if nowhere.
        """

    def sessions(address, protocol=None):
        """
        The open sessions of C{address} (on C{protocol} only, if given).

        @return: a L{list} of L{ISession}.
        """

    def session_for_key(key):
        """
        The open session a key names, or L{None}.
        """

    def verify_datagram(key, data, mac):
        """
        Check that a datagram was sent by the holder of a session key: a
        client proves its session over UDP with an HMAC-SHA256, keyed by
        the session key, over the datagram's bytes without its C{Mac}
        header (see L{fmtp.auth.router.datagram_mac}).  The datagram
        listeners do not check it yet: a datagram is anonymous unless its
        protocol calls this.

        @param key: the session key the datagram names.
        @param data: the bytes the MAC covers.
        @param mac: the MAC the datagram carries (hex).
        @return: the L{ISession}, or L{None} if the key is unknown or the
            MAC does not match (compared in constant time).
        """


class ISession(Interface):
    """
    One login of one address on one protocol (see L{IRouter.open}).
    """

    key = Attribute("The secret session key (URL-safe text).")
    address = Attribute("The logged-in address.")
    protocol = Attribute("The name of the protocol that opened it.")
    kinds = Attribute("The event kinds it takes (a frozenset of strings).")
    opened = Attribute("When it was opened, in seconds since the epoch.")


class IServerLinks(Interface):
    """
    This server's links to other domains, as protocols use them
    (C{services.links}): what the object protocol's DELIVER and CONFIRM are
    built on, and what presence, chat rooms and plugins build on too.

    Outbound, a request goes to a domain's server over a pooled link whose
    peer proved its domain (routes, the parent relay, TLS policy and HELLO
    as doc/protocol.md section 8 says).  Inbound, a verb registered here
    arrives on the object protocol's listeners, where servers link, and is
    dispatched only after the peer's HELLO, with the proven domain.  A peer
    speaks only for its own domain (DESIGN decision 15): a handler checks
    that what a request says it sends on behalf of is of C{peer.domain}.

    Two kinds of outbound traffic: durable (L{enqueue}: stored before the
    caller hears yes, retried with backoff, bounced on permanent failure)
    and volatile (L{notify}: coalesced by key, a newer update replacing an
    older one not yet sent, dropped after its lifetime, never bounced:
    what a presence change needs).
    """

    def request(domain, verb, argument="", headers=None, body=b""):
        """
        Send one request to C{domain}'s server on a verified link and
        return its reply.

        @return: a L{Deferred} that fires with the reply
            L{fmtp.wire.Frame} (whatever its code), or fails with
            L{fmtp.federation.failures.LinkError} when no link can be had or
            the connection is lost (its C{code} says temporary or not).
        """

    def register(verb, handler):
        """
        Handle inbound requests of C{verb} from other servers.  Register
        once per server (a command group's constructor, which a
        L{fmtp.framing.plugin.FramedProtocolPlugin} runs once per server).

        Only peers whose HELLO was signed with a key their domain publishes
        (C{peer.verified}) reach the handler; others are answered 530.
        L{fmtp.federation.api.ServerLinks.register} also takes
        C{unverified=True}, for a verb that proves what it needs some other
        way (DELIVER and CONFIRM, through the countersign): its handler
        then also sees peers whose domain is only claimed.

        @param verb: 1 to 32 letters, digits or hyphens, not all digits;
            upper-cased.
        @param handler: called as C{handler(peer, frame)} after the peer's
            HELLO, C{peer} being an L{fmtp.federation.hello.Peer} (its
            C{domain}, and whether it is C{verified}); returns an awaitable
            of the reply L{fmtp.wire.Frame}.  Raising an
            L{fmtp.errors.FMTPError} answers with its code.
        @raise KeyError: if C{verb} already has a handler.
        @raise ValueError: if C{verb} cannot be a verb on the wire.
        """

    def enqueue(obj, recipients):
        """
        Queue C{obj} durably for C{recipients} of other domains (one queue
        row per domain), and start delivering at once.

        @return: a L{Deferred} that fires once the rows are durable.
        """

    def notify(domain, key, verb, argument="", headers=None, body=b"", lifetime=60.0):
        """
        Send a volatile update to C{domain}: if an update of the same
        C{key} for that domain is still waiting, this one replaces it;
        if it cannot be sent within C{lifetime} seconds it is dropped.
        Nothing is stored, retried past its lifetime, or bounced.
        """


class ICommandGroup(Interface):
    """
    A set of commands a protocol composes with others (as wokkel composes
    subprotocol handlers): the session commands every stream protocol
    shares (CAPA, LOGIN, LOGOUT, QUIT), the object commands, the
    messaging commands, the server-link commands, a plugin's own.

    A protocol's handler collection dispatches each verb to the one group
    that offers it; two groups offering the same verb is a configuration
    error found when the protocol is built.  A group also renders the
    router event kinds its protocol's sessions take (its C{renderers}, a
    mapping of kind to a function of the L{fmtp.auth.router.Event} that
    returns the frame to push): a session LOGIN opens takes exactly the
    kinds the protocol's groups render.

    One instance serves every connection of its protocol on one server:
    what a command knows of a connection is the
    L{fmtp.framing.session.Session} it is passed, never the group's own
    state.
    """

    commands = Attribute(
        "A mapping of verb to coroutine function C{(frame, session) -> Frame}."
    )
    datagram_commands = Attribute(
        "The verbs of C{commands} also offered over datagrams (a frozenset)."
    )

    def connection_lost(session):
        """
        A connection of the protocol ended: release what the group holds
        for C{session} (a room membership's live listener); its login's
        router session is closed by the collection, after every group.
        """


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
    list.  L{subscribers}, L{pending_requests} and L{shared_with_domain}
    serve the server itself (a status change's fan-out, putting requests
    to their target when online, a link to a domain going and coming);
    what they return is shown to nobody but the user it is about.

    Every method returns a L{Deferred}; one from a write fires only once
    the write is durable.  Addresses must be in normal form
    (L{fmtp.objects.normalize_address}) and times are seconds since the
    epoch from the caller's clock; a bad argument fails with L{ValueError}
    (L{fmtp.errors.InvalidAddress} for an address), changing nothing.
    """

    def request_subscription(subscriber, target, now, max_pending):
        """
        C{subscriber} asks to see C{target}'s presence.

        A request already waiting, or already approved, is not recorded
        again; one the target pre-approved is approved at once.  A new
        request waits unless it would make more than C{max_pending}
        requests wait from C{subscriber} or for C{target}: the check and
        the write are one step, so concurrent requests cannot pass the
        cap together.

        @param now: when it was asked (orders and expires requests).
        @param max_pending: the cap on waiting requests, per subscriber
            and per target.
        @return: a L{Deferred} that fires with the link from subscriber to
            target afterwards, L{fmtp.store.presence.Link.PENDING} or
            L{fmtp.store.presence.Link.APPROVED}; or fails with
            L{fmtp.store.presence.PendingLimitReached}, nothing recorded.
        """

    def approve_subscription(target, subscriber, now):
        """
        C{target} lets C{subscriber} see its presence: a waiting request
        is approved; approving someone who has not asked pre-approves
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
        of C{user} is not shown.

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
        they are online.

        @return: a L{Deferred} that fires with a L{list} of
            L{fmtp.store.presence.PendingRequest}, oldest first (ties by
            subscriber).
        """

    def shared_with_domain(domain):
        """
        Every approved subscription with a subscriber or a target at
        C{domain}: what a server resends when the link to C{domain} comes
        back, and turns to unknown when it goes away past its timeout.

        @return: a L{Deferred} that fires with a L{list} of
            C{(subscriber, target)} pairs, in ascending order.
        """

    def expire_requests(before):
        """
        Forget the requests still waiting that were made before C{before}:
        a request nobody answered does not hold its place under the cap
        for ever.

        @return: a L{Deferred} that fires with the number forgotten.
        """


class IRoomStore(Interface):
    """
    Durable storage of the chat rooms this server is the home of (the
    chat protocol, issue 11): each room's configuration, its members and
    their roles, and its history; and the tombstones of destroyed rooms.

    Membership is persistent, not tied to being online, and an address of
    any domain may hold it: remote members are kept here as local ones
    are.  The values, roles and rules are L{fmtp.store.rooms}'s.

    A room's history is one ordered, hash-linked sequence: entries are
    numbered from 1 with no gaps, and each entry's object carries the
    digest of the entry before it as its C{Parent-Digest}.  L{append}
    checks that link and numbers the entry in one step, so two appends
    that both follow the same entry cannot both succeed: the chain never
    forks (the loser gets L{fmtp.store.rooms.HistoryConflict} with the new
    head, and links its entry again).  A retraction is a new entry, a
    tombstone; the retracted entry loses its object but keeps its digests,
    so the chain still verifies end to end
    (L{fmtp.store.rooms.verify_chain}).  Since numbers have no gaps, a
    page of history that starts after entry N is both "since N" and
    "Start: N".

    Sizes: L{join} reads the joiner's own row and the room's member count
    and writes one row, whatever the size of the room; L{members}, what
    each message fans out to, is one read.

    Privacy: L{members} is for the room's members (the protocol checks
    who asks), and L{rooms_of} for the address it is about.

    Every method returns a L{Deferred}; one from a write fires only once
    the write is durable.  Addresses must be in normal form
    (L{fmtp.objects.normalize_address}; a room's is C{room@domain}), times
    are seconds since the epoch from the caller's clock; a bad argument
    fails with L{ValueError}, changing nothing.  A call about a room that
    does not exist fails with L{fmtp.store.rooms.RoomNotFound}, except
    L{get_room}, L{destroy_room} and L{rooms_of}.
    """

    def create_room(room, creator, config, now):
        """
        Create a room with C{creator} as its owner (a member with
        L{fmtp.store.rooms.Role.OWNER}), in one step.

        @param config: its L{fmtp.store.rooms.RoomConfig}.
        @return: a L{Deferred} that fires with the new
            L{fmtp.store.rooms.Room}, or fails with
            L{fmtp.store.rooms.RoomExists} if a room has that address, or a
            room destroyed there is still held by its tombstone at C{now}.
        """

    def get_room(room):
        """
        @return: a L{Deferred} that fires with the
            L{fmtp.store.rooms.Room}, or L{None} if there is none.
        """

    def configure_room(room, config):
        """
        Replace a room's configuration.  A smaller C{max_members} removes
        nobody; it stops joins until the room is smaller.

        @return: a L{Deferred} that fires with L{None} once durable.
        """

    def destroy_room(room, now, hold_until):
        """
        Destroy a room with its members and history, in one step, leaving a
        tombstone that keeps its address from being taken again before
        C{hold_until}.

        @return: a L{Deferred} that fires with C{True}, or C{False} (and
            nothing done) if there was no such room.
        """

    def forget_tombstones(now):
        """
        Forget the tombstones that no longer hold their address at C{now}.

        @return: a L{Deferred} that fires with the number forgotten.
        """

    def join(room, address, now, voice=False):
        """
        Make C{address} a member (L{fmtp.store.rooms.Role.MEMBER}, with
        C{voice}), in one step with the checks of
        L{fmtp.store.rooms.join_role}: a ban, a members-only room without
        an invitation (an invitation is used up), and C{max_members}.  The
        password of a passworded room is the caller's to check before.
        Joining again changes nothing.

        @return: a L{Deferred} that fires with the address's
            L{fmtp.store.rooms.Member} afterwards, or fails with
            L{fmtp.store.rooms.MemberBanned},
            L{fmtp.store.rooms.InvitationRequired} or
            L{fmtp.store.rooms.RoomFull}, nothing changed.
        """

    def invite(room, address, now):
        """
        Invite C{address}: it may then join a members-only room.

        @return: a L{Deferred} that fires with C{True} if an invitation was
            recorded, C{False} if C{address} is a member or invited
            already; or fails with L{fmtp.store.rooms.MemberBanned}.
        """

    def leave(room, address):
        """
        C{address} stops being a member, or its invitation goes (a leave,
        a kick, a declined invitation).  A ban stays: see L{unban}.

        @return: a L{Deferred} that fires with C{True} if a membership or
            an invitation was removed, C{False} otherwise.
        """

    def set_role(room, address, role, voice, now, reason=None):
        """
        Give C{address} a role (owner, moderator, member, or banned with a
        C{reason}) and C{voice}, whether or not it was a member: an owner
        adds a member or bans an address that never joined.  A ban ends a
        membership.  A member keeps the time it joined
        (L{fmtp.store.rooms.with_role}).  C{max_members} is not checked:
        the caller acts for an owner or a moderator.

        @param role: a L{fmtp.store.rooms.Role} other than C{INVITED}.
        @return: a L{Deferred} that fires with the standing before, a
            L{fmtp.store.rooms.Member} or L{None}.
        """

    def unban(room, address):
        """
        Lift a ban.

        @return: a L{Deferred} that fires with C{True} if C{address} was
            banned, C{False} otherwise.
        """

    def member(room, address):
        """
        C{address}'s standing in the room, whatever it is.

        @return: a L{Deferred} that fires with a
            L{fmtp.store.rooms.Member}, or L{None}.
        """

    def members(room, role=None):
        """
        The room's members (owners, moderators and members), in one read:
        what each message fans out to; or, given a C{role}, the addresses
        that hold it (the banned, the invited).

        @return: a L{Deferred} that fires with a L{list} of
            L{fmtp.store.rooms.Member}, by ascending address.
        """

    def rooms_of(address):
        """
        The rooms C{address} is a member of (not those it is invited to or
        banned from), to show to that address only.

        @return: a L{Deferred} that fires with a L{list} of room
            addresses, in ascending order.
        """

    def append(room, obj, now):
        """
        Append C{obj} to the room's history as its next entry, checking in
        the same step that its C{Parent-Digest} is the digest of the last
        entry (absent or empty for the first entry).

        An object whose id is in the history already is a replay: nothing
        changes.

        @param obj: the L{fmtp.objects.FMTPObject}, as it is to be kept
            and verified (its digest is the entry's).
        @return: a L{Deferred} that fires with the entry's C{seq}, or
            L{None} for a replay; or fails with
            L{fmtp.store.rooms.HistoryConflict} (the chain moved on),
            L{fmtp.errors.ObjectSealed} (an entry of that id with other
            content), nothing appended.
        """

    def retract(room, seq, tombstone, now):
        """
        Retract entry C{seq}: append C{tombstone} (linked to the last
        entry, as for L{append}) and remove the retracted entry's object,
        keeping its digests, in one step.  Who may retract is the
        caller's to decide.

        @return: a L{Deferred} that fires with the tombstone's C{seq}, or
            L{None} if the tombstone was appended before (a replay); or
            fails as L{append} does, or with L{fmtp.errors.NotFound} if
            there is no entry C{seq} holding a message (none, retracted
            already, or a tombstone), nothing changed.
        """

    def history(room, since, limit):
        """
        Page through the room's history, oldest first: the entries after
        entry C{since} (0 for the first page), at most C{limit}.

        @return: a L{Deferred} that fires with a L{list} of
            L{fmtp.store.rooms.HistoryEntry} in ascending C{seq}; or fails
            with L{ValueError} for a C{since} or C{limit} that is not a
            non-negative integer.
        """

    def head(room):
        """
        The room's last entry, which the next one must follow.

        @return: a L{Deferred} that fires with C{(seq, digest)}, or
            L{fmtp.store.rooms.EMPTY_HEAD} for an empty history.
        """
