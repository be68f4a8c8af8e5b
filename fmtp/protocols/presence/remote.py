"""
What this server knows of other domains' users' presence: held in memory
only, as their domains last said it, and C{unknown} when nobody can vouch
for it (doc/protocol.md 9.7).

A remote user's presence is heard from their own domain only: pushed
when it changes (C{PRESENCE}), or answered when this server asks
(C{PRESENCE-PROBE}), each time with the local users who may see it; any
other local subscriber sees them offline, as the user's own domain
decided (a polite block is the remote domain's to keep).  A user not
heard of since this server started, or whose domain has not been heard
from for C{timeout} seconds, is C{unknown}: never online for ever
because a domain went away.

This is a plain class on the injected clock; the federation glue
(L{fmtp.protocols.presence.federation}) feeds it and pushes what changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime

from fmtp.objects import domain_of
from fmtp.protocols.presence.status import NOTHING, UNKNOWN_SHOWN, Shown


@dataclass(frozen=True, slots=True)
class Heard:
    """
    A remote user's presence as their domain last said it, and the local
    users it may be shown to.
    """

    shown: Shown
    viewers: frozenset[str]


@dataclass(slots=True)
class _Domain:
    """
    One remote domain: when it was last heard from, and its users heard of.
    """

    heard_at: float
    users: dict[str, Heard] = field(default_factory=dict)


class RemotePresence:
    """
    The presence of other domains' users, as this server's users see it.

    @param timeout: seconds a domain not heard from keeps its users'
        presence; after that they are C{unknown}.
    """

    def __init__(self, clock: IReactorTime, timeout: float) -> None:
        self._clock = clock
        self.timeout = timeout
        self._domains: dict[str, _Domain] = {}

    def seen(self, viewer: str, contact: str) -> Shown:
        """
        What local C{viewer}, an approved subscriber of remote C{contact},
        sees of them.
        """
        domain = self._domains.get(domain_of(contact))
        heard = None if domain is None else domain.users.get(contact)
        if heard is None:
            return UNKNOWN_SHOWN
        return heard.shown if viewer in heard.viewers else NOTHING

    def heard_from(self, domain: str) -> None:
        """
        C{domain} answered or pushed: what it said before is still its word.
        """
        known = self._domains.get(domain)
        if known is None:
            self._domains[domain] = _Domain(self._clock.seconds())
        else:
            known.heard_at = self._clock.seconds()

    def knows(self, domain: str) -> bool:
        """
        Whether anything of C{domain}'s users is held: if not, its users
        are unknown, and it is worth asking.
        """
        known = self._domains.get(domain)
        return known is not None and bool(known.users)

    def set(self, contact: str, shown: Shown, viewers: frozenset[str]) -> None:
        """
        C{contact}'s domain says they show C{shown} to C{viewers} (and
        nothing to anybody else).
        """
        domain = domain_of(contact)
        self.heard_from(domain)
        self._domains[domain].users[contact] = Heard(shown, viewers)

    def stale_domains(self) -> list[str]:
        """
        The domains not heard from for longer than the timeout, whose
        users are held: their presence is forgotten (so C{unknown}) by
        L{drop}, and their local subscribers told.
        """
        before = self._clock.seconds() - self.timeout
        return [
            name
            for name, domain in self._domains.items()
            if domain.heard_at < before and domain.users
        ]

    def drop(self, domain: str) -> None:
        """
        Forget what C{domain} said: its users are C{unknown} until it says
        it again.
        """
        self._domains.pop(domain, None)
