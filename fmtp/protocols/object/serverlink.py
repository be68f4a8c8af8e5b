"""
The server-link commands (doc/protocol.md 8): HELLO, by which a peer
server proves its domain, and every verb registered with the server links
(L{fmtp.interfaces.IServerLinks.register}): DELIVER and CONFIRM, and
whatever presence, chat or a plugin register.  They only frame: the rules
are in L{fmtp.federation}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from fmtp.errors import FMTPError
from fmtp.federation.hello import Peer
from fmtp.framing.handler import Command, CommandGroup, HandlerCollection
from fmtp.framing.session import Session
from fmtp.wire import Frame, reply

if TYPE_CHECKING:
    from fmtp.services import SharedServices


class HelloFirst(FMTPError):
    code = 530
    default_message = "HELLO first: this command is for servers that proved a domain"


class ServerLinkCommands(CommandGroup):
    """
    HELLO, and the verbs other servers may send, dispatched to the
    handlers registered for them once the peer's HELLO is done.
    """

    _log = Logger()

    def __init__(self, services: SharedServices, protocol: HandlerCollection) -> None:
        super().__init__(services, protocol)
        self._hello = {"HELLO": self.hello}

    @property
    def commands(self) -> dict[str, Command]:
        """
        HELLO and every verb registered so far: a plugin built after this
        group registers its own.
        """
        commands: dict[str, Command] = dict(self._hello)
        for verb in self.services.links.verbs():
            commands[verb] = self.dispatch
        return commands

    @commands.setter
    def commands(self, value: dict[str, Command]) -> None:
        # CommandGroup's constructor sets the table; this one is computed.
        pass

    async def hello(self, frame: Frame, session: Session) -> Frame:
        if session.peer_domain is not None:
            return reply(503, frame.tag, "HELLO already done")
        peer, answer = await self.services.links.answer_hello(frame.headers)
        session.peer_domain = peer.domain
        session.peer_verified = peer.verified
        self._log.info(
            "{host} is {domain} ({how})",
            host=session.host,
            domain=peer.domain,
            how="verified" if peer.verified else "unverified: countersigns required",
        )
        return reply(200, frame.tag, "hello", headers=answer)

    async def dispatch(self, frame: Frame, session: Session) -> Frame:
        if session.peer_domain is None:
            raise HelloFirst(f"HELLO first: {frame.verb} is for servers")
        peer = Peer(session.peer_domain, session.peer_verified, "", session.queued)
        return await self.services.links.dispatch(frame.verb, peer, frame)
