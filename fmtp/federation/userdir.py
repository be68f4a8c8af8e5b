"""
Users of other domains, as the FMTP draft's route negotiation finds them:
their public user objects (for a C{Route}), fetched through the link pool
and kept a while, and delivery that tries a recipient's own route first.

A user object is looked up in this server's cache, then the parent's
cache, then at the user's domain, then (when the domain cannot be reached
directly) by the parent.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from fmtp.delivery import QueuedDelivery, RecipientResult
from fmtp.federation.failures import LinkError
from fmtp.federation.link import normal_address
from fmtp.federation.pool import LinkPool
from fmtp.objects import USER_TYPE, FMTPObject, domain_of, normalize_address
from fmtp.util.ttlcache import TTLCache

#: The longest a fetched user object is kept, whatever its C{Ttl} says.
MAX_USER_TTL = 86400.0


class RemoteUsers:
    """
    The user objects of other domains this server has fetched, and how to
    fetch more, over C{pool}.

    @param clock: decides when a cached object is stale.
    @param user_ttl: seconds a fetched user object is kept when it says
        nothing (its C{Ttl} property, at most L{MAX_USER_TTL}, wins).
    @param max_users: most user objects kept; the least recently used go
        first.
    """

    _log = Logger()

    def __init__(
        self,
        pool: LinkPool,
        clock: Any,
        user_ttl: float = 300.0,
        max_users: int = 10_000,
    ) -> None:
        self._pool = pool
        self._user_ttl = user_ttl
        self._users: TTLCache[str, FMTPObject | None] = TTLCache(clock, max_users)

    async def remote_user(self, address: str) -> FMTPObject | None:
        """
        The public profile of a user of another domain (for its C{Route}),
        found as the FMTP draft's route negotiation says: this server's
        cache, then the parent's cache, then the user's domain, then (when
        the domain cannot be reached directly) a lookup by the parent.
        Kept for the object's C{Ttl} property (seconds, at most a day), or
        C{user_ttl}.

        @return: the user object, or L{None} if there is no such user.
        @raise LinkError: if neither the domain nor the parent can be asked
            now.
        """
        address = normalize_address(address)
        cached = self.cached_user(address)
        if cached is not None or address in self._users:
            return cached
        return await self._pool.attempts.run(
            ("user", address), lambda: self._fetch_user(address)
        )

    def cached_user(self, address: str) -> FMTPObject | None:
        """
        The user object this server holds for C{address}, if still fresh;
        never asks anyone (what a parent answers a C{Cache-Only} GET with).
        """
        return self._users.get(normal_address(address))

    def forget_user(self, address: str) -> None:
        """
        Drop a cached user object (say, after its route failed).
        """
        self._users.pop(normal_address(address))

    async def _from_parent_cache(self, address: str) -> FMTPObject | None:
        """
        What the parent holds for C{address}, without making it look
        anything up; L{None} when there is no parent, it holds nothing, or
        it cannot be asked (the domain is asked instead).
        """
        if self._pool.parent is None:
            return None
        try:
            link = await self._pool.link_to_parent()
            return await link.get_with(address, {"Cache-Only": "yes"})
        except LinkError as e:
            self._log.info(
                "Parent cache not asked for {address}: {why}",
                address=address,
                why=e.message,
            )
            return None

    def _ttl_of(self, obj: FMTPObject | None) -> float:
        ttl = obj.properties.get("Ttl", "") if obj is not None else ""
        if ttl.isascii() and ttl.isdigit():
            return min(float(ttl), MAX_USER_TTL)
        return self._user_ttl

    async def _fetch_user(self, address: str) -> FMTPObject | None:
        domain = domain_of(address)
        obj = await self._from_parent_cache(address)
        if obj is None:
            link = await self._pool.link_to(domain)
            # Through the parent when the domain cannot be reached directly:
            # the parent looks the object up for us.
            obj = await link.get(address)
        if obj is not None and (obj.id != address or obj.type != USER_TYPE):
            self._log.warn(
                "{domain} answered GET {address} with {id} of type {type}; ignored",
                domain=domain,
                address=address,
                id=obj.id,
                type=obj.type,
            )
            obj = None
        self._users.set(address, obj, self._ttl_of(obj))
        return obj

    async def lookup(self, address: str, cache_only: bool) -> FMTPObject | None:
        """
        What a parent answers a child's GET of another domain's user:
        with C{cache_only}, only what it holds (L{cached_user}); else
        L{remote_user}.
        """
        if cache_only:
            return self.cached_user(address)
        return await self.remote_user(address)

    async def deliver(
        self, delivery: QueuedDelivery, obj: FMTPObject
    ) -> list[RecipientResult]:
        """
        Deliver one queue row on a pooled link (the outbound queue's
        C{deliver}): for a single recipient, through its own C{Route}
        first when its user object names one, as the draft's route
        negotiation says; for several, through their domain's server.
        """
        hint = None
        if len(delivery.recipients) == 1:
            try:
                user = await self.remote_user(delivery.recipients[0])
            except LinkError:
                user = None
            hint = user.properties.get("Route") if user is not None else None
        return await self._pool.deliver(
            delivery.domain, obj, delivery.recipients, route_hint=hint
        )
