"""
The contract every L{IRoomStore} keeps, as one suite run against each
store.

A test module subclasses L{RoomConformance} and provides two fixtures
(see C{tests/conformance/test_stores.py}):

  - C{store}: an opened, empty store, closed afterwards;
  - C{reopen}: an async function that closes C{store} and returns the
    same data opened again as a store (for a file store, a new store
    object on the same file, as after a restart), closed afterwards.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList
from zope.interface.verify import verifyObject

from fmtp.errors import NotFound, ObjectSealed, StoreUnavailable
from fmtp.interfaces import IRoomStore
from fmtp.objects import FMTPObject
from fmtp.store.rooms import (
    EMPTY_HEAD,
    HistoryConflict,
    HistoryEntry,
    InvitationRequired,
    Member,
    MemberBanned,
    Role,
    Room,
    RoomConfig,
    RoomExists,
    RoomFull,
    RoomNotFound,
    verify_chain,
)

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"
#: A member of another domain: membership is kept for any address.
LOST = "lost@lenore.org"

LOUNGE = "lounge@example.com"
ATTIC = "attic@example.com"

T0 = 1700000000.5

CONFIG = RoomConfig(
    name="The lounge — ünïcode",
    topic="Nevermore",
    public=True,
    members_only=False,
    password_hash="scrypt$not-a-real-hash",
    moderated=True,
    max_members=50,
    limits={"messages-per-minute": 30, "joins-per-minute": 5},
)


def line(
    n: int, parent: str = "", sender: str = ALICE, **properties: str
) -> FMTPObject:
    """
    A room message from C{sender} with a distinct id, following the entry
    whose digest is C{parent} (none for the first entry).
    """
    props = {"From": sender, "To": LOUNGE, "Subject": f"line {n}"}
    if parent:
        props["Parent-Digest"] = parent
    props.update(properties)
    return FMTPObject(
        f"{1700000000000 + n}.n{n}.{sender}", "message", props, f"body {n}".encode()
    )


async def say(store, n: int, room: str = LOUNGE, sender: str = ALICE) -> FMTPObject:
    """
    Append line C{n} after the room's head, as a chat service would.
    """
    _, digest = await store.head(room)
    obj = line(n, digest, sender)
    assert await store.append(room, obj, T0 + n) is not None
    return obj


async def lounge(store, config: RoomConfig = CONFIG) -> Room:
    return await store.create_room(LOUNGE, ALICE, config, T0)


class RoomConformance:
    """
    Tests every L{IRoomStore} must pass.
    """

    def test_provides_interface(self, store) -> None:
        assert verifyObject(IRoomStore, store)

    # Rooms

    @pytest_twisted.ensureDeferred
    async def test_create(self, store) -> None:
        room = await lounge(store)
        assert room == Room(LOUNGE, ALICE, CONFIG, T0)
        assert await store.get_room(LOUNGE) == room
        assert await store.get_room(ATTIC) is None
        owner = Member(ALICE, Role.OWNER, False, T0)
        assert await store.member(LOUNGE, ALICE) == owner
        assert await store.members(LOUNGE) == [owner]
        assert await store.rooms_of(ALICE) == [LOUNGE]
        assert await store.head(LOUNGE) == EMPTY_HEAD
        assert await store.history(LOUNGE, 0, 10) == []

    @pytest_twisted.ensureDeferred
    async def test_address_taken(self, store) -> None:
        await lounge(store)
        with pytest.raises(RoomExists) as info:
            await store.create_room(LOUNGE, BOB, RoomConfig(), T0 + 1)
        assert info.value.code == 554
        assert (await store.get_room(LOUNGE)).creator == ALICE

    @pytest_twisted.ensureDeferred
    async def test_configure(self, store) -> None:
        await store.create_room(LOUNGE, ALICE, RoomConfig(), T0)
        assert (await store.get_room(LOUNGE)).config == RoomConfig()
        assert await store.configure_room(LOUNGE, CONFIG) is None
        room = await store.get_room(LOUNGE)
        assert room.config == CONFIG
        assert dict(room.config.limits) == {
            "messages-per-minute": 30,
            "joins-per-minute": 5,
        }
        assert room.created == T0

    @pytest_twisted.ensureDeferred
    async def test_destroy_leaves_a_tombstone(self, store) -> None:
        await lounge(store)
        await store.join(LOUNGE, BOB, T0)
        await say(store, 1)
        assert await store.destroy_room(LOUNGE, T0 + 10, T0 + 100) is True
        assert await store.get_room(LOUNGE) is None
        assert await store.rooms_of(BOB) == []
        with pytest.raises(RoomNotFound):
            await store.members(LOUNGE)
        # The name is held until the tombstone's time.
        with pytest.raises(RoomExists):
            await store.create_room(LOUNGE, BOB, RoomConfig(), T0 + 99)
        assert await store.destroy_room(LOUNGE, T0 + 20, T0 + 200) is False
        room = await store.create_room(LOUNGE, BOB, RoomConfig(), T0 + 100)
        # A new room: its own members, a new chain.
        assert room.creator == BOB
        assert [m.address for m in await store.members(LOUNGE)] == [BOB]
        assert await store.head(LOUNGE) == EMPTY_HEAD
        assert await store.history(LOUNGE, 0, 10) == []

    @pytest_twisted.ensureDeferred
    async def test_forget_tombstones(self, store) -> None:
        for room, until in ((LOUNGE, T0 + 10), (ATTIC, T0 + 20)):
            await store.create_room(room, ALICE, RoomConfig(), T0)
            await store.destroy_room(room, T0, until)
        assert await store.forget_tombstones(T0 + 9) == 0
        assert await store.forget_tombstones(T0 + 10) == 1
        with pytest.raises(RoomExists):
            await store.create_room(ATTIC, ALICE, RoomConfig(), T0 + 19)
        await store.create_room(LOUNGE, ALICE, RoomConfig(), T0 + 10)

    # Members

    @pytest_twisted.ensureDeferred
    async def test_join(self, store) -> None:
        await lounge(store)
        joined = await store.join(LOUNGE, LOST, T0 + 1)
        assert joined == Member(LOST, Role.MEMBER, False, T0 + 1)
        assert await store.join(LOUNGE, BOB, T0 + 2, voice=True) == Member(
            BOB, Role.MEMBER, True, T0 + 2
        )
        # Joining again changes nothing.
        assert await store.join(LOUNGE, LOST, T0 + 3, voice=True) == joined
        assert await store.join(LOUNGE, ALICE, T0 + 3) == Member(
            ALICE, Role.OWNER, False, T0
        )
        assert [m.address for m in await store.members(LOUNGE)] == [
            ALICE,
            BOB,
            LOST,
        ]
        assert await store.rooms_of(LOST) == [LOUNGE]

    @pytest_twisted.ensureDeferred
    async def test_rooms_of_a_member(self, store) -> None:
        for room in (LOUNGE, ATTIC):
            await store.create_room(room, CAROL, RoomConfig(), T0)
        await store.join(ATTIC, BOB, T0)
        await store.join(LOUNGE, BOB, T0)
        await store.invite(LOUNGE, LOST, T0)
        await store.set_role(ATTIC, LOST, Role.BANNED, False, T0)
        assert await store.rooms_of(BOB) == [ATTIC, LOUNGE]
        assert await store.rooms_of(CAROL) == [ATTIC, LOUNGE]
        assert await store.rooms_of(LOST) == []
        assert await store.rooms_of(ALICE) == []

    @pytest_twisted.ensureDeferred
    async def test_public_rooms(self, store) -> None:
        await store.create_room(ATTIC, CAROL, RoomConfig(public=True), T0)
        await store.create_room("zoo@example.com", CAROL, RoomConfig(), T0)
        await lounge(store)
        assert [r.address for r in await store.public_rooms(0, 10)] == [ATTIC, LOUNGE]
        assert await store.public_rooms(1, 1) == [await store.get_room(LOUNGE)]
        assert await store.public_rooms(2, 10) == []
        await store.configure_room(ATTIC, RoomConfig())
        assert [r.address for r in await store.public_rooms(0, 10)] == [LOUNGE]
        with pytest.raises(ValueError):
            await store.public_rooms(-1, 10)

    @pytest_twisted.ensureDeferred
    async def test_banned_cannot_join(self, store) -> None:
        await lounge(store)
        await store.join(LOUNGE, BOB, T0)
        before = await store.set_role(LOUNGE, BOB, Role.BANNED, True, T0 + 1, "spam")
        assert before == Member(BOB, Role.MEMBER, False, T0)
        ban = Member(BOB, Role.BANNED, False, T0 + 1, "spam")
        assert await store.member(LOUNGE, BOB) == ban
        assert await store.members(LOUNGE, Role.BANNED) == [ban]
        assert [m.address for m in await store.members(LOUNGE)] == [ALICE]
        assert await store.rooms_of(BOB) == []
        with pytest.raises(MemberBanned) as info:
            await store.join(LOUNGE, BOB, T0 + 2)
        assert info.value.code == 554
        with pytest.raises(MemberBanned):
            await store.invite(LOUNGE, BOB, T0 + 2)
        # Leaving does not lift a ban; unbanning does.
        assert await store.leave(LOUNGE, BOB) is False
        assert await store.unban(LOUNGE, BOB) is True
        assert await store.unban(LOUNGE, BOB) is False
        assert await store.join(LOUNGE, BOB, T0 + 3) == Member(
            BOB, Role.MEMBER, False, T0 + 3
        )
        assert await store.unban(LOUNGE, BOB) is False

    @pytest_twisted.ensureDeferred
    async def test_ban_an_address_that_never_joined(self, store) -> None:
        await lounge(store)
        assert await store.set_role(LOUNGE, LOST, Role.BANNED, False, T0) is None
        with pytest.raises(MemberBanned):
            await store.join(LOUNGE, LOST, T0)

    @pytest_twisted.ensureDeferred
    async def test_ban_a_domain(self, store) -> None:
        """
        A domain's ban removes its members and invitations in one step, and
        keeps out every address of it, even one never seen: a hostile
        server makes users up at will.
        """
        await lounge(store)
        evil = [f"{name}@evil.example" for name in ("eve", "mallory", "trudy")]
        await store.join(LOUNGE, evil[0], T0)
        await store.invite(LOUNGE, evil[1], T0)
        await store.set_role(LOUNGE, evil[2], Role.BANNED, False, T0, "spam")
        await store.join(LOUNGE, BOB, T0)
        await store.join(LOUNGE, "eve@sub.evil.example", T0)

        removed = await store.ban_domain(LOUNGE, "evil.example", T0 + 1, "a botnet")
        assert removed == [
            Member(evil[0], Role.MEMBER, False, T0),
            Member(evil[1], Role.INVITED, False, T0),
        ]
        ban = Member("*@evil.example", Role.BANNED, False, T0 + 1, "a botnet")
        assert await store.members(LOUNGE, Role.BANNED) == [
            ban,
            Member(evil[2], Role.BANNED, False, T0, "spam"),
        ]
        assert [m.address for m in await store.members(LOUNGE)] == [
            ALICE,
            BOB,
            "eve@sub.evil.example",
        ]
        assert await store.members(LOUNGE, Role.INVITED) == []
        # Every address of the domain stands as banned, and cannot come in;
        # an address's own ban keeps its reason.
        assert await store.member(LOUNGE, "made.up@evil.example") == ban
        assert (await store.member(LOUNGE, evil[2])).reason == "spam"
        for address in (evil[0], "made.up@evil.example"):
            with pytest.raises(MemberBanned):
                await store.join(LOUNGE, address, T0 + 2)
            with pytest.raises(MemberBanned):
                await store.invite(LOUNGE, address, T0 + 2)
        assert await store.rooms_of(evil[0]) == []
        # Banning again keeps one ban, with the new reason.
        assert await store.ban_domain(LOUNGE, "evil.example", T0 + 3) == []
        assert (await store.member(LOUNGE, evil[0])).since == T0 + 3

        assert await store.unban(LOUNGE, "*@evil.example") is True
        assert await store.unban(LOUNGE, "*@evil.example") is False
        assert await store.member(LOUNGE, "made.up@evil.example") is None
        assert (await store.join(LOUNGE, evil[0], T0 + 4)).role is Role.MEMBER
        with pytest.raises(MemberBanned):
            await store.join(LOUNGE, evil[2], T0 + 4)

    @pytest_twisted.ensureDeferred
    async def test_a_domain_ban_is_of_one_room(self, store) -> None:
        await lounge(store)
        await store.create_room(ATTIC, BOB, RoomConfig(), T0)
        await store.ban_domain(LOUNGE, "lenore.org", T0)
        assert (await store.join(ATTIC, LOST, T0)).role is Role.MEMBER
        with pytest.raises(MemberBanned):
            await store.join(LOUNGE, LOST, T0)

    @pytest_twisted.ensureDeferred
    async def test_destroying_a_room_ends_its_domain_bans(self, store) -> None:
        await lounge(store)
        await store.ban_domain(LOUNGE, "lenore.org", T0)
        await store.destroy_room(LOUNGE, T0, T0)
        await store.forget_tombstones(T0 + 1)
        await lounge(store)
        assert await store.members(LOUNGE, Role.BANNED) == []
        assert (await store.join(LOUNGE, LOST, T0 + 1)).role is Role.MEMBER

    @pytest_twisted.ensureDeferred
    async def test_members_only(self, store) -> None:
        await lounge(store, RoomConfig(members_only=True))
        with pytest.raises(InvitationRequired):
            await store.join(LOUNGE, BOB, T0)
        assert await store.invite(LOUNGE, BOB, T0 + 1) is True
        assert await store.invite(LOUNGE, BOB, T0 + 2) is False
        invited = Member(BOB, Role.INVITED, False, T0 + 1)
        assert await store.members(LOUNGE, Role.INVITED) == [invited]
        assert await store.member(LOUNGE, BOB) == invited
        assert await store.rooms_of(BOB) == []
        assert [m.address for m in await store.members(LOUNGE)] == [ALICE]
        joined = await store.join(LOUNGE, BOB, T0 + 3)
        assert joined == Member(BOB, Role.MEMBER, False, T0 + 3)
        assert await store.members(LOUNGE, Role.INVITED) == []
        assert await store.invite(LOUNGE, BOB, T0 + 4) is False
        # A declined invitation goes; nothing else does.
        assert await store.decline(LOUNGE, BOB) is False
        assert (await store.member(LOUNGE, BOB)).role is Role.MEMBER
        await store.invite(LOUNGE, CAROL, T0)
        assert await store.decline(LOUNGE, CAROL) is True
        assert await store.decline(LOUNGE, CAROL) is False
        await store.invite(LOUNGE, CAROL, T0)
        assert await store.leave(LOUNGE, CAROL) is True
        with pytest.raises(InvitationRequired):
            await store.join(LOUNGE, CAROL, T0)

    @pytest_twisted.ensureDeferred
    async def test_max_members(self, store) -> None:
        await lounge(store, RoomConfig(max_members=2))
        await store.join(LOUNGE, BOB, T0)
        await store.invite(LOUNGE, LOST, T0)
        for address in (CAROL, LOST):
            with pytest.raises(RoomFull):
                await store.join(LOUNGE, address, T0)
        # A member joining again is not a new member.
        await store.join(LOUNGE, BOB, T0)
        await store.leave(LOUNGE, BOB)
        await store.join(LOUNGE, LOST, T0)
        # An owner may add beyond the limit.
        await store.set_role(LOUNGE, CAROL, Role.MEMBER, False, T0)
        assert len(await store.members(LOUNGE)) == 3
        await store.configure_room(LOUNGE, RoomConfig(max_members=0))
        await store.join(LOUNGE, BOB, T0)

    @pytest_twisted.ensureDeferred
    async def test_leave(self, store) -> None:
        await lounge(store)
        await store.join(LOUNGE, BOB, T0)
        assert await store.leave(LOUNGE, BOB) is True
        assert await store.leave(LOUNGE, BOB) is False
        assert await store.member(LOUNGE, BOB) is None
        assert await store.rooms_of(BOB) == []

    @pytest_twisted.ensureDeferred
    async def test_set_role(self, store) -> None:
        await lounge(store)
        joined = await store.join(LOUNGE, BOB, T0 + 1)
        assert await store.set_role(LOUNGE, BOB, Role.MODERATOR, True, T0 + 5) == joined
        # A member keeps the time it joined.
        moderator = Member(BOB, Role.MODERATOR, True, T0 + 1)
        assert await store.member(LOUNGE, BOB) == moderator
        assert await store.set_role(LOUNGE, CAROL, Role.OWNER, False, T0 + 6) is None
        assert await store.members(LOUNGE) == [
            Member(ALICE, Role.OWNER, False, T0),
            moderator,
            Member(CAROL, Role.OWNER, False, T0 + 6),
        ]
        assert await store.members(LOUNGE, Role.OWNER) == [
            Member(ALICE, Role.OWNER, False, T0),
            Member(CAROL, Role.OWNER, False, T0 + 6),
        ]
        # Unbanned and added back, a member starts again.
        await store.set_role(LOUNGE, BOB, Role.BANNED, False, T0 + 7, "rude")
        await store.set_role(LOUNGE, BOB, Role.MEMBER, False, T0 + 8)
        assert await store.member(LOUNGE, BOB) == Member(
            BOB, Role.MEMBER, False, T0 + 8
        )

    @pytest_twisted.ensureDeferred
    async def test_a_big_room(self, store) -> None:
        """
        The fan-out list of a big room comes back whole and in order, and
        the size limit holds at its last place.
        """
        await lounge(store, RoomConfig(max_members=201))
        addresses = [f"user{n:03d}@lenore.org" for n in range(200)]
        joins = [store.join(LOUNGE, address, T0) for address in addresses]
        for d in joins:
            await d
        members = await store.members(LOUNGE)
        assert [m.address for m in members] == [ALICE, *addresses]
        with pytest.raises(RoomFull):
            await store.join(LOUNGE, BOB, T0)

    # History

    @pytest_twisted.ensureDeferred
    async def test_history_is_a_chain(self, store) -> None:
        await lounge(store)
        first = line(1)
        assert await store.append(LOUNGE, first, T0 + 1) == 1
        assert await store.head(LOUNGE) == (1, first.digest())
        second = line(2, first.digest(), BOB)
        assert await store.append(LOUNGE, second, T0 + 2) == 2
        third = await say(store, 3, sender=LOST)
        assert await store.history(LOUNGE, 0, 10) == [
            HistoryEntry(1, first.digest(), "", first, T0 + 1),
            HistoryEntry(2, second.digest(), first.digest(), second, T0 + 2),
            HistoryEntry(3, third.digest(), second.digest(), third, T0 + 3),
        ]
        verify_chain(await store.history(LOUNGE, 0, 10))
        assert await store.head(LOUNGE) == (3, third.digest())

    @pytest_twisted.ensureDeferred
    async def test_append_refuses_a_fork(self, store) -> None:
        await lounge(store)
        with pytest.raises(HistoryConflict) as info:
            await store.append(LOUNGE, line(1, "ab" * 32), T0)
        assert info.value.head == EMPTY_HEAD
        first = await say(store, 1)
        for stale in (line(2), line(2, "ab" * 32)):
            with pytest.raises(HistoryConflict) as info:
                await store.append(LOUNGE, stale, T0)
            assert info.value.head == (1, first.digest())
        assert [e.seq for e in await store.history(LOUNGE, 0, 10)] == [1]

    @pytest_twisted.ensureDeferred
    async def test_racing_appends_do_not_fork(self, store) -> None:
        """
        Two appends that both follow the head, made before either is
        answered (through the store's thread, for a threaded store): one
        is appended, the other is told the new head.
        """
        await lounge(store)
        first = await say(store, 1)
        racing = [line(n, first.digest(), BOB) for n in (2, 3)]
        results = await DeferredList(
            [store.append(LOUNGE, obj, T0) for obj in racing], consumeErrors=True
        )
        won = [result for ok, result in results if ok]
        lost = [result.value for ok, result in results if not ok]
        assert won == [2]
        assert len(lost) == 1 and isinstance(lost[0], HistoryConflict)
        winner = racing[[ok for ok, _ in results].index(True)]
        assert lost[0].head == (2, winner.digest())
        history = await store.history(LOUNGE, 0, 10)
        assert [e.obj for e in history] == [first, winner]
        verify_chain(history)

    @pytest_twisted.ensureDeferred
    async def test_append_is_idempotent(self, store) -> None:
        await lounge(store)
        first = await say(store, 1)
        await say(store, 2)
        assert await store.append(LOUNGE, first, T0) is None
        other = line(1, "", ALICE, Subject="other content")
        with pytest.raises(ObjectSealed):
            await store.append(LOUNGE, other, T0)
        assert [e.seq for e in await store.history(LOUNGE, 0, 10)] == [1, 2]

    @pytest_twisted.ensureDeferred
    async def test_rooms_have_their_own_chains(self, store) -> None:
        await lounge(store)
        await store.create_room(ATTIC, BOB, RoomConfig(), T0)
        await say(store, 1)
        obj = line(1)
        assert await store.append(ATTIC, obj, T0) == 1
        assert await store.head(ATTIC) == (1, obj.digest())

    @pytest_twisted.ensureDeferred
    async def test_history_paging(self, store) -> None:
        await lounge(store)
        for n in range(1, 6):
            await say(store, n)

        async def seqs(since: int, limit: int) -> list[int]:
            return [e.seq for e in await store.history(LOUNGE, since, limit)]

        assert await seqs(0, 2) == [1, 2]
        assert await seqs(2, 2) == [3, 4]
        assert await seqs(4, 10) == [5]
        assert await seqs(5, 10) == []
        assert await seqs(0, 0) == []
        assert await seqs(2**63, 2**64) == []
        assert await seqs(0, 2**64) == [1, 2, 3, 4, 5]
        page = await store.history(LOUNGE, 2, 2)
        verify_chain(page, (await store.history(LOUNGE, 1, 1))[0].digest)

    @pytest_twisted.ensureDeferred
    async def test_history_objects_are_copies(self, store) -> None:
        await lounge(store)
        first = await say(store, 1)
        (entry,) = await store.history(LOUNGE, 0, 1)
        entry.obj.properties["Subject"] = "changed"
        assert (await store.history(LOUNGE, 0, 1))[0].obj == first

    @pytest_twisted.ensureDeferred
    async def test_retract(self, store) -> None:
        await lounge(store)
        first = await say(store, 1)
        second = await say(store, 2, sender=BOB)
        tombstone = line(3, second.digest(), BOB, Retracts=second.id)
        assert await store.retract(LOUNGE, 2, tombstone, T0 + 3) == 3
        history = await store.history(LOUNGE, 0, 10)
        assert history == [
            HistoryEntry(1, first.digest(), "", first, T0 + 1),
            HistoryEntry(
                2, second.digest(), first.digest(), None, T0 + 2, retracted_by=3
            ),
            HistoryEntry(
                3, tombstone.digest(), second.digest(), tombstone, T0 + 3, retracts=2
            ),
        ]
        # The chain is intact without the retracted message.
        verify_chain(history)
        assert await store.head(LOUNGE) == (3, tombstone.digest())
        # A replay of the tombstone changes nothing.
        assert await store.retract(LOUNGE, 2, tombstone, T0 + 4) is None

    @pytest.mark.parametrize("seq", [2, 3, 4, 99])
    @pytest_twisted.ensureDeferred
    async def test_retract_what_cannot_be(self, store, seq) -> None:
        """
        Nothing to retract: a message retracted already (2), a tombstone
        (3), an entry not yet written (4) or far away.
        """
        await lounge(store)
        await say(store, 1)
        second = await say(store, 2)
        await store.retract(LOUNGE, 2, line(3, second.digest()), T0)
        before = await store.history(LOUNGE, 0, 10)
        _, head = await store.head(LOUNGE)
        with pytest.raises(NotFound):
            await store.retract(LOUNGE, seq, line(4, head), T0)
        assert await store.history(LOUNGE, 0, 10) == before

    @pytest_twisted.ensureDeferred
    async def test_retract_refuses_a_fork(self, store) -> None:
        await lounge(store)
        first = await say(store, 1)
        await say(store, 2)
        with pytest.raises(HistoryConflict):
            await store.retract(LOUNGE, 1, line(3, first.digest()), T0)
        assert (await store.history(LOUNGE, 0, 1))[0].obj == first

    # Rooms that do not exist

    @pytest.mark.parametrize(
        "call",
        [
            lambda s: s.configure_room(ATTIC, RoomConfig()),
            lambda s: s.join(ATTIC, BOB, T0),
            lambda s: s.invite(ATTIC, BOB, T0),
            lambda s: s.leave(ATTIC, BOB),
            lambda s: s.unban(ATTIC, BOB),
            lambda s: s.ban_domain(ATTIC, "lenore.org", T0),
            lambda s: s.set_role(ATTIC, BOB, Role.MODERATOR, False, T0),
            lambda s: s.member(ATTIC, BOB),
            lambda s: s.members(ATTIC),
            lambda s: s.append(ATTIC, line(1), T0),
            lambda s: s.retract(ATTIC, 1, line(1), T0),
            lambda s: s.history(ATTIC, 0, 10),
            lambda s: s.head(ATTIC),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_no_such_room(self, store, call) -> None:
        await lounge(store)
        with pytest.raises(RoomNotFound) as info:
            await call(store)
        assert info.value.code == 550
        assert await store.get_room(ATTIC) is None

    # Accounts

    @pytest_twisted.ensureDeferred
    async def test_deleting_an_account_ends_its_memberships(self, store) -> None:
        """
        Whoever gets the address next is a member of nothing, not even the
        rooms the old account owned; a ban on it stays.
        """
        await store.add_account(ALICE, "hash")
        await lounge(store)
        await store.create_room(ATTIC, BOB, RoomConfig(), T0)
        await store.join(ATTIC, ALICE, T0)
        await store.create_room("cellar@example.com", BOB, RoomConfig(), T0)
        await store.invite("cellar@example.com", ALICE, T0)
        await store.create_room("garret@example.com", BOB, RoomConfig(), T0)
        await store.set_role("garret@example.com", ALICE, Role.BANNED, False, T0)
        await say(store, 1)

        assert await store.delete_account(ALICE) is True
        assert await store.rooms_of(ALICE) == []
        assert await store.members(LOUNGE) == []
        assert await store.member("cellar@example.com", ALICE) is None
        assert (await store.member("garret@example.com", ALICE)).role is Role.BANNED
        # The rooms and what was said stay.
        assert (await store.get_room(LOUNGE)).creator == ALICE
        assert await store.head(LOUNGE) != EMPTY_HEAD
        assert [m.address for m in await store.members(ATTIC)] == [BOB]

    # Bad arguments

    @pytest.mark.parametrize(
        "call",
        [
            lambda s: s.create_room("Lounge@example.com", ALICE, CONFIG, T0),
            lambda s: s.create_room(ATTIC, "alice", CONFIG, T0),
            lambda s: s.create_room(ATTIC, ALICE, {"name": "x"}, T0),
            lambda s: s.create_room(ATTIC, ALICE, RoomConfig(max_members=-1), T0),
            lambda s: s.create_room(ATTIC, ALICE, RoomConfig(public="yes"), T0),
            lambda s: s.create_room(ATTIC, ALICE, RoomConfig(name=None), T0),
            lambda s: s.create_room(ATTIC, ALICE, RoomConfig(limits={"rate": -1}), T0),
            lambda s: s.create_room(ATTIC, ALICE, RoomConfig(password_hash=1), T0),
            lambda s: s.create_room(ATTIC, ALICE, CONFIG, "now"),
            lambda s: s.configure_room(LOUNGE, None),
            lambda s: s.destroy_room(LOUNGE, T0, None),
            lambda s: s.forget_tombstones(None),
            lambda s: s.join(LOUNGE, "bob@", T0),
            lambda s: s.join(LOUNGE, BOB, T0, voice="yes"),
            lambda s: s.invite(LOUNGE, BOB, "now"),
            lambda s: s.leave(LOUNGE, "BOB@example.com"),
            lambda s: s.unban(None, BOB),
            lambda s: s.unban(LOUNGE, "*@Lenore.org"),
            lambda s: s.unban(LOUNGE, "*@"),
            lambda s: s.leave(LOUNGE, "*@lenore.org"),
            lambda s: s.join(LOUNGE, "*@lenore.org", T0),
            lambda s: s.invite(LOUNGE, "*@lenore.org", T0),
            lambda s: s.member(LOUNGE, "*@lenore.org"),
            lambda s: s.ban_domain(LOUNGE, "Lenore.org", T0),
            lambda s: s.ban_domain(LOUNGE, "*@lenore.org", T0),
            lambda s: s.ban_domain(LOUNGE, "lenore.org", "now"),
            lambda s: s.ban_domain(LOUNGE, "lenore.org", T0, 7),
            lambda s: s.set_role(LOUNGE, BOB, "owner", False, T0),
            lambda s: s.set_role(LOUNGE, BOB, Role.INVITED, False, T0),
            lambda s: s.set_role(LOUNGE, BOB, Role.BANNED, False, T0, 7),
            lambda s: s.set_role(LOUNGE, BOB, Role.MEMBER, 1, T0),
            lambda s: s.member(LOUNGE, ""),
            lambda s: s.members(LOUNGE, "banned"),
            lambda s: s.rooms_of("alice at example.com"),
            lambda s: s.append(LOUNGE, "hello", T0),
            lambda s: s.append(LOUNGE, FMTPObject("no-owner", "message"), T0),
            lambda s: s.append(
                LOUNGE, FMTPObject(ALICE, "message", {"Subject": "a\nb"}), T0
            ),
            lambda s: s.append(LOUNGE, line(1), None),
            lambda s: s.retract(LOUNGE, 0, line(1), T0),
            lambda s: s.retract(LOUNGE, True, line(1), T0),
            lambda s: s.history(LOUNGE, -1, 10),
            lambda s: s.history(LOUNGE, 0, -1),
            lambda s: s.history(LOUNGE, 0, False),
            lambda s: s.head("lounge"),
        ],
    )
    @pytest_twisted.ensureDeferred
    async def test_bad_arguments_are_refused(self, store, call) -> None:
        await lounge(store)
        with pytest.raises(ValueError):
            await call(store)
        assert await store.get_room(LOUNGE) == Room(LOUNGE, ALICE, CONFIG, T0)
        assert await store.get_room(ATTIC) is None
        assert await store.members(LOUNGE) == [Member(ALICE, Role.OWNER, False, T0)]
        assert await store.head(LOUNGE) == EMPTY_HEAD

    # Durability

    @pytest_twisted.ensureDeferred
    async def test_survives_reopen(self, store, reopen) -> None:
        await lounge(store)
        await store.join(LOUNGE, LOST, T0 + 1, voice=True)
        await store.invite(LOUNGE, CAROL, T0 + 2)
        await store.set_role(LOUNGE, BOB, Role.BANNED, False, T0 + 3, "spam")
        first = await say(store, 1)
        second = await say(store, 2)
        tombstone = line(3, second.digest(), ALICE)
        await store.retract(LOUNGE, 1, tombstone, T0 + 3)
        await store.create_room(ATTIC, ALICE, RoomConfig(), T0)
        await store.destroy_room(ATTIC, T0, T0 + 100)
        members = await store.members(LOUNGE)
        history = await store.history(LOUNGE, 0, 10)

        store = await reopen()

        assert await store.get_room(LOUNGE) == Room(LOUNGE, ALICE, CONFIG, T0)
        assert await store.members(LOUNGE) == members
        assert await store.member(LOUNGE, CAROL) == Member(
            CAROL, Role.INVITED, False, T0 + 2
        )
        assert await store.member(LOUNGE, BOB) == Member(
            BOB, Role.BANNED, False, T0 + 3, "spam"
        )
        assert await store.rooms_of(LOST) == [LOUNGE]
        assert await store.history(LOUNGE, 0, 10) == history
        assert history[0].obj is None and history[0].digest == first.digest()
        # The chain goes on from where it was; the tombstone still holds.
        assert await store.head(LOUNGE) == (3, tombstone.digest())
        with pytest.raises(HistoryConflict):
            await store.append(LOUNGE, line(4, second.digest()), T0)
        await say(store, 4)
        verify_chain(await store.history(LOUNGE, 0, 10))
        with pytest.raises(RoomExists):
            await store.create_room(ATTIC, ALICE, RoomConfig(), T0 + 50)

    # Closing

    @pytest_twisted.ensureDeferred
    async def test_room_calls_after_close_fail(self, store) -> None:
        await lounge(store)
        await store.close()
        calls = [
            lambda: store.create_room(ATTIC, ALICE, CONFIG, T0),
            lambda: store.get_room(LOUNGE),
            lambda: store.configure_room(LOUNGE, CONFIG),
            lambda: store.destroy_room(LOUNGE, T0, T0),
            lambda: store.forget_tombstones(T0),
            lambda: store.join(LOUNGE, BOB, T0),
            lambda: store.invite(LOUNGE, BOB, T0),
            lambda: store.leave(LOUNGE, BOB),
            lambda: store.set_role(LOUNGE, BOB, Role.MODERATOR, False, T0),
            lambda: store.unban(LOUNGE, BOB),
            lambda: store.member(LOUNGE, BOB),
            lambda: store.members(LOUNGE),
            lambda: store.rooms_of(BOB),
            lambda: store.append(LOUNGE, line(1), T0),
            lambda: store.retract(LOUNGE, 1, line(1), T0),
            lambda: store.history(LOUNGE, 0, 10),
            lambda: store.head(LOUNGE),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable):
                await call()
