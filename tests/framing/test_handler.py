"""
Unit tests of L{fmtp.framing.handler}: command groups composed into one
protocol, verbs dispatched to the group that offers them, and router
events rendered only for the kinds a protocol's groups take.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from fmtp.auth.router import Event
from fmtp.framing.handler import CommandGroup, HandlerCollection
from fmtp.framing.session import Session, SessionCommands
from fmtp.interfaces import ICommandGroup
from fmtp.wire import Frame, reply, request
from tests.helpers import add_account, make_services


class Echo(CommandGroup):
    def __init__(self, services, protocol) -> None:
        super().__init__(services, protocol)
        self.commands = {"ECHO": self.echo}
        self.datagram_commands = frozenset({"ECHO"})
        self.renderers = {"echo": lambda event: reply(259, "*", str(event.payload))}
        self.lost: list[Session] = []
        self.ended: list[tuple[Session, bool]] = []

    async def echo(self, frame: Frame, session: Session) -> Frame:
        return reply(200, frame.tag, frame.argument)

    def connection_lost(self, session: Session) -> None:
        self.lost.append(session)

    def login_ended(self, session: Session) -> None:
        # Whether its router session was still open when told.
        router = self.services.router
        self.ended.append(
            (session, router.session_for_key(session.login.key) is not None)
        )


class AlsoEcho(Echo):
    """
    Another group offering ECHO.
    """


def answer(handler: HandlerCollection, session: Session, verb: str, argument=""):
    return Deferred.fromCoroutine(
        handler.handle(request(verb, "1", argument), session)
    ).result


def test_groups_compose() -> None:
    services = make_services(Clock())
    handler = HandlerCollection("echo", services, [SessionCommands, Echo])
    for group in handler.groups:
        assert verifyObject(ICommandGroup, group)
    assert handler.commands == {"CAPA", "LOGIN", "LOGOUT", "QUIT", "ECHO"}
    assert handler.datagram_commands == {"CAPA", "ECHO"}
    assert handler.event_kinds == {"echo"}
    assert handler.greeting() == "poe.net fmtp/1 echo ready"
    session = Session("192.0.2.1")
    assert answer(handler, session, "ECHO", "hi").argument == "hi"
    assert answer(handler, session, "NOPE").code == 502
    capa = answer(handler, session, "CAPA")
    assert capa.headers["Protocol"] == "echo"
    assert capa.headers["Commands"] == "CAPA ECHO LOGIN LOGOUT QUIT"
    datagram = Session("192.0.2.1", datagram=True)
    assert answer(handler, datagram, "LOGIN").code == 305
    assert answer(handler, datagram, "CAPA").headers["Commands"] == "CAPA ECHO"


def test_two_groups_cannot_offer_one_verb() -> None:
    with pytest.raises(ValueError, match="both offer ECHO"):
        HandlerCollection("echo", make_services(Clock()), [Echo, AlsoEcho])


def test_logins_take_only_the_protocols_event_kinds() -> None:
    services = make_services(Clock())
    handler = HandlerCollection("echo", services, [SessionCommands, Echo])
    pushed: list[Frame] = []
    session = Session("192.0.2.1", push=pushed.append)
    login = handler.open_login(session, "edgar@poe.net")
    assert (session.address, login.protocol, login.kinds) == (
        "edgar@poe.net",
        "echo",
        {"echo"},
    )
    router = services.router
    assert router.deliver("edgar@poe.net", Event("message", "not mine")) == 0
    assert router.deliver("edgar@poe.net", Event("echo", "mine")) == 1
    assert [(f.code, f.argument) for f in pushed] == [(259, "mine")]
    handler.connection_lost(session)
    assert handler.groups[1].lost == [session]
    # Told the login ends after the connection, while its session is open.
    assert handler.groups[1].ended == [(session, True)]
    assert session.login is None and session.address is None
    assert router.session_for_key(login.key) is None


def test_logout_tells_the_groups_once() -> None:
    services = make_services(Clock())
    handler = HandlerCollection("echo", services, [SessionCommands, Echo])
    session = Session("192.0.2.1", push=[].append)
    handler.open_login(session, "edgar@poe.net")
    handler.end_login(session)
    handler.end_login(session)
    assert handler.groups[1].ended == [(session, True)]
    handler.connection_lost(session)
    assert handler.groups[1].ended == [(session, True)]


def test_a_connection_lost_during_login_opens_no_session() -> None:
    """
    A client that drops its connection while LOGIN checks its password
    leaves nothing behind: no router session that no connection will
    ever close (each such drop would otherwise hold one forever).
    """
    services = make_services(Clock())
    add_account(services.store, "edgar@poe.net", "nevermore-quoth")
    handler = HandlerCollection("echo", services, [SessionCommands, Echo])
    checked: Deferred = Deferred()
    login = services.portal.login
    services.portal.login = lambda *args: checked.addCallback(lambda _: login(*args))
    session = Session("192.0.2.1", push=[].append)
    frame = request(
        "LOGIN",
        "1",
        headers={"Address": "edgar@poe.net", "Password": "nevermore-quoth"},
    )
    answered = Deferred.fromCoroutine(handler.handle(frame, session))
    session.closing = True
    handler.connection_lost(session)
    checked.callback(None)
    assert answered.result.code == 421
    assert len(services.router) == 0
    assert session.login is None and session.address is None


def test_an_event_fanned_out_is_rendered_once() -> None:
    """
    An event many sessions take in a row (a presence change to a hundred
    subscribers) is rendered once, every session pushed the same frame;
    another event is rendered anew.
    """
    services = make_services(Clock())
    handler = HandlerCollection("echo", services, [SessionCommands, Echo])
    group = handler.groups[1]
    render = group.renderers["echo"]
    rendered: list[Event] = []
    handler._renderers["echo"] = lambda event: rendered.append(event) or render(event)
    pushed: list[list[Frame]] = []
    addresses = [f"user{n}@poe.net" for n in range(3)]
    for address in addresses:
        frames: list[Frame] = []
        pushed.append(frames)
        handler.open_login(Session("192.0.2.1", push=frames.append), address)
    first, second = Event("echo", "one"), Event("echo", "two")
    assert services.router.fan_out(addresses, first) == 3
    assert services.router.fan_out(addresses, second) == 3
    assert rendered == [first, second]
    assert [[f.argument for f in frames] for frames in pushed] == [["one", "two"]] * 3
