"""
C{twistd fmtp}: the options and the service tree of one fmtp server.

With no options the server runs on its embedded default: domain
C{localhost}, SQLite under C{./fmtp-data}, a domain key made on first start,
and every protocol on its default loopback listeners.
"""

from __future__ import annotations

import atexit
import math
import os
import sys
from collections.abc import Sequence

from OpenSSL import crypto
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from fmtp import datadir
from fmtp.accounts import PasswordHashPool, make_portal
from fmtp.auth.router import Router
from fmtp.connlimit import ConnectionLimits, Connections, default_limits, parse_networks
from fmtp.datadir import DEFAULT_DATA_DIR, STORE_OPEN_ERRORS, DataDirError, Found
from fmtp.delivery import message_event
from fmtp.discovery import builtin_plugins, find_protocol_plugins, is_builtin
from fmtp.dns.hostsfile import (
    DEFAULT_HOSTS,
    HostsFileError,
    load_hosts_file,
    parse_hosts,
)
from fmtp.dns.keyverifier import DNSKeyVerifier
from fmtp.dns.resolver import DNSResolver
from fmtp.dns.routes import RouteResolver
from fmtp.errors import InvalidAddress
from fmtp.federation.node import (
    DEFAULT_FEDERATION,
    FederationSettings,
    build_server_links,
)
from fmtp.federation.settle import DEFAULT_RETRY_WINDOW
from fmtp.federation.tls import TLS_POLICIES, load_trust_root
from fmtp.interfaces import IObjectStore, IProtocolPlugin
from fmtp.keys.keyfile import KeyFileError, load_or_create_signer
from fmtp.keys.records import zone_line
from fmtp.listeners import (
    DatagramListener,
    Listener,
    StreamListener,
    is_datagram,
    parse_udp_listener,
)
from fmtp.loginthrottle import DEFAULT_LOGIN_LIMITS, LoginLimits, LoginThrottle
from fmtp.objects import is_ascii_digits, normalize_domain
from fmtp.options import DNSOption
from fmtp.services import SharedServices
from fmtp.store import store_from_url
from fmtp.util.hostport import DEFAULT_FMTP_PORT, parse_host_port
from fmtp.wire import DEFAULT_LIMITS, Limits

log = Logger()

#: The listener that switches a protocol off: C{--listen-NAME none}.
NO_LISTENER = "none"


def _listen_option(name: str, plugin: IProtocolPlugin):
    def opt_listen(self, description: str) -> None:
        self["listen"].setdefault(name, []).append(description)

    defaults = ", ".join(plugin.default_listeners)
    opt_listen.__doc__ = (
        f"Serve the {name} protocol ({plugin.description}) on an endpoint: "
        f"tcp:PORT, ssl:PORT:privateKey=KEY:certKey=CERT or any Twisted stream "
        f"endpoint, or udp:PORT[:interface=ADDR]; 'none' switches it off. "
        f"Repeatable. Default: {defaults}."
    )
    return opt_listen


