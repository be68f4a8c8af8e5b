"""
One fmtp server's service tree: the shared services, the store, the server
links and every protocol's listeners (L{build_server}), under a root
(L{ServerService}) that opens the store before the listeners start and
closes it after they stop.  C{twistd fmtp} builds it through L{fmtp.tap};
tests and benchmarks call L{build_server} directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from fmtp.accounts import (
    DEFAULT_SCRYPT_COST,
    PasswordHashPool,
    ScryptCost,
    make_portal,
)
from fmtp.auth.router import Router
from fmtp.auth.tokens import DEFAULT_TOKEN_LIFETIME, ResumptionTokens
from fmtp.connlimit import ConnectionLimits, Connections, default_limits
from fmtp.datadir import STORE_OPEN_ERRORS
from fmtp.delivery import message_event
from fmtp.discovery import builtin_plugins, is_builtin
from fmtp.dns.hostsfile import DEFAULT_HOSTS, load_hosts_file, parse_hosts
from fmtp.dns.keyverifier import DNSKeyVerifier
from fmtp.dns.resolver import DNSResolver
from fmtp.dns.routes import RouteResolver
from fmtp.federation.node import (
    DEFAULT_FEDERATION,
    FederationSettings,
    build_server_links,
)
from fmtp.interfaces import IObjectStore, IProtocolPlugin
from fmtp.keys.keyfile import load_or_create_signer
from fmtp.keys.records import zone_line
from fmtp.listeners import (
    NO_LISTENER,
    DatagramListener,
    Listener,
    StreamListener,
    is_datagram,
)
from fmtp.loginthrottle import DEFAULT_LOGIN_LIMITS, LoginLimits, LoginThrottle
from fmtp.services import SharedServices
from fmtp.store import store_from_url
from fmtp.wire import DEFAULT_LIMITS, Limits

log = Logger()


class ServerService(MultiService):
    """
    The root of one server: starts opening the store before its listeners
    start (a store queues calls made while it opens), and closes it only
    after they have all stopped, so no request meets a closed store and
    nothing acknowledged is lost on shutdown.

    @ivar failure: why the store could not be opened, if it could not: the
        server then stops, and L{makeService} makes twistd exit non-zero.
    """

    #: Seconds open streams get to finish their requests at shutdown.
    drain_timeout = 5.0

    def __init__(
        self, store: IObjectStore, connections: Connections, store_url: str = ""
    ) -> None:
        super().__init__()
        self.store = store
        self.connections = connections
        self.store_url = store_url or repr(store)
        self.failure: Failure | None = None

    def startService(self) -> None:
        opened = self.store.open()
        opened.addErrback(self._store_failed)
        super().startService()

    def listeners(self) -> list[Listener]:
        """
        The listener services, in the order the listeners were given.
        """
        return [service for service in self if isinstance(service, Listener)]

    def _store_failed(self, failure: Failure) -> None:
        from twisted.internet import reactor

        self.failure = failure
        if failure.check(*STORE_OPEN_ERRORS):
            # An admin's problem (a corrupt or newer file, a full disk, a
            # permission): one line that says which, not a traceback.
            log.critical(
                "Cannot open the store {url}: {reason}; stopping",
                url=self.store_url,
                reason=failure.getErrorMessage(),
            )
        else:
            log.failure(
                "Cannot open the store {url}; stopping", failure, url=self.store_url
            )
        reactor.stop()

    def stopService(self) -> Deferred:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        # Stop accepting, then let the open streams finish what they are
        # doing (new requests get 421), then stop the rest: a request read
        # before the stop never meets a closed store.
        await gatherResults(
            [maybeDeferred(listener.stopService) for listener in self.listeners()]
        )
        await self.connections.shut_down(self.drain_timeout)
        await super().stopService()
        await self.store.close()


def listener_service(
    reactor,
    description: str,
    plugin: IProtocolPlugin,
    services: SharedServices,
    factory,
) -> Listener:
    """
    One listener of C{plugin}: a datagram one for C{udp:}, else a stream.
    """
    if is_datagram(description):
        protocol = plugin.datagram_protocol(services)
        if protocol is None:
            raise usage.UsageError(
                f"the {plugin.name} protocol is not offered over UDP"
            )
        return DatagramListener(reactor, plugin.name, description, protocol)
    return StreamListener(reactor, plugin.name, description, factory)


def build_server(
    reactor,
    domain: str,
    store_url: str,
    key_file: str,
    listeners: dict[str, Sequence[str]],
    hosts_file: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    plugins: dict[str, IProtocolPlugin] | None = None,
    nameservers: Sequence[tuple[str, int]] = (),
    federation: FederationSettings = DEFAULT_FEDERATION,
    tls_context=None,
    login_limits: LoginLimits = DEFAULT_LOGIN_LIMITS,
    connection_limits: ConnectionLimits | None = None,
    password_cost: ScryptCost = DEFAULT_SCRYPT_COST,
    token_lifetime: float = DEFAULT_TOKEN_LIFETIME,
    plugin_options: Mapping[str, object] | None = None,
    **timeouts: float,
) -> tuple[ServerService, SharedServices]:
    """
    Build a server's service tree; tests call this directly to run servers
    in-process on any reactor.

    @param connection_limits: shared by every stream listener; by default
        derived from the open file limit (L{default_limits}).
    @param password_cost: what new password hashes cost
        (C{--scrypt-n}); weaker ones are re-hashed at it on login.
    @param token_lifetime: seconds a resumption token logs in
        (C{--token-lifetime}); 0 offers none.
    @param plugin_options: each plugin's own settings, by its name
        (L{SharedServices.plugin_options}).
    @param timeouts: the streams' C{idle_timeout}, C{frame_timeout} and
        C{stall_timeout} (L{SharedServices}), if not their defaults.
    """
    plugins = builtin_plugins() if plugins is None else plugins
    signer, created = load_or_create_signer(key_file, domain)
    if created:
        log.info(
            "Made a new key for {domain} in {path}; publish it in DNS:\n{record}",
            domain=domain,
            path=key_file,
            record=zone_line(domain, signer.public_key()),
        )
    store = store_from_url(store_url, reactor)
    hosts = parse_hosts(DEFAULT_HOSTS.splitlines(), "<default>")
    if hosts_file:
        hosts.update(load_hosts_file(hosts_file))
    resolver = DNSResolver(reactor, list(nameservers) or None)
    keys = DNSKeyVerifier(resolver, reactor, static=hosts.keys)
    keys.add_signer(signer)
    routes = RouteResolver(
        resolver,
        reactor,
        static_routes=hosts.routes,
        static_addresses=hosts.addresses,
        default_port=federation.default_port,
    )
    hashing = PasswordHashPool(reactor)
    tokens = (
        ResumptionTokens(store, reactor, token_lifetime) if token_lifetime else None
    )
    router = Router(reactor)
    links, federation_services = build_server_links(
        domain,
        store,
        keys,
        signer,
        reactor,
        lambda address, obj: router.deliver(address, message_event(obj)),
        routes,
        federation,
        limits,
    )
    services = SharedServices(
        reactor=reactor,
        domain=domain,
        store=store,
        keys=keys,
        signer=signer,
        portal=make_portal(
            store, run_in_thread=hashing.run, cost=password_cost, tokens=tokens
        ),
        tokens=tokens,
        router=router,
        links=links,
        login_throttle=LoginThrottle(reactor, login_limits),
        limits=limits,
        tls_context=tls_context,
        connections=Connections(connection_limits or default_limits(), reactor),
        plugin_options=dict(plugin_options or {}),
        **timeouts,
    )
    root = ServerService(store, services.connections, store_url)
    # First in, so it is the last child stopped.
    hashing.setServiceParent(root)
    for service in federation_services:
        service.setServiceParent(root)
    for name, plugin in plugins.items():
        descriptions = listeners.get(name) or plugin.default_listeners
        if list(descriptions) == [NO_LISTENER]:
            continue
        try:
            factory = plugin.stream_factory(services)
            made = [
                listener_service(reactor, description, plugin, services, factory)
                for description in descriptions
            ]
        except usage.UsageError:
            raise
        except Exception as e:
            if is_builtin(plugin):
                raise
            # A third-party plugin's bug does not take the server down.
            log.error(
                "The {name} protocol plugin failed to start, not served: {error}",
                name=name,
                error=f"{type(e).__name__}: {e}",
            )
            continue
        for listener in made:
            listener.required = is_builtin(plugin)
            listener.setServiceParent(root)
    # What command groups run for the server's lifetime: started after the
    # listeners, stopped before them by the root's children (once the
    # root stopped its listeners and closed its connections), so before
    # the store closes.
    for handler in services.protocol_handlers.values():
        for service in handler.group_services():
            service.setServiceParent(root)
    return root, services


def load_tls_context(key_file: str, cert_file: str):
    """
    The TLS context STARTTLS switches to, from PEM files.
    """
    from twisted.internet import ssl

    with open(key_file, "rb") as f:
        key = f.read()
    with open(cert_file, "rb") as f:
        chain = f.read()
    return ssl.PrivateCertificate.loadPEM(key + b"\n" + chain).options()
