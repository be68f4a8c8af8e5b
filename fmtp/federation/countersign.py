"""
The countersign (DESIGN decision 4; doc/protocol.md 8.5): before filing a
message, ask the domain it claims to come from whether it really sent it.

This is the only proof available for a domain that publishes no key, and
an extra one for any other.  Its strength is entirely in where the
question goes: to the origin domain's own server as DNS names it, never to
the address the message came from (which is whoever handed it to us), a
route a payload named, or a parent relay (whose yes would prove nothing
about the origin).  That is why L{Countersigner.confirm} takes a domain,
and asks the pool for a link fit for it (L{LinkPool.confirm_link}).

A domain without a key cannot sign its HELLO answer either, so such a link
is accepted here, and only here: the question "did you send this id with
this digest?" reveals nothing the asker does not hold already, and a yes
is believed because of the DNS route, not the handshake.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from fmtp.delivery import sender_of
from fmtp.errors import FMTPError
from fmtp.federation.pool import LinkPool
from fmtp.interfaces import IDeliveryStore
from fmtp.objects import FMTPObject, domain_of


async def vouches_for(
    store: IDeliveryStore, domain: str, asker: str, object_id: str, digest: str
) -> bool:
    """
    Whether this server (of C{domain}) can answer yes to C{asker}'s
    CONFIRM: it queued exactly this object (id and digest) for the
    asker's domain, and the object is one of its own users' (not a child's
    message it relayed).  Whatever a user merely stored, or another server
    delivered here, is never vouched for (DESIGN decision 15).
    """
    if not await store.was_sent(object_id, asker, digest):
        return False
    obj = await store.get_object(object_id)
    return obj is not None and domain_of(sender_of(obj)) == domain


class CountersignUnavailable(FMTPError):
    code = 451
    default_message = "cannot ask the origin to confirm now, try later"


class Countersigner:
    """
    Asks origin domains to confirm messages, over the server's link pool.

    An instance is the C{countersign} callable of
    L{fmtp.federation.inbound.DeliveryReceiver}.
    """

    _log = Logger()

    def __init__(self, pool: LinkPool) -> None:
        self._pool = pool

    async def confirm(self, domain: str, obj: FMTPObject) -> bool:
        """
        Ask C{domain}'s server whether it sent C{obj} (its id and digest).

        @return: C{True} only for a yes; C{False} for a no, or when the
            origin cannot confirm at all (no route, a permanent refusal):
            an unconfirmed message is not accepted.
        @raise CountersignUnavailable: when the origin could not be asked
            now (down, DNS failing), so the receiver answers "try later"
            and the sender retries, rather than refusing for good.
        """
        try:
            digest = obj.digest()
            link = await self._pool.confirm_link(domain)
            confirmed = await link.confirm(obj.id, digest)
        except CancelledError:
            raise
        except FMTPError as e:
            self._log.info(
                "Could not ask {domain} to confirm {id}: {error}",
                domain=domain,
                id=obj.id,
                error=e.message,
            )
            if 400 <= e.code < 500:
                raise CountersignUnavailable(
                    f"cannot ask {domain} to confirm now ({e.message}); try later"
                ) from None
            return False
        except Exception:
            self._log.failure(
                "Unexpected error asking {domain} to confirm {id}",
                domain=domain,
                id=obj.id,
            )
            return False
        if not confirmed:
            self._log.info(
                "{domain} does not confirm sending {id}", domain=domain, id=obj.id
            )
        return confirmed

    __call__ = confirm
