"""
The nudge protocol: an example fmtp plugin that reaches other domains.

A logged-in user nudges another user, at this domain or any other; the
other user's live nudge sessions show it at once::

    LOGIN 1
    Address: edgar@poe.net
    Password: ...

    NUDGE 2 lost@lenore.org
    Text: Nevermore

    200 2 nudged

and lost's nudge session, logged in at lenore.org, is pushed::

    250 * nudge
    From: edgar@poe.net
    Text: Nevermore

It is built only on the services every protocol shares: users log in
through the shared session commands (L{SessionCommands}: CAPA, LOGIN,
LOGOUT, QUIT); a nudge is a router event of the protocol's own kind,
which reaches the user's nudge sessions and no other (their object
protocol sessions never see it); and to another domain it goes as a
server-to-server verb, C{NUDGE}, sent over the server's verified, pooled
links (C{services.links.request}) and handled, at the other end, by the
handler this plugin registers there (C{services.links.register}), which
learns the domain the sending server proved with HELLO.

Nothing is stored: a nudge to a user who is not logged in is lost, as a
knock on a door nobody opens.  Whether it reached anyone is not said, so
a nudge cannot tell anyone who is online.
"""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import implementer

from fmtp.auth.router import Event
from fmtp.errors import Forbidden, InvalidObject, LoginRequired
from fmtp.federation.hello import Peer
from fmtp.framing.handler import CommandGroup, HandlerCollection, required_argument
from fmtp.framing.plugin import FramedProtocolPlugin
from fmtp.framing.session import Session, SessionCommands
from fmtp.interfaces import IProtocolPlugin
from fmtp.objects import domain_of, normalize_address
from fmtp.services import SharedServices
from fmtp.wire import UNSOLICITED_TAG, Frame, reply

#: The router event kind of a nudge: only this protocol's sessions take it.
NUDGE_EVENT = "nudge"
#: The server-to-server verb that carries a nudge to another domain.
NUDGE_VERB = "NUDGE"
#: Longest text a nudge carries.
MAX_TEXT = 200


def nudge_text(frame: Frame) -> str:
    """
    @raise InvalidObject: for a text longer than L{MAX_TEXT}.
    """
    text = frame.headers.get("Text", "")
    if len(text) > MAX_TEXT:
        raise InvalidObject(f"Text is at most {MAX_TEXT} characters")
    return text


def render(event: Event) -> Frame:
    """
    The frame that shows a nudge to a live session.
    """
    sender, text = event.payload
    return reply(250, UNSOLICITED_TAG, "nudge", headers={"From": sender, "Text": text})


class NudgeCommands(CommandGroup):
    """
    C{NUDGE}, from a client, and the C{NUDGE} verb from other servers.
    """

    def __init__(self, services: SharedServices, protocol: HandlerCollection) -> None:
        super().__init__(services, protocol)
        self.commands = {"NUDGE": self.nudge}
        self.renderers = {NUDGE_EVENT: render}
        services.links.register(NUDGE_VERB, self.from_server)

    async def nudge(self, frame: Frame, session: Session) -> Frame:
        if session.address is None:
            raise LoginRequired()
        target = normalize_address(required_argument(frame, "ADDRESS"))
        text = nudge_text(frame)
        domain = domain_of(target)
        if domain == self.services.domain:
            self.services.router.deliver(
                target, Event(NUDGE_EVENT, (session.address, text))
            )
            return reply(200, frame.tag, "nudged")
        answer = await self.services.links.request(
            domain, NUDGE_VERB, target, {"From": session.address, "Text": text}
        )
        if not 200 <= answer.code < 300:
            return reply(answer.code, frame.tag, f"{domain} refused: {answer.argument}")
        return reply(200, frame.tag, "nudged")

    async def from_server(self, peer: Peer, frame: Frame) -> Frame:
        """
        A nudge from another server, for one of this domain's users.  A
        server speaks only for its own users: the sender's domain must be
        the one the peer's HELLO proved.
        """
        sender = normalize_address(frame.headers.get("From", ""))
        if domain_of(sender) != peer.domain:
            raise Forbidden(f"{peer.domain} may nudge for its own users only")
        target = normalize_address(required_argument(frame, "ADDRESS"))
        if domain_of(target) != self.services.domain:
            raise Forbidden(f"{target} is not served here")
        self.services.router.deliver(
            target, Event(NUDGE_EVENT, (sender, nudge_text(frame)))
        )
        return reply(200, frame.tag, "nudged")


@implementer(IPlugin, IProtocolPlugin)
class NudgeProtocolPlugin(FramedProtocolPlugin):
    """
    Registers the nudge protocol (TCP only): served once enabled with
    C{twistd fmtp --enable nudge} or C{--listen-nudge ENDPOINT}.
    """

    name = "nudge"
    description = "nudge a user, here or at another domain: NUDGE (TCP only)"
    default_listeners = ("tcp:7078:interface=127.0.0.1",)
    groups = (SessionCommands, NudgeCommands)


nudgeProtocol = NudgeProtocolPlugin()
