"""
Command groups, and the collection of them that answers a protocol's
requests.

A protocol is made of groups (wokkel composes subprotocol handlers the
same way): the session commands every stream protocol shares, the object
commands, the messaging commands, a plugin's own.  Each group offers some
verbs, says which of them datagrams may use, and renders the kinds of
router event its protocol's sessions take.  The collection dispatches
each request to the one group that offers its verb, and turns events into
frames for the protocol's live sessions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from fmtp.auth.router import Event
from fmtp.errors import FMTPError, InvalidObject
from fmtp.fairness import current_principal
from fmtp.interfaces import ICommandGroup, ISession
from fmtp.objects import is_ascii_digits
from fmtp.wire import Frame, reply

if TYPE_CHECKING:
    from fmtp.framing.session import Session
    from fmtp.services import SharedServices

PROTOCOL_VERSION = "1"

Command = Callable[[Frame, "Session"], Awaitable[Frame]]
#: Renders a router event for a client: the unsolicited frame to push.
Renderer = Callable[[Event], Frame]


def int_header(frame: Frame, name: str, default: int) -> int:
    """
    A header holding a whole number, or C{default} when absent.

    @raise InvalidObject: if it holds anything but digits.
    """
    value = frame.headers.get(name)
    if value is None:
        return default
    if not is_ascii_digits(value) or len(value) > 12:
        raise InvalidObject(f"{name} must be a whole number")
    return int(value)


def required_header(frame: Frame, name: str) -> str:
    """
    @raise InvalidObject: naming the header if it is missing or empty.
    """
    value = frame.headers.get(name)
    if not value:
        raise InvalidObject(f"{frame.verb} needs a {name} header")
    return value


def required_argument(frame: Frame, what: str) -> str:
    """
    @raise InvalidObject: saying how the command line should look.
    """
    if not frame.argument:
        raise InvalidObject(f"{frame.verb} needs an argument: {frame.verb} TAG {what}")
    return frame.argument


@implementer(ICommandGroup)
class CommandGroup:
    """
    A group of commands (L{ICommandGroup}).

    A subclass fills L{commands} (verb to coroutine method taking the
    frame and the L{Session}), names the verbs datagrams may use in
    L{datagram_commands}, and the event kinds it renders in L{renderers}.
    It is built once per protocol per server, with the shared services and
    the collection it belongs to (for what spans groups: the protocol's
    name, its verbs, opening a login on the router).
    """

    def __init__(self, services: SharedServices, protocol: HandlerCollection) -> None:
        self.services = services
        self.protocol = protocol
        self.commands: dict[str, Command] = {}
        self.datagram_commands: frozenset[str] = frozenset()
        self.renderers: dict[str, Renderer] = {}
        #: What the server runs for the group's lifetime, if anything
        #: (L{ICommandGroup.service}).
        self.service: IService | None = None

    def connection_lost(self, session: Session) -> None:
        """
        A connection ended; nothing to release by default.
        """

    def login_ended(self, session: Session) -> None:
        """
        The login of C{session} ends; nothing to release by default.
        """


class HandlerCollection:
    """
    The commands of one protocol: its groups, composed.

    @ivar protocol_name: the protocol's name (its plugin's), which it
        opens router sessions under and names in its greeting.
    @ivar event_kinds: the router event kinds its sessions take: those
        its groups render.
    @raise ValueError: if two groups offer the same verb.
    """

    _log = Logger()

    def __init__(
        self,
        protocol_name: str,
        services: SharedServices,
        groups: Iterable[type[CommandGroup]],
    ) -> None:
        self.protocol_name = protocol_name
        self.services = services
        self.groups = [group(services, self) for group in groups]
        self._owners: dict[str, CommandGroup] = {}
        renderers: dict[str, Renderer] = {}
        for group in self.groups:
            for verb in group.commands:
                if verb in self._owners:
                    raise ValueError(
                        f"{type(group).__name__} and "
                        f"{type(self._owners[verb]).__name__} both offer {verb}"
                    )
                self._owners[verb] = group
            renderers.update(group.renderers)
        self._renderers = renderers
        self._last_rendered: tuple[Event, Frame] | None = None
        self.event_kinds = frozenset(renderers)

    @property
    def commands(self) -> frozenset[str]:
        """
        Every verb the protocol offers on streams.
        """
        return frozenset(verb for group in self.groups for verb in group.commands)

    @property
    def datagram_commands(self) -> frozenset[str]:
        """
        The verbs offered over datagrams.
        """
        return frozenset(
            verb for group in self.groups for verb in group.datagram_commands
        )

    def greeting(self) -> str:
        return (
            f"{self.services.domain} fmtp/{PROTOCOL_VERSION} {self.protocol_name} ready"
        )

    async def handle(self, frame: Frame, session: Session) -> Frame:
        """
        Answer one request.

        @raise FMTPError: for a refusal; the caller turns it into a reply.
        """
        group = self._owners.get(frame.verb)
        if group is None:
            group = self._late_owner(frame.verb)
        if group is None:
            return reply(502, frame.tag, f"unknown command {frame.verb}")
        if session.datagram and frame.verb not in group.datagram_commands:
            return reply(305, frame.tag, f"{frame.verb} is offered over TCP only")
        return await group.commands[frame.verb](frame, session)

    def _late_owner(self, verb: str) -> CommandGroup | None:
        """
        A group whose verbs can grow after it was built (the server-link
        group learns the verbs plugins register), for a verb not seen yet.
        """
        for group in self.groups:
            if verb in group.commands:
                return group
        return None

    def group_services(self) -> list[IService]:
        """
        The services of its groups that the server runs
        (L{ICommandGroup.service}).
        """
        return [group.service for group in self.groups if group.service is not None]

    def connection_lost(self, session: Session) -> None:
        """
        A connection ended: each group releases what it held for it, and
        its login, if any, ends.
        """
        for group in self.groups:
            group.connection_lost(session)
        self.end_login(session)

    def open_login(self, session: Session, address: str) -> ISession:
        """
        Log C{session} in as C{address}: open its router session, which
        receives the events this protocol's groups render, pushed to the
        connection as unsolicited frames (when it has one: a datagram
        session only gets its key).
        """
        session.address = address
        session.login = self.services.router.open(
            address, self.protocol_name, _Sink(self, session.push), self.event_kinds
        )
        return session.login

    def render(self, event: Event) -> Frame:
        """
        The frame that pushes C{event}: made once for an event that many
        sessions take in a row (a presence change fanned out to a hundred
        subscribers), since it depends on the event alone.
        """
        last = self._last_rendered
        if last is not None and last[0] is event:
            return last[1]
        frame = self._renderers[event.kind](event)
        self._last_rendered = (event, frame)
        return frame

    def end_login(self, session: Session) -> None:
        """
        Log C{session} out: its router session closes.
        """
        if session.login is not None:
            for group in self.groups:
                group.login_ended(session)
            self.services.router.close(session.login)
            session.login = None
        session.address = None


async def answer_request(
    handler: HandlerCollection, frame: Frame, session: Session
) -> Frame:
    """
    Answer one request on behalf of C{session}'s principal.

    Run it with C{Deferred.fromCoroutine}, which gives it a context of its
    own: the principal set here is seen by everything the request calls
    (the store's fair scheduler), and by nothing else.
    """
    current_principal.set(session.principal)
    return await handler.handle(frame, session)


def error_reply(failure: Failure, tag: str, log: Logger, peer: str) -> Frame:
    """
    The reply to a request that failed: its own code for an L{FMTPError},
    451 (temporary) and a logged traceback for anything unexpected, since
    a bug is no reason to tell a client never to retry.
    """
    if failure.check(FMTPError):
        return reply(failure.value.code, tag, failure.value.message)
    log.failure("Unexpected error answering {peer}", failure, peer=peer)
    return reply(451, tag)


class _Sink:
    """
    Where the router hands a logged-in session's events: rendered by its
    protocol and pushed to its connection.  A slotted object rather than
    a closure, since every idle session keeps one (56 bytes, not 200).
    """

    __slots__ = ("_handlers", "_push")

    def __init__(
        self, handlers: HandlerCollection, push: Callable[[Frame], object] | None
    ) -> None:
        self._handlers = handlers
        self._push = push

    def __call__(self, event: Event) -> None:
        if self._push is not None:
            self._push(self._handlers.render(event))
