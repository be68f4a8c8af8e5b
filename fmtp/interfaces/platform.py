"""
The platform protocols share: protocol plugins and their command groups,
the accounts LOGIN yields, the router of live sessions, and the links to
other servers.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


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


class IDatagramLimiter(Interface):
    """
    What a datagram listener (L{fmtp.framing.datagram.FrameDatagramProtocol})
    asks before it serves a datagram and before it sends a refusal: the
    per-source token buckets of L{fmtp.ratelimit.SourceRateLimiter}, or a
    protocol's own (the presence protocol counts its bridges' networks
    against each bridge's rate).
    """

    def allow(source):
        """
        Take a token for a datagram from C{source} (an IP address as
        text) if its limit has one.

        @return: whether it may be served; if not it is dropped unanswered.
        """

    def allow_refusal(source, size, request_size):
        """
        Whether a refusal (a reply of code 400 or more, or C{432}) of
        C{size} bytes may go to C{source}, whose request was
        C{request_size} bytes: a limiter whose sources may send many
        datagrams can keep a spoofer of them from reflecting as many
        refusals at them.

        @return: whether to send it; if not it is dropped.
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

    def deliver_to(session, event):
        """
        Hand C{event} to one open session, if it takes C{event.kind}: for
        a protocol whose own state says which of a user's sessions want
        an event (presence pushes reach only the sessions that made
        themselves available).

        @param session: an L{ISession} this router opened.
        @return: whether it reached the session (L{False} if it is closed
            or does not take the kind).
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

    def by_id(protocol):
        """
        Find the sessions C{protocol} opens from now on by their public id
        (L{ISession.id}), for L{verify_datagram}: what a protocol whose
        datagrams name sessions calls once, so that the sessions of the
        others (most of them) cost no index.
        """

    def verify_datagram(id, data, mac):
        """
        Check that a datagram was sent by the holder of a session key: a
        client names its session over UDP by its public C{id} (never the
        key, which a datagram never carries) and proves it with an
        HMAC-SHA256, keyed by the session key, over the datagram's bytes
        without its C{Mac} header (see L{fmtp.auth.router.datagram_mac}).
        The datagram listeners do not check it: a datagram is anonymous
        unless its protocol calls this (the chat protocol's light
        clients do, L{fmtp.protocols.chat.datagrams}).

        @param id: the public id of the session the datagram names
            (L{ISession.id}).
        @param data: the bytes the MAC covers.
        @param mac: the MAC the datagram carries (hex).
        @return: the L{ISession}, or L{None} if the id is unknown (or of
            a protocol that did not ask for L{by_id}) or the MAC does not
            match (compared in constant time, with the same work for an
            unknown id).
        """


class ISession(Interface):
    """
    One login of one address on one protocol (see L{IRouter.open}).
    """

    key = Attribute("The secret session key (URL-safe text).")
    id = Attribute(
        "The public id that names it in datagrams, derived from its key "
        "(L{fmtp.auth.router.session_id}): 32 lower-case hex digits."
    )
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

    def register_object_type(object_type, handler):
        """
        Take the objects of C{object_type} that other domains DELIVER to
        this server's users: rather than filed in the recipients' inboxes,
        they are handed to C{handler} once DELIVER's checks passed (the
        recipients are this domain's and named by the object, its origin
        domain proved it, its signature is recent).  What a protocol sends
        durably through L{enqueue} and acts on when it arrives (a
        presence subscription request, a room invitation) travels so.
        Users cannot SEND objects of such a type: only the server makes
        them.

        @param object_type: an object type (L{fmtp.objects.check_type}).
        @param handler: called as C{handler(obj, recipients, origin)},
            C{recipients} the normalized local addresses and C{origin} the
            domain that proved the object; returns an awaitable of one
            L{fmtp.delivery.RecipientResult} per recipient.  Raising an
            L{fmtp.errors.FMTPError} refuses the whole object with its
            code (4xx: the sender's queue tries again later).
        @raise KeyError: if C{object_type} already has a handler.
        """

    def observe_peers(callback):
        """
        Call C{callback(domain)} each time a peer proves its domain with a
        HELLO: that domain's server is up, and protocols that keep volatile
        state with it (presence) resend it.  Exceptions are logged.
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
    service = Attribute(
        "An L{twisted.application.service.IService} the server runs for as "
        "long as it runs, or L{None}: what holds the group's timers (a "
        "periodic sweep, grace periods).  The server starts it after its "
        "store began opening and its listeners, and stops it once its "
        "listeners stopped and its connections closed, before it closes "
        "the store: a service that cancels its timers in C{stopService} "
        "(and returns a Deferred for work under way) never meets a closed "
        "store."
    )

    def connection_lost(session):
        """
        A connection of the protocol ended: release what the group holds
        for C{session} (a room membership's live listener); its login's
        router session is closed by the collection, after every group.
        """

    def login_ended(session):
        """
        The login of C{session} is ending (LOGOUT, or the connection
        ended): called before its router session closes, after
        L{connection_lost} when the connection ended.  A group that ties
        state to a login (a presence session) ends it here at once; one
        that waits after a lost connection (a presence grace period) has
        already taken over what it needs in L{connection_lost}.
        """
