"""
The object commands: GET, PUT, DELETE and LIST (doc/protocol.md 4.1), over
streams and (anonymous GET and LIST) datagrams.

They only map frames to L{ObjectService} calls and results to frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmtp.errors import LoginRequired
from fmtp.framing.handler import (
    CommandGroup,
    HandlerCollection,
    int_header,
    required_argument,
)
from fmtp.framing.session import Session
from fmtp.protocols.object.frames import object_frame
from fmtp.protocols.object.service import DEFAULT_LIST_LIMIT, ObjectService
from fmtp.wire import Frame, reply

if TYPE_CHECKING:
    from fmtp.services import SharedServices


class ObjectCommands(CommandGroup):
    def __init__(self, services: SharedServices, protocol: HandlerCollection) -> None:
        super().__init__(services, protocol)
        self.objects = ObjectService(
            services.store, services.reactor, services.presence
        )
        self.commands = {
            "GET": self.get,
            "PUT": self.put,
            "DELETE": self.delete,
            "LIST": self.list,
        }
        self.datagram_commands = frozenset({"GET", "LIST"})

    async def get(self, frame: Frame, session: Session) -> Frame:
        object_id = required_argument(frame, "ID")
        if session.peer_domain is None:
            # Not a child server's lookup: a public object read lately is
            # answered here and now, its headers computed once.
            hit = self.objects.cached(object_id)
            if hit is not None:
                return reply(200, frame.tag, headers=hit.headers, body=hit.obj.body)
        looked_up = await self.lookup_for_child(frame, session, object_id)
        if looked_up is not None:
            return looked_up
        obj = await self.objects.get(session.address, object_id)
        return object_frame(200, frame.tag, None, obj)

    async def lookup_for_child(
        self, frame: Frame, session: Session, object_id: str
    ) -> Frame | None:
        """
        The draft's parent lookup, for a child server's GET of another
        domain's user (L{fmtp.federation.api.ServerLinks.address_for_child}).

        @return: the reply, or L{None} if this is an ordinary GET.
        """
        links = self.services.links
        address = links.address_for_child(session.peer_domain, object_id)
        if address is None:
            return None
        cache_only = frame.headers.get("Cache-Only", "").lower() == "yes"
        obj = await links.lookup(address, cache_only)
        if obj is None:
            return reply(550, frame.tag)
        return object_frame(200, frame.tag, None, obj)

    async def put(self, frame: Frame, session: Session) -> Frame:
        if session.address is None:
            raise LoginRequired()
        obj = await self.objects.put(session.address, frame.headers, frame.body)
        return reply(201, frame.tag, headers={"Id": obj.id, "Digest": obj.digest()})

    async def delete(self, frame: Frame, session: Session) -> Frame:
        if session.address is None:
            raise LoginRequired()
        done = await self.objects.delete(
            session.address, required_argument(frame, "ID")
        )
        return reply(200, frame.tag, done)

    async def list(self, frame: Frame, session: Session) -> Frame:
        start = int_header(frame, "Start", 0)
        page = await self.objects.list(
            session.address,
            start=start,
            limit=int_header(frame, "Limit", DEFAULT_LIST_LIMIT),
            object_type=frame.headers.get("Type"),
            owner=frame.headers.get("Owner"),
        )
        headers = {"Start": str(start), "Count": str(len(page.items))}
        if page.next_start is not None:
            headers["Next-Start"] = str(page.next_start)
        body = "".join(f"{s.id} {s.type} {s.digest}\r\n" for s in page.items)
        return reply(200, frame.tag, headers=headers, body=body.encode("utf-8"))
