"""
The time protocol: an example fmtp protocol plugin to copy.

One command, C{TIME}, answers with the server's clock::

    TIME 7

    200 7 ok
    Time: 1700000000
    Date: 2023-11-14T22:13:20Z

C{CAPA} comes with the shared L{SessionCommands} group, and everything
below the commands comes with L{FramedProtocolPlugin}: the frame codec,
tags and pipelining, size limits, idle and mid-frame timeouts, and over
UDP the source cookies, rate limits and the rule that no reply to an
unverified source is larger than its request.
This module only says what C{TIME} means, and registers the protocol.

This file lives in a directory named C{fmtp/plugins} with no
C{__init__.py} beside it (or above it, in C{fmtp/}): fmtp extends its
C{fmtp.plugins} package with every such directory on C{sys.path}, and
L{twisted.plugin} finds the C{timeProtocol} object at the bottom.  See
doc/plugins.md in fmtp.
"""

from __future__ import annotations

from datetime import UTC, datetime

from twisted.plugin import IPlugin
from zope.interface import implementer

from fmtp.errors import FMTPError
from fmtp.framing.handler import CommandGroup, HandlerCollection
from fmtp.framing.plugin import FramedProtocolPlugin
from fmtp.framing.session import Session, SessionCommands
from fmtp.interfaces import IProtocolPlugin
from fmtp.services import SharedServices
from fmtp.wire import Frame, reply


class UnexpectedArgument(FMTPError):
    """
    A request carried an argument its command does not take.

    Raising an L{FMTPError} subclass is how a command refuses: the framing
    layer turns it into a reply with the class's C{code} and the message,
    in one place, and logs it.  501 is what fmtp answers for a bad
    argument or header.
    """

    code = 501
    default_message = "this command takes no argument"


def iso_utc(seconds: int) -> str:
    """
    Format whole seconds since the epoch as ISO 8601 in UTC, with a C{Z}
    rather than C{+00:00} because it is what people and most parsers
    expect from a server clock.
    """
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TimeCommands(CommandGroup):
    """
    The time protocol's own command.

    One instance serves every connection of the server, so it keeps
    nothing about any one client: what a command knows of a client is the
    L{Session} passed to it.
    """

    def __init__(self, services: SharedServices, protocol: HandlerCollection) -> None:
        super().__init__(services, protocol)
        self.commands = {"TIME": self.time}
        # A TIME reply is small and reveals nothing, so it is offered over
        # datagrams too; the framing layer answers 305 to any verb left
        # out of this set.
        self.datagram_commands = frozenset({"TIME"})

    async def time(self, frame: Frame, session: Session) -> Frame:
        """
        Answer with the server's clock.

        The time comes from C{services.reactor}, never from L{time.time}:
        a test hands the server a L{twisted.internet.task.Clock} and knows
        exactly what C{TIME} answers.  C{Time} and C{Date} are taken from
        the same whole second, so they always agree.
        """
        if frame.argument:
            raise UnexpectedArgument("TIME takes no argument: TIME TAG")
        now = int(self.services.reactor.seconds())
        return reply(200, frame.tag, headers={"Time": str(now), "Date": iso_utc(now)})


@implementer(IPlugin, IProtocolPlugin)
class TimeProtocolPlugin(FramedProtocolPlugin):
    """
    Registers the time protocol with fmtp: the shared session commands
    (CAPA, LOGIN, LOGOUT, QUIT) and C{TIME}.  An installed plugin serves
    nothing until the admin enables it (C{twistd fmtp --enable time}, or
    C{--listen-time ENDPOINT}); then it listens on L{default_listeners}
    unless C{--listen-time} says otherwise.
    """

    name = "time"
    description = "the server's clock: TIME"
    default_listeners = ("tcp:7079:interface=127.0.0.1", "udp:7079:interface=127.0.0.1")
    groups = (SessionCommands, TimeCommands)


#: What L{twisted.plugin.getPlugins} finds: any module-level object that
#: provides L{IPlugin} and L{IProtocolPlugin}.
timeProtocol = TimeProtocolPlugin()
