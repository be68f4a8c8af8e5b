"""
A fair share of a one-at-a-time resource for every client.

The SQLite store runs every call on one thread.  Served first come first
served, a client with 32 requests in flight gets 32 turns for each one of
a client with one: a single connection flooding SENDs cut another's
throughput by 96%.  Here each call is filed under the I{principal} it is
made for, and principals take turns: a flooder waits behind itself, and
everyone else waits for at most one call of each other busy principal.

The principal is whoever the call serves: the logged-in address, a peer
server's proven domain, or else the peer's host (see
L{fmtp.protocols.framing.Client.principal}).  It travels with the request
in L{current_principal}, a context variable that the framing layer sets
inside the coroutine that answers the request: C{Deferred.fromCoroutine}
runs a coroutine in a copy of the context it was made in, so whatever the
request calls, however deep, sees its principal, and nothing else does.
Calls made outside any request (the queue, start-up) have the principal
L{None} and take their turns like any other.

L{FairQueue} decides the order; L{FairScheduler} hands calls to the
resource a few at a time in that order.  They are kept apart so that a
store that commits several calls at once (group commit) can take its
batches from the queue.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred, succeed

_T = TypeVar("_T")

#: Who the work being done now is for: set for each request by the framing
#: layer, read by whatever shares a resource between clients.
current_principal: ContextVar[object] = ContextVar("fmtp_principal", default=None)


class FairQueue(Generic[_T]):
    """
    Items filed by principal, taken in turns: one of each principal that
    has any, in the order the principals arrived, and each principal's
    own items in the order they were put.

    Within a principal the order is kept, so a client's read that follows
    its write runs after it.
    """

    def __init__(self) -> None:
        # The principals with items, in turn order: the first is next.
        self._queues: OrderedDict[object, deque[_T]] = OrderedDict()
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def principals(self) -> int:
        """
        How many principals have items waiting.
        """
        return len(self._queues)

    def put(self, principal: object, item: _T) -> None:
        queue = self._queues.get(principal)
        if queue is None:
            queue = self._queues[principal] = deque()
        queue.append(item)
        self._length += 1

    def take(self) -> _T:
        """
        The next item, in turn: the first principal's oldest item; that
        principal then goes to the back of the line.

        @raise IndexError: if the queue is empty.
        """
        if not self._queues:
            raise IndexError("take from an empty FairQueue")
        principal = next(iter(self._queues))
        queue = self._queues[principal]
        item = queue.popleft()
        if queue:
            self._queues.move_to_end(principal)
        else:
            del self._queues[principal]
        self._length -= 1
        return item


class FairScheduler:
    """
    Runs calls through C{start}, at most C{window} at a time, in the order
    of a L{FairQueue}.

    The resource behind C{start} (a thread pool of one thread) runs what it
    is given first come first served, so it is given only a few calls at a
    time: enough that it never waits for the reactor between two calls,
    few enough that a newcomer's call is never behind more than that many
    of another's.

    @ivar window: calls handed to C{start} and not finished, at most.
    """

    def __init__(self, start: Callable[..., Deferred[Any]], window: int = 2) -> None:
        self._start = start
        self.window = window
        self._queue: FairQueue[tuple[Callable[..., Any], tuple, Deferred]] = FairQueue()
        self._running = 0
        self._idle: list[Deferred[None]] = []

    def __len__(self) -> int:
        """
        Calls waiting for their turn (not counting those running).
        """
        return len(self._queue)

    def run(self, principal: object, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """
        Call C{start(f, *args)} in C{principal}'s turn.

        @return: a L{Deferred} with what C{start}'s Deferred gives.
        """
        d: Deferred[_T] = Deferred()
        self._queue.put(principal, (f, args, d))
        self._pump()
        return d

    def _pump(self) -> None:
        while self._running < self.window and self._queue:
            self._begin(*self._queue.take())

    def _begin(self, f: Callable[..., Any], args: tuple, d: Deferred) -> None:
        self._running += 1
        maybeDeferred(self._start, f, *args).addBoth(self._finished, d)

    def _finished(self, result: object, d: Deferred) -> None:
        self._running -= 1
        # Keep the resource busy before running the caller's callbacks,
        # which may take a while (and may queue more calls).
        self._pump()
        if not self._running and not self._queue:
            idle, self._idle = self._idle, []
            for waiter in idle:
                waiter.callback(None)
        d.callback(result)
        return None

    def when_idle(self) -> Deferred[None]:
        """
        A L{Deferred} that fires once no call is waiting or running.
        """
        if not self._running and not self._queue:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle.append(waiter)
        return waiter

    def flush(self) -> None:
        """
        Hand every waiting call to C{start} now, in turn order, whatever
        the window: for a resource about to be stopped that runs what it
        was given first.
        """
        while self._queue:
            self._begin(*self._queue.take())