class Options(DNSOption, usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run an fmtp server: users are user@DOMAIN, objects and messages are "
        "kept in the store, and each protocol listens on its endpoints. With "
        "no options it serves domain localhost on loopback, keeping its data "
        "in ./fmtp-data."
    )
    optParameters = [
        [
            "domain",
            "d",
            "localhost",
            "The domain this server serves: users are user@DOMAIN.",
        ],
        [
            "data-dir",
            None,
            DEFAULT_DATA_DIR,
            "Directory for the database, the domain key and the file naming "
            "the domain they belong to; made on first start, refused if it "
            "belongs to another domain.",
        ],
        [
            "store",
            None,
            None,
            "Where objects and accounts are kept: sqlite:PATH or memory: "
            "(lost on exit). Default: sqlite:DATA-DIR/fmtp.sqlite.",
        ],
        [
            "key-file",
            None,
            None,
            "The domain's Ed25519 private key. Default: DATA-DIR/domain.key, "
            "made on first start.",
        ],
        [
            "hosts-file",
            None,
            None,
            "Static keys, routes and addresses for private networks, taking "
            "precedence over DNS: lines 'key DOMAIN v=FMTP1; ...', "
            "'route DOMAIN HOST:PORT', 'address HOST IP'.",
        ],
        ["max-body", None, str(Limits().max_body), "Largest frame body, in bytes."],
        [
            "s2s-tls",
            None,
            "opportunistic",
            "TLS on outbound server links: require (STARTTLS and a certificate "
            "valid for the peer's name), opportunistic (when offered) or off.",
        ],
        ["tls-key", None, None, "Private key (PEM) offered through STARTTLS."],
        ["tls-cert", None, None, "Certificate chain (PEM) offered through STARTTLS."],
        [
            "tls-ca",
            None,
            None,
            "Trust these CA certificates (PEM) for outbound links instead of "
            "the system's.",
        ],
        [
            "parent",
            None,
            None,
            "HOST:PORT of a parent server that relays when a domain cannot be "
            "reached directly.",
        ],
        [
            "countersign",
            None,
            "keyless",
            "Confirm incoming messages with their origin server: always, or "
            "keyless (only for domains that publish no key).",
        ],
        [
            "retry-window",
            None,
            str(int(DEFAULT_RETRY_WINDOW)),
            "Seconds the queue retries a delivery before bouncing it.",
        ],
        [
            "login-failures-per-account",
            None,
            str(DEFAULT_LOGIN_LIMITS.per_account),
            "Failed LOGINs one address may make for one account within "
            "--login-window; its further LOGINs for that account are refused "
            "(429) unchecked. Other addresses are not affected.",
        ],
        [
            "login-failures-per-source",
            None,
            str(DEFAULT_LOGIN_LIMITS.per_source),
            "Failed LOGINs one address (an IPv6 /64) may make for all accounts "
            "together within --login-window; then all its LOGINs are refused "
            "(429) unchecked. Raise it for users behind one NAT.",
        ],
        [
            "login-concurrent",
            None,
            str(DEFAULT_LOGIN_LIMITS.concurrent),
            "LOGINs from one address checked at once; more are refused (429).",
        ],
        [
            "login-window",
            None,
            f"{DEFAULT_LOGIN_LIMITS.window:g}",
            "Seconds a failed LOGIN counts against its address.",
        ],
        [
            "login-failure-delay",
            None,
            f"{DEFAULT_LOGIN_LIMITS.failure_delay:g}",
            "Seconds a failed LOGIN's reply is held back.",
        ],
        [
            "max-connections",
            None,
            None,
            "Most streams open at once, from all sources. Default: the open "
            "file limit less a reserve of an eighth (at least 64).",
        ],
        [
            "max-connections-per-source",
            None,
            None,
            "Most streams open at once from one address (an IPv6 /64), "
            "trusted sources excepted. Default: 64.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = {}
        self["enable"] = []
        self["relay-for"] = []
        self["trusted-source"] = []

    def getUsage(self, width: int | None = None) -> str:
        # The list of protocols keeps its lines: the long description
        # would be wrapped into one paragraph.
        return super().getUsage(width) + "\n" + plugins_help(PROTOCOL_PLUGINS) + "\n"

    def opt_enable(self, name: str) -> None:
        """
        Serve an installed protocol plugin (listed at the end) on its
        default listeners; --listen-NAME enables it too. Repeatable.
        """
        if name not in PROTOCOL_PLUGINS:
            found = ", ".join(PROTOCOL_PLUGINS)
            raise usage.UsageError(f"--enable {name}: no such plugin (found: {found})")
        self["enable"].append(name)

    def _enabled_plugins(self) -> dict[str, IProtocolPlugin]:
        """
        The protocols to serve: the built-ins, and the third-party plugins
        the admin enabled; none whose listeners are 'none'.
        """
        enabled = {}
        for name, plugin in PROTOCOL_PLUGINS.items():
            chosen = name in self["enable"] or name in self["listen"]
            if not (is_builtin(plugin) or chosen):
                continue
            if self["listen"].get(name) == [NO_LISTENER]:
                continue
            enabled[name] = plugin
        return enabled

    def opt_trusted_source(self, network: str) -> None:
        """
        An address or network (CIDR) exempt from the per-source connection
        cap, whose streams may also use the reserve: an admin's. Repeatable;
        replaces the default, loopback.
        """
        try:
            self["trusted-source"].extend(parse_networks([network]))
        except ValueError as e:
            raise usage.UsageError(f"--trusted-source: {e}")

    def opt_relay_for(self, domain: str) -> None:
        """
        Relay to other domains for this child domain's server; repeatable.
        """
        try:
            self["relay-for"].append(normalize_domain(domain))
        except InvalidAddress as e:
            raise usage.UsageError(f"--relay-for: {e.message}")

    def postOptions(self) -> None:
        try:
            self["domain"] = normalize_domain(self["domain"])
        except InvalidAddress as e:
            raise usage.UsageError(e.message)
        if not is_ascii_digits(self["max-body"]) or int(self["max-body"]) < 1024:
            raise usage.UsageError(
                "--max-body must be a number of bytes, at least 1024"
            )
        self["max-body"] = int(self["max-body"])
        self["store"] = self["store"] or datadir.store_url(self["data-dir"])
        try:
            store_from_url(self["store"])
        except ValueError as e:
            raise usage.UsageError(f"--store {self['store']}: {e}")
        self["key-file"] = self["key-file"] or datadir.key_path(self["data-dir"])
        for name, descriptions in self["listen"].items():
            for description in descriptions:
                check_listener(description, PROTOCOL_PLUGINS[name])
        self["plugins"] = self._enabled_plugins()
        self["federation"] = self._federation_settings()
        self["login-limits"] = self._login_limits()
        self["connection-limits"] = self._connection_limits()
        if bool(self["tls-key"]) != bool(self["tls-cert"]):
            raise usage.UsageError("--tls-key and --tls-cert go together")
        if self["hosts-file"]:
            try:
                load_hosts_file(self["hosts-file"])
            except (OSError, HostsFileError) as e:
                raise usage.UsageError(f"--hosts-file: {e}")

    def _connection_limits(self) -> ConnectionLimits:
        counts = {}
        for name in ("max-connections", "max-connections-per-source"):
            value = self[name]
            if value is not None and (not is_ascii_digits(value) or int(value) < 1):
                raise usage.UsageError(f"--{name} must be a number, at least 1")
            counts[name] = None if value is None else int(value)
        return default_limits(
            max_total=counts["max-connections"],
            max_per_source=counts["max-connections-per-source"],
            trusted=self["trusted-source"] or None,
        )

    def _federation_settings(self) -> FederationSettings:
        if self["s2s-tls"] not in TLS_POLICIES:
            raise usage.UsageError("--s2s-tls must be require, opportunistic or off")
        if self["countersign"] not in ("always", "keyless"):
            raise usage.UsageError("--countersign must be always or keyless")
        if not is_ascii_digits(self["retry-window"]):
            raise usage.UsageError("--retry-window must be a number of seconds")
        parent = None
        if self["parent"]:
            try:
                parent = parse_host_port(self["parent"], DEFAULT_FMTP_PORT)
            except ValueError as e:
                raise usage.UsageError(f"--parent {self['parent']}: {e}")
        trust_root = None
        if self["tls-ca"]:
            try:
                trust_root = load_trust_root(self["tls-ca"])
            except (OSError, ValueError) as e:
                raise usage.UsageError(f"--tls-ca {self['tls-ca']}: {e}")
        return FederationSettings(
            tls_policy=self["s2s-tls"],
            tls_trust_root=trust_root,
            parent=parent,
            relay_for=frozenset(self["relay-for"]),
            always_countersign=self["countersign"] == "always",
            retry_window=float(self["retry-window"]),
        )

    def _login_limits(self) -> LoginLimits:
        """
        The login throttle's limits (L{fmtp.loginthrottle.LoginLimits}).
        """
        counts = {}
        for name in (
            "login-failures-per-account",
            "login-failures-per-source",
            "login-concurrent",
        ):
            text = self[name]
            if not (is_ascii_digits(text) and len(text) <= 7) or not (
                1 <= int(text) <= 1_000_000
            ):
                raise usage.UsageError(
                    f"--{name} must be a whole number from 1 to 1000000"
                )
            counts[name] = int(text)
        if counts["login-failures-per-source"] < counts["login-failures-per-account"]:
            raise usage.UsageError(
                "--login-failures-per-source must be at least "
                "--login-failures-per-account"
            )
        window = _seconds(self, "login-window", minimum=1.0)
        delay = _seconds(self, "login-failure-delay", minimum=0.0)
        return LoginLimits(
            per_account=counts["login-failures-per-account"],
            per_source=counts["login-failures-per-source"],
            concurrent=counts["login-concurrent"],
            window=window,
            failure_delay=delay,
        )


def _seconds(options: usage.Options, name: str, minimum: float) -> float:
    """
    The value of option C{name} as a number of seconds (decimals allowed),
    at least C{minimum} and at most a day.

    @raise usage.UsageError: naming the option.
    """
    try:
        value = float(options[name])
    except ValueError:
        value = math.nan
    if not minimum <= value <= 86400:
        raise usage.UsageError(
            f"--{name} must be a number of seconds from {minimum:g} to 86400"
        )
    return value


def check_listener(description: str, plugin: IProtocolPlugin) -> None:
    """
    Refuse a listener description before anything starts.

    @raise usage.UsageError: naming the listener and what is wrong.
    """
    from twisted.internet import reactor

    if description == NO_LISTENER:
        return
    try:
        if is_datagram(description):
            parse_udp_listener(description)
        else:
            endpoints.serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError) as e:
        raise usage.UsageError(f"--listen-{plugin.name} {description}: {e}")


PROTOCOL_PLUGINS = find_protocol_plugins()
for _name, _plugin in PROTOCOL_PLUGINS.items():
    setattr(
        Options, "opt_listen_" + _name.replace("-", "_"), _listen_option(_name, _plugin)
    )
# usage.Options wraps an option's docstring with its indentation: make each
# one a single line of text, so --help shows no runs of spaces.
for _key, _attribute in vars(Options).items():
    if _key.startswith("opt_") and getattr(_attribute, "__doc__", None):
        _attribute.__doc__ = " ".join(_attribute.__doc__.split())


def plugins_help(plugins: dict[str, IProtocolPlugin]) -> str:
    """
    What C{twistd fmtp --help} says of the protocols found: which are
    served by default, and how to enable each of the others.
    """
    lines = ["Protocols found (an installed plugin serves nothing until enabled):"]
    for name, plugin in plugins.items():
        if is_builtin(plugin):
            how = "built in, served unless --listen-" + name + " none"
        else:
            how = f"installed, off: enable with --enable {name} or --listen-{name} ..."
        lines.append(f"  {name}: {plugin.description} ({how})")
    return "\n".join(lines)


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
    **timeouts: float,
) -> tuple[ServerService, SharedServices]:
    """
    Build a server's service tree; tests call this directly to run servers
    in-process on any reactor.

    @param connection_limits: shared by every stream listener; by default
        derived from the open file limit (L{default_limits}).
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
        portal=make_portal(store, run_in_thread=hashing.run),
        router=router,
        links=links,
        login_throttle=LoginThrottle(reactor, login_limits),
        limits=limits,
        tls_context=tls_context,
        connections=Connections(connection_limits or default_limits(), reactor),
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


#: What stops a start-up with one line instead of a traceback: the admin's
#: files (data directory, domain key, TLS key and certificate) are wrong.
STARTUP_ERRORS = (DataDirError, KeyFileError, OSError, crypto.Error, usage.UsageError)


def makeService(options: Options) -> MultiService:
    """
    The service twistd runs, after every check that can be made before
    the reactor runs.

    twistd ends with a non-zero status only when making or starting the
    service raises (and then a daemon's parent reports it too): so the
    data directory, the key and the TLS files are checked here, and a
    failure ends twistd with one line saying why.  A listener that cannot
    bind raises from C{privilegedStartService}, which twistd also turns
    into status 1.  The store opens on its own thread once the reactor
    runs, out of twistd's reach: L{_exit_if_store_failed} gives that
    failure its non-zero status.
    """
    from twisted.internet import reactor

    try:
        found = datadir.prepare_for_server(options["data-dir"], options["domain"])
        tls_context = None
        if options["tls-key"]:
            tls_context = load_tls_context(options["tls-key"], options["tls-cert"])
        root, _ = build_server(
            reactor,
            domain=options["domain"],
            store_url=options["store"],
            key_file=options["key-file"],
            listeners=options["listen"],
            plugins=options["plugins"],
            hosts_file=options["hosts-file"],
            limits=Limits(max_body=options["max-body"]),
            nameservers=options["dns"],
            federation=options["federation"],
            tls_context=tls_context,
            login_limits=options["login-limits"],
            connection_limits=options["connection-limits"],
        )
    except STARTUP_ERRORS as e:
        raise SystemExit(f"fmtp: cannot start: {_reason(e)}") from None
    _log_data_dir(found, options["data-dir"], options["domain"])
    atexit.register(_exit_if_store_failed, root)
    return root


def _reason(error: Exception) -> str:
    if isinstance(error, crypto.Error):
        return f"cannot load --tls-key and --tls-cert: {error}"
    return str(error)


def _log_data_dir(found: Found, path: str, domain: str) -> None:
    if found is Found.CREATED:
        log.info(
            "Made the data directory {path} for {domain}", path=path, domain=domain
        )
    elif found is Found.ADOPTED:
        log.warn(
            "{path} was made by an older fmtp and named no domain: recorded "
            "{domain} in {file}. If its key and accounts are another "
            "domain's, stop the server, write that domain in {file} and "
            "start it with that --domain.",
            path=path,
            domain=domain,
            file=datadir.domain_path(path),
        )


def _exit_if_store_failed(root: ServerService) -> None:
    """
    At exit, end with status 1 if the store could not be opened.

    twistd has no exit status for a failure after its reactor starts: it
    stops, cleans up (pid file, logs) and exits 0, so a service manager's
    restart-on-failure would never fire.  This runs after that clean-up,
    from C{atexit}, and only in a twistd process (L{makeService}).  The
    exit handlers registered before it are skipped (the standard library's
    C{logging} flush among them); fmtp logs through C{twisted.logger},
    whose files are flushed at each event.
    """
    if root.failure is None:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(1)
