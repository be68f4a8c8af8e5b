"""
Every zope interface of fmtp.

The server is a set of shared services (a store, a key verifier, a signer)
handed to protocol plugins.  Each of those services is named here so that
an implementation can be swapped (a PostgreSQL store for SQLite, a DNS key
verifier for a static file) and so that tests can check an implementation
with L{zope.interface.verify.verifyObject}.
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
        Store an object, replacing any object with the same id.

        A replaced object keeps its place in listings (listings follow the
        order objects were first stored in).

        @param obj: the L{fmtp.objects.FMTPObject} to store.
        @return: a L{Deferred} that fires with L{None} once the object is
            durable, or fails with L{fmtp.errors.InvalidObjectId} or
            L{fmtp.errors.InvalidObject} for an object that cannot be filed.
        """

    def get_object(object_id):
        """
        Fetch one object by id.

        @param object_id: the object's id.
        @return: a L{Deferred} that fires with the L{fmtp.objects.FMTPObject},
            or with L{None} if no object has that id.
        """

    def delete_object(object_id):
        """
        Remove one object.

        @param object_id: the object's id.
        @return: a L{Deferred} that fires with C{True} if an object was
            removed, C{False} if there was none.
        """

    def list_objects(start, limit, type=None, owner=None, public_only=True):
        """
        Page through objects in the order they were first stored.

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
            L{fmtp.keys.DomainPublicKey}, or fails with
            L{fmtp.errors.NoKeyPublished} or L{fmtp.errors.KeyLookupFailed}.
        """

    def verify_object(obj):
        """
        Check the C{Signature} property of an object against the keys its
        signing domain publishes.

        @param obj: a signed L{fmtp.objects.FMTPObject}.
        @return: a L{Deferred} that fires with the
            L{fmtp.keys.DomainPublicKey} that verified it, or fails with
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
        @return: the L{fmtp.keys.DomainPublicKey} to publish in DNS.
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
