"""
Who may read what, and the thread links that depend on it (DESIGN
decisions 2, 10 and 15): the rules that the object commands and the
sending of messages share, apart from any protocol.

A user reads their own objects whole, other users' public profiles,
public objects, and messages addressed to them; what was filed in their
inbox is theirs to read whatever its sender did since, and what an owner
removed is shown to nobody else.  A reply to a parent the user can read
names that parent's digest, so a thread is a verified hash chain.
"""

from __future__ import annotations

from fmtp.delivery import StoredObject
from fmtp.errors import Forbidden, InvalidAddress, InvalidObject
from fmtp.interfaces import IDeliveryStore
from fmtp.objects import (
    MESSAGE_TYPE,
    USER_TYPE,
    FMTPObject,
    addresses_in,
    normalize_address,
    parse_object_id,
)


def visible(viewer: str | None, obj: FMTPObject) -> FMTPObject | None:
    """
    C{obj} as C{viewer} (an address, or L{None} when anonymous) may see
    it, or L{None}: of another user's user object, its public profile.
    """
    if viewer is not None and viewer == obj.owner:
        return obj
    if obj.type == USER_TYPE:
        return obj.public_view()
    if obj.public:
        return obj
    if (
        viewer is not None
        and obj.type == MESSAGE_TYPE
        and viewer in addresses_in(obj.properties.get("To", ""))
    ):
        return obj
    return None


def readable(viewer: str | None, found: StoredObject | None) -> FMTPObject | None:
    """
    A stored object as C{viewer} may read it, or L{None}.
    """
    if found is None:
        return None
    if found.filed:
        return found.obj
    if found.removed:
        return None
    return visible(viewer, found.obj)


async def link_to_parent(
    store: IDeliveryStore, user: str, properties: dict[str, str]
) -> None:
    """
    Check or fill in C{Parent-Digest} and C{Top} of an object that answers
    a parent held here, so the stored thread is a hash chain.

    @raise InvalidObject: for a C{Parent-Digest} without C{Parent}.
    @raise Forbidden: if C{Parent-Digest} does not match the parent.
    """
    parent_id = properties.get("Parent")
    if parent_id is None:
        if "Parent-Digest" in properties:
            raise InvalidObject("Parent-Digest without Parent")
        return
    parse_object_id(parent_id)
    if "Top" in properties:
        parse_object_id(properties["Top"])
    parent = readable(user, await store.read_object(parent_id, user))
    if parent is None:
        # A parent held elsewhere (another domain), or not visible to the
        # user, is checked by whoever holds it; here the digest is carried
        # as given.
        return
    digest = parent.digest()
    claimed = properties.setdefault("Parent-Digest", digest)
    if claimed.lower() != digest:
        raise Forbidden(f"Parent-Digest does not match {parent_id}")
    properties.setdefault("Top", parent.properties.get("Top", parent.id))


def check_from(owner: str, properties: dict[str, str]) -> None:
    """
    Refuse a C{From} that is not C{owner}'s own address: the one rule that
    keeps a user from storing or sending an object that passes for
    another's (DESIGN decision 15).

    @raise Forbidden: naming both addresses.
    """
    claimed = properties.get("From")
    if claimed is None:
        return
    try:
        sender = normalize_address(claimed)
    except InvalidAddress:
        sender = claimed
    if sender != owner:
        raise Forbidden(f"From must be your own address, {owner}, not {claimed}")
