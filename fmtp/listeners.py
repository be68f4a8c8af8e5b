"""
Listener services: one per endpoint a protocol is served on.

Stream listeners go through Twisted's endpoint parser (C{serverFromString});
datagrams, for which Twisted has no endpoint parser, through
C{listenUDP}, as twisted.names does.  Both bind in
C{privilegedStartService}, so twistd can bind low ports before dropping
privileges, and both say which port they got: a listener on port 0 is
how tests and benchmarks run servers without racing for free ports.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from fmtp.util.hostport import parse_port

#: The listener that switches a protocol off: C{--listen-NAME none}.
NO_LISTENER = "none"


def parse_udp_listener(description: str) -> tuple[int, str]:
    """
    Parse C{udp:PORT[:interface=ADDR]}: the one small endpoint grammar
    that is fmtp's own.

    @return: C{(port, interface)}; the interface is C{""} for all.
    @raise ValueError: saying what is wrong.
    """
    kind, _, rest = description.partition(":")
    if kind != "udp" or not rest:
        raise ValueError(f"{description!r}: expected udp:PORT[:interface=ADDR]")
    port_text, *options = rest.split(":")
    try:
        port = parse_port(port_text.removeprefix("port="), minimum=0)
    except ValueError:
        raise ValueError(
            f"{description!r}: the port must be a number from 0 to 65535"
        ) from None
    interface = ""
    for option in options:
        name, sep, value = option.partition("=")
        if name != "interface" or not sep:
            raise ValueError(f"{description!r}: unknown option {option!r}")
        interface = value
    return port, interface


def is_datagram(description: str) -> bool:
    return description.startswith("udp:")


class Listener(Service):
    """
    Base of the listener services.

    @ivar description: the listener as the admin wrote it.
    @ivar listening: a Deferred that fires with the L{IListeningPort} once
        bound, or with L{None} if binding failed (which is logged);
        L{None} before starting.
    @ivar required: whether the server must not start without it (a
        built-in protocol's listener); one that is not (a third-party
        plugin's) fails with one log line and the server serves the rest.
    """

    required = True

    _log = Logger()

    def __init__(self, protocol_name: str, description: str) -> None:
        self.protocol_name = protocol_name
        self.description = description
        self.listening: Deferred | None = None
        self._port: IListeningPort | None = None

    def _listen(self) -> Deferred:
        raise NotImplementedError

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        failed: list[Failure] = []
        self.listening = self._listen()
        self.listening.addCallback(self._bound)
        self.listening.addErrback(self._failed, failed)
        if failed:
            # Bound (and failed) at once, as TCP, TLS and UDP do: stop the
            # start-up, since a server missing a listener is misconfigured.
            failed[0].raiseException()

    def startService(self) -> None:
        if self.listening is None:
            self.privilegedStartService()
        super().startService()

    def _bound(self, port: IListeningPort) -> IListeningPort:
        self._port = port
        host = port.getHost()
        self._log.info(
            "Serving the {protocol} protocol on {description} ({host}:{port})",
            protocol=self.protocol_name,
            description=self.description,
            host=host.host,
            port=host.port,
        )
        return port

    def _failed(self, failure: Failure, failed: list[Failure]) -> None:
        if not self.required:
            self._log.error(
                "Cannot listen on {description} for the {protocol} protocol, "
                "not served: {error}",
                description=self.description,
                protocol=self.protocol_name,
                error=failure.getErrorMessage(),
            )
            return None
        self._log.failure(
            "Cannot listen on {description} for the {protocol} protocol",
            failure,
            description=self.description,
            protocol=self.protocol_name,
        )
        failed.append(failure)

    def stopService(self) -> Deferred:
        super().stopService()
        port, self._port, self.listening = self._port, None, None
        if port is None:
            return succeed(None)
        return port.stopListening()


class StreamListener(Listener):
    def __init__(
        self, reactor, protocol_name: str, description: str, factory: Factory
    ) -> None:
        super().__init__(protocol_name, description)
        self._endpoint = endpoints.serverFromString(reactor, description)
        self._factory = factory

    def _listen(self) -> Deferred:
        return self._endpoint.listen(self._factory)


class DatagramListener(Listener):
    def __init__(
        self, reactor, protocol_name: str, description: str, protocol: DatagramProtocol
    ) -> None:
        super().__init__(protocol_name, description)
        self._reactor = reactor
        self._port_number, self._interface = parse_udp_listener(description)
        self._protocol = protocol

    def _listen(self) -> Deferred:
        return maybeDeferred(
            self._reactor.listenUDP,
            self._port_number,
            self._protocol,
            interface=self._interface,
        )
