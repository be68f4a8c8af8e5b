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
    A protocol fmtp serves, found through L{twisted.plugin}.

    The built-in object, presence and chat protocols are registered exactly
    as a third-party plugin is: an object providing this interface (and
    L{twisted.plugin.IPlugin}) in a module of the C{fmtp.plugins} package.
    """

    name = Attribute(
        "Short lower-case name; the command-line option --listen-<name> "
        "names its listeners."
    )
    description = Attribute("One line for C{twistd fmtp --help}.")
    default_listeners = Attribute(
        "Listener descriptions used when none are given: stream endpoint "
        "strings such as C{tcp:7070:interface=127.0.0.1} and "
        "C{udp:PORT[:interface=ADDR]} for datagrams."
    )

    def stream_factory(services):
        """
        Build the factory for stream (TCP or TLS) connections.

        @param services: the L{fmtp.services.SharedServices} of this server.
        @return: an L{twisted.internet.interfaces.IProtocolFactory}.
        """

    def datagram_protocol(services):
        """
        Build the protocol for datagram (UDP) listeners.

        @param services: the L{fmtp.services.SharedServices} of this server.
        @return: a L{twisted.internet.protocol.DatagramProtocol}, or L{None}
            if the protocol is not offered over UDP.
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
        @param sink: called with each L{fmtp.router.Event} for this
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
        header (see L{fmtp.router.datagram_mac}).

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
    This server's links to other domains, as protocols use them: what the
    object protocol's DELIVER and CONFIRM are built on, and what presence
    and chat rooms build on too.

    Outbound, a request goes to a domain's server over a pooled link whose
    peer proved its domain (routes, the parent relay, TLS policy and HELLO
    as doc/protocol.md section 8 says).  Inbound, a verb registered here
    is dispatched only after the peer's HELLO, with the proven domain.

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
        Handle inbound requests of C{verb} from other servers.

        @param handler: called as C{handler(peer, frame)} after the peer's
            HELLO, C{peer} being an L{fmtp.federation.hello.Peer} (its
            C{domain} proven, or claimed and C{verified} false for a
            domain without a key); returns an awaitable of the reply
            L{fmtp.wire.Frame}.  Raising an L{fmtp.errors.FMTPError}
            answers with its code.
        @raise KeyError: if C{verb} already has a handler.
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
    error found when the protocol is built.
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
        for C{session} (a login, a room membership's live listener).
        """
