"""
The presence commands (doc/protocol.md section 9): STATUS, SUBSCRIBE,
UNSUBSCRIBE, APPROVE, DENY and BUDDIES; PUBLISH and RESYNC from ISP
bridges; and the frames pushed for the presence events (to sessions, and
to bridges as notifications).

They only parse frames into calls of the server's L{PresenceService} and
its answers into frames; every command acts for the logged-in user.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fmtp.auth.router import Event
from fmtp.errors import InvalidObject, LoginRequired
from fmtp.framing.handler import CommandGroup, HandlerCollection, required_argument
from fmtp.framing.session import Session
from fmtp.interfaces import ISession
from fmtp.protocols.presence.bridgedir import BridgeDirectory
from fmtp.protocols.presence.bridgenotify import BridgeNotifier
from fmtp.protocols.presence.bridgeresync import BridgeResync
from fmtp.protocols.presence.bridges import BridgePublishing
from fmtp.protocols.presence.events import PRESENCE, REQUEST, SUBSCRIPTION
from fmtp.protocols.presence.service import (
    DEFAULT_SETTINGS,
    PresenceService,
    PresenceSettings,
)
from fmtp.protocols.presence.status import (
    OFFLINE,
    Shown,
    buddy_line,
    parse_note,
    parse_priority,
    parse_resource,
    parse_status,
)
from fmtp.wire import UNSOLICITED_TAG, Frame, reply

if TYPE_CHECKING:
    from fmtp.services import SharedServices

#: The headers STATUS sets a presence with.
STATUS_HEADERS = ("Note", "Priority", "Resource")


def shown_headers(shown: Shown) -> dict[str, str]:
    """
    C{Status}, and C{Note} if there is one.
    """
    headers = {"Status": shown.status}
    if shown.note:
        headers["Note"] = shown.note
    return headers


def render_presence(event: Event) -> Frame:
    changed = event.payload
    return reply(
        252,
        UNSOLICITED_TAG,
        headers={"From": changed.contact, **shown_headers(changed.shown)},
    )


def render_request(event: Event) -> Frame:
    return reply(253, UNSOLICITED_TAG, headers={"From": event.payload})


def render_subscription(event: Event) -> Frame:
    changed = event.payload
    return reply(
        254,
        UNSOLICITED_TAG,
        headers={"From": changed.contact, "Subscription": changed.state},
    )


class PresenceCommands(CommandGroup):
    """
    The presence commands, over streams; PUBLISH, by which ISP bridges
    set their users' presence, over datagrams; and RESYNC, by which they
    read their users' subscriptions again, over streams.

    @param settings: the grace period and limits of the server's
        L{PresenceService}, which this group builds (once per server); by
        default the server's C{plugin_options["presence"]}.
    """

    def __init__(
        self,
        services: SharedServices,
        protocol: HandlerCollection,
        settings: PresenceSettings | None = None,
    ) -> None:
        super().__init__(services, protocol)
        if settings is None:
            settings = services.plugin_options.get("presence", DEFAULT_SETTINGS)
        links = services.links
        self.presence = PresenceService(
            services.reactor,
            services.domain,
            services.store,
            services.router,
            settings,
            links=links if links is not None and links.pool is not None else None,
            signer=services.signer,
        )
        self.service = self.presence
        services.presence.register(self.presence)
        self.commands = {
            "STATUS": self.status,
            "SUBSCRIBE": self._subscription_command(self.presence.subscribe),
            "UNSUBSCRIBE": self._subscription_command(self.presence.unsubscribe),
            "APPROVE": self._subscription_command(self.presence.approve),
            "DENY": self._subscription_command(self.presence.deny),
            "BUDDIES": self.buddies,
            "PUBLISH": self.publish,
            "RESYNC": self.resync,
        }
        self.datagram_commands = frozenset({"PUBLISH"})
        self.renderers = {
            PRESENCE: render_presence,
            REQUEST: render_request,
            SUBSCRIPTION: render_subscription,
        }
        self.notifier = BridgeNotifier(services.reactor, self.renderers)
        self.presence.bridge_notify = self._notify_bridge
        #: The server's bridges, which the datagram listener's limiter
        #: reads too (L{PresenceProtocolPlugin.datagram_limiter}).
        self.bridge_directory = BridgeDirectory(services.reactor, services.store)
        self.bridges = BridgePublishing(
            services.reactor,
            services.domain,
            self.bridge_directory,
            self.presence,
            self.notifier,
        )
        self.bridge_resync = BridgeResync(
            services.reactor, self.bridges, self.presence, self.notifier
        )

    def _notify_bridge(self, bridge: str, address: str, event: Event) -> None:
        """
        Tell C{bridge} of C{event} for C{address}; a bridge removed is
        forgotten at the next read of the bridges, which this starts if
        they are old.
        """
        self.bridge_directory.refresh()
        self.notifier.notify(bridge, address, event)

    @staticmethod
    def _login(session: Session) -> ISession:
        if session.login is None:
            raise LoginRequired()
        return session.login

    async def status(self, frame: Frame, session: Session) -> Frame:
        login = self._login(session)
        headers = frame.headers
        if frame.argument:
            self.presence.set_status(
                login,
                parse_status(frame.argument),
                parse_note(headers.get("Note", "")),
                parse_priority(headers.get("Priority", "0")),
                parse_resource(headers["Resource"]) if "Resource" in headers else None,
            )
        elif any(name in headers for name in STATUS_HEADERS):
            raise InvalidObject(
                "a STATUS without a status word changes nothing: "
                "STATUS TAG online|away|busy|invisible"
            )
        mine = self.presence.session_presence(login)
        answer = {"Status": OFFLINE}
        if mine is not None:
            answer = {
                "Status": mine.status,
                "Priority": str(mine.priority),
                "Resource": mine.resource,
            }
        answer["User-Status"] = self.presence.user_presence(login.address).status
        return reply(200, frame.tag, headers=answer)

    def _contact(self, frame: Frame, session: Session) -> tuple[str, str]:
        """
        The logged-in user, and the contact the command names.
        """
        user = self._login(session).address
        named = required_argument(frame, "ADDRESS")
        return user, self.presence.subscriptions.contact(user, named)

    def _subscription_command(self, act: Callable[[str, str], Awaitable[str]]):
        """
        SUBSCRIBE, UNSUBSCRIBE, APPROVE or DENY: C{act(user, contact)}
        gives the state token the reply carries.
        """

        async def command(frame: Frame, session: Session) -> Frame:
            user, contact = self._contact(frame, session)
            state = await act(user, contact)
            return reply(200, frame.tag, headers={"Subscription": state})

        return command

    async def publish(self, frame: Frame, session: Session) -> Frame:
        """
        An ISP bridge's PUBLISH (doc/protocol.md 9.6), in a datagram only:
        its MAC covers the datagram's bytes.
        """
        if not session.datagram:
            return reply(503, frame.tag, "PUBLISH is sent in a UDP datagram")
        return await self.bridges.publish(
            frame, session.datagram_bytes, session.send_to_source
        )

    async def resync(self, frame: Frame, session: Session) -> Frame:
        """
        An ISP bridge's RESYNC (doc/protocol.md 9.8), over a stream only
        (not a datagram command: a datagram gets C{305}).
        """
        return await self.bridge_resync.resync(frame)

    async def buddies(self, frame: Frame, session: Session) -> Frame:
        user = self._login(session).address
        lines = []
        for contact, state, shown in await self.presence.buddies(user):
            lines.append(buddy_line(contact, state, shown))
        return reply(200, frame.tag, body="".join(lines).encode())

    def connection_lost(self, session: Session) -> None:
        """
        A connection lost without QUIT keeps its presence for the grace
        period (L{login_ended} follows, and then finds nothing to end).
        """
        if session.login is not None and not session.quitting:
            self.presence.session_lost(session.login)

    def login_ended(self, session: Session) -> None:
        self.presence.session_ended(session.login)
