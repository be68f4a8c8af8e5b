"""
The chat protocol's plugin: registered through L{twisted.plugin} exactly
as a third-party protocol is (L{fmtp.plugins.fmtp_builtin}).
"""

from __future__ import annotations

from functools import partial

from twisted.plugin import IPlugin
from zope.interface import implementer

from fmtp.accounts import DEFAULT_SCRYPT_COST, ScryptCost
from fmtp.framing.plugin import FramedProtocolPlugin
from fmtp.framing.session import SessionCommands
from fmtp.interfaces import IProtocolPlugin
from fmtp.protocols.chat.commands import ChatCommands
from fmtp.protocols.chat.settings import ChatSettings
from fmtp.util.hostport import CHAT_PORT


@implementer(IPlugin, IProtocolPlugin)
class ChatProtocolPlugin(FramedProtocolPlugin):
    """
    The chat protocol, on streams, and on datagrams for its light
    clients (SAY, LISTEN and UNLISTEN signed with a session's key).

    @param settings: the limits; by default the server's (C{--chat-*}).
    @param run_in_thread: where room passwords are hashed (by default a
        thread of the reactor's pool; tests hash at once).
    @param password_cost: what a room password's hash costs.
    """

    name = "chat"
    description = "chat: rooms with members, moderation and a verifiable history"
    default_listeners = (
        f"tcp:{CHAT_PORT}:interface=127.0.0.1",
        f"udp:{CHAT_PORT}:interface=127.0.0.1",
    )

    def __init__(
        self,
        settings: ChatSettings | None = None,
        run_in_thread=None,
        password_cost: ScryptCost = DEFAULT_SCRYPT_COST,
    ) -> None:
        self.groups = (
            SessionCommands,
            partial(
                ChatCommands,
                settings=settings,
                run_in_thread=run_in_thread,
                password_cost=password_cost,
            ),
        )
