"""
Builders shared by the tests: a server's services around any reactor, and
a stream protocol wired to a StringTransport.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport

from fmtp.accounts import make_portal
from fmtp.keys import DomainSigner, StaticKeyVerifier, generate_private_key
from fmtp.protocols.framing import FrameStreamProtocol
from fmtp.protocols.object import ObjectCommands
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
    reactor=None, store=None, domain: str = "poe.net", limits: Limits = DEFAULT_LIMITS
) -> SharedServices:
    reactor = reactor if reactor is not None else MemoryReactorClock()
    store = store if store is not None else MemoryStore()
    signer = DomainSigner(generate_private_key(), domain)
    keys = StaticKeyVerifier({}, reactor)
    keys.add_signer(signer)
    return SharedServices(
        reactor=reactor,
        domain=domain,
        store=store,
        keys=keys,
        signer=signer,
        portal=make_portal(store, run_in_thread=run_now),
        limits=limits,
    )


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
    One object-protocol connection over a StringTransport: send requests,
    read back the frames the server wrote.
    """

    def __init__(self, services: SharedServices, host: str = "192.0.2.1") -> None:
        self.services = services
        self.protocol = FrameStreamProtocol(ObjectCommands(services))
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
    started L{fmtp.tap.ServerService} bound: servers in tests listen on
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
