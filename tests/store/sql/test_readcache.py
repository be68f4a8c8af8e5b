"""
L{fmtp.store.sql.readcache}: what the cache of public objects holds, how
long it vouches for it, and the triggers that tell it of changes.
"""

from __future__ import annotations

import sqlite3

from twisted.internet.task import Clock

from fmtp.delivery import StoredObject
from fmtp.objects import FMTPObject, user_object
from fmtp.store.sql.engine import upgrade_schema
from fmtp.store.sql.objects import _object_row, _put_object
from fmtp.store.sql.readcache import PublicObjectCache, cacheable
from fmtp.store.sql.schema import SCHEMA_STEPS

EDGAR = "edgar@poe.net"


def post(public: bool = True, n: int = 1) -> FMTPObject:
    properties = {"Public": "yes"} if public else {}
    return FMTPObject(f"{1000 + n}.abc.{EDGAR}", "post", properties, b"body")


def stored(obj: FMTPObject, removed: bool = False) -> StoredObject:
    return StoredObject(obj, removed, False)


def make_cache(size: int = 4):
    clock = Clock()
    posted: list = []
    cache = PublicObjectCache(
        clock, lambda f, *a: posted.append((f, a)), size=size, revalidate_after=1.0
    )
    return cache, clock, posted


def test_only_what_every_reader_sees_alike_is_cacheable() -> None:
    assert cacheable(stored(post()))
    assert not cacheable(None)
    assert not cacheable(stored(post(public=False)))
    assert not cacheable(stored(post(), removed=True))
    user = user_object(EDGAR)
    user.properties["Public"] = "yes"
    assert not cacheable(stored(user))


def test_an_offered_object_is_served_with_its_reply_headers() -> None:
    cache, _, _ = make_cache()
    obj = post()
    cache.offer(obj.id, stored(obj), 7)
    hit = cache.get(obj.id)
    assert hit.obj is obj
    assert hit.headers["Digest"] == obj.digest()
    assert hit.headers["Id"] == obj.id


def test_a_private_or_removed_read_drops_the_entry() -> None:
    cache, _, _ = make_cache()
    obj = post()
    cache.offer(obj.id, stored(obj), 7)
    cache.offer(obj.id, stored(obj, removed=True), 7)
    assert cache.get(obj.id) is None
    cache.offer(obj.id, stored(obj), 7)
    cache.offer(obj.id, None, 7)
    assert cache.get(obj.id) is None
    cache.offer(obj.id, stored(post(public=False)), 7)
    assert cache.get(obj.id) is None


def test_served_only_while_recently_checked() -> None:
    cache, clock, _ = make_cache()
    obj = post()
    cache.offer(obj.id, stored(obj), 7)
    clock.advance(1.0)
    assert cache.get(obj.id) is not None
    clock.advance(0.5)
    assert cache.get(obj.id) is None
    cache.offer(post(n=2).id, stored(post(n=2)), 7)
    assert cache.get(obj.id) is not None


def test_another_data_version_drops_everything() -> None:
    cache, _, _ = make_cache()
    first, second = post(n=1), post(n=2)
    cache.offer(first.id, stored(first), 7)
    cache.offer(second.id, stored(second), 8)
    assert cache.get(first.id) is None
    assert cache.get(second.id) is not None


def test_bounded() -> None:
    cache, _, _ = make_cache(size=4)
    objects = [post(n=n) for n in range(10)]
    for obj in objects:
        cache.offer(obj.id, stored(obj), 1)
    assert len(cache) == 4
    assert [cache.get(o.id) is not None for o in objects] == [False] * 6 + [True] * 4


def test_triggers_tell_every_change_of_a_watched_object(tmp_path) -> None:
    conn = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    upgrade_schema(conn, SCHEMA_STEPS)
    cache, _, posted = make_cache()
    watched, other = post(n=1), post(n=2)
    for obj in (watched, other):
        _put_object(conn, _object_row(obj))
    version = cache.watch(conn, stored(watched))
    assert isinstance(version, int)
    assert posted == [(cache.clear, ())]
    posted.clear()
    # Another object's change is not told; the watched one's is, once.
    conn.execute("UPDATE objects SET removed = 1 WHERE id = ?", (other.id,))
    conn.execute("UPDATE objects SET removed = 1 WHERE id = ?", (watched.id,))
    conn.execute("DELETE FROM objects WHERE id = ?", (watched.id,))
    assert posted == [(cache.invalidate, (watched.id,))]
    posted.clear()
    # Read again, it is watched again: even a new row of its id is told.
    cache.watch(conn, stored(watched))
    _put_object(conn, _object_row(watched))
    assert posted == [(cache.invalidate, (watched.id,))]
    conn.close()


def test_the_watch_list_is_bounded(tmp_path) -> None:
    conn = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    upgrade_schema(conn, SCHEMA_STEPS)
    cache, _, posted = make_cache(size=2)
    for n in range(9):
        cache.watch(conn, stored(post(n=n)))
    assert [f for f, _ in posted] == [cache.clear, cache.clear]
    conn.close()
