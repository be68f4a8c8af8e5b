"""
The contract every store keeps, as one suite run against each of them.

A test module subclasses L{StoreConformance} and provides a C{store}
fixture that yields an opened store and closes it afterwards (see
C{tests/conformance/test_stores.py}).  A new store passes this suite
before it is used; a behaviour that only one store has is a bug in the
other, or belongs in a store-specific test.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from fmtp.errors import (
    AccountExists,
    InvalidObject,
    InvalidObjectId,
    StoreUnavailable,
)
from fmtp.interfaces import IAccountStore, IObjectStore
from fmtp.objects import FMTPObject, ObjectSummary

ALICE = "alice@example.com"
BOB = "bob@example.org"
#: A user part outside ASCII and a domain written as its IDNA A-label
#: (bücher.example), the normal form L{fmtp.objects.parse_object_id} wants.
JOSE = "josé@xn--bcher-kva.example"


def make(
    n: int,
    owner: str = ALICE,
    type: str = "post",
    public: bool = True,
    body: bytes = b"",
    **properties: str,
) -> FMTPObject:
    """
    An object with a distinct, valid id; C{n} is its timestamp.
    """
    props = dict(properties)
    if public:
        props["Public"] = "yes"
    return FMTPObject(f"{1700000000000 + n}.n{n}.{owner}", type, props, body)


def ids(summaries: list[ObjectSummary]) -> list[str]:
    return [s.id for s in summaries]


async def put_all(store, *objects: FMTPObject) -> None:
    for obj in objects:
        await store.put_object(obj)


class StoreConformance:
    """
    Tests every L{IObjectStore} and L{IAccountStore} must pass.

    Uses a C{store} fixture: an opened, empty store.
    """

    # Interfaces

    def test_provides_interfaces(self, store) -> None:
        assert verifyObject(IObjectStore, store)
        assert verifyObject(IAccountStore, store)

    # Put and get

    @pytest_twisted.ensureDeferred
    async def test_put_get_round_trip(self, store) -> None:
        obj = make(
            1,
            body=b"\x00binary\x00\xff\xfe body\r\n\x00",
            Subject="Hello",
            Parent="1699999999999.abc.bob@example.org",
        )
        assert await store.put_object(obj) is None
        fetched = await store.get_object(obj.id)
        assert fetched == obj
        assert type(fetched.body) is bytes

    @pytest_twisted.ensureDeferred
    async def test_unicode_round_trip(self, store) -> None:
        obj = make(
            1,
            owner=JOSE,
            body="¡olé! 世界 🎉".encode(),
            Subject="Grüße aus Köln — 世界 🎉",
            Given_Name="Zoë",
            Note='quotes " and \\ backslash, \t tab',
        )
        await store.put_object(obj)
        assert await store.get_object(obj.id) == obj

    @pytest_twisted.ensureDeferred
    async def test_empty_body_and_no_properties(self, store) -> None:
        obj = FMTPObject(ALICE, "user")
        await store.put_object(obj)
        fetched = await store.get_object(ALICE)
        assert fetched == FMTPObject(ALICE, "user", {}, b"")
        assert type(fetched.body) is bytes

    @pytest_twisted.ensureDeferred
    async def test_large_body(self, store) -> None:
        body = bytes(range(256)) * 4096
        obj = make(1, body=body)
        await store.put_object(obj)
        assert (await store.get_object(obj.id)).body == body

    @pytest_twisted.ensureDeferred
    async def test_get_missing(self, store) -> None:
        assert await store.get_object(make(1).id) is None
        assert await store.get_object("not an id at all") is None

    @pytest_twisted.ensureDeferred
    async def test_put_bad_id(self, store) -> None:
        """
        A store files objects by owner, so an id that names none is refused.
        """
        with pytest.raises(InvalidObjectId):
            await store.put_object(FMTPObject("1.x.not-an-address", "post"))
        assert await store.list_objects(0, 10, public_only=False) == []

    @pytest_twisted.ensureDeferred
    async def test_put_unhashable_object(self, store) -> None:
        """
        A store keeps each object's digest for listings, so an object that
        has none (a value with a line break) is refused, and not stored.
        """
        obj = make(1, Subject="two\nlines")
        with pytest.raises(InvalidObject):
            await store.put_object(obj)
        assert await store.get_object(obj.id) is None

    # Replace and delete

    @pytest_twisted.ensureDeferred
    async def test_replace_changes_content_keeps_place(self, store) -> None:
        first, second, third = make(1), make(2), make(3)
        await put_all(store, first, second, third)
        replacement = FMTPObject(
            first.id, "message", {"Public": "yes", "Subject": "new"}, b"new body"
        )
        await store.put_object(replacement)

        assert await store.get_object(first.id) == replacement
        listing = await store.list_objects(0, 10)
        assert ids(listing) == [first.id, second.id, third.id]
        assert listing[0] == ObjectSummary(first.id, "message", replacement.digest())

    @pytest_twisted.ensureDeferred
    async def test_replace_can_make_private(self, store) -> None:
        obj = make(1)
        await store.put_object(obj)
        await store.put_object(make(1, public=False))
        assert await store.list_objects(0, 10) == []
        assert ids(await store.list_objects(0, 10, public_only=False)) == [obj.id]

    @pytest_twisted.ensureDeferred
    async def test_delete(self, store) -> None:
        obj, other = make(1), make(2)
        await put_all(store, obj, other)
        assert await store.delete_object(obj.id) is True
        assert await store.get_object(obj.id) is None
        assert await store.delete_object(obj.id) is False
        assert await store.delete_object(make(99).id) is False
        assert await store.get_object(other.id) == other
        assert ids(await store.list_objects(0, 10)) == [other.id]

    @pytest_twisted.ensureDeferred
    async def test_deleted_then_stored_again_goes_last(self, store) -> None:
        """
        Listings follow first storage; an object stored again after a
        delete is new.
        """
        first, second = make(1), make(2)
        await put_all(store, first, second)
        await store.delete_object(first.id)
        await store.put_object(first)
        assert ids(await store.list_objects(0, 10)) == [second.id, first.id]

    # Listing

    @pytest_twisted.ensureDeferred
    async def test_list_empty(self, store) -> None:
        assert await store.list_objects(0, 10) == []
        assert await store.list_objects(0, 10, public_only=False) == []

    @pytest_twisted.ensureDeferred
    async def test_list_order_is_storage_order(self, store) -> None:
        """
        Not id order, nor timestamp order: the order of first storage.
        """
        objects = [make(5), make(1), make(9, owner=BOB), make(3)]
        await put_all(store, *objects)
        listing = await store.list_objects(0, 10)
        assert listing == [obj.summary() for obj in objects]
        assert all(type(s) is ObjectSummary for s in listing)

    @pytest_twisted.ensureDeferred
    async def test_list_public_only(self, store) -> None:
        public = make(1)
        private = make(2, public=False)
        shouted = make(3, public=False, Public=" YES ")
        declined = make(4, public=False, Public="no")
        await put_all(store, public, private, shouted, declined)

        assert ids(await store.list_objects(0, 10)) == [public.id, shouted.id]
        assert ids(await store.list_objects(0, 10, public_only=True)) == [
            public.id,
            shouted.id,
        ]
        assert ids(await store.list_objects(0, 10, public_only=False)) == [
            public.id,
            private.id,
            shouted.id,
            declined.id,
        ]

    @pytest_twisted.ensureDeferred
    async def test_list_by_type(self, store) -> None:
        post1, message, post2 = make(1), make(2, type="message"), make(3)
        await put_all(store, post1, message, post2)
        assert ids(await store.list_objects(0, 10, type="post")) == [
            post1.id,
            post2.id,
        ]
        assert ids(await store.list_objects(0, 10, type="message")) == [message.id]
        assert await store.list_objects(0, 10, type="room") == []

    @pytest_twisted.ensureDeferred
    async def test_list_by_owner(self, store) -> None:
        alice1, bob, jose, alice2 = make(1), make(2, BOB), make(3, JOSE), make(4)
        user = FMTPObject(ALICE, "user", {"Public": "yes"})
        await put_all(store, alice1, bob, jose, alice2, user)
        assert ids(await store.list_objects(0, 10, owner=ALICE)) == [
            alice1.id,
            alice2.id,
            ALICE,
        ]
        assert ids(await store.list_objects(0, 10, owner=BOB)) == [bob.id]
        assert ids(await store.list_objects(0, 10, owner=JOSE)) == [jose.id]
        assert await store.list_objects(0, 10, owner="carol@example.com") == []

    @pytest_twisted.ensureDeferred
    async def test_list_filters_combine(self, store) -> None:
        objects = {
            (owner, type, public): make(n, owner, type, public)
            for n, (owner, type, public) in enumerate(
                (owner, type, public)
                for owner in (ALICE, BOB)
                for type in ("post", "message")
                for public in (True, False)
            )
        }
        await put_all(store, *objects.values())
        for owner in (None, ALICE, BOB):
            for type in (None, "post", "message"):
                for public_only in (True, False):
                    expected = [
                        obj.id
                        for (o, t, p), obj in objects.items()
                        if (owner is None or o == owner)
                        and (type is None or t == type)
                        and (p or not public_only)
                    ]
                    listing = await store.list_objects(
                        0, 100, type=type, owner=owner, public_only=public_only
                    )
                    assert ids(listing) == expected, (owner, type, public_only)

    @pytest_twisted.ensureDeferred
    async def test_list_paging(self, store) -> None:
        objects = [make(n, public=n % 3 != 0) for n in range(10)]
        await put_all(store, *objects)
        public = [obj.id for obj in objects if obj.public]

        pages = []
        for start in range(0, 12, 2):
            pages += ids(await store.list_objects(start, 2))
        assert pages == public

        assert ids(await store.list_objects(1, 3)) == public[1:4]
        assert ids(await store.list_objects(len(public) - 1, 5)) == public[-1:]
        assert await store.list_objects(len(public), 5) == []
        assert await store.list_objects(1000, 5) == []
        assert ids(await store.list_objects(0, 2**64)) == public
        assert ids(await store.list_objects(2, 2, public_only=False)) == [
            objects[2].id,
            objects[3].id,
        ]

    @pytest_twisted.ensureDeferred
    async def test_list_limit_zero(self, store) -> None:
        await store.put_object(make(1))
        assert await store.list_objects(0, 0) == []

    @pytest.mark.parametrize(
        "start, limit", [(-1, 10), (0, -1), (1.5, 10), (0, "10"), (True, 10), (0, None)]
    )
    @pytest_twisted.ensureDeferred
    async def test_list_bad_page(self, store, start, limit) -> None:
        with pytest.raises(ValueError):
            await store.list_objects(start, limit)

    # Copies, not aliases

    @pytest_twisted.ensureDeferred
    async def test_caller_changes_after_put_do_not_leak(self, store) -> None:
        body = bytearray(b"original")
        obj = FMTPObject(make(1).id, "post", {"Public": "yes"}, body)
        await store.put_object(obj)
        obj.properties["Public"] = "no"
        obj.properties["Added"] = "later"
        obj.type = "message"
        body[:] = b"changed!"

        fetched = await store.get_object(obj.id)
        assert fetched == FMTPObject(obj.id, "post", {"Public": "yes"}, b"original")

    @pytest_twisted.ensureDeferred
    async def test_fetched_objects_are_copies(self, store) -> None:
        obj = make(1, Subject="hi")
        await store.put_object(obj)
        fetched = await store.get_object(obj.id)
        fetched.properties["Subject"] = "changed"
        fetched.body = b"changed"
        again = await store.get_object(obj.id)
        assert again == obj
        assert again is not fetched
        assert again.properties is not fetched.properties

    # Accounts

    @pytest_twisted.ensureDeferred
    async def test_add_and_get_account(self, store) -> None:
        assert await store.get_password_hash(ALICE) is None
        assert await store.add_account(ALICE, "hash-1") is None
        await store.add_account(JOSE, "hash-2")
        assert await store.get_password_hash(ALICE) == "hash-1"
        assert await store.get_password_hash(JOSE) == "hash-2"
        assert await store.get_password_hash(BOB) is None

    @pytest_twisted.ensureDeferred
    async def test_add_duplicate_account(self, store) -> None:
        await store.add_account(ALICE, "hash-1")
        with pytest.raises(AccountExists):
            await store.add_account(ALICE, "hash-2")
        assert await store.get_password_hash(ALICE) == "hash-1"

    @pytest_twisted.ensureDeferred
    async def test_set_password_hash(self, store) -> None:
        await store.add_account(ALICE, "hash-1")
        assert await store.set_password_hash(ALICE, "hash-2") is True
        assert await store.get_password_hash(ALICE) == "hash-2"
        assert await store.set_password_hash(BOB, "hash-3") is False
        assert await store.get_password_hash(BOB) is None

    @pytest_twisted.ensureDeferred
    async def test_accounts_and_objects_are_separate(self, store) -> None:
        """
        An account is not a user object; creating one is the caller's job.
        """
        await store.add_account(ALICE, "hash-1")
        assert await store.get_object(ALICE) is None
        await store.put_object(FMTPObject(BOB, "user"))
        assert await store.get_password_hash(BOB) is None

    @pytest_twisted.ensureDeferred
    async def test_list_accounts(self, store) -> None:
        assert await store.list_accounts() == []
        for address in (JOSE, BOB, ALICE):
            await store.add_account(address, "hash")
        assert await store.list_accounts() == sorted([ALICE, BOB, JOSE])

    @pytest_twisted.ensureDeferred
    async def test_delete_account(self, store) -> None:
        """
        The account, its user object and its drafts go, so that the
        address can be given again without handing over anything of the
        old account; other accounts keep theirs.
        """
        await store.add_account(ALICE, "hash-1")
        await store.add_account(BOB, "hash-2")
        alice_post, bob_post = make(1), make(2, owner=BOB)
        await put_all(store, FMTPObject(ALICE, "user"), alice_post, bob_post)

        assert await store.delete_account(ALICE) is True
        assert await store.get_password_hash(ALICE) is None
        assert await store.get_object(ALICE) is None
        assert await store.get_object(alice_post.id) is None
        assert ids(await store.list_objects(0, 10)) == [bob_post.id]
        assert await store.list_accounts() == [BOB]
        assert await store.get_password_hash(BOB) == "hash-2"

        assert await store.delete_account(ALICE) is False
        assert await store.delete_account("nobody@example.com") is False
        await store.add_account(ALICE, "hash-3")
        assert await store.get_password_hash(ALICE) == "hash-3"

    # Closing

    @pytest_twisted.ensureDeferred
    async def test_calls_after_close_fail(self, store) -> None:
        await store.put_object(make(1))
        await store.close()
        await store.close()  # Closing twice is harmless.
        calls = [
            lambda: store.put_object(make(2)),
            lambda: store.get_object(make(1).id),
            lambda: store.delete_object(make(1).id),
            lambda: store.list_objects(0, 10),
            lambda: store.add_account(ALICE, "hash"),
            lambda: store.set_password_hash(ALICE, "hash"),
            lambda: store.get_password_hash(ALICE),
            lambda: store.list_accounts(),
            lambda: store.delete_account(ALICE),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable):
                await call()
