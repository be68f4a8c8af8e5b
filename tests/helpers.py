"""
Builders shared by the tests: a server's services around any reactor, a
stream protocol wired to a StringTransport, waits with deadlines, and
ports held shut.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, TimeoutError, ensureDeferred, succeed
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport

from fmtp.accounts import make_portal
from fmtp.auth.router import Router
from fmtp.delivery import message_event
from fmtp.federation.node import build_server_links
from fmtp.framing.handler import HandlerCollection
from fmtp.framing.stream import FrameStreamProtocol
from fmtp.keys.signing import DomainSigner, generate_private_key
from fmtp.keys.static import StaticKeyVerifier
from fmtp.protocols.object.plugin import ObjectProtocolPlugin
from fmtp.services import SharedServices
from fmtp.store.memory import MemoryStore
from fmtp.wire import DEFAULT_LIMITS, FrameParser, Limits, request, serialize

#: A small scrypt cost for accounts made by unit tests, so they stay fast;
#: servers use the full cost.
FAST_SCRYPT_N = 2**10


def run_now(f, *args, **kwargs):
    """
    A stand-in for deferToThread that runs the call at once: unit tests
    drive everything from one thread and a Clock.
    """
    return succeed(f(*args, **kwargs))


def make_services(
    reactor=None,
    store=None,
    domain: str = "poe.net",
    limits: Limits = DEFAULT_LIMITS,
    keys=None,
    signer=None,
    **options: Any,
) -> SharedServices:
    """
    The services of a server of C{domain}, on a memory store and a
    L{MemoryReactorClock} unless given, with server links that reach no
    other server (remote recipients wait in the queue).

    @param keys: the key verifier (by default one knowing C{signer}).
    @param options: any other L{SharedServices} field.
    """
    reactor = reactor if reactor is not None else MemoryReactorClock()
    store = store if store is not None else MemoryStore()
    signer = signer or DomainSigner(generate_private_key(), domain)
    if keys is None:
        keys = StaticKeyVerifier({}, reactor)
        keys.add_signer(signer)
    router = options.pop("router", None) or Router(reactor)
    links = options.pop("links", None)
    if links is None:
        links, _ = build_server_links(
            domain,
            store,
            keys,
            signer,
            reactor,
            lambda address, obj: router.deliver(address, message_event(obj)),
            limits=limits,
        )
    return SharedServices(
        reactor=reactor,
        domain=domain,
        store=store,
        keys=keys,
        signer=signer,
        limits=limits,
        router=router,
        links=links,
        **{"portal": make_portal(store, run_in_thread=run_now), **options},
    )


def object_protocol(services: SharedServices):
    """
    The object protocol's commands on C{services}'s server.
    """
    return ObjectProtocolPlugin().handler(services)


def add_account(store, address: str, password: str) -> None:
    """
    Create an account on a memory store, synchronously.
    """
    from fmtp.accounts import hash_password
    from fmtp.objects import user_object

    store.add_account(address, hash_password(password, n=FAST_SCRYPT_N))
    store.put_object(user_object(address))


class StreamHarness:
    """
    One connection over a StringTransport: send requests, read back the
    frames the server wrote (replies, and what was pushed).

    @param handler: the commands of the protocol it speaks, built once per
        server (C{plugin.handler(services)}); the object protocol's if
        L{None}.
    """

    def __init__(
        self,
        services: SharedServices,
        host: str = "192.0.2.1",
        handler: HandlerCollection | None = None,
    ) -> None:
        self.services = services
        if handler is None:
            handler = object_protocol(services)
        self.protocol = FrameStreamProtocol(handler)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        self.protocol.makeConnection(self.transport)
        self._parser = FrameParser(Limits(max_body=1 << 24))
        self.greeting = self.frames()[0]

    def send_bytes(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def send(self, verb, tag="1", argument="", headers=None, body=b""):
        self.send_bytes(serialize(request(verb, tag, argument, headers, body)))
        return self.frames()

    def ask(self, verb, tag="1", argument="", headers=None, body=b""):
        """
        Send one request and return its one reply.
        """
        frames = self.send(verb, tag, argument, headers, body)
        assert len(frames) == 1, frames
        return frames[0]

    def frames(self):
        data = self.transport.value()
        self.transport.clear()
        return self._parser.feed(data)

    def login(self, address: str, password: str):
        return self.ask("LOGIN", headers={"Address": address, "Password": password})


async def bound_ports(root) -> dict[tuple[str, str], int]:
    """
    Map C{(protocol name, "tcp" or "udp")} to the port each listener of a
    started L{fmtp.server.ServerService} bound: servers in tests listen on
    port 0.
    """
    from fmtp.listeners import is_datagram

    found = {}
    for listener in root.listeners():
        port = await listener.listening
        assert port is not None, f"{listener.description} did not listen"
        kind = "udp" if is_datagram(listener.description) else "tcp"
        found[listener.protocol_name, kind] = port.getHost().port
    return found


async def within(
    d: Deferred | Awaitable[Any], seconds: float = 15.0, reactor=None
) -> Any:
    """
    Wait for C{d} (a Deferred or a coroutine), failing the test with a
    C{TimeoutError} (and cancelling C{d}) if it has not fired within
    C{seconds}: no wait in a test is without a deadline.
    """
    if reactor is None:
        from twisted.internet import reactor
    d = ensureDeferred(d)
    d.addTimeout(seconds, reactor)
    return await d


async def eventually(
    check: Callable[[], Any | Awaitable[Any]],
    timeout: float = 15.0,
    interval: float = 0.05,
    reactor=None,
) -> Any:
    """
    Poll C{check()} (a function, or one returning an awaitable) every
    C{interval} seconds until its result is true, and return that result.

    For conditions nobody announces (a row gone from a queue, a count
    reached); a condition that fires a Deferred should be awaited with
    L{within} instead.  The whole poll, including a C{check} that never
    answers, has a deadline.

    @raise AssertionError: if C{check} is not true within C{timeout}
        seconds, with its last result.
    """
    if reactor is None:
        from twisted.internet import reactor
    last: list[Any] = []

    async def poll():
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            last[:] = [result]
            await deferLater(reactor, interval)

    try:
        return await within(poll(), timeout, reactor)
    except TimeoutError:
        name = getattr(check, "__qualname__", repr(check))
        raise AssertionError(
            f"{name} still not true after {timeout:g} s (last: {last[:1]!r})"
        ) from None


class HeldPort:
    """
    A TCP port of C{host} held by a socket that is bound but not
    listening: connections to it are refused (the kernel answers RST), and
    no other socket can take it while it is held, so a test that needs
    "nothing listens there" never races another process for the number.
    Closed at the end of the test (L{close}).

    @param shared: let a listener of this test bind the port too
        (C{SO_REUSEADDR} on both sides, which Linux allows while the
        holder does not listen): the port of a server that a test stops
        and starts again, held in between.  Bind C{host} C{"0.0.0.0"} to
        hold the number on every address.
    """

    def __init__(self, host: str = "127.0.0.1", shared: bool = False) -> None:
        self.host = host
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if shared:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, 0))
        self.port: int = self.socket.getsockname()[1]

    def close(self) -> None:
        self.socket.close()
