"""
Subscriptions between users of two domains (doc/protocol.md 9.7): a
part of L{fmtp.protocols.presence.federation} kept apart for size.

A request, an approval, a denial or an unsubscription travels as a
signed object of type C{subscription} through the outbound queue
(retried, bounced), and DELIVER's checks prove it (its origin domain
signed it; its C{From} acts for itself only).  Each server keeps its own
copy of the links that involve its users, and applies what arrives under
the same rules as a local request: the target's policy, the polite
block, the caps.  The last action applied between two users is kept, so
a replay, or an action overtaken by a newer one, is not applied again.
"""

from __future__ import annotations

from fmtp.delivery import RecipientResult
from fmtp.errors import InvalidObject, TooManyRequests
from fmtp.objects import (
    FMTPObject,
    domain_of,
    new_object_id,
    normalize_address,
    parse_object_id,
)
from fmtp.protocols.presence.subscriptions import Outcome
from fmtp.store.presence import Link, PendingLimitReached

#: The object type of a subscription action between domains.
SUBSCRIPTION_TYPE = "subscription"
#: What a subscription object's C{Subscription} property may say.
REQUEST, APPROVE, DENY, UNSUBSCRIBE = "request", "approve", "deny", "unsubscribe"
ACTIONS = frozenset({REQUEST, APPROVE, DENY, UNSUBSCRIBE})


class SubscriptionActions:
    """
    The subscription actions of L{fmtp.protocols.presence.federation.
    PresenceFederation}, which uses its C{_service}, C{_store},
    C{_clock}, C{_links}, C{_signer}, C{_peer_rate}, C{_log},
    C{_log_limiter}, C{_acting}, C{_followed} and C{probe}.
    """

    async def send_action(self, actor: str, other: str, action: str) -> None:
        """
        Tell C{other}'s domain, durably, that local C{actor} did C{action}
        to the subscription between them.
        """
        now = self._clock.seconds()
        properties = {"From": actor, "To": other, "Subscription": action}
        obj = FMTPObject(new_object_id(actor, now), SUBSCRIPTION_TYPE, properties)
        await self._links.enqueue(self._signer.sign_object(obj, now), [other])

    async def _receive_action(
        self, obj: FMTPObject, recipients: list[str], origin: str
    ) -> list[RecipientResult]:
        """
        A subscription object another domain delivered, its origin proved:
        apply it as the same action by a local user would be.
        """
        action = obj.properties.get("Subscription", "")
        if action not in ACTIONS:
            raise InvalidObject(f"bad Subscription {action[:40]!r}")
        if "From" not in obj.properties:
            raise InvalidObject("a subscription names its From")
        if len(recipients) != 1:
            raise InvalidObject("a subscription is to one user")
        if not self._peer_rate.allow(origin):
            self._log_limiter.emit(
                self._log,
                origin,
                "Presence: too many subscription actions from {origin}",
                level="warn",
                origin=origin,
            )
            raise TooManyRequests("too many subscription actions, slow down")
        actor = normalize_address(obj.properties["From"])
        [user] = recipients
        pair = (actor, user)
        if pair in self._acting:
            # One action of a pair at a time: its retry comes after.
            raise TooManyRequests("an action of this pair is under way, try later")
        self._acting.add(pair)
        try:
            ms, _ = parse_object_id(obj.id)
            last = await self._store.last_action(actor, user)
            if last is not None and (ms < last[0] or obj.id == last[1]):
                # The last applied again (a relay that carried it, a retry
                # after a lost acknowledgement), or one it overtook:
                # applied again, a request would be put to a user who
                # denied it since.
                self._log.info(
                    "Presence: {action} from {actor} to {user} is the last "
                    "applied or older: ignored",
                    action=action,
                    actor=actor,
                    user=user,
                )
            else:
                # Recorded once applied: one that fails is retried, and
                # its retry is no replay.
                await self._apply_action(action, actor, user)
                await self._store.record_action(actor, user, ms, obj.id)
        finally:
            self._acting.discard(pair)
        return [RecipientResult(user, 250, "subscription taken")]

    async def _apply_action(self, action: str, actor: str, user: str) -> None:
        """
        Do what remote C{actor} did to the subscription with local C{user}.
        """
        if action == REQUEST:
            await self._requested(actor, user)
        elif action == UNSUBSCRIBE:
            await self._store.unsubscribe(actor, user)
        elif action == APPROVE:
            await self._approved(actor, user)
        else:
            await self._denied(actor, user)

    async def _requested(self, subscriber: str, target: str) -> None:
        """
        A remote user asks to see a local one: under the target's policy
        and caps, exactly as a local request; answered by an approval only
        if the target approves (or approved before).

        @raise TooManyRequests: past the subscriber's rate, and
            L{PendingLimitReached} past their cap (both 429).
        """
        service = self._service
        try:
            _, outcome = await service.subscriptions.request(subscriber, target)
        except (PendingLimitReached, TooManyRequests) as e:
            # Refused for now (429), never taken and dropped: the
            # subscriber's queue tries again.  Both are the subscriber's
            # own limits, so the answer says nothing of the target.
            self._log.info(
                "Presence: request from {subscriber} to {target} refused for "
                "now: {why}",
                subscriber=subscriber,
                target=target,
                why=e.message,
            )
            raise
        service.requested(subscriber, target, outcome)
        if outcome is Outcome.APPROVED:
            await self.send_action(target, subscriber, APPROVE)

    async def _approved(self, target: str, subscriber: str) -> None:
        """
        A remote user approved a local user's request: only one the local
        user made, still waiting (nobody is subscribed unasked).
        """
        subscription = await self._store.subscription(subscriber, target)
        if subscription.outbound not in (Link.PENDING, Link.HIDDEN):
            self._log.info(
                "Presence: {target} approved {subscriber}, who is not waiting: ignored",
                target=target,
                subscriber=subscriber,
            )
            return
        await self._store.approve_subscription(
            target, subscriber, self._clock.seconds()
        )
        self._followed.add(domain_of(target))
        await self._service.tell_subscriber(subscriber, target)
        self.probe(domain_of(target), [target])

    async def _denied(self, target: str, subscriber: str) -> None:
        if await self._store.deny_subscription(target, subscriber):
            await self._service.tell_subscriber(subscriber, target)
