"""
One open server link (L{ServerLink}): requests pipelined over a
connection whose peer proved its domain with HELLO, over the client
library's request machinery (L{fmtp.client.api.Client}), with the typed
requests delivery needs (DELIVER, GET, CONFIRM) and any other verb
(L{ServerLink.request}).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.ssl import Certificate
from twisted.logger import Logger
from twisted.python.failure import Failure

from fmtp.client import FrameClientProtocol, ProtocolError
from fmtp.client.api import Client, object_from_reply
from fmtp.client.errors import ConnectionLost, ReplyTimeout
from fmtp.delivery import RecipientResult, parse_results
from fmtp.errors import InvalidAddress
from fmtp.federation.failures import (
    DeliveryFailed,
    LinkError,
    LinkLost,
    failure_reason,
)
from fmtp.federation.hello import Peer
from fmtp.federation.targets import VIA_DNS, VIA_PARENT, LinkTarget
from fmtp.objects import FMTPObject, normalize_address
from fmtp.wire import DEFAULT_LIMITS, UNSOLICITED_TAG, Frame, Limits

#: Seconds a closing link may take to say goodbye (a TLS close_notify)
#: before its connection is aborted.
CLOSE_GRACE = 10.0


class LinkProtocol(FrameClientProtocol):
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
        protocol: LinkProtocol,
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
                why=failure_reason(reason),
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

    async def request(
        self,
        verb: str,
        argument: str = "",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Frame:
        """
        Send one request on this link and wait for its reply, pipelined
        with any others in flight.

        @return: the reply L{Frame}, whatever its code: what a code means
            is the caller's to say.
        @raise LinkLost: if the link is closed, the connection ends before
            the reply, or the peer does not answer within the request
            timeout (then the link is closed too); temporary, and the
            request may or may not have been carried out.
        """
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
            why = failure_reason(self._protocol.lost_reason or e)
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
        answer = await self.request(
            "DELIVER", " ".join(recipients), obj.to_headers(), obj.body
        )
        if not 200 <= answer.code < 300:
            code = answer.code if answer.code >= 400 else 451
            raise DeliveryFailed(
                code,
                f"{self.domain} refused {obj.id}: {answer.verb} {answer.argument}",
            )
        found = {
            normal_address(result.address): result
            for result in parse_results(
                answer.body.decode("utf-8", "replace"), self._malformed_result
            )
        }
        results = []
        for recipient in recipients:
            result = found.get(normal_address(recipient))
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
        answer = await self.request("GET", object_id, headers)
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
        answer = await self.request("CONFIRM", object_id, {"Digest": digest})
        if 200 <= answer.code < 300:
            return True
        if answer.code == 550:
            return False
        raise self._failed("CONFIRM", answer)


def normal_address(address: str) -> str:
    """
    C{address} normalized, or as given if it is malformed: for matching
    what a peer answered, which may be anything.
    """
    try:
        return normalize_address(address)
    except InvalidAddress:
        return address
