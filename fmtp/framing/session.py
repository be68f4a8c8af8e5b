"""
The state of one connection, and the commands every stream protocol
shares: CAPA, LOGIN, LOGOUT and QUIT (STARTTLS is the stream's own: it
changes the transport, not the session).

A protocol composes L{SessionCommands} with its own groups, so that a
user logs in to presence or chat exactly as to the object protocol:
through the one portal, under the one login throttle, opening a session
on the one router.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import deferLater

from fmtp.attachments import MAX_ATTACHMENTS
from fmtp.auth.tokens import ResumptionToken, token_hash
from fmtp.errors import AuthenticationFailed
from fmtp.framing.handler import (
    PROTOCOL_VERSION,
    CommandGroup,
    HandlerCollection,
    required_header,
)
from fmtp.interfaces import IAccount, ISession
from fmtp.keys.records import format_key_record
from fmtp.loginthrottle import LoginThrottled
from fmtp.wire import MAX_DATAGRAM, Frame, reply

if TYPE_CHECKING:
    from fmtp.services import SharedServices

#: Failed LOGINs after which a stream is closed.
MAX_FAILED_LOGINS_PER_CONNECTION = 3


@dataclass(slots=True)
class Session:
    """
    What the commands know of whoever sent a request: one stream
    connection, or one datagram.

    @ivar host: the peer's address as the transport reports it; used only
        to throttle and to reply, never trusted as an identity (a peer
        server's domain is what its HELLO proves, not its address).
    @ivar datagram: whether the request came in a datagram.
    @ivar datagram_bytes: that datagram as it came, for a command that
        checks a MAC over it (L{fmtp.auth.router.unsigned_bytes}).
    @ivar send_to_source: sends a datagram, later, to the source of the
        datagram this session is (through the listener it came in on);
        it returns whether it was sent (never one over C{MAX_DATAGRAM}).
        For a command whose sender proved a secret and asked to be told
        things (an ISP bridge's PUBLISH); L{None} over streams.
    @ivar address: the logged-in address, or L{None}.
    @ivar login: the router session LOGIN opened (its C{key} is the
        session key), or L{None}.
    @ivar token_hash: the hash of the resumption token this session was
        given or logged in with, which its LOGOUT revokes; or L{None}.
    """

    host: str
    datagram: bool = False
    datagram_bytes: bytes = b""
    send_to_source: Callable[[bytes], bool] | None = None
    address: str | None = None
    login: ISession | None = None
    token_hash: str | None = None
    failed_logins: int = 0
    logging_in: bool = False
    closing: bool = False
    #: The client said QUIT: the connection ends as it asked, not lost.
    quitting: bool = False
    #: Writes an unsolicited frame to this session's stream (None over UDP).
    push: Callable[[Frame], None] | None = None
    #: The bytes of replies this stream holds while its client does not
    #: read (None over UDP): a command whose answer may be large makes it
    #: smaller while some wait, so that a client pipelining such commands
    #: and reading slowly cannot make the server hold many of them.
    queued: Callable[[], int] | None = None
    #: The domain a peer server proved (or claimed) with HELLO.
    peer_domain: str | None = None
    peer_verified: bool = False

    @property
    def principal(self) -> tuple[str, str]:
        """
        Whom this session's requests count against when the server shares
        itself out (L{fmtp.fairness}): its user, else the domain its peer
        server proved, else its host.  A claimed but unproven domain is
        not one: anyone may claim many.
        """
        if self.address is not None:
            return ("user", self.address)
        if self.peer_domain is not None and self.peer_verified:
            return ("domain", self.peer_domain)
        return ("host", self.host)


class SessionCommands(CommandGroup):
    """
    CAPA, LOGIN, LOGOUT and QUIT, for every stream protocol; CAPA over
    datagrams too.
    """

    def __init__(self, services: SharedServices, protocol: HandlerCollection) -> None:
        super().__init__(services, protocol)
        self.commands = {
            "CAPA": self.capa,
            "LOGIN": self.login,
            "LOGOUT": self.logout,
            "QUIT": self.quit,
        }
        self.datagram_commands = frozenset({"CAPA"})

    async def capa(self, frame: Frame, session: Session) -> Frame:
        """
        Say what this server offers, so a client needs no out-of-band
        configuration.
        """
        protocol = self.protocol
        verbs = set(
            protocol.datagram_commands if session.datagram else protocol.commands
        )
        if self.services.tls_context is not None and not session.datagram:
            verbs.add("STARTTLS")
        limits = self.services.limits
        offered = {}
        if self.services.tokens is not None and not session.datagram:
            offered["Token-Lifetime"] = f"{self.services.tokens.lifetime:.0f}"
        return reply(
            200,
            frame.tag,
            headers={
                "Protocol": protocol.protocol_name,
                "Version": PROTOCOL_VERSION,
                "Domain": self.services.domain,
                "Commands": " ".join(sorted(verbs)),
                "Max-Line": str(limits.max_line),
                "Max-Headers": str(limits.max_headers),
                "Max-Body": str(MAX_DATAGRAM if session.datagram else limits.max_body),
                "Max-Attachments": str(MAX_ATTACHMENTS),
                # The key this server signs with: a client checks the
                # signatures of its own domain's messages with it when the
                # domain publishes none (the embedded localhost).
                "Domain-Key": format_key_record(self.services.signer.public_key()),
                **offered,
            },
        )

    async def login(self, frame: Frame, session: Session) -> Frame:
        """
        Log in with C{Password}, or with a resumption C{Token}; with a
        password, C{Issue-Token: yes} asks for a token in the reply.
        Both go through the login throttle alike: a guessed token is a
        failed LOGIN as a guessed password is.
        """
        if session.address is not None or session.logging_in:
            return reply(503, frame.tag, "already logged in")
        address = required_header(frame, "Address")
        headers = frame.headers
        tokens = self.services.tokens
        token = headers.get("Token")
        if token is not None:
            if "Password" in headers:
                return reply(501, frame.tag, "send a Password or a Token, not both")
            if tokens is None:
                return reply(535, frame.tag, "resumption tokens are not offered here")
            credentials = ResumptionToken(address, token)
            refusal = "bad, expired or revoked token: log in with the password"
        else:
            credentials = UsernamePassword(address, headers.get("Password", ""))
            refusal = "bad address or password"
        throttle = self.services.login_throttle
        try:
            # Reserved before the check, so checks in progress count.
            attempt = throttle.begin(session.host, address)
        except LoginThrottled as e:
            return reply(
                429,
                frame.tag,
                "too many logins from your address, try again later",
                headers={"Retry-After": str(math.ceil(e.retry_after))},
            )
        session.logging_in = True
        try:
            try:
                _, account, _ = await self.services.portal.login(
                    credentials, None, IAccount
                )
            except UnauthorizedLogin:
                attempt.failed()
                session.failed_logins += 1
                await deferLater(self.services.reactor, throttle.limits.failure_delay)
                if session.failed_logins >= MAX_FAILED_LOGINS_PER_CONNECTION:
                    session.closing = True
                raise AuthenticationFailed(refusal)
            else:
                attempt.succeeded()
            finally:
                attempt.release()
            given = {}
            if token is not None:
                session.token_hash = token_hash(token)
            elif tokens is not None and headers.get("Issue-Token") == "yes":
                issued = await tokens.issue(account.address)
                if issued is not None:
                    session.token_hash = issued.hash
                    given["Token"] = issued.token
                    given["Token-Expires"] = f"{issued.expires:.0f}"
        finally:
            session.logging_in = False
        if session.closing:
            # The connection went (or QUIT came) while the password was
            # checked: a router session opened now would never be closed.
            return reply(421, frame.tag, "closing")
        login = self.protocol.open_login(session, account.address)
        return reply(
            230,
            frame.tag,
            headers={"Address": account.address, "Session": login.key, **given},
        )

    async def logout(self, frame: Frame, session: Session) -> Frame:
        """
        End the session, and revoke the resumption token it was given or
        logged in with: a client that logs out means to.
        """
        self.protocol.end_login(session)
        if session.token_hash is not None and self.services.tokens is not None:
            # Forgotten only once revoked: a LOGOUT that failed (451)
            # revokes it when sent again.
            await self.services.tokens.revoke(session.token_hash)
        session.token_hash = None
        return reply(200, frame.tag, "logged out")

    async def quit(self, frame: Frame, session: Session) -> Frame:
        session.quitting = session.closing = True
        return reply(221, frame.tag)
