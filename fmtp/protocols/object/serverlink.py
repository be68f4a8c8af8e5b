"""
The server-link commands (doc/protocol.md 8): HELLO to prove a domain,
DELIVER messages for this domain's users (or, from a child, for others),
and CONFIRM (the countersign) that this server sent a message.  They only
frame: the rules are in L{fmtp.federation}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from fmtp.errors import FMTPError, InvalidObject
from fmtp.federation.countersign import vouches_for
from fmtp.federation.hello import make_hello
from fmtp.framing.handler import CommandGroup, HandlerCollection
from fmtp.framing.session import Session
from fmtp.objects import FMTPObject, domain_of, normalize_address
from fmtp.protocols.object.frames import results_frame
from fmtp.wire import Frame, reply

if TYPE_CHECKING:
    from fmtp.services import SharedServices


class HelloFirst(FMTPError):
    code = 530
    default_message = "HELLO first: DELIVER is for servers that proved their domain"


class ServerLinkCommands(CommandGroup):
    _log = Logger()

    def __init__(self, services: SharedServices, protocol: HandlerCollection) -> None:
        super().__init__(services, protocol)
        self.commands = {
            "HELLO": self.hello,
            "DELIVER": self.deliver,
            "CONFIRM": self.confirm,
        }

    async def hello(self, frame: Frame, session: Session) -> Frame:
        if session.peer_domain is not None:
            return reply(503, frame.tag, "HELLO already done")
        peer = await self.services.federation.hello.verify(frame.headers)
        session.peer_domain = peer.domain
        session.peer_verified = peer.verified
        self._log.info(
            "{host} is {domain} ({how})",
            host=session.host,
            domain=peer.domain,
            how="verified" if peer.verified else "unverified: countersigns required",
        )
        answer = make_hello(
            self.services.signer,
            peer.domain,
            self.services.reactor.seconds(),
            in_reply_to=peer.nonce,
        )
        return reply(200, frame.tag, "hello", headers=answer)

    async def deliver(self, frame: Frame, session: Session) -> Frame:
        if session.peer_domain is None:
            raise HelloFirst()
        recipients = frame.argument.split()
        if not recipients:
            raise InvalidObject("DELIVER needs recipients: DELIVER TAG ADDRESS...")
        obj = FMTPObject.from_headers(frame.headers, frame.body)
        local, remote = [], []
        for recipient in recipients:
            address = normalize_address(recipient)
            mine = domain_of(address) == self.services.domain
            (local if mine else remote).append(address)
        peer = session.peer_domain
        federation = self.services.federation
        results = []
        if remote:
            results += await federation.relay.relay(obj, remote, peer)
        if local:
            results += await federation.receiver.receive(obj, local, peer)
        return results_frame(frame.tag, results)

    async def confirm(self, frame: Frame, session: Session) -> Frame:
        """
        The countersign: say whether this server sent the object with this
        id and digest to the asking server's domain.  It tells the asker
        nothing it did not already hold.
        """
        if session.peer_domain is None:
            raise HelloFirst(
                "HELLO first: CONFIRM answers servers that proved a domain"
            )
        digest = frame.headers.get("Digest", "").lower()
        object_id = frame.argument
        if not object_id or not digest:
            raise InvalidObject("CONFIRM needs an id and a Digest header")
        if not await vouches_for(
            self.services.store,
            self.services.domain,
            session.peer_domain,
            object_id,
            digest,
        ):
            return reply(550, frame.tag, "not sent from here")
        return reply(200, frame.tag, "yes")
