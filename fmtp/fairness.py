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

L{FairQueue} decides the order; L{FairScheduler} runs the calls on the
resource's thread in that order, the thread choosing the next call
whenever it is free.  They are kept apart so that a store that commits
several calls at once (group commit) can take its batches from the
queue.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

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
    Runs calls one at a time on a worker thread, in the order of a
    L{FairQueue}.

    The next call is chosen by the thread itself, when it is free: so no
    call ever waits behind more than the one running, whoever made the
    others, and the thread never waits for the reactor between calls.  The
    queue is shared between the reactor, which puts, and the thread, which
    takes, under a lock; results go back through C{from_thread}.

    @param in_thread: runs a callable on the worker thread (a thread pool
        of one thread's C{callInThread}): called to start draining the
        queue whenever it was idle.
    @param from_thread: runs a callable in the reactor thread
        (C{reactor.callFromThread}).
    """

    def __init__(
        self,
        in_thread: Callable[[Callable[[], None]], object],
        from_thread: Callable[..., object],
    ) -> None:
        self._in_thread = in_thread
        self._from_thread = from_thread
        self._lock = threading.Lock()
        self._queue: FairQueue[tuple[Callable[..., Any], tuple, Deferred]] = FairQueue()
        # Whether the thread is draining the queue (or about to).
        self._working = False
        self._idle: list[Deferred[None]] = []

    def __len__(self) -> int:
        """
        Calls waiting for their turn (not counting one running).
        """
        with self._lock:
            return len(self._queue)

    def run(self, principal: object, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """
        Call C{f(*args)} on the worker thread in C{principal}'s turn.

        @return: a L{Deferred} that fires, in the reactor thread, with
            what C{f} returns, or fails with what it raises.
        """
        d: Deferred[_T] = Deferred()
        with self._lock:
            self._queue.put(principal, (f, args, d))
            start, self._working = not self._working, True
        if start:
            self._in_thread(self._work)
        return d

    def _work(self) -> None:
        """
        On the worker thread: run the calls in turn until none is left.
        """
        while True:
            with self._lock:
                if not self._queue:
                    self._working = False
                    break
                f, args, d = self._queue.take()
            try:
                result = f(*args)
            except BaseException:
                result = Failure()
            self._from_thread(d.callback, result)
        self._from_thread(self._check_idle)

    def _check_idle(self) -> None:
        with self._lock:
            idle = not self._working
        if idle:
            waiters, self._idle = self._idle, []
            for waiter in waiters:
                waiter.callback(None)

    def when_idle(self) -> Deferred[None]:
        """
        A L{Deferred} that fires once no call is waiting or running and
        every result has been delivered.
        """
        waiter: Deferred[None] = Deferred()
        self._idle.append(waiter)
        with self._lock:
            working = self._working
        if not working:
            # The worker's own check may still be on its way; this one
            # comes after it, and after every result it sent.
            self._from_thread(self._check_idle)
        return waiter
