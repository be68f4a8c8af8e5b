"""
The object protocol: LOGIN, GET, PUT, DELETE, LIST, CAPA, LOGOUT and QUIT,
over streams and (anonymous GET, LIST and CAPA only) datagrams.

This module only maps frames to L{fmtp.objectservice.ObjectService} calls
and results to frames; doc/protocol.md, section 3, is its specification.
"""

from __future__ import annotations

import math

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import deferLater
from twisted.plugin import IPlugin
from zope.interface import implementer

from fmtp.errors import AuthenticationFailed, LoginRequired
from fmtp.interfaces import IAccount, IProtocolPlugin
from fmtp.loginthrottle import LoginThrottled
from fmtp.objectservice import DEFAULT_LIST_LIMIT, ObjectService
from fmtp.protocols.framing import (
    Client,
    CommandHandler,
    FrameDatagramProtocol,
    FrameStreamFactory,
    int_header,
    required_argument,
    required_header,
)
from fmtp.protocols.messaging import Federation, MessagingCommands, object_frame
from fmtp.services import SharedServices
from fmtp.util.hostport import OBJECT_PORT
from fmtp.wire import Frame, reply

#: Failed LOGINs after which a stream is closed.
MAX_FAILED_LOGINS_PER_CONNECTION = 3


class ObjectCommands(CommandHandler, MessagingCommands):
    """
    The object protocol's commands, shared by every stream and datagram
    listener of one server: objects, and (from L{MessagingCommands})
    messages and the server link.
    """

    protocol_name = "object"

    def __init__(self, services: SharedServices) -> None:
        super().__init__(services)
        self.objects = ObjectService(services.store, services.reactor)
        self.federation = services.federation or Federation.build(
            services, self.objects
        )
        self.commands.update(self.messaging_commands())
        self.commands.update(
            {
                "LOGIN": self.login,
                "LOGOUT": self.logout,
                "QUIT": self.quit,
                "GET": self.get,
                "PUT": self.put,
                "DELETE": self.delete,
                "LIST": self.list,
            }
        )
        self.datagram_commands = frozenset({"CAPA", "GET", "LIST"})

    async def login(self, frame: Frame, client: Client) -> Frame:
        if client.address is not None or client.logging_in:
            return reply(503, frame.tag, "already logged in")
        address = required_header(frame, "Address")
        password = frame.headers.get("Password", "")
        throttle = self.services.login_throttle
        try:
            # Reserved before the check, so checks in progress count.
            attempt = throttle.begin(client.host, address)
        except LoginThrottled as e:
            return reply(
                429,
                frame.tag,
                "too many logins from your address, try again later",
                headers={"Retry-After": str(math.ceil(e.retry_after))},
            )
        client.logging_in = True
        try:
            _, account, _ = await self.services.portal.login(
                UsernamePassword(address, password), None, IAccount
            )
        except UnauthorizedLogin:
            attempt.failed()
            client.failed_logins += 1
            await deferLater(self.services.reactor, throttle.limits.failure_delay)
            if client.failed_logins >= MAX_FAILED_LOGINS_PER_CONNECTION:
                client.closing = True
            raise AuthenticationFailed("bad address or password")
        else:
            attempt.succeeded()
        finally:
            attempt.release()
            client.logging_in = False
        client.address = account.address
        client.session_key = self.open_session(client, account.address)
        return reply(
            230,
            frame.tag,
            headers={"Address": account.address, "Session": client.session_key},
        )

    async def logout(self, frame: Frame, client: Client) -> Frame:
        self.connection_lost(client)
        client.address = None
        return reply(200, frame.tag, "logged out")

    async def quit(self, frame: Frame, client: Client) -> Frame:
        client.closing = True
        return reply(221, frame.tag)

    async def get(self, frame: Frame, client: Client) -> Frame:
        object_id = required_argument(frame, "ID")
        looked_up = await self.lookup_for_child(frame, client, object_id)
        if looked_up is not None:
            return looked_up
        obj = await self.objects.get(client.address, object_id)
        return object_frame(200, frame.tag, None, obj)

    async def put(self, frame: Frame, client: Client) -> Frame:
        if client.address is None:
            raise LoginRequired()
        obj = await self.objects.put(client.address, frame.headers, frame.body)
        return reply(201, frame.tag, headers={"Id": obj.id, "Digest": obj.digest()})

    async def delete(self, frame: Frame, client: Client) -> Frame:
        if client.address is None:
            raise LoginRequired()
        done = await self.objects.delete(client.address, required_argument(frame, "ID"))
        return reply(200, frame.tag, done)

    async def list(self, frame: Frame, client: Client) -> Frame:
        start = int_header(frame, "Start", 0)
        page = await self.objects.list(
            client.address,
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


@implementer(IPlugin, IProtocolPlugin)
class ObjectProtocolPlugin:
    """
    Registers the object protocol, through L{twisted.plugin} as any
    third-party protocol is.
    """

    name = "object"
    description = "objects: get, put, list and delete users, messages, posts"
    default_listeners = (
        f"tcp:{OBJECT_PORT}:interface=127.0.0.1",
        f"udp:{OBJECT_PORT}:interface=127.0.0.1",
    )

    def stream_factory(self, services: SharedServices) -> FrameStreamFactory:
        return FrameStreamFactory(ObjectCommands(services))

    def datagram_protocol(self, services: SharedServices) -> FrameDatagramProtocol:
        return FrameDatagramProtocol(ObjectCommands(services))
