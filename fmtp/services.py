"""
The services one server shares between all its protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.cred.portal import Portal

from fmtp.accounts import SessionRegistry
from fmtp.connlimit import Connections, default_limits
from fmtp.interfaces import IDomainSigner, IKeyVerifier, IObjectStore
from fmtp.loginthrottle import LoginThrottle
from fmtp.ratelimit import LogLimiter
from fmtp.wire import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from fmtp.protocols.messaging import Federation


@dataclass
class SharedServices:
    """
    One of each shared service, built once by L{fmtp.tap.makeService} and
    handed to every L{fmtp.interfaces.IProtocolPlugin}.

    Plugins get everything they need from here rather than from globals, so
    a test builds a whole server around a L{twisted.internet.task.Clock}
    and a memory store.

    @ivar reactor: provides at least C{IReactorTime}; the real reactor in a
        server, a C{Clock} or C{MemoryReactorClock} in unit tests.
    @ivar store: provides L{IObjectStore} and L{fmtp.interfaces.IAccountStore}.
    """

    reactor: object
    domain: str
    store: IObjectStore
    keys: IKeyVerifier
    signer: IDomainSigner
    portal: Portal
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    login_throttle: LoginThrottle | None = None
    limits: Limits = DEFAULT_LIMITS
    #: Seconds a stream may sit idle between frames before it is closed.
    idle_timeout: float = 600.0
    #: Seconds a stream may take to finish a frame it has started.
    frame_timeout: float = 60.0
    #: The federation pieces; a protocol builds a local-only one when this
    #: is L{None}.
    federation: Federation | None = None
    #: The TLS context STARTTLS switches to, or L{None} if not offered.
    tls_context: object | None = None
    #: Seconds a stream may leave what the server wrote to it unread
    #: before it is closed.
    stall_timeout: float = 60.0
    #: The open streams of every stream listener, and their limits.
    connections: Connections | None = None
    #: Log lines about refused requests, per source across its streams:
    #: ten at once, then one a second.
    error_log_limiter: LogLimiter | None = None

    def __post_init__(self) -> None:
        if self.login_throttle is None:
            self.login_throttle = LoginThrottle(self.reactor)
        if self.connections is None:
            self.connections = Connections(default_limits(), self.reactor)
        if self.error_log_limiter is None:
            self.error_log_limiter = LogLimiter(self.reactor, rate=1.0, burst=10.0)
