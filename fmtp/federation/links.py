"""
Outbound server-to-server links: connect, secure, handshake, reuse.

A server that has a message for C{lost@lenore.org} needs a connection to
lenore.org's fmtp server on which lenore.org has proved who it is.  Making
one is the most expensive part of delivery (DNS, TCP, maybe TLS, two
signatures), so, as Synapse's federation client and every mail server do,
links are pooled: one open link per destination domain, shared by every
delivery, GET and CONFIRM to that domain, pipelined, and closed after it
has been idle a while.

Opening a link (L{LinkPool.link_to}) tries, in the order of DESIGN
decision 6, the recipient's own C{Route} (a C{tcp://HOST:PORT} from its
user object), then the domain's routes from DNS (SRV, MX, A: the
C{routes_for} callable), then this server's parent relay.  On each
connection it follows the server link wire of doc/protocol.md section 8:

  1. the peer greets with C{220 *};
  2. C{CAPA}; if the peer lists C{STARTTLS} and the TLS policy allows,
     C{STARTTLS} and TLS from the very next byte (anything the peer sent
     in clear after its C{220} is discarded, so nothing injected before
     the handshake is ever taken as sent under TLS);
  3. a signed C{HELLO} naming the domain we mean to reach; the peer's
     answer must be signed by that domain, name our nonce and be
     addressed to us.  A link is for the domain its HELLO proved, never
     for the address it was reached at.

Every failure ends as an L{FMTPError} whose code says what the outbound
queue should do: 4xx, try again later (a server down, DNS failing, TLS
misconfigured: things an admin can fix); 5xx, give up and bounce (the
domain has no fmtp server, its server refuses us or cannot prove who it
is).  Each message names the domain and what failed, for the queue's log
and the bounce.

TLS policy (DESIGN decision 14), per destination:

  - C{"require"}: the peer must offer STARTTLS and present a certificate
    for the route's host name that verifies against the trust root (the
    platform's, or a CA given for a private network).  Any failure is
    temporary: the link is not used, and the admin may fix it.
  - C{"opportunistic"}: TLS whenever offered, certificate not checked.
    The signed HELLO already authenticates the domain; TLS adds
    confidentiality against passive listeners.
  - C{"off"}: never TLS (tests, loopback).

Time comes from the injected clock, sockets from the injected reactor.
"""

from __future__ import annotations

import ipaddress
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import error as netError
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    TimeoutError,
    succeed,
)
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from fmtp.client import FrameClientProtocol, ProtocolError
from fmtp.client.api import Client, ConnectionLost, ReplyTimeout, object_from_reply
from fmtp.delivery import RecipientResult, parse_results
from fmtp.errors import FMTPError, InvalidAddress
from fmtp.federation.hello import HelloVerifier, Peer, make_hello
from fmtp.interfaces import IDomainSigner
from fmtp.objects import (
    USER_TYPE,
    FMTPObject,
    domain_of,
    normalize_address,
    normalize_domain,
)
from fmtp.util.hostport import DEFAULT_FMTP_PORT
from fmtp.wire import (
    DEFAULT_LIMITS,
    UNSOLICITED_TAG,
    Frame,
    Limits,
)

TLS_REQUIRE = "require"
TLS_OPPORTUNISTIC = "opportunistic"
TLS_OFF = "off"
TLS_POLICIES = frozenset({TLS_REQUIRE, TLS_OPPORTUNISTIC, TLS_OFF})

#: How a link came to be: a recipient's C{Route}, the domain's DNS routes,
#: or the parent relay.
VIA_PREFERRED = "preferred"
VIA_DNS = "dns"
VIA_PARENT = "parent"

#: Seconds a closing link may take to say goodbye (a TLS close_notify)
#: before its connection is aborted.
CLOSE_GRACE = 10.0

#: routes_for: domain -> Deferred (or awaitable) of routes, each with
#: C{host}, C{port} and C{address} (L{fmtp.dns.Route}); fails with an
#: FMTPError whose code says permanent (NoRoute, 554) or temporary (451).
RoutesFor = Callable[[str], Awaitable[Sequence[Any]]]
#: resolve_host: host name -> Deferred (or awaitable) of IP addresses.
ResolveHost = Callable[[str], Awaitable[Sequence[str]]]


class LinkError(FMTPError):
    """
    A server link could not be made or used.

    The code is per instance, copied from whatever failed (a peer's reply,
    a DNS error), so that the queue decides retry or bounce from
    C{error.code} alone: 4xx temporary, 5xx permanent.
    """

    code = 451
    default_message = "server link failed, try again later"

    def __init__(self, message: str | None = None, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def permanent(self) -> bool:
        return self.code >= 500


class LinkFailed(LinkError):
    """
    No link now: connection refused or timed out, TLS required but not
    possible, the peer's keys not found in DNS... Temporary unless a code
    says otherwise.
    """


class LinkRefused(LinkError):
    """
    The peer refused us, or could not prove it is the domain we meant:
    permanent unless a code says otherwise.
    """

    code = 554
    default_message = "server link refused"


class LinkLost(LinkError):
    """
    The connection ended with a request in flight.  Temporary: delivery is
    idempotent by id, so the queue simply tries again.
    """

    default_message = "server link lost, try again later"


class DeliveryFailed(LinkError):
    """
    The peer refused a whole message with one 4xx or 5xx reply.
    """

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text, code)


