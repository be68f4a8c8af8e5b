"""
The services one server shares between all its protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.cred.portal import Portal

from fmtp.auth.presence import PresenceDirectory
from fmtp.auth.router import Router
from fmtp.connlimit import Connections, default_limits
from fmtp.interfaces import IDomainSigner, IKeyVerifier, IObjectStore, IRouter
from fmtp.loginthrottle import LoginThrottle
from fmtp.ratelimit import LogLimiter
from fmtp.wire import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from fmtp.auth.tokens import ResumptionTokens
    from fmtp.federation.api import ServerLinks


@dataclass(frozen=True)
class SharedServices:
    """
    One of each shared service, built once by L{fmtp.server.build_server} and
    handed to every L{fmtp.interfaces.IProtocolPlugin}.

    Plugins get everything they need from here rather than from globals, so
    a test builds a whole server around a L{twisted.internet.task.Clock}
    and a memory store.  It is frozen: a service is chosen once, when the
    server is built (C{dataclasses.replace} makes a server's variant).

    @ivar reactor: provides at least C{IReactorTime}; the real reactor in a
        server, a C{Clock} or C{MemoryReactorClock} in unit tests.
    @ivar store: provides L{IObjectStore}, L{fmtp.interfaces.IAccountStore}
        and L{fmtp.interfaces.IDeliveryStore}.
    @ivar router: the live sessions, and the events routed to them.
    """

    reactor: Any
    domain: str
    store: IObjectStore
    keys: IKeyVerifier
    signer: IDomainSigner
    portal: Portal
    router: IRouter = None  # type: ignore[assignment]
    login_throttle: LoginThrottle = None  # type: ignore[assignment]
    limits: Limits = DEFAULT_LIMITS
    #: Seconds a stream may sit idle between frames before it is closed.
    idle_timeout: float = 600.0
    #: Seconds a stream may take to finish a frame it has started.
    frame_timeout: float = 60.0
    #: This server's links to other domains (and the receiver and sender
    #: of messages built on them).
    links: ServerLinks = None  # type: ignore[assignment]
    #: The TLS context STARTTLS switches to, or L{None} if not offered.
    tls_context: object | None = None
    #: Seconds a stream may leave what the server wrote to it unread
    #: before it is closed.
    stall_timeout: float = 60.0
    #: Resumption tokens (L{fmtp.auth.tokens}), or L{None} if not offered;
    #: the portal must have them as a checker.
    tokens: ResumptionTokens | None = None
    #: The open streams of every stream listener, and their limits.
    connections: Connections = None  # type: ignore[assignment]
    #: Log lines about refused requests, per source across its streams:
    #: ten at once, then one a second.
    error_log_limiter: LogLimiter = None  # type: ignore[assignment]
    #: What a user may see of another's presence, for the protocols other
    #: than presence (the presence plugin registers its service here).
    presence: PresenceDirectory = field(
        default_factory=PresenceDirectory, repr=False, compare=False
    )
    #: Each protocol plugin's own settings, by plugin name, from the
    #: server's options (C{--presence-grace}...): a plugin reads its own
    #: entry, and uses its defaults without one.
    plugin_options: Mapping[str, Any] = field(default_factory=dict)
    #: Each protocol's commands, built once per server by its plugin
    #: (a variant made with C{replace} builds its own).
    protocol_handlers: dict[str, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Defaults that need the clock; set on the frozen instance once.
        defaults = {
            "router": lambda: Router(self.reactor),
            "login_throttle": lambda: LoginThrottle(self.reactor),
            "connections": lambda: Connections(default_limits(), self.reactor),
            "error_log_limiter": lambda: LogLimiter(self.reactor, rate=1.0, burst=10.0),
        }
        for name, make in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, make())
