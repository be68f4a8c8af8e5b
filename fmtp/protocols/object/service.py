"""
What the object protocol does, apart from any socket: who may read, write,
delete and list which objects.

Protocols turn frames into calls here and results into frames; keeping the
rules in one plain class means TCP, UDP and later the server link enforce
exactly the same ones, and tests check them without a transport.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorTime

from fmtp import attachments
from fmtp.access import check_from, link_to_parent, readable
from fmtp.errors import Forbidden, InvalidObject, NotFound
from fmtp.interfaces import IDeliveryStore, IPresenceView
from fmtp.objects import (
    USER_TYPE,
    FMTPObject,
    ObjectSummary,
    check_property_names,
    check_type,
    new_object_id,
    normalize_address,
    parse_object_id,
)

if TYPE_CHECKING:
    from fmtp.store.sql.readcache import CachedObject, PublicObjectCache

#: The user object's properties that are its user's live presence: shown
#: from the presence protocol (doc/protocol.md 9.2), never stored.
PRESENCE_PROPERTIES = frozenset({"Status", "Status-Note"})

#: The largest page a LIST may ask for.
MAX_LIST_LIMIT = 200
DEFAULT_LIST_LIMIT = 50


@dataclass(frozen=True, slots=True)
class Page:
    """
    One page of a listing, and where the next one starts (L{None} at the
    end).
    """

    items: list[ObjectSummary]
    next_start: int | None


class ObjectService:
    """
    The rules of the object protocol over an L{IDeliveryStore}: who may
    read, write and delete what (DESIGN decision 15).

    A user writes only objects they own, and never with someone else's
    C{From}.  An object once sent or filed for a recipient is sealed by
    the store: nobody changes it, its owner's DELETE only takes it out of
    the owner's view, and each recipient removes it from their own inbox.

    C{viewer} arguments are the logged-in address, or L{None} for an
    anonymous request (a datagram, or a stream before LOGIN).
    """

    def __init__(
        self,
        store: IDeliveryStore,
        clock: IReactorTime,
        presence: IPresenceView | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._presence = presence
        # A store that caches the public objects it read (the SQLite
        # store's L{fmtp.store.sql.readcache}) answers GETs of them here.
        self._cache: PublicObjectCache | None = getattr(store, "public_objects", None)

    def cached(self, object_id: str) -> CachedObject | None:
        """
        The object of id C{object_id} if the store's read cache holds it:
        one every reader may read alike, so it needs no viewer.
        """
        cache = self._cache
        if cache is None:
            return None
        return cache.get(object_id)

    async def get(self, viewer: str | None, object_id: str) -> FMTPObject:
        """
        Fetch an object as C{viewer} may see it.

        An object the viewer may not read is reported exactly as a missing
        one, so requests cannot probe for private objects.

        @raise NotFound: if it does not exist or is not visible.
        """
        hit = self.cached(object_id)
        if hit is not None:
            return hit.obj
        parse_object_id(object_id)
        found = await self._store.read_object(object_id, viewer)
        obj = readable(viewer, found)
        if obj is None:
            raise NotFound()
        if obj.type == USER_TYPE:
            return await self._with_presence(viewer, obj)
        return obj

    async def _with_presence(self, viewer: str | None, user: FMTPObject) -> FMTPObject:
        """
        A user object with the user's live presence (C{Status}, and
        C{Status-Note} if there is one) for those who may see it: the user
        and their approved subscribers (L{IPresenceView}); anybody else
        sees neither property, whatever was stored.
        """
        properties = {
            k: v for k, v in user.properties.items() if k not in PRESENCE_PROPERTIES
        }
        shown = None
        if viewer is not None and self._presence is not None:
            shown = await self._presence.shown_to(viewer, user.id)
        if shown is not None:
            properties["Status"] = shown.status
            if shown.note:
                properties["Status-Note"] = shown.note
        return FMTPObject(user.id, user.type, properties, user.body)

    async def put(
        self, user: str, headers: Mapping[str, str], body: bytes
    ) -> FMTPObject:
        """
        Store an object for C{user}, who may only write their own, under
        their own name: a C{From} other than C{user} is refused, so no
        object a user stores can pass for another's.

        Without an C{Id} the object gets a new one.  A reply in a thread
        whose parent is held here has its C{Parent-Digest} checked (or
        filled in) and its C{Top} filled in, so the stored thread is a
        verified hash chain.

        @return: the object as stored.
        @raise Forbidden: for another user's object or C{From}.
        @raise fmtp.errors.ObjectSealed: for an object already sent.
        @raise InvalidObject: for a malformed one.
        """
        properties = {k: v for k, v in headers.items() if k not in ("Id", "Type")}
        check_property_names(properties)
        if "Type" not in headers:
            raise InvalidObject("missing header: Type")
        object_type = check_type(headers["Type"])
        object_id = headers.get("Id") or new_object_id(user, self._clock.seconds())
        ms, owner = parse_object_id(object_id)
        if owner != user:
            raise Forbidden(
                f"{object_id} belongs to {owner}; you may only change your own objects"
            )
        if (ms is None) != (object_type == USER_TYPE):
            raise InvalidObject(
                "a user object's id is its address, and only a user object's is"
            )
        if object_type == USER_TYPE:
            properties["Address"] = user
            stored_presence = PRESENCE_PROPERTIES.intersection(properties)
            if stored_presence:
                raise InvalidObject(
                    f"{min(stored_presence)} is your live presence: set it with "
                    "STATUS on the presence protocol"
                )
        check_from(user, properties)
        attachments.check(properties, len(body))
        public = properties.get("Public")
        if public is not None and public.lower() not in ("yes", "no"):
            raise InvalidObject("Public must be yes or no")
        await link_to_parent(self._store, user, properties)
        obj = FMTPObject(object_id, object_type, properties, bytes(body))
        await self._store.put_object(obj)
        return obj

    async def delete(self, user: str, object_id: str) -> str:
        """
        Delete an object as C{user}: take it out of their inbox if it was
        filed there, and delete it if it is theirs.  A sent object stays
        for those who hold it (the store only hides it from its owner):
        nobody takes back what a recipient holds.

        @return: what was done, for the reply.
        @raise NotFound: if it does not exist or is not visible to C{user}.
        @raise Forbidden: if it is visible but neither C{user}'s nor in
            their inbox, or is the user object itself (which goes with its
            account).
        """
        parse_object_id(object_id)
        found = await self._store.read_object(object_id, user)
        obj = readable(user, found)
        if obj is None:
            raise NotFound()
        done = []
        if found.filed:
            await self._store.remove_from_inbox(user, object_id)
            done.append("removed from your inbox")
        if obj.owner == user and not found.removed:
            if obj.type == USER_TYPE:
                raise Forbidden("a user object is removed with its account")
            await self._store.delete_object(object_id)
            done.append("deleted")
        if not done:
            raise Forbidden("you may only delete your own objects")
        return " and ".join(done)

    async def list(
        self,
        viewer: str | None,
        start: int = 0,
        limit: int = DEFAULT_LIST_LIMIT,
        object_type: str | None = None,
        owner: str | None = None,
    ) -> Page:
        """
        List public objects, or all of the viewer's own when C{owner} is
        the viewer.

        @raise InvalidObject: for a negative start or a bad limit or type.
        """
        if start < 0 or not 0 < limit <= MAX_LIST_LIMIT:
            raise InvalidObject(f"Start must be >= 0 and Limit 1 to {MAX_LIST_LIMIT}")
        if object_type is not None:
            check_type(object_type)
        if owner is not None:
            owner = normalize_address(owner)
        mine = viewer is not None and owner == viewer
        items = await self._store.list_objects(
            start, limit + 1, type=object_type, owner=owner, public_only=not mine
        )
        if len(items) > limit:
            return Page(items[:limit], start + limit)
        return Page(items, None)