def parse_route(value: str, default_port: int = DEFAULT_FMTP_PORT) -> tuple[str, int]:
    """
    Parse a user's C{Route} property: C{tcp://HOST[:PORT]}, HOST a name, an
    IPv4 address or a bracketed IPv6 address.

    @return: C{(host, port)}, the host lower-cased and without brackets.
    @raise ValueError: for anything else (another scheme, a path, a bad
        port).
    """
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"bad route {value!r}: {e}") from None
    if parts.scheme.lower() != "tcp":
        raise ValueError(f"bad route {value!r}: only tcp://HOST:PORT is supported")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ValueError(f"bad route {value!r}: expected tcp://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"bad route {value!r}: expected tcp://HOST:PORT")
    if port == 0:
        raise ValueError(f"bad route {value!r}: port 0")
    return parts.hostname, port or default_port


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def load_trust_root(path: str | os.PathLike[str]) -> Any:
    """
    A trust root from a PEM file of one or more CA certificates (the
    C{--tls-ca} of a private network).
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ValueError(f"{path}: no PEM certificate could be read: {e}") from None
    return trustRootFromCertificates(
        [
            Certificate.loadPEM(cert.public_bytes(serialization.Encoding.PEM))
            for cert in found
        ]
    )


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """
    One place a link is tried: connect to C{address} port C{port} (or
    through C{endpoint}), expecting a server named C{host} there, which is
    the name a required TLS certificate must carry.
    """

    via: str
    host: str
    port: int
    address: str | None = None
    endpoint: Any = None

    def describe(self) -> str:
        if self.endpoint is not None:
            return f"{self.host or 'parent'} ({self.endpoint!r})"
        host = f"[{self.host}]" if ":" in self.host else self.host
        shown = f"{host}:{self.port}"
        if self.address and self.address != self.host:
            shown += f" ({self.address})"
        return shown


@dataclass(frozen=True, slots=True)
class ParentRoute:
    """
    Where this server's parent relay listens.

    @ivar domain: the parent's domain, which its HELLO must prove; if
        L{None}, the domain it names in its C{CAPA} reply is taken (and
        then proved by its HELLO all the same).
    @ivar endpoint: an C{IStreamClientEndpoint} to use instead of
        C{host}/C{port}.
    """

    host: str = ""
    port: int = DEFAULT_FMTP_PORT
    domain: str | None = None
    endpoint: Any = None

    @classmethod
    def coerce(cls, value: Any) -> ParentRoute | None:
        """
        Accept C{None}, a L{ParentRoute}, C{(host, port)}, C{(host, port,
        domain)}, a C{tcp://HOST:PORT} string or a client endpoint.
        """
        if value is None or isinstance(value, ParentRoute):
            return value
        if IStreamClientEndpoint.providedBy(value):
            return cls(endpoint=value)
        if isinstance(value, str):
            host, port = parse_route(value)
            return cls(host, port)
        host, port, *rest = value
        domain = normalize_domain(rest[0]) if rest and rest[0] else None
        return cls(str(host), int(port), domain)


class _LinkProtocol(FrameClientProtocol):
    """
    A L{FrameClientProtocol} that closes on a peer's C{421} and reports how
    its connection ended.

    @ivar lost_reason: why the connection ended, once it has (a TLS
        verification error says more than "connection closed").
    @ivar on_lost: called with the reason when the connection ends,
        before any request in flight is failed, so that whoever retries
        never picks this connection again.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self.lost_reason: Failure | None = None
        self.on_lost: list[Callable[[Failure], object]] = []

    def frame_received(self, item: Frame) -> None:
        if item.is_reply and item.tag == UNSOLICITED_TAG and item.code == 421:
            # The peer is closing (idle, shutting down): close our side
            # now, so that no new request is sent into a closing link.
            self.transport.loseConnection()
        super().frame_received(item)

    def connectionLost(self, reason: Failure = None) -> None:
        self.lost_reason = reason
        callbacks, self.on_lost = self.on_lost, []
        for callback in callbacks:
            callback(reason)
        super().connectionLost(reason)


def _why(failure: Failure | BaseException | None) -> str:
    if failure is None:
        return "connection closed"
    value = failure.value if isinstance(failure, Failure) else failure
    if isinstance(value, netError.ConnectionDone):
        return "connection closed"
    text = str(value).strip()
    return text or type(value).__name__


class ServerLink:
    """
    One open, handshaken connection to a peer server.

    Requests are pipelined: any number may be in flight, each matched to
    its reply by tag.  The link closes itself after C{idle_timeout}
    seconds without a request in flight.

    @ivar peer: what the peer's HELLO proved (L{Peer.verified} is C{False}
        for a domain that publishes no key: such a link is used only for
        CONFIRM).
    @ivar domain: the domain the peer proved: the destination, or the
        parent's for a link through the parent.
    @ivar target: where it was reached.
    @ivar via: L{VIA_PREFERRED}, L{VIA_DNS} or L{VIA_PARENT}.
    @ivar tls: C{"verified"} (certificate checked), C{"unverified"} (TLS
        without checking) or C{"none"}.
    @ivar in_flight: requests awaiting their reply.
    @ivar completed: requests answered (or failed) on this link so far.
    @ivar last_used: when a request was last sent or answered.
    """

    _log = Logger()

    def __init__(
        self,
        protocol: _LinkProtocol,
        peer: Peer,
        target: LinkTarget,
        tls: str,
        clock: Any,
        idle_timeout: float | None,
        request_timeout: float = 120.0,
    ) -> None:
        self._protocol = protocol
        # The client library's request machinery: pipelining, a reply
        # timeout, and connection loss as an error.
        self._client = Client(protocol, clock, request_timeout)
        self.peer = peer
        self.domain = peer.domain
        self.target = target
        self.via = target.via
        self.tls = tls
        self._clock = clock
        self._idle_timeout = idle_timeout
        self.in_flight = 0
        self.completed = 0
        self.last_used = clock.seconds()
        self.connected = protocol.lost_reason is None
        self._closed_waiters: list[Deferred] = []
        self._on_close: list[Callable[[ServerLink], object]] = []
        self._idle_call = None
        self._abort_call = None
        protocol.on_lost.append(self._connection_lost)
        if self.connected and idle_timeout:
            self._idle_call = clock.callLater(idle_timeout, self._idle_expired)

    def __repr__(self) -> str:
        return (
            f"<ServerLink {self.domain} via {self.via} {self.target.describe()} "
            f"tls={self.tls} {'open' if self.connected else 'closed'}>"
        )

    @property
    def idle(self) -> bool:
        """
        Whether no request is in flight.
        """
        return self.in_flight == 0

    def idle_for(self) -> float:
        """
        Seconds since the link was last used (0 while requests are in
        flight).
        """
        if self.in_flight:
            return 0.0
        return self._clock.seconds() - self.last_used

    def peer_certificate(self) -> Any:
        """
        The certificate the peer presented, if the link uses TLS (a
        Twisted C{Certificate}), else L{None}: for status pages and logs.
        """
        if self.tls == "none" or not self.connected:
            return None
        transport = self._protocol.transport
        return Certificate.peerFromTransport(transport)

    def can_confirm_for(self, domain: str) -> bool:
        """
        Whether a CONFIRM for C{domain} may be asked on this link: it must
        lead to that domain's own server (never a parent: its yes would
        prove nothing), found through DNS or proved by a signed HELLO.
        """
        return (
            self.connected
            and self.peer.domain == domain
            and self.via != VIA_PARENT
            and (self.peer.verified or self.via == VIA_DNS)
        )

    def on_close(self, callback: Callable[[ServerLink], object]) -> None:
        """
        Call C{callback(link)} once, when the link closes or is lost.
        """
        if self.connected:
            self._on_close.append(callback)
        else:
            callback(self)

    def when_closed(self) -> Deferred:
        """
        A Deferred that fires once the connection has ended.
        """
        if self._protocol.lost_reason is not None:
            return succeed(None)
        d: Deferred = Deferred()
        self._closed_waiters.append(d)
        return d

    def close(self) -> Deferred:
        """
        Close the link (requests in flight fail with L{LinkLost}).

        @return: a Deferred that fires once the connection has ended.
        """
        d = self.when_closed()
        if self.connected:
            self._detach()
            transport = self._protocol.transport
            transport.loseConnection()
            # A peer that never completes the TLS close cannot keep the
            # socket open for ever.
            self._abort_call = self._clock.callLater(
                CLOSE_GRACE, transport.abortConnection
            )
        return d

    def _detach(self) -> None:
        """
        Stop being usable: no new requests, out of the pool.
        """
        if not self.connected:
            return
        self.connected = False
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback(self)

    def _connection_lost(self, reason: Failure) -> None:
        if self.connected:
            self._log.info(
                "Link to {domain} ({target}) lost: {why}",
                domain=self.domain,
                target=self.target.describe(),
                why=_why(reason),
            )
        self._detach()
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            d.callback(None)

    def _idle_expired(self) -> None:
        self._idle_call = None
        if not self.connected:
            return
        if self.in_flight:
            self._idle_call = self._clock.callLater(
                self._idle_timeout, self._idle_expired
            )
            return
        self._log.info(
            "Closing idle link to {domain} ({target})",
            domain=self.domain,
            target=self.target.describe(),
        )
        self.close()

    def _touch(self) -> None:
        self.last_used = self._clock.seconds()
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.reset(self._idle_timeout)

    async def _request(
        self,
        verb: str,
        argument: str = "",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Frame:
        if not self.connected:
            raise LinkLost(
                f"link to {self.domain} ({self.target.describe()}) is closed; "
                "try again later"
            )
        self.in_flight += 1
        self._touch()
        try:
            return await self._client.request(verb, argument, headers, body)
        except ConnectionLost as e:
            why = _why(self._protocol.lost_reason or e)
            raise LinkLost(
                f"connection to {self.domain} ({self.target.describe()}) lost "
                f"during {verb}: {why}; try again later"
            ) from None
        except ReplyTimeout:
            # A peer that does not answer is not trusted with the next
            # request either: a fresh link is made for it.
            self.close()
            raise LinkLost(
                f"{self.domain} ({self.target.describe()}) did not answer {verb} "
                f"within {self._client.timeout:g} seconds; try again later"
            ) from None
        finally:
            self.in_flight -= 1
            self.completed += 1
            self._touch()

    def _failed(self, verb: str, answer: Frame) -> LinkError:
        code = answer.code if answer.code >= 400 else 451
        return LinkError(
            f"{self.domain} answered {verb} with {answer.verb} {answer.argument}",
            code,
        )

    async def deliver(
        self, obj: FMTPObject, recipients: Sequence[str]
    ) -> list[RecipientResult]:
        """
        Hand C{obj} (signed by its origin) to the peer for C{recipients}.

        @return: one result per recipient, in the order given; a recipient
            the peer's answer does not mention gets a temporary 451, so it
            is tried again rather than lost.
        @raise DeliveryFailed: if the peer refused the whole message, with
            its code.
        @raise LinkLost: if the connection ended first (temporary).
        """
        if isinstance(recipients, str):
            raise TypeError("recipients must be a sequence of addresses, not a str")
        recipients = list(recipients)
        if not recipients:
            raise ValueError("no recipients")
        answer = await self._request(
            "DELIVER", " ".join(recipients), obj.to_headers(), obj.body
        )
        if not 200 <= answer.code < 300:
            code = answer.code if answer.code >= 400 else 451
            raise DeliveryFailed(
                code,
                f"{self.domain} refused {obj.id}: {answer.verb} {answer.argument}",
            )
        found = {
            _normal(result.address): result
            for result in parse_results(
                answer.body.decode("utf-8", "replace"), self._malformed_result
            )
        }
        results = []
        for recipient in recipients:
            result = found.get(_normal(recipient))
            if result is None:
                result = RecipientResult(
                    recipient, 451, f"{self.domain} gave no result for this recipient"
                )
            results.append(result)
        return results

    def _malformed_result(self, line: str) -> None:
        # Its recipient then gets a 451 and is tried again.
        self._log.warn(
            "{domain} sent a malformed result line {line!r}",
            domain=self.domain,
            line=line[:200],
        )

    async def get(self, object_id: str) -> FMTPObject | None:
        """
        Fetch an object (a remote user's public profile, say).

        @return: the object, or L{None} if the peer has none it will show
            (550).
        @raise LinkError: for any other failure, with its code.
        """
        return await self.get_with(object_id)

    async def get_with(
        self, object_id: str, headers: dict[str, str] | None = None
    ) -> FMTPObject | None:
        """
        L{get}, with request headers (C{Cache-Only: yes} asks a parent for
        what it holds, without a lookup).
        """
        answer = await self._request("GET", object_id, headers)
        if answer.code == 550:
            return None
        if not 200 <= answer.code < 300:
            raise self._failed("GET", answer)
        try:
            return object_from_reply(answer)
        except ProtocolError as e:
            raise LinkError(f"{self.domain}, for {object_id}: {e}") from None

    async def confirm(self, object_id: str, digest: str) -> bool:
        """
        The countersign: ask whether the peer sent C{object_id} with this
        digest.

        @return: C{True} for a 2xx, C{False} for 550.
        @raise LinkError: for any other answer.
        """
        answer = await self._request("CONFIRM", object_id, {"Digest": digest})
        if 200 <= answer.code < 300:
            return True
        if answer.code == 550:
            return False
        raise self._failed("CONFIRM", answer)


def _normal(address: str) -> str:
    try:
        return normalize_address(address)
    except InvalidAddress:
        return address


def _as_link_error(e: BaseException, what: str) -> LinkError:
    """
    Any failure as a L{LinkError} naming C{what} failed, keeping its code.
    """
    if isinstance(e, LinkError):
        return e
    if isinstance(e, FMTPError):
        return LinkError(f"{what}: {e.message}", e.code)
    return LinkFailed(f"{what}: {_why(e)}")


#: The longest a fetched user object is kept, whatever its C{Ttl} says.
MAX_USER_TTL = 86400.0


class LinkPool:
    """
    The open links of this server, one per destination domain, and how to
    open more.

    @param reactor: connects sockets (C{IReactorTCP}).
    @param signer: this domain's key, for our HELLO.
    @param hello_verifier: checks HELLO answers addressed to this domain.
    @param routes_for: the domain's routes from DNS, best first (the
        C{routes_for} of L{fmtp.dns.RouteResolver}).
    @param tls_policy: the default TLS policy (L{TLS_POLICIES}).
    @param tls_policies: per-domain overrides of C{tls_policy}.
    @param tls_trust_root: what a required certificate must chain to:
        L{None} for the platform's trust store, a PEM file path, or a
        Twisted C{Certificate} / trust root.
    @param connect_timeout: seconds for one route, from connecting to the
        end of the HELLO.
    @param idle_timeout: seconds a link may sit unused before it closes
        (kept below the server side's 600 so that we, not the peer, close).
    @param parent: the parent relay, tried when every route fails: see
        L{ParentRoute.coerce}.
    @param resolve_host: host name to addresses, for routes named in user
        objects; by default C{routes_for}'s own resolver's
        C{resolve_host}, so that C{--dns} answers for those too.
    @param clock: time and timers (idle, timeouts, cache); by default the
        reactor.
    @param user_ttl: seconds a fetched remote user object is kept.
    @param max_users: most remote user objects kept.
    @param request_timeout: seconds a link waits for each reply before
        taking the peer for gone (the request is then retried on a fresh
        link, later).
    """

    _log = Logger()

    #: Seconds before a user's route that failed is tried again, by any
    #: delivery or link (doc/protocol.md 8.1).
    route_retry_after = 600.0

    def __init__(
        self,
        reactor: Any,
        signer: IDomainSigner,
        hello_verifier: HelloVerifier,
        routes_for: RoutesFor,
        tls_policy: str = TLS_OPPORTUNISTIC,
        tls_trust_root: Any = None,
        connect_timeout: float = 10.0,
        idle_timeout: float = 300.0,
        parent: Any = None,
        resolve_host: ResolveHost | None = None,
        tls_policies: Mapping[str, str] | None = None,
        clock: Any = None,
        limits: Limits = DEFAULT_LIMITS,
        user_ttl: float = 300.0,
        max_users: int = 10_000,
        request_timeout: float = 120.0,
    ) -> None:
        self._reactor = reactor
        self.request_timeout = request_timeout
        self._clock = clock if clock is not None else reactor
        self._signer = signer
        self._hello = hello_verifier
        self._routes_for = routes_for
        if resolve_host is None:
            owner = getattr(routes_for, "__self__", None)
            resolve_host = getattr(owner, "resolve_host", None)
        self._resolve_host = resolve_host
        self.tls_policy = _check_policy(tls_policy)
        self._tls_policies = {
            normalize_domain(domain): _check_policy(policy)
            for domain, policy in (tls_policies or {}).items()
        }
        if isinstance(tls_trust_root, str | os.PathLike):
            tls_trust_root = load_trust_root(tls_trust_root)
        #: None means the platform's trust store (optionsForClientTLS's
        #: default).
        self._trust_root = tls_trust_root
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.parent = ParentRoute.coerce(parent)
        self._limits = limits
        self._user_ttl = user_ttl
        self._max_users = max_users
        #: destination domain -> the link that serves it (possibly the
        #: parent's).
        self._links: dict[str, ServerLink] = {}
        self._parent_link: ServerLink | None = None
        self._all: set[ServerLink] = set()
        self._waiters: dict[tuple[str, str], list[Deferred]] = {}
        self._attempts: dict[tuple[str, str], Deferred] = {}
        self._users: OrderedDict[str, tuple[float, FMTPObject | None]] = OrderedDict()
        #: (host, port) of users' routes that failed -> when to try again.
        self._failed_routes: dict[tuple[str, int], float] = {}
        self._closing = False

    # -- public API ---------------------------------------------------------

    def links(self) -> list[ServerLink]:
        """
        The open links, for status pages and tests.
        """
        return [link for link in self._all if link.connected]

    def link_for(self, domain: str) -> ServerLink | None:
        """
        The open link that serves C{domain}, if any; never opens one.
        """
        link = self._links.get(normalize_domain(domain))
        return link if link is not None and link.connected else None

    async def link_to(
        self,
        domain: str,
        preferred: Iterable[str | tuple[str, int]] = (),
        allow_unverified: bool = False,
    ) -> ServerLink:
        """
        A link to C{domain}'s server: the open one, or a new one made
        through C{preferred} routes (C{tcp://HOST:PORT} strings or
        C{(host, port)}), then the domain's DNS routes, then the parent.
        Concurrent callers share one attempt.

        @param allow_unverified: accept a peer whose domain publishes no
            key (only CONFIRM may use such a link).
        @raise LinkError: 4xx temporary or 5xx permanent, naming the
            domain and what failed on each route.
        """
        domain = self._domain(domain)
        link = self.link_for(domain)
        if link is None:
            routes = self._preferred(domain, preferred)
            link = await self._shared(
                ("any", domain), lambda: self._establish(domain, routes, False)
            )
        if not link.peer.verified and not allow_unverified:
            raise LinkRefused(
                f"{link.domain} publishes no key, so its server cannot prove who "
                "it is; messages are only handed to servers that do"
            )
        return link

    async def confirm_link(self, domain: str) -> ServerLink:
        """
        A link on which to ask C{domain} to confirm a message: to its own
        server, found through DNS (never a route a payload named, never the
        parent), possibly unverified (a domain with no key is exactly the
        one that must be asked).
        """
        domain = self._domain(domain)
        link = self.link_for(domain)
        if link is not None and link.can_confirm_for(domain):
            return link
        return await self._shared(
            ("direct", domain), lambda: self._establish(domain, [], True)
        )

    async def deliver(
        self,
        domain: str,
        obj: FMTPObject,
        recipients: Sequence[str],
        route_hint: str | Sequence[str] | None = None,
    ) -> list[RecipientResult]:
        """
        Deliver C{obj} to C{recipients} of C{domain} on a pooled link.

        @param route_hint: the recipient's C{Route} property (or several),
            tried first when a new link is needed.
        @raise LinkError: no link (see L{link_to}), the whole message
            refused (L{DeliveryFailed}), or the connection lost (temporary:
            the message stays queued).
        """
        hints = [route_hint] if isinstance(route_hint, str) else list(route_hint or ())
        hinted = await self._hinted_link(self._domain(domain), hints)
        if hinted is not None:
            try:
                return await hinted.deliver(obj, recipients)
            except LinkLost as e:
                self._log.info(
                    "Link to {domain} via its route lost ({why}); using the "
                    "domain's server",
                    domain=domain,
                    why=e.message,
                )
        for attempt in (1, 2):
            # Not the hints again: each was just tried, or is resting.
            link = await self.link_to(domain)
            reused = link.completed > 0
            try:
                return await link.deliver(obj, recipients)
            except LinkLost as e:
                # A link that sat idle may have been closed by the peer
                # just as we used it.  DELIVER is idempotent by id, so one
                # more try on a fresh link is safe; a fresh link that fails
                # is a real failure.
                if attempt == 2 or not reused:
                    raise
                self._log.info(
                    "Retrying {id} on a new link to {domain}: {why}",
                    id=obj.id,
                    domain=domain,
                    why=e.message,
                )
        raise AssertionError("unreachable")

    async def _hinted_link(
        self, domain: str, hints: Sequence[str]
    ) -> ServerLink | None:
        """
        A link through a recipient's own route (its C{Route} property),
        tried before the domain's server as the FMTP draft's route
        negotiation says, even when a link to the domain is already open.

        @return: the link, or L{None} to use the domain's server.
        """
        for host, port in self._preferred(domain, hints):
            open_link = self.link_for(domain)
            if (
                open_link is not None
                and open_link.via == VIA_PREFERRED
                and (
                    open_link.target.host,
                    open_link.target.port,
                )
                == (host, port)
            ):
                return open_link
            link = await self._through_route(domain, host, port, [])
            if link is not None:
                return link
        return None

    async def _through_route(
        self,
        domain: str,
        host: str,
        port: int,
        failures: list[LinkError],
        tried: set[tuple[str | None, int]] | None = None,
    ) -> ServerLink | None:
        """
        A new link to C{domain} through one of a recipient's own routes,
        unless that route failed less than L{route_retry_after} seconds
        ago (doc/protocol.md 8.1).  Every way of opening a link with a
        route goes through here, so that an unreachable route costs one
        attempt per retry period, not one per message or per link.

        @param failures: gets what failed on this route.
        @param tried: gets the C{(address, port)} pairs tried.
        @return: the registered link, or L{None}.
        """
        if self._failed_routes.get((host, port), 0) > self._clock.seconds():
            return None
        route_failures: list[LinkError] = []
        for address in await self._addresses(host, domain, route_failures):
            if tried is not None:
                tried.add((address, port))
            target = LinkTarget(VIA_PREFERRED, host, port, address)
            try:
                link = await self._attempt(target, domain)
            except LinkError as e:
                route_failures.append(e)
                continue
            return self._register(domain, link)
        # Re-inserted at the end: the oldest failures are forgotten first.
        self._failed_routes.pop((host, port), None)
        self._failed_routes[host, port] = self._clock.seconds() + self.route_retry_after
        while len(self._failed_routes) > self._max_users:
            del self._failed_routes[next(iter(self._failed_routes))]
        self._log.info(
            "Route {host}:{port} of {domain} unreachable ({why}); not tried again "
            "for {rest:g} seconds; using the domain's server",
            host=host,
            port=port,
            domain=domain,
            why="; ".join(e.message for e in route_failures) or "no address",
            rest=self.route_retry_after,
        )
        failures.extend(route_failures)
        return None

    async def remote_user(self, address: str) -> FMTPObject | None:
        """
        The public profile of a user of another domain (for its C{Route}),
        found as the FMTP draft's route negotiation says: this server's
        cache, then the parent's cache, then the user's domain, then (when
        the domain cannot be reached directly) a lookup by the parent.
        Kept for the object's C{Ttl} property (seconds, at most a day), or
        C{user_ttl}.

        @return: the user object, or L{None} if there is no such user.
        @raise LinkError: if neither the domain nor the parent can be asked
            now.
        """
        address = normalize_address(address)
        cached = self.cached_user(address)
        if cached is not None or address in self._users:
            return cached
        return await self._shared(("user", address), lambda: self._fetch_user(address))

    def cached_user(self, address: str) -> FMTPObject | None:
        """
        The user object this server holds for C{address}, if still fresh;
        never asks anyone (what a parent answers a C{Cache-Only} GET with).
        """
        address = _normal(address)
        entry = self._users.get(address)
        if entry is None:
            return None
        if entry[0] <= self._clock.seconds():
            del self._users[address]
            return None
        self._users.move_to_end(address)
        return entry[1]

    def forget_user(self, address: str) -> None:
        """
        Drop a cached user object (say, after its route failed).
        """
        self._users.pop(_normal(address), None)

    async def close(self) -> None:
        """
        Stop: cancel attempts in progress and close every link.
        """
        self._closing = True
        for attempt in list(self._attempts.values()):
            attempt.cancel()
        await DeferredList([link.close() for link in list(self._all)])

    # -- opening links ----------------------------------------------------------

    def _domain(self, domain: str) -> str:
        if self._closing:
            raise LinkFailed(f"not linking to {domain}: shutting down", 421)
        try:
            return normalize_domain(domain)
        except InvalidAddress as e:
            raise LinkRefused(f"no link to {domain!r}: {e.message}", e.code) from None

    def _preferred(
        self, domain: str, preferred: Iterable[str | tuple[str, int]]
    ) -> list[tuple[str, int]]:
        routes = []
        for route in preferred:
            try:
                if isinstance(route, str):
                    routes.append(parse_route(route))
                else:
                    host, port = route
                    routes.append((str(host).lower(), int(port)))
            except (TypeError, ValueError) as e:
                self._log.info(
                    "Ignoring route {route!r} for {domain}: {error}",
                    route=route,
                    domain=domain,
                    error=str(e),
                )
        return routes

    def _shared(self, key: tuple[str, str], make: Callable[[], Awaitable[Any]]) -> Any:
        """
        Run C{make()} once for all callers asking for C{key} at the same
        time; each caller gets its own Deferred, so one cancelling does not
        cancel the others.
        """
        waiters = self._waiters.get(key)
        first = waiters is None
        if first:
            waiters = self._waiters[key] = []

        def forget(d: Deferred) -> None:
            if d in waiters:
                waiters.remove(d)

        waiter: Deferred = Deferred(forget)
        waiters.append(waiter)
        if first:
            attempt = Deferred.fromCoroutine(make())
            self._attempts[key] = attempt
            attempt.addBoth(self._attempt_done, key, waiters)
        return waiter

    def _attempt_done(self, result: Any, key: tuple[str, str], waiters: list) -> None:
        if self._waiters.get(key) is waiters:
            del self._waiters[key]
        self._attempts.pop(key, None)
        for d in list(waiters):
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
        waiters.clear()

    async def _establish(
        self, domain: str, preferred: list[tuple[str, int]], direct_only: bool
    ) -> ServerLink:
        failures: list[LinkError] = []
        tried: set[tuple[str | None, int]] = set()

        async def attempt(
            target: LinkTarget, expected: str | None
        ) -> ServerLink | None:
            key = (target.address, target.port)
            if target.endpoint is None and key in tried:
                return None
            tried.add(key)
            try:
                return await self._attempt(target, expected)
            except LinkError as e:
                self._log.info(
                    "Link to {domain} via {via} {target} failed: {error}",
                    domain=domain,
                    via=target.via,
                    target=target.describe(),
                    error=e.message,
                )
                failures.append(e)
                return None

        if not direct_only:
            for host, port in preferred:
                link = await self._through_route(domain, host, port, failures, tried)
                if link is not None:
                    return link

        try:
            routes = list(await self._routes_for(domain))
        except CancelledError:
            raise
        except Exception as e:
            failures.append(_as_link_error(e, f"routes of {domain}"))
            routes = []
        for route in routes:
            target = LinkTarget(VIA_DNS, route.host, int(route.port), route.address)
            link = await attempt(target, domain)
            if link is not None:
                return self._register(domain, link)

        if self.parent is not None and not direct_only:
            try:
                link = await self._parent_link_for(domain)
            except LinkError as e:
                failures.append(e)
            else:
                self._log.info(
                    "Relaying for {domain} through parent {parent}",
                    domain=domain,
                    parent=link.domain,
                )
                self._links[domain] = link
                return link

        raise _combine(domain, failures)

    async def _parent_link_for(self, domain: str) -> ServerLink:
        link = self._parent_link
        if link is not None and link.connected:
            return link
        return await self._shared(("parent", ""), self._open_parent)

    async def _open_parent(self) -> ServerLink:
        parent = self.parent
        assert parent is not None
        failures: list[LinkError] = []
        if parent.endpoint is not None:
            targets = [
                LinkTarget(VIA_PARENT, parent.domain or "", 0, endpoint=parent.endpoint)
            ]
        else:
            addresses = await self._addresses(parent.host, "the parent", failures)
            targets = [
                LinkTarget(VIA_PARENT, parent.host, parent.port, address)
                for address in addresses
            ]
        for target in targets:
            try:
                link = await self._attempt(target, parent.domain)
            except LinkError as e:
                failures.append(e)
                continue
            if not link.peer.verified:
                link.close()
                failures.append(
                    LinkRefused(f"parent {link.domain} did not sign its HELLO")
                )
                continue
            self._parent_link = link
            self._track(link)
            return link
        raise _combine("the parent", failures, prefix="parent relay unreachable")

    async def _addresses(
        self, host: str, domain: str, failures: list[LinkError]
    ) -> list[str]:
        literal = _ip_literal(host)
        if literal is not None:
            return [literal]
        if self._resolve_host is None:
            failures.append(
                LinkFailed(f"route {host} for {domain}: no resolver for host names")
            )
            return []
        try:
            return [str(a) for a in await self._resolve_host(host)]
        except CancelledError:
            raise
        except Exception as e:
            failures.append(_as_link_error(e, f"route {host} for {domain}"))
            return []

    def _register(self, domain: str, link: ServerLink) -> ServerLink:
        self._links[domain] = link
        self._track(link)
        return link

    def _track(self, link: ServerLink) -> None:
        if link not in self._all:
            self._all.add(link)
            link.on_close(self._forget)

    def _forget(self, link: ServerLink) -> None:
        self._all.discard(link)
        for domain in [d for d, held in self._links.items() if held is link]:
            del self._links[domain]
        if self._parent_link is link:
            self._parent_link = None

    def _policy_for(self, name: str | None) -> str:
        if name is not None:
            return self._tls_policies.get(name, self.tls_policy)
        return self.tls_policy

    def _endpoint(self, target: LinkTarget) -> Any:
        if target.endpoint is not None:
            return target.endpoint
        kind = (
            TCP6ClientEndpoint if ":" in (target.address or "") else TCP4ClientEndpoint
        )
        return kind(
            self._reactor, target.address, target.port, timeout=self.connect_timeout
        )

    async def _attempt(self, target: LinkTarget, expected: str | None) -> ServerLink:
        """
        Connect to one target and handshake, within C{connect_timeout}.

        @param expected: the domain the peer must prove (L{None}: the one
            its CAPA names, for a parent given by address only).
        """
        protocol = _LinkProtocol(self._limits)
        d = Deferred.fromCoroutine(self._connect(protocol, target, expected))
        d.addTimeout(self.connect_timeout, self._clock)
        try:
            return await d
        except TimeoutError:
            raise LinkFailed(
                f"{target.describe()}: no link within {self.connect_timeout:g} seconds"
            ) from None
        except (CancelledError, LinkError):
            raise
        except Exception as e:
            self._log.failure(
                "Unexpected error linking to {target}",
                Failure(e),
                target=target.describe(),
            )
            raise LinkFailed(f"{target.describe()}: {_why(e)}") from None

    async def _connect(
        self, protocol: _LinkProtocol, target: LinkTarget, expected: str | None
    ) -> ServerLink:
        try:
            await connectProtocol(self._endpoint(target), protocol)
        except CancelledError:
            raise
        except netError.ConnectingCancelledError:
            # What a cancelled TCP connect fails with; keep it a
            # cancellation, so that the timeout reports itself as one.
            raise CancelledError() from None
        except Exception as e:
            raise LinkFailed(f"cannot connect to {target.describe()}: {_why(e)}")
        try:
            return await self._handshake(protocol, target, expected)
        except BaseException:
            # Covers cancellation by the timeout too: no half-open link
            # outlives its attempt.
            if protocol.transport is not None:
                protocol.transport.abortConnection()
            raise

    async def _handshake(
        self, protocol: _LinkProtocol, target: LinkTarget, expected: str | None
    ) -> ServerLink:
        where = target.describe()
        try:
            await protocol.greeting
            capa = await protocol.request("CAPA")
            if not 200 <= capa.code < 300:
                raise LinkFailed(
                    f"{where} answered CAPA with {capa.verb} {capa.argument}",
                    capa.code if capa.code >= 400 else None,
                )
            peer_domain = expected
            if peer_domain is None:
                try:
                    peer_domain = normalize_domain(capa.headers.get("Domain", ""))
                except InvalidAddress:
                    raise LinkFailed(f"{where} names no domain in its CAPA") from None
            tls = await self._start_tls(protocol, target, peer_domain, capa)
            hello = make_hello(self._signer, peer_domain, self._clock.seconds())
            answer = await protocol.request("HELLO", headers=hello)
        except (netError.ConnectionDone, netError.ConnectionLost, ProtocolError) as e:
            why = _why(protocol.lost_reason or e)
            if protocol.tls_ready is not None:
                raise LinkFailed(f"TLS with {where} failed: {why}") from None
            raise LinkFailed(f"{where} closed the connection: {why}") from None
        if answer.code >= 400:
            raise LinkError(
                f"{where} refused our HELLO: {answer.verb} {answer.argument}",
                answer.code,
            )
        if not 200 <= answer.code < 300:
            raise LinkFailed(f"{where} answered HELLO with {answer.verb}")
        try:
            peer = await self._hello.verify(answer.headers, in_reply_to=hello["Nonce"])
        except FMTPError as e:
            raise LinkError(
                f"{where} did not prove it is {peer_domain}: {e.message}", e.code
            ) from None
        if peer.domain != peer_domain:
            raise LinkRefused(f"{where} proved it is {peer.domain}, not {peer_domain}")
        link = ServerLink(
            protocol,
            peer,
            target,
            tls,
            self._clock,
            self.idle_timeout or None,
            self.request_timeout,
        )
        self._log.info(
            "Linked to {domain} via {via} {target} (TLS: {tls}, {how})",
            domain=peer.domain,
            via=target.via,
            target=where,
            tls=tls,
            how="verified" if peer.verified else "unverified: CONFIRM only",
        )
        return link

    async def _start_tls(
        self, protocol: _LinkProtocol, target: LinkTarget, domain: str, capa: Frame
    ) -> str:
        """
        Apply the TLS policy for C{domain} to this connection.

        @return: C{"verified"}, C{"unverified"} or C{"none"}.
        """
        policy = self._policy_for(domain)
        where = target.describe()
        offered = "STARTTLS" in capa.headers.get("Commands", "").upper().split()
        if policy == TLS_OFF:
            return "none"
        if not offered:
            if policy == TLS_REQUIRE:
                raise LinkFailed(
                    f"{where} does not offer STARTTLS, and TLS is required for {domain}"
                )
            return "none"
        if policy == TLS_REQUIRE:
            if not target.host:
                raise LinkFailed(
                    "TLS is required but the parent's name is not configured, so "
                    "its certificate cannot be checked"
                )
            options = optionsForClientTLS(target.host, trustRoot=self._trust_root)
        else:
            options = CertificateOptions()
        answer = await protocol.start_tls(options)
        if answer.code != 220:
            if policy == TLS_REQUIRE:
                raise LinkFailed(
                    f"{where} refused STARTTLS ({answer.verb} {answer.argument}), "
                    f"and TLS is required for {domain}"
                )
            return "none"
        try:
            await protocol.tls_ready
        except CancelledError:
            raise
        except Exception as e:
            raise LinkFailed(f"TLS with {where} failed: {_why(e)}") from None
        return "verified" if policy == TLS_REQUIRE else "unverified"

    async def _from_parent_cache(self, address: str) -> FMTPObject | None:
        """
        What the parent holds for C{address}, without making it look
        anything up; L{None} when there is no parent, it holds nothing, or
        it cannot be asked (the domain is asked instead).
        """
        if self.parent is None:
            return None
        try:
            link = await self._parent_link_for(domain_of(address))
            return await link.get_with(address, {"Cache-Only": "yes"})
        except LinkError as e:
            self._log.info(
                "Parent cache not asked for {address}: {why}",
                address=address,
                why=e.message,
            )
            return None

    def _ttl_of(self, obj: FMTPObject | None) -> float:
        ttl = obj.properties.get("Ttl", "") if obj is not None else ""
        if ttl.isascii() and ttl.isdigit():
            return min(float(ttl), MAX_USER_TTL)
        return self._user_ttl

    async def _fetch_user(self, address: str) -> FMTPObject | None:
        domain = domain_of(address)
        obj = await self._from_parent_cache(address)
        if obj is None:
            link = await self.link_to(domain)
            # Through the parent when the domain cannot be reached directly:
            # the parent looks the object up for us.
            obj = await link.get(address)
        if obj is not None and (obj.id != address or obj.type != USER_TYPE):
            self._log.warn(
                "{domain} answered GET {address} with {id} of type {type}; ignored",
                domain=domain,
                address=address,
                id=obj.id,
                type=obj.type,
            )
            obj = None
        self._users[address] = (self._clock.seconds() + self._ttl_of(obj), obj)
        self._users.move_to_end(address)
        while len(self._users) > self._max_users:
            self._users.popitem(last=False)
        return obj


def _check_policy(policy: str) -> str:
    if policy not in TLS_POLICIES:
        raise ValueError(
            f"TLS policy must be one of {', '.join(sorted(TLS_POLICIES))}, "
            f"not {policy!r}"
        )
    return policy


def _combine(domain: str, failures: list[LinkError], prefix: str = "") -> LinkError:
    """
    One error for every way to reach C{domain} having failed: permanent
    only if every failure was (the domain has no server, or every server
    refused us); otherwise temporary, since a server that is down now may
    be up later.
    """
    head = prefix or f"cannot reach {domain}"
    if not failures:
        return LinkFailed(f"{head}: no route")
    text = f"{head}: " + "; ".join(f.message for f in failures)
    if all(f.permanent for f in failures):
        return LinkRefused(text, failures[0].code)
    return LinkFailed(text, 451)
