"""
Helpers for the property tests that run a sequence of calls against the
memory store and against the SQL store's own functions on a plain SQLite
connection, and check that both stores agree (C{tests/conformance/test_stores.py},
C{tests/conformance/test_presence_store.py}, C{tests/conformance/test_room_store.py}).

The SQL side runs on a plain connection to an in-memory database, not
through the store's thread: the threads are tested elsewhere, and tests
run on the reactor's greenlet, where a synchronous test cannot wait for a
Deferred.
"""

from __future__ import annotations

from twisted.python.failure import Failure


def outcome(call, *args):
    """
    What a call of the SQLite side returned, or the type of what it
    raised, to compare with the memory store's fired Deferred.
    """
    try:
        return call(*args)
    except Exception as e:
        return type(e)


def fired_outcome(d):
    result = fired(d)
    if isinstance(result, Failure):
        return result.type
    return result


def fired(d):
    """
    The result of an already-fired Deferred, as the memory store returns.
    """
    results: list[object] = []
    d.addBoth(results.append)
    (result,) = results
    return result
