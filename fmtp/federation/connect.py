"""
Making one server link: connect to one target and handshake, within a
deadline, following the server link wire of doc/protocol.md section 8:

  1. the peer greets with C{220 *};
  2. C{CAPA}; if the peer lists C{STARTTLS} and the TLS policy allows,
     C{STARTTLS} and TLS from the very next byte (L{fmtp.federation.tls});
  3. a signed C{HELLO} naming the domain we mean to reach; the peer's
     answer must be signed by that domain, name our nonce and be
     addressed to us.  A link is for the domain its HELLO proved, never
     for the address it was reached at.

Which targets to try, and in which order, is the pool's
(L{fmtp.federation.pool.LinkPool}); time comes from the injected clock,
sockets from the injected reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import error as netError
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from fmtp.client import ProtocolError
from fmtp.errors import FMTPError, InvalidAddress
from fmtp.federation.failures import (
    LinkError,
    LinkFailed,
    LinkRefused,
    failure_reason,
)
from fmtp.federation.hello import HelloVerifier, make_hello
from fmtp.federation.link import LinkProtocol, ServerLink
from fmtp.federation.targets import LinkTarget
from fmtp.federation.tls import TLSPolicy
from fmtp.interfaces import IDomainSigner
from fmtp.objects import normalize_domain
from fmtp.wire import DEFAULT_LIMITS, Limits


class Connector:
    """
    Opens handshaken links to single targets for this server's domain.

    @param reactor: connects sockets (C{IReactorTCP}).
    @param clock: time and timers (the deadline, the links' idle timers).
    @param signer: this domain's key, for our HELLO.
    @param hello_verifier: checks HELLO answers addressed to this domain.
    @param tls: the TLS policy per destination.
    @param connect_timeout: seconds for one target, from connecting to the
        end of the HELLO.
    @param idle_timeout: seconds a link may sit unused before it closes
        (L{None} or 0: never).
    @param request_timeout: seconds a link waits for each reply.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        clock: Any,
        signer: IDomainSigner,
        hello_verifier: HelloVerifier,
        tls: TLSPolicy,
        limits: Limits = DEFAULT_LIMITS,
        connect_timeout: float = 10.0,
        idle_timeout: float | None = 300.0,
        request_timeout: float = 120.0,
    ) -> None:
        self._reactor = reactor
        self._clock = clock
        self._signer = signer
        self._hello = hello_verifier
        self.tls = tls
        self._limits = limits
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout

    def _endpoint(self, target: LinkTarget) -> Any:
        if target.endpoint is not None:
            return target.endpoint
        kind = (
            TCP6ClientEndpoint if ":" in (target.address or "") else TCP4ClientEndpoint
        )
        return kind(
            self._reactor, target.address, target.port, timeout=self.connect_timeout
        )

    async def attempt(self, target: LinkTarget, expected: str | None) -> ServerLink:
        """
        Connect to one target and handshake, within C{connect_timeout}.

        @param expected: the domain the peer must prove (L{None}: the one
            its CAPA names, for a parent given by address only).
        """
        protocol = LinkProtocol(self._limits)
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
            raise LinkFailed(f"{target.describe()}: {failure_reason(e)}") from None

    async def _connect(
        self, protocol: LinkProtocol, target: LinkTarget, expected: str | None
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
            raise LinkFailed(
                f"cannot connect to {target.describe()}: {failure_reason(e)}"
            )
        try:
            return await self._handshake(protocol, target, expected)
        except BaseException:
            # Covers cancellation by the timeout too: no half-open link
            # outlives its attempt.
            if protocol.transport is not None:
                protocol.transport.abortConnection()
            raise

    async def _handshake(
        self, protocol: LinkProtocol, target: LinkTarget, expected: str | None
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
            tls = await self.tls.negotiate(protocol, target, peer_domain, capa)
            hello = make_hello(self._signer, peer_domain, self._clock.seconds())
            answer = await protocol.request("HELLO", headers=hello)
        except (netError.ConnectionDone, netError.ConnectionLost, ProtocolError) as e:
            why = failure_reason(protocol.lost_reason or e)
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
