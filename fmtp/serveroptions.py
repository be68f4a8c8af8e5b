"""
The options of C{twistd fmtp}: what an admin may set, each checked before
anything starts, with a C{--listen-NAME} option for every protocol plugin
found (L{fmtp.discovery}).

With no options the server runs on its embedded default: domain
C{localhost}, SQLite under C{./fmtp-data}, a domain key made on first start,
and every protocol on its default loopback listeners.
"""

from __future__ import annotations

import math
from dataclasses import replace

from twisted.internet import endpoints
from twisted.python import usage

from fmtp import datadir
from fmtp.accounts import DEFAULT_SCRYPT_COST, parse_scrypt_n
from fmtp.auth.tokens import DEFAULT_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME
from fmtp.connlimit import ConnectionLimits, default_limits, parse_networks
from fmtp.datadir import DEFAULT_DATA_DIR
from fmtp.discovery import find_protocol_plugins, is_builtin
from fmtp.dns.hostsfile import HostsFileError, load_hosts_file
from fmtp.errors import InvalidAddress
from fmtp.federation.node import FederationSettings
from fmtp.federation.settle import DEFAULT_RETRY_WINDOW
from fmtp.federation.tls import TLS_POLICIES, load_trust_root
from fmtp.interfaces import IProtocolPlugin
from fmtp.listeners import NO_LISTENER, is_datagram, parse_udp_listener
from fmtp.loginthrottle import DEFAULT_LOGIN_LIMITS, LoginLimits
from fmtp.objects import is_ascii_digits, normalize_domain
from fmtp.options import DNSOption, seconds_option
from fmtp.protocols.chat.options import CHAT_PARAMETERS, chat_settings_of
from fmtp.protocols.presence.options import PRESENCE_PARAMETERS, presence_settings_of
from fmtp.store import store_from_url
from fmtp.util.hostport import DEFAULT_FMTP_PORT, parse_host_port
from fmtp.wire import Limits


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
            "scrypt-n",
            None,
            str(DEFAULT_SCRYPT_COST.n),
            "scrypt's cost N for password hashes (a power of two; r=8, p=1): "
            "each doubling doubles the time and memory of a LOGIN's check "
            "(4096: 4 MiB, about 10 ms). Older, weaker hashes are re-hashed "
            "at this cost when their user logs in.",
        ],
        [
            "token-lifetime",
            None,
            f"{DEFAULT_TOKEN_LIFETIME:.0f}",
            "Seconds a resumption token (asked for at LOGIN, to reconnect "
            "without the password) logs in after it is issued, up to a year; "
            "0 offers no tokens.",
        ],
        *PRESENCE_PARAMETERS,
        *CHAT_PARAMETERS,
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
        try:
            n = parse_scrypt_n(self["scrypt-n"])
        except ValueError as e:
            raise usage.UsageError(f"--scrypt-n {e}")
        self["password-cost"] = replace(DEFAULT_SCRYPT_COST, n=n)
        try:
            lifetime = float(self["token-lifetime"])
        except ValueError:
            lifetime = math.nan
        if not 0 <= lifetime <= MAX_TOKEN_LIFETIME:
            raise usage.UsageError(
                f"--token-lifetime must be a number of seconds from 0 to "
                f"{MAX_TOKEN_LIFETIME:.0f}"
            )
        self["token-lifetime"] = lifetime
        self["connection-limits"] = self._connection_limits()
        self["plugin-options"] = {
            "presence": presence_settings_of(self),
            "chat": chat_settings_of(self),
        }
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
        window = seconds_option(self, "login-window", 1.0)
        delay = seconds_option(self, "login-failure-delay", 0.0)
        return LoginLimits(
            per_account=counts["login-failures-per-account"],
            per_source=counts["login-failures-per-source"],
            concurrent=counts["login-concurrent"],
            window=window,
            failure_delay=delay,
        )


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
