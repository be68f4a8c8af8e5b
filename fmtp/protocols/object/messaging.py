"""
The messaging commands (doc/protocol.md 4.4): SEND a message, FETCH what
waits, and decide about held senders (HELD, APPROVE, REFUSE); a logged-in
stream is pushed each message as it is filed (a C{250} frame tagged
C{*}).  As everywhere, the commands only frame: the rules are in
L{fmtp.federation}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmtp.delivery import MESSAGE_EVENT, results_text, sender_of
from fmtp.errors import InvalidObject, LoginRequired
from fmtp.federation.sending import IDEMPOTENCY_KEY
from fmtp.framing.handler import (
    CommandGroup,
    HandlerCollection,
    int_header,
    required_argument,
)
from fmtp.framing.session import Session
from fmtp.objects import normalize_address
from fmtp.protocols.object.frames import push_frame
from fmtp.protocols.object.service import MAX_LIST_LIMIT
from fmtp.wire import Frame, reply

if TYPE_CHECKING:
    from fmtp.services import SharedServices


def _user(session: Session) -> str:
    if session.address is None:
        raise LoginRequired()
    return session.address


class MessagingCommands(CommandGroup):
    def __init__(self, services: SharedServices, protocol: HandlerCollection) -> None:
        super().__init__(services, protocol)
        self.commands = {
            "SEND": self.send_message,
            "FETCH": self.fetch,
            "HELD": self.held,
            "APPROVE": self.approve,
            "REFUSE": self.refuse,
        }
        self.renderers = {MESSAGE_EVENT: push_frame}

    async def send_message(self, frame: Frame, session: Session) -> Frame:
        user = _user(session)
        obj, results = await self.services.links.sender.send(
            user, frame.headers, frame.body, frame.headers.get(IDEMPOTENCY_KEY)
        )
        headers = {"Id": obj.id, "Digest": obj.digest()}
        body = results_text(results).encode("utf-8")
        return reply(201, frame.tag, "sent", headers=headers, body=body)

    async def fetch(self, frame: Frame, session: Session) -> Frame:
        user = _user(session)
        since = int_header(frame, "Since", 0)
        limit = int_header(frame, "Limit", 50)
        if not 0 < limit <= MAX_LIST_LIMIT:
            raise InvalidObject(f"Limit must be 1 to {MAX_LIST_LIMIT}")
        entries = await self.services.store.inbox(user, since, limit)
        lines = []
        for seq, obj in entries:
            lines.append(f"{seq} {obj.id} {sender_of(obj)} {obj.digest()}\r\n")
        headers = {"Count": str(len(entries))}
        headers["Next-Since"] = str(entries[-1][0] if entries else since)
        return reply(200, frame.tag, headers=headers, body="".join(lines).encode())

    async def held(self, frame: Frame, session: Session) -> Frame:
        senders = await self.services.store.held_senders(_user(session))
        body = "".join(f"{sender}\r\n" for sender in senders).encode("utf-8")
        return reply(200, frame.tag, headers={"Count": str(len(senders))}, body=body)

    async def approve(self, frame: Frame, session: Session) -> Frame:
        user, sender = _user(session), _sender_argument(frame)
        store = self.services.store
        await store.approve_sender(user, sender)
        released = await store.release_held(user, sender)
        return reply(200, frame.tag, "approved", headers={"Released": str(released)})

    async def refuse(self, frame: Frame, session: Session) -> Frame:
        user, sender = _user(session), _sender_argument(frame)
        dropped = await self.services.store.drop_held(user, sender)
        return reply(200, frame.tag, "refused", headers={"Dropped": str(dropped)})


def _sender_argument(frame: Frame) -> str:
    return normalize_address(required_argument(frame, "ADDRESS"))
