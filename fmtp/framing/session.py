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


@dataclass
class Session:
    """
    What the commands know of whoever sent a request: one stream
    connection, or one datagram.

    @ivar host: the peer's address as the transport reports it; used only
        to throttle and to reply, never trusted as an identity (a peer
        server's domain is what its HELLO proves, not its address).
    @ivar datagram: whether the request came in a datagram.
    @ivar address: the logged-in address, or L{None}.
    @ivar login: the router session LOGIN opened (its C{key} is the
        session key), or L{None}.
    """

    host: str
    datagram: bool = False
    address: str | None = None
    login: ISession | None = None
    failed_logins: int = 0
    logging_in: bool = False
    closing: bool = False
    #: Writes an unsolicited frame to this session's stream (None over UDP).
    push: Callable[[Frame], None] | None = None
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
            },
        )

    async def login(self, frame: Frame, session: Session) -> Frame:
        if session.address is not None or session.logging_in:
            return reply(503, frame.tag, "already logged in")
        address = required_header(frame, "Address")
        password = frame.headers.get("Password", "")
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
            _, account, _ = await self.services.portal.login(
                UsernamePassword(address, password), None, IAccount
            )
        except UnauthorizedLogin:
            attempt.failed()
            session.failed_logins += 1
            await deferLater(self.services.reactor, throttle.limits.failure_delay)
            if session.failed_logins >= MAX_FAILED_LOGINS_PER_CONNECTION:
                session.closing = True
            raise AuthenticationFailed("bad address or password")
        else:
            attempt.succeeded()
        finally:
            attempt.release()
            session.logging_in = False
        login = self.protocol.open_login(session, account.address)
        return reply(
            230,
            frame.tag,
            headers={"Address": account.address, "Session": login.key},
        )

    async def logout(self, frame: Frame, session: Session) -> Frame:
        self.protocol.end_login(session)
        return reply(200, frame.tag, "logged out")

    async def quit(self, frame: Frame, session: Session) -> Frame:
        session.closing = True
        return reply(221, frame.tag)
