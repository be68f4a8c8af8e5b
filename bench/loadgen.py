"""
The harness's load generators, each run in a process of its own (pinned to
the client core) by C{python -m bench}:

    python -m bench.loadgen '{"workload": "burst", ...}'

It prints one JSON line with its figures, or C{{"error": ...}} and exits
non-zero.  The clients are plain Twisted protocols writing frames made by
L{fmtp.wire.serialize} and reading what matters without parsing every
frame: a burst counts a marker in the messages' bodies as bytes arrive
(C{bytes.count}, in C), so that the client is not what is measured.
Frames that need reading (the replies to LOGIN and to the set-up
requests) go through L{fmtp.wire.FrameParser}.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import select
import socket
import sys
import time
from collections.abc import Callable

from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import TCP4ClientEndpoint

from fmtp.wire import Frame, FrameParser, parse_datagram, request, serialize

#: What every burst message's body holds once, and every ping-pong answer's.
MESSAGE_MARK = b"<fmtp bench message>"
ANSWER_MARK = b"<fmtp bench answer>"


class WorkloadError(Exception):
    """
    A workload went wrong: a refused request, a message never delivered.
    """


def frame_maker(
    verb: str, headers: dict[str, str], body: bytes = b"", argument: str = ""
) -> Callable:
    """
    A fast maker of C{verb} frames that differ only in their tag: the frame
    is serialized once by L{serialize} and the tag spliced in.
    """
    placeholder = "TAGPLACEHOLDER"
    before, after = serialize(
        request(verb, placeholder, argument, headers, body)
    ).split(placeholder.encode())
    return lambda tag: before + tag.encode() + after


class MarkCounter:
    """
    Counts occurrences of a marker in a stream however it is split.
    """

    def __init__(self, mark: bytes) -> None:
        self.mark = mark
        self.count = 0
        self._tail = b""

    def feed(self, data: bytes) -> int:
        """
        Count the marks C{data} completes; return how many.
        """
        data = self._tail + data
        found = data.count(self.mark)
        self.count += found
        self._tail = data[-(len(self.mark) - 1) :]
        return found


class Connection(protocol.Protocol):
    """
    One client connection.  Until L{count} is called it parses frames and
    answers L{request}s by tag; after, it only counts marks in what it
    receives, calling C{on_mark(n)} for each chunk that completes any.
    """

    def __init__(self) -> None:
        self.parser: FrameParser | None = FrameParser()
        self.pending: dict[str, defer.Deferred] = {}
        self.tags = (f"r{i}" for i in itertools.count())
        self.counters: list[tuple[MarkCounter, Callable[[int], None]]] = []
        self.seen = bytearray()
        self.closed: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data: bytes) -> None:
        if self.parser is None:
            self.seen[:] = self.seen[-400:] + data[-400:]
            for counter, on_mark in self.counters:
                found = counter.feed(data)
                if found:
                    on_mark(found)
            return
        for frame in self.parser.feed(data):
            if isinstance(frame, Frame) and frame.tag in self.pending:
                self.pending.pop(frame.tag).callback(frame)

    def connectionLost(self, reason) -> None:
        for d in self.pending.values():
            d.errback(WorkloadError(f"connection lost: {reason.value}"))
        self.pending.clear()
        self.closed.callback(None)

    def request(self, verb: str, argument: str = "", **headers: str) -> defer.Deferred:
        tag = next(self.tags)
        self.pending[tag] = d = defer.Deferred()
        self.transport.write(serialize(request(verb, tag, argument, headers)))
        return d

    def count(self, mark: bytes, on_mark: Callable[[int], None]) -> MarkCounter:
        self.parser = None
        counter = MarkCounter(mark)
        self.counters.append((counter, on_mark))
        return counter


async def connect(reactor, endpoint: list) -> Connection:
    host, port = endpoint
    return await TCP4ClientEndpoint(reactor, host, port, timeout=10).connect(
        protocol.Factory.forProtocol(Connection)
    )


async def login(reactor, endpoint: list, account: list | None) -> Connection:
    """
    A connection to C{endpoint}, logged in as C{account} (address,
    password) unless that is C{None} (the relay).
    """
    connection = await connect(reactor, endpoint)
    if account is not None:
        answer = await connection.request(
            "LOGIN", Address=account[0], Password=account[1]
        )
        if answer.code != 230:
            raise WorkloadError(f"LOGIN {account[0]}: {answer.verb} {answer.argument}")
    return connection


def within(reactor, d: defer.Deferred, seconds: float, what: str) -> defer.Deferred:
    def timed_out(failure):
        failure.trap(defer.TimeoutError, defer.CancelledError)
        raise WorkloadError(f"{what}: nothing after {seconds:g} s")

    return d.addTimeout(seconds, reactor).addErrback(timed_out)


async def concurrently(
    reactor, job: dict, count: int, step: Callable, what: str
) -> None:
    """
    Run C{step()} C{count} times, C{job["concurrency"]} at a time, within
    C{job["deadline"]} seconds.
    """
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            await step()

    workers = [
        defer.Deferred.fromCoroutine(worker()) for _ in range(job["concurrency"])
    ]
    await within(
        reactor,
        defer.gatherResults(workers, consumeErrors=True),
        job["deadline"],
        what,
    )


def message_maker(to: str | None, mark: bytes) -> Callable:
    headers = {"To": to} if to else {"To": "relay@relay"}
    # The body ends its line, so that the relay, which forwards whole
    # lines, forwards the last message of a burst too.
    return frame_maker("SEND", headers, mark + b" " + b"x" * 40 + b"\r\n")


async def burst(reactor, job: dict) -> dict:
    """
    A sends B messages as fast as B receives them (at most C{window}
    unreceived), until C{messages} are sent or C{budget} seconds have
    passed; the figure is messages over the time until B has them all.
    """
    # B first: the relay forwards only to connections it has accepted.
    receiver = await login(reactor, job["b"], job.get("b_login"))
    sender = await login(reactor, job["a"], job.get("a_login"))
    make = message_maker(job.get("to"), MESSAGE_MARK)
    done: defer.Deferred = defer.Deferred()
    sent = received = 0
    budget_end = time.perf_counter() + job["budget"]

    def fill() -> None:
        nonlocal sent
        batch = []
        limit = min(job["messages"], received + job["window"])
        if time.perf_counter() > budget_end:
            limit = min(limit, sent)
        while sent < limit:
            batch.append(make(f"s{sent}"))
            sent += 1
        if batch:
            sender.transport.writeSequence(batch)

    def delivered(found: int) -> None:
        nonlocal received
        received += found
        if received >= sent and (
            sent >= job["messages"] or time.perf_counter() > budget_end
        ):
            if not done.called:
                done.callback(None)
        else:
            fill()

    replies = sender.count(b"201 s", lambda n: None)
    receiver.count(MESSAGE_MARK, delivered)
    dropped = receiver.count(b"251 *", lambda n: None)
    start = time.perf_counter()
    fill()
    try:
        await within(reactor, done, job["deadline"], "burst")
    except WorkloadError:
        raise WorkloadError(
            f"burst: {received} of {sent} messages delivered, {replies.count} "
            f"accepted, {dropped.count} pushes dropped; last bytes to A: "
            f"{bytes(sender.seen[-300:])!r}"
        )
    seconds = time.perf_counter() - start
    sender.transport.loseConnection()
    receiver.transport.loseConnection()
    return {"messages": sent, "seconds": seconds, "rate": sent / seconds}


async def pingpong(reactor, job: dict) -> dict:
    """
    A sends B a message; B answers A with one of its own as soon as it
    has A's; the round trip is from A's send to A's having the answer.
    """
    b = await login(reactor, job["b"], job.get("b_login"))
    a = await login(reactor, job["a"], job.get("a_login"))
    ping = message_maker(job.get("to_b"), MESSAGE_MARK)
    pong = message_maker(job.get("to_a"), ANSWER_MARK)
    latencies: list[float] = []
    done: defer.Deferred = defer.Deferred()
    sent_at = 0.0
    budget_end = time.perf_counter() + job["budget"]

    def send() -> None:
        nonlocal sent_at
        sent_at = time.perf_counter()
        a.transport.write(ping(f"p{len(latencies)}"))

    def answered(found: int) -> None:
        latencies.append((time.perf_counter() - sent_at) * 1000)
        if len(latencies) >= job["rounds"] or time.perf_counter() > budget_end:
            if not done.called:
                done.callback(None)
        else:
            send()

    b.count(MESSAGE_MARK, lambda n: b.transport.write(pong(f"q{len(latencies)}")))
    a.count(ANSWER_MARK, answered)
    send()
    await within(reactor, done, job["deadline"], f"ping-pong after {len(latencies)}")
    a.transport.loseConnection()
    b.transport.loseConnection()
    return {"latencies_ms": latencies}


async def logins(reactor, job: dict) -> dict:
    """
    C{count} LOGINs, C{concurrency} at a time, in one of three modes:
    C{open} (on connections opened beforehand, untimed), C{reconnect}
    (each on a new connection, closed after) or C{token} (as C{reconnect},
    with the resumption token a first password LOGIN asked for with
    C{Issue-Token: yes}, if the server hands one out: doc/protocol.md).
    """
    address, password = job["login"]
    credentials = {"Address": address, "Password": password}
    if job["mode"] == "token":
        first = await connect(reactor, job["endpoint"])
        answer = await first.request("LOGIN", **credentials, **{"Issue-Token": "yes"})
        first.transport.loseConnection()
        if answer.code != 230 or "Token" not in answer.headers:
            return {"unsupported": True}
        credentials = {"Address": address, "Token": answer.headers["Token"]}
    ready: list[Connection] = []
    if job["mode"] == "open":
        for _ in range(job["count"]):
            ready.append(await connect(reactor, job["endpoint"]))

    async def log_in() -> None:
        connection = ready.pop() if ready else await connect(reactor, job["endpoint"])
        answer = await connection.request("LOGIN", **credentials)
        if answer.code != 230:
            raise WorkloadError(f"LOGIN: {answer.verb} {answer.argument}")
        connection.transport.loseConnection()
        if job["mode"] != "open":
            await connection.closed

    start = time.perf_counter()
    await concurrently(reactor, job, job["count"], log_in, "logins")
    seconds = time.perf_counter() - start
    return {"count": job["count"], "seconds": seconds, "rate": job["count"] / seconds}


async def get_tcp(reactor, job: dict) -> dict:
    """
    GETs of one public object on one logged-in connection, C{window} in
    flight, for C{count} requests or C{budget} seconds.
    """
    connection = await login(reactor, job["endpoint"], job.get("login"))
    make_get = frame_maker("GET", {}, argument=job["id"])
    done: defer.Deferred = defer.Deferred()
    issued = answered = 0
    budget_end = time.perf_counter() + job["budget"]

    def issue(n: int) -> None:
        nonlocal issued
        connection.transport.writeSequence(
            [make_get(f"g{issued + i}") for i in range(n)]
        )
        issued += n

    def replied(found: int) -> None:
        nonlocal answered
        answered += found
        more = job["count"] - issued if time.perf_counter() < budget_end else 0
        if more > 0:
            issue(min(found, more))
        elif answered >= issued and not done.called:
            done.callback(None)

    counter = connection.count(b"200 g", replied)
    start = time.perf_counter()
    issue(min(job["window"], job["count"]))
    try:
        await within(reactor, done, job["deadline"], "GET")
    except WorkloadError:
        raise WorkloadError(
            f"GET: {counter.count} of {issued} answered 200; last bytes: "
            f"{bytes(connection.seen[-300:])!r}"
        )
    seconds = time.perf_counter() - start
    connection.transport.loseConnection()
    return {"count": answered, "seconds": seconds, "rate": answered / seconds}


class DatagramGetter(protocol.DatagramProtocol):
    """
    GETs over UDP: the cookie first, then C{window} requests in flight,
    each answer sending the next; a request lost is replaced after a
    quiet C{resend} seconds.
    """

    def __init__(self, reactor, job: dict) -> None:
        self.reactor = reactor
        self.job = job
        self.server = tuple(job["server"])
        self.cookie: defer.Deferred = defer.Deferred()
        self.done: defer.Deferred = defer.Deferred()
        self.issued = self.answered = self.lost = self.refused = 0
        self.tags = itertools.count()
        self.last_answer = time.perf_counter()

    def datagramReceived(self, data: bytes, addr) -> None:
        if not self.cookie.called:
            frame = parse_datagram(data)
            if frame.code == 432:
                self.cookie.callback(frame.headers["Cookie"])
            return
        self.last_answer = time.perf_counter()
        if data.startswith(b"200 "):
            self.answered += 1
        else:
            self.refused += 1
        self.next(1)

    def next(self, n: int) -> None:
        if time.perf_counter() < self.budget_end and self.issued < self.job["count"]:
            for _ in range(n):
                self.transport.write(self.make(f"{next(self.tags)}"), self.server)
                self.issued += 1
        elif self.answered + self.refused + self.lost >= self.issued:
            if not self.done.called:
                self.done.callback(None)

    def check_lost(self) -> None:
        if time.perf_counter() - self.last_answer > self.job["resend"]:
            outstanding = self.issued - self.answered - self.refused - self.lost
            self.lost += outstanding
            self.last_answer = time.perf_counter()
            self.next(outstanding)

    async def run(self) -> dict:
        self.transport.write(
            serialize(request("GET", "c", self.job["id"], {"Pad": "x" * 100})),
            self.server,
        )
        cookie = await within(self.reactor, self.cookie, 5, "UDP cookie")
        self.make = frame_maker("GET", {"Cookie": cookie}, argument=self.job["id"])
        watch = task.LoopingCall(self.check_lost)
        watch.clock = self.reactor
        watch.start(self.job["resend"] / 2, now=False)
        start = time.perf_counter()
        self.budget_end = start + self.job["budget"]
        self.next(self.job["window"])
        try:
            await within(self.reactor, self.done, self.job["deadline"], "UDP GET")
        finally:
            watch.stop()
        seconds = time.perf_counter() - start
        if self.refused:
            raise WorkloadError(f"UDP GET: {self.refused} answers were not 200")
        return {
            "count": self.answered,
            "seconds": seconds,
            "rate": self.answered / seconds,
            "lost": self.lost,
        }


async def get_udp(reactor, job: dict) -> dict:
    getter = DatagramGetter(reactor, job)
    port = reactor.listenUDP(0, getter, interface="127.0.0.1")
    try:
        return await getter.run()
    finally:
        await port.stopListening()


async def idle(reactor, job: dict) -> dict:
    """
    Log C{warm} sessions in (as C{login}, or each as the next of
    C{logins}; with C{status}, each a presence session made available by
    its first C{STATUS}), print C{warm} and wait for a line on standard
    input; log the rest of C{sessions} in, print C{ready} and keep them
    all open, idle, until standard input closes.  The harness reads the
    server's memory at C{warm} and at C{ready}: the first sessions pay for
    what any login costs once (threads, the hash's buffers), not for a
    session.
    """
    connections: list[Connection] = []
    lines: defer.DeferredQueue = defer.DeferredQueue()
    accounts = (
        iter(job["logins"]) if "logins" in job else itertools.repeat(job["login"])
    )

    def read_stdin() -> None:
        for line in iter(sys.stdin.readline, ""):
            reactor.callFromThread(lines.put, line)
        reactor.callFromThread(lines.put, "")

    async def log_in() -> None:
        connection = await login(reactor, job["endpoint"], next(accounts))
        connections.append(connection)
        if job.get("status"):
            await available(connection)

    reactor.callInThread(read_stdin)
    await concurrently(reactor, job, job["warm"], log_in, "idle sessions")
    print("warm", flush=True)
    await lines.get()
    await concurrently(reactor, job, job["sessions"], log_in, "idle sessions")
    print("ready", flush=True)
    while await lines.get():
        pass
    for connection in connections:
        if job.get("status"):
            # Ended now, not after the grace period of a lost connection,
            # whose expiry would announce them in the middle of what the
            # harness measures next.
            connection.transport.write(serialize(request("QUIT", "q")))
        connection.transport.loseConnection()
    return {"sessions": job["sessions"]}


async def available(connection: Connection, **headers: str) -> None:
    """
    Make a logged-in presence session available: its first C{STATUS}.
    """
    answer = await connection.request("STATUS", "online", **headers)
    if answer.code != 200:
        raise WorkloadError(f"STATUS: {answer.verb} {answer.argument}")


#: What every status change's note starts with, in each push of it.
CHANGE_MARK = b"Note: bench-"
#: The subscription states in which a subscriber sees its target.
SEES = frozenset({"to", "to+pending-in", "both"})


class FanOut:
    """
    Times status changes reaching every subscriber, reading the sockets
    itself with C{select.epoll} once the set-up is done, rather than
    through the reactor (whose dispatch of a read costs several times the
    read): a change is done when each subscriber's socket has received as
    many changes as were made, and it is timed from the write of its
    C{STATUS}.  This process's CPU time over the same span (it has a core
    of its own) is kept beside it: the most the load generator can have
    added to it.

    It blocks this process's reactor while it runs: it is all there is
    for it to do then.
    """

    def __init__(self, reactor, subscribers: list, changers: list) -> None:
        self.poll = select.epoll()
        self.sockets: dict[int, tuple[socket.socket, MarkCounter]] = {}
        self.subscribers: set[int] = set()
        self.replies = MarkCounter(b"200 c")
        self.changers = [connection.transport.socket for connection in changers]
        for connection in [*subscribers, *changers]:
            reactor.removeReader(connection.transport)
            sock = connection.transport.socket
            counter = MarkCounter(CHANGE_MARK)
            if connection in changers:
                counter = self.replies
            else:
                self.subscribers.add(sock.fileno())
            self.sockets[sock.fileno()] = (sock, counter)
            self.poll.register(sock.fileno(), select.EPOLLIN)
        self.made = 0
        self.latencies_ms: list[float] = []
        self.client_ms: list[float] = []
        self.last = b""

    def change(self, data: bytes, deadline: float) -> None:
        """
        Write C{data} (change number C{self.made}) on the next changer;
        return when every subscriber has it.
        """
        started, cpu = time.perf_counter(), time.process_time()
        self.changers[self.made % len(self.changers)].sendall(data)
        self.made += 1
        waiting = set(self.subscribers)
        while waiting:
            if time.perf_counter() > deadline:
                raise WorkloadError(
                    f"change {self.made}: {len(waiting)} subscribers still "
                    f"waiting; last bytes: {self.last!r}"
                )
            for fd, _ in self.poll.poll(1.0):
                sock, counter = self.sockets[fd]
                data = sock.recv(65536)
                if not data:
                    raise WorkloadError("the server closed a connection")
                self.last = data[-300:]
                counter.feed(data)
                if fd in waiting and counter.count == self.made:
                    waiting.discard(fd)
                elif fd in self.subscribers and counter.count > self.made:
                    raise WorkloadError(f"change {self.made} pushed twice")
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.client_ms.append((time.process_time() - cpu) * 1000)

    def close(self) -> None:
        self.poll.close()


async def subscribed(reactor, job: dict) -> tuple[list, list]:
    """
    The subscribers' and the target's connections, logged in, each
    subscriber approved by the target and available (untimed).  On the
    relay (no C{target}) just connections: subscribers first, as the
    relay forwards only to connections it has accepted.
    """
    target = job.get("target")
    accounts = job.get("subscribers") or [None] * job["count"]
    subscribers: list[Connection] = []
    changers: list[Connection] = []

    async def log_in(account, into: list) -> None:
        into.append(await login(reactor, job["endpoint"], account))

    steps = iter(accounts)
    await concurrently(
        reactor,
        job,
        len(accounts),
        lambda: log_in(next(steps), subscribers),
        "subscriber logins",
    )
    target_endpoint = job.get("target_endpoint", job["endpoint"])
    for _ in range(job["changers"]):
        changers.append(await login(reactor, target_endpoint, target))
    if target is None:
        return subscribers, changers
    approver = changers[0]
    if target_endpoint != job["endpoint"]:
        addresses = [a[0] for a in accounts]
        await across_domains(reactor, job, subscribers, addresses, approver)
        for connection in [*subscribers, *changers]:
            await available(connection)
        await all_see(reactor, job, subscribers, target[0])
        return subscribers, changers

    async def subscribe(connection: Connection, address: str) -> None:
        answer = await connection.request("SUBSCRIBE", target[0])
        if answer.code != 200:
            raise WorkloadError(f"SUBSCRIBE: {answer.verb} {answer.argument}")
        if answer.headers.get("Subscription") not in SEES:
            answer = await approver.request("APPROVE", address)
            if answer.code != 200:
                raise WorkloadError(f"APPROVE: {answer.verb} {answer.argument}")
        await available(connection)

    pairs = iter(zip(subscribers, [a[0] for a in accounts], strict=True))
    await concurrently(
        reactor, job, len(subscribers), lambda: subscribe(*next(pairs)), "subscribe"
    )
    for changer in changers:
        await available(changer)
    return subscribers, changers


def buddy_lines(body: bytes) -> list[list[str]]:
    """
    The BUDDIES lines: address, state, status (and the note's words).
    """
    return [line.split(" ") for line in body.decode().split("\r\n") if line]


async def across_domains(
    reactor, job: dict, subscribers: list, addresses: list, approver
) -> None:
    """
    Each subscriber asks to see the target of another domain; the target
    approves each request once its server has it (a request, not a
    pre-approval, which has a rate of its own).
    """
    target = job["target"][0]
    for connection in subscribers:
        answer = await connection.request("SUBSCRIBE", target)
        if answer.code != 200:
            raise WorkloadError(f"SUBSCRIBE: {answer.verb} {answer.argument}")
    waiting = set(addresses)
    deadline = time.monotonic() + job["deadline"]
    while waiting:
        if time.monotonic() > deadline:
            raise WorkloadError(f"{len(waiting)} requests never reached the target")
        answer = await approver.request("BUDDIES")
        for address, state, *_ in buddy_lines(answer.body):
            if address in waiting and "pending-in" in state:
                approved = await approver.request("APPROVE", address)
                if approved.code != 200:
                    raise WorkloadError(f"APPROVE: {approved.verb} {approved.argument}")
                waiting.discard(address)
        await task.deferLater(reactor, 0.1)


async def all_see(reactor, job: dict, subscribers: list, target: str) -> None:
    """
    Wait until every subscriber sees the target, with a known status.
    """
    deadline = time.monotonic() + job["deadline"]
    for connection in subscribers:
        while True:
            answer = await connection.request("BUDDIES")
            lines = [b for b in buddy_lines(answer.body) if b[0] == target]
            if lines and lines[0][1] in SEES and lines[0][2] != "unknown":
                break
            if time.monotonic() > deadline:
                raise WorkloadError(f"a subscriber still sees {lines} of the target")
            await task.deferLater(reactor, 0.1)


async def fanout(reactor, job: dict) -> dict:
    """
    C{count} subscribers, each on a presence session of their own, see
    their target's status change C{warm} times (untimed), then
    C{changes} times, one change at a time (the next at least
    C{interval} seconds after the last, round the target's C{changers}
    sessions, so that no session passes its rate of STATUS changes); the
    figure of each is the time from its C{STATUS} to the last
    subscriber's push.  On the relay a "change" is a line holding the
    mark, which it writes to every other connection.
    """
    subscribers, changers = await subscribed(reactor, job)
    relay = job.get("target") is None
    make_status = frame_maker("STATUS", {"Note": "bench-NUMBER"}, argument="away")

    def make(n: int) -> bytes:
        if relay:
            return b"252 * presence " + CHANGE_MARK + b"%d\r\n" % n
        return make_status(f"c{n}").replace(b"NUMBER", b"%d" % n)

    fan = FanOut(reactor, subscribers, changers)
    deadline = time.perf_counter() + job["deadline"]
    try:
        for n in range(job["warm"] + job["changes"]):
            fan.change(make(n), deadline)
            time.sleep(max(0.0, job["interval"] - fan.latencies_ms[-1] / 1000))
        if not relay:
            while fan.replies.count < fan.made and time.perf_counter() < deadline:
                for fd, _ in fan.poll.poll(1.0):
                    sock, counter = fan.sockets[fd]
                    counter.feed(sock.recv(65536))
            if fan.replies.count != fan.made:
                raise WorkloadError(
                    f"{fan.replies.count} of {fan.made} STATUS answered 200"
                )
    finally:
        fan.close()
        for connection in subscribers + changers:
            if not relay:
                # Ended now, as idle() ends its sessions.
                with contextlib.suppress(OSError):
                    connection.transport.socket.sendall(serialize(request("QUIT", "q")))
            connection.transport.loseConnection()
    warm = job["warm"]
    return {"latencies_ms": fan.latencies_ms[warm:], "client_ms": fan.client_ms[warm:]}


#: What every bridged update's note starts with, in each push of it.
UPDATE_MARK = b"Note: bridged-"
#: The statuses the bridged updates cycle through.
BRIDGED_STATUSES = ("away", "busy", "online")
#: The largest datagram (doc/protocol.md 5).
MAX_DATAGRAM = 1200


def bridged_updates(users: list[str], count: int) -> list[tuple[str, str]]:
    """
    C{count} updates (user, line), round the users, each with a note of
    its own number, so that the last push a subscriber gets names it.
    """
    return [
        (
            users[n % len(users)],
            f"{users[n % len(users)]} "
            f"{BRIDGED_STATUSES[(n // len(users)) % 3]} bridged-{n}",
        )
        for n in range(count)
    ]


def publish_datagrams(
    bridge: list, seq: int, cookie: str, lines: list[str]
) -> list[tuple[bytes, int]]:
    """
    The lines in signed PUBLISH datagrams (numbered from C{seq}, tagged by
    their index), each holding as many lines as fit in 1200 bytes: the
    datagram and its number of lines.
    """
    from fmtp.protocols.presence.bridges import signed_publish

    name, secret = bridge
    datagrams: list[tuple[bytes, int]] = []
    start = 0
    while start < len(lines):
        # Grow the batch while the signed datagram still fits.
        end = start + 1
        tag = str(len(datagrams))
        data = signed_publish(name, secret, seq, lines[start:end], tag, cookie, 3600)
        while end < len(lines):
            bigger = signed_publish(
                name, secret, seq, lines[start : end + 1], tag, cookie, 3600
            )
            if len(bigger) > MAX_DATAGRAM:
                break
            data, end = bigger, end + 1
        datagrams.append((data, end - start))
        seq += 1
        start = end
    return datagrams


class BridgedBurst:
    """
    A bridge's burst of PUBLISH datagrams over one UDP socket, C{window}
    in flight (a datagram unanswered after C{resend} seconds sent again,
    the same bytes), and the pushes of what they applied read from every
    subscriber's TCP socket, all in one C{select.epoll} loop (as
    L{FanOut}): the updates are accepted when every datagram has its
    C{200} with all its lines C{Applied}, and delivered when every
    subscriber has had the push of its user's last update.  The pushes
    are counted as received: the server announces a user's latest status
    once at a time, so they may be fewer than the updates.

    @param watchers: each subscriber's connection and the bytes of the
        push of its user's last update (its C{Note} line).
    """

    def __init__(self, reactor, udp: socket.socket, server: tuple, watchers: list):
        self.udp = udp
        self.server = server
        self.poll = select.epoll()
        self.poll.register(udp.fileno(), select.EPOLLIN)
        #: fd: (socket, counter, the final push's bytes, carry)
        self.sockets: dict[int, list] = {}
        for connection, final in watchers:
            reactor.removeReader(connection.transport)
            sock = connection.transport.socket
            self.sockets[sock.fileno()] = [sock, MarkCounter(UPDATE_MARK), final, b""]
            self.poll.register(sock.fileno(), select.EPOLLIN)
        self.waiting = set(self.sockets)

    def read_pushes(self, fd: int) -> None:
        entry = self.sockets[fd]
        data = entry[0].recv(262144)
        if not data:
            raise WorkloadError("the server closed a subscriber's connection")
        entry[1].feed(data)
        if fd in self.waiting:
            seen = entry[3] + data
            if entry[2] in seen:
                self.waiting.discard(fd)
            entry[3] = seen[-len(entry[2]) :]

    def drain(self, quiet: float) -> None:
        """
        Read (and forget) what the subscribers are pushed until C{quiet}
        seconds pass without a push: their buddies' status at login.
        """
        while events := self.poll.poll(quiet):
            for fd, _ in events:
                if fd != self.udp.fileno():
                    self.sockets[fd][0].recv(262144)

    def run(self, datagrams: list, window: int, resend: float, deadline: float):
        sent: dict[int, float] = {}
        queued = iter(range(len(datagrams)))
        answered: set[int] = set()
        applied = resent = 0
        started, cpu = time.perf_counter(), time.process_time()
        accepted_at = delivered_at = None

        def send_next() -> None:
            n = next(queued, None)
            if n is not None:
                self.udp.sendto(datagrams[n][0], self.server)
                sent[n] = time.perf_counter()

        for _ in range(window):
            send_next()
        while accepted_at is None or delivered_at is None:
            now = time.perf_counter()
            if now > deadline:
                raise WorkloadError(
                    f"{len(answered)} of {len(datagrams)} datagrams answered, "
                    f"{len(self.waiting)} subscribers not on their final state"
                )
            for fd, _ in self.poll.poll(resend / 2):
                if fd != self.udp.fileno():
                    self.read_pushes(fd)
                    continue
                while True:
                    try:
                        data = self.udp.recv(2048)
                    except BlockingIOError:
                        break
                    n = int(data.split(b" ", 2)[1])
                    if n in answered:
                        continue
                    if not data.startswith(b"200 "):
                        raise WorkloadError(f"PUBLISH {n}: {data[:200]!r}")
                    lines = datagrams[n][1]
                    if f"\r\nApplied: {lines}\r\n".encode() not in data:
                        raise WorkloadError(f"PUBLISH {n}: {data[:200]!r}")
                    applied += lines
                    answered.add(n)
                    del sent[n]
                    send_next()
            now = time.perf_counter()
            for n, at in list(sent.items()):
                if now - at > resend:
                    self.udp.sendto(datagrams[n][0], self.server)
                    sent[n] = now
                    resent += 1
            if accepted_at is None and len(answered) == len(datagrams):
                accepted_at = now
            if delivered_at is None and not self.waiting:
                delivered_at = now
        return {
            "applied": applied,
            "accepted_seconds": accepted_at - started,
            "delivered_seconds": delivered_at - started,
            "pushes": sum(entry[1].count for entry in self.sockets.values()),
            "resent": resent,
            "client_cpu_seconds": time.process_time() - cpu,
            "seconds": max(accepted_at, delivered_at) - started,
        }

    def close(self) -> None:
        self.poll.close()


async def bridged(reactor, job: dict) -> dict:
    """
    (j): C{watchers} (address, password) each log in on a presence
    session, made available, whose one buddy is the user of C{users} at
    the same index (subscribed and approved beforehand, in the store);
    then the bridge C{bridge} (name, secret) publishes C{updates} status
    changes round C{users} over UDP to C{server}, and the subscribers
    read the pushes (see L{BridgedBurst}).  The set-up is untimed.
    """
    users, watchers = job["users"], job["watchers"]
    updates = bridged_updates(users, job["updates"])
    final = {user: line for user, line in updates}
    connections: list[Connection] = []

    async def log_in(account) -> None:
        connection = await login(reactor, job["endpoint"], account)
        await available(connection)
        connections.append((connection, account[0]))

    accounts = iter(watchers)
    await concurrently(
        reactor, job, len(watchers), lambda: log_in(next(accounts)), "logins"
    )
    buddy = {watcher[0]: user for watcher, user in zip(watchers, users, strict=True)}
    finals = [
        (
            connection,
            b"Note: " + final[buddy[address]].split(" ", 2)[2].encode() + b"\r\n",
        )
        for connection, address in connections
    ]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    server = tuple(job["server"])
    from fmtp.protocols.presence.bridges import signed_publish

    seq = time.time_ns() // 1000
    udp.settimeout(5)
    udp.sendto(signed_publish(*job["bridge"], seq, [updates[0][1]], "c"), server)
    cookie = parse_datagram(udp.recv(2048)).headers.get("Cookie")
    if cookie is None:
        raise WorkloadError("no cookie for the bridge")
    udp.setblocking(False)
    datagrams = publish_datagrams(
        job["bridge"], seq + 1, cookie, [line for _, line in updates]
    )
    burst = BridgedBurst(reactor, udp, server, finals)
    try:
        burst.drain(0.5)
        outcome = burst.run(
            datagrams,
            job["window"],
            job["resend"],
            time.perf_counter() + job["deadline"],
        )
    finally:
        burst.close()
        udp.close()
        for connection, _ in connections:
            with contextlib.suppress(OSError):
                connection.transport.socket.sendall(serialize(request("QUIT", "q")))
            connection.transport.loseConnection()
    if outcome["applied"] != len(updates):
        raise WorkloadError(f"{outcome['applied']} of {len(updates)} applied")
    return {
        **outcome,
        "updates": len(updates),
        "datagrams": len(datagrams),
        "accepted": len(updates) / outcome["accepted_seconds"],
        "delivered": outcome["pushes"] / outcome["delivered_seconds"],
    }


#: What every chat line's body holds once, in each push of it (and each
#: line the relay fans out).
LINE_MARK = b"<fmtp chat line>"
#: What each member's push of a member change starts with (10.7).
MEMBER_MARK = b"257 * room member"
#: What each push dropped for a member who did not read starts with (4.4).
DROPPED_MARK = b"251 * "


def until(deadline: float) -> float:
    """
    How long a poll may wait: a second at most, never past C{deadline}
    (a C{time.perf_counter}).
    """
    return max(0.0, min(1.0, deadline - time.perf_counter()))


def taken_from_reactor(reactor, connection: Connection, poll) -> socket.socket:
    """
    C{connection}'s socket, no longer read by the reactor but by C{poll}
    (a C{select.epoll}): from now on this process reads it itself.
    """
    reactor.removeReader(connection.transport)
    sock = connection.transport.socket
    poll.register(sock.fileno(), select.EPOLLIN)
    return sock


class RoomBurst:
    """
    Times a burst of lines reaching every member of a room, reading the
    sockets itself in one C{select.epoll} loop (as L{FanOut} does): the
    posters write C{lines} frames, round them, pipelined, at most
    C{window} lines ahead of what the members have had on average; the
    burst is done when every member's socket has had C{lines} marks,
    and the figure is the deliveries (lines times members) over the time
    from the first write.  On the relay a "line" is a line of bytes
    holding the mark, which it writes to every other connection.

    It blocks this process's reactor while it runs.
    """

    def __init__(self, reactor, posters: list, members: list) -> None:
        self.poll = select.epoll()
        self.posters = [taken_from_reactor(reactor, c, self.poll) for c in posters]
        self.poster_sockets = {sock.fileno(): sock for sock in self.posters}
        for sock in self.posters:
            # A window of lines may outgrow the socket's buffer for a moment
            # while the server takes in a poster's first frames.
            sock.settimeout(10)
        self.replies = MarkCounter(b"201 s")
        #: fd: (socket, the line counter, the dropped-pushes counter)
        self.members: dict[int, tuple[socket.socket, MarkCounter, MarkCounter]] = {}
        for connection in members:
            sock = taken_from_reactor(reactor, connection, self.poll)
            self.members[sock.fileno()] = (
                sock,
                MarkCounter(LINE_MARK),
                MarkCounter(DROPPED_MARK),
            )
        self.received = 0
        self.received_bytes = 0
        self.last_reply = b""

    def read(self, fd: int) -> None:
        """
        Read what the server sent one socket, and count it.
        """
        member = self.members.get(fd)
        sock = member[0] if member else self.poster_sockets[fd]
        data = sock.recv(262144)
        if not data:
            raise WorkloadError("the server closed a connection")
        if member is None:
            self.replies.feed(data)
            self.last_reply = (self.last_reply + data)[-300:]
            return
        self.received += member[1].feed(data)
        self.received_bytes += len(data)
        member[2].feed(data)

    def run(
        self, make: Callable[[int], bytes], lines: int, window: int, deadline: float
    ) -> dict:
        """
        Write C{lines} lines (C{make(n)} the bytes of line C{n}) and wait
        until every member has them all.

        @param deadline: a C{time.perf_counter} past which it fails.
        """
        count = len(self.members)
        sent = 0
        waiting = set(self.members)
        started, cpu = time.perf_counter(), time.process_time()

        def fill() -> None:
            nonlocal sent
            limit = min(lines, self.received // count + window)
            batches: list[list[bytes]] = [[] for _ in self.posters]
            while sent < limit:
                batches[sent % len(self.posters)].append(make(sent))
                sent += 1
            for poster, batch in zip(self.posters, batches, strict=True):
                if batch:
                    poster.sendall(b"".join(batch))

        fill()
        while waiting:
            if time.perf_counter() > deadline:
                dropped = sum(member[2].count for member in self.members.values())
                raise WorkloadError(
                    f"{self.received} of {lines * count} deliveries after {sent} "
                    f"lines sent, {self.replies.count} answered 201, {dropped} "
                    f"pushes dropped; last bytes to a poster: {self.last_reply!r}"
                )
            for fd, _ in self.poll.poll(until(deadline)):
                self.read(fd)
                member = self.members.get(fd)
                if member is not None and member[1].count >= lines:
                    waiting.discard(fd)
            fill()
        seconds = time.perf_counter() - started
        return {
            "lines": lines,
            "members": count,
            "deliveries": lines * count,
            "seconds": seconds,
            "rate": lines * count / seconds,
            "bytes_per_delivery": self.received_bytes / max(1, lines * count),
            "client_cpu_seconds": time.process_time() - cpu,
        }

    def wait_for_replies(self, lines: int, deadline: float) -> None:
        """
        Read on until the posters have a C{201} for every line.
        """
        while self.replies.count < lines:
            if time.perf_counter() > deadline:
                raise WorkloadError(
                    f"{self.replies.count} of {lines} lines answered 201; last "
                    f"bytes to a poster: {self.last_reply!r}"
                )
            for fd, _ in self.poll.poll(until(deadline)):
                self.read(fd)

    def close(self) -> None:
        self.poll.close()


REPLY_STATUS = re.compile(rb"(?:^|\n)(\d{3}) (\S+) ([^\r\n]*)")


class JoinTimer:
    """
    Times a request of one of C{joiners} to its reply, and to its push of
    a member change reaching every member's socket, in one
    C{select.epoll} loop (as L{RoomBurst}).  It blocks the reactor.
    """

    def __init__(self, reactor, joiners: list, members: list) -> None:
        self.poll = select.epoll()
        self.joiners = [taken_from_reactor(reactor, c, self.poll) for c in joiners]
        self.joiner_sockets = {sock.fileno(): sock for sock in self.joiners}
        self.answers = dict.fromkeys(self.joiner_sockets, b"")
        self.members: dict[int, tuple[socket.socket, MarkCounter]] = {}
        for connection in members:
            sock = taken_from_reactor(reactor, connection, self.poll)
            self.members[sock.fileno()] = (sock, MarkCounter(MEMBER_MARK))
        self.events = 0

    def _reply(self, fd: int, tag: bytes) -> bytes | None:
        """
        The status line of the reply tagged C{tag} on joiner C{fd}, once
        it came.
        """
        for match in REPLY_STATUS.finditer(self.answers[fd]):
            if match.group(2) == tag:
                self.answers[fd] = b""
                return match.group(0).strip()
        return None

    def request(self, joiner: int, data: bytes, tag: str, deadline: float):
        """
        Write C{data} (a request tagged C{tag}) on joiner number
        C{joiner}; return, in milliseconds, the time to its reply and the
        time until the last member had one more member change pushed
        (each timed on its own: the pushes may come before the reply).

        @raise WorkloadError: if the reply is not C{200}, or the deadline
            (a C{time.perf_counter}) passes.
        """
        sock = self.joiners[joiner]
        started = time.perf_counter()
        sock.sendall(data)
        self.events += 1
        replied_ms = pushed_ms = None
        waiting = {fd for fd, m in self.members.items() if m[1].count < self.events}
        while replied_ms is None or waiting:
            if time.perf_counter() > deadline:
                raise WorkloadError(
                    f"{tag}: {'no reply, ' if replied_ms is None else ''}"
                    f"{len(waiting)} members without the member change"
                )
            for fd, _ in self.poll.poll(until(deadline)):
                member = self.members.get(fd)
                if member is None:
                    received = self.joiner_sockets[fd].recv(65536)
                    if not received:
                        raise WorkloadError("the server closed a joiner's connection")
                    self.answers[fd] += received
                    if fd == sock.fileno() and replied_ms is None:
                        status = self._reply(fd, tag.encode())
                        if status is not None:
                            if not status.startswith(b"200 "):
                                raise WorkloadError(f"{tag}: {status!r}")
                            replied_ms = (time.perf_counter() - started) * 1000
                    continue
                received = member[0].recv(65536)
                if not received:
                    raise WorkloadError("the server closed a member's connection")
                member[1].feed(received)
                if member[1].count > self.events:
                    raise WorkloadError(f"{tag}: a member change pushed twice")
                if member[1].count == self.events:
                    waiting.discard(fd)
                    if not waiting:
                        pushed_ms = (time.perf_counter() - started) * 1000
        return replied_ms, pushed_ms

    def close(self) -> None:
        self.poll.close()


def line_maker(job: dict) -> Callable[[int], bytes]:
    """
    The bytes of line C{n}: a C{SAY} in the job's room (tagged C{s<n>}),
    or on the relay a line of C{line_bytes} bytes holding the mark.
    """
    if "room" not in job:
        line = LINE_MARK + b" " + b"x" * max(0, job["line_bytes"] - len(LINE_MARK) - 3)
        return lambda n: line + b"\r\n"
    make = frame_maker("SAY", {}, LINE_MARK + b" " + b"x" * 40, job["room"])
    return lambda n: make(f"s{n}")


def numbered_accounts(spec: list) -> list[list[str]]:
    """
    The accounts C{[template, count, password]} names: C{template} (as
    C{"member{}@localhost"}) formatted with 0, 1... (a list in the job
    of thousands of members would pass the limit of one argument).
    """
    template, count, password = spec
    return [[template.format(i), password] for i in range(count)]


async def room_of_members(reactor, job: dict) -> tuple[list, list, list]:
    """
    (l)'s set-up, untimed: the C{owner} (address, password) creates
    C{room}, every one of the C{members} (L{numbered_accounts}) logs in
    on a chat session of their own and joins (the owner too), the owner
    makes the first C{posters} members moderators, who log in again to
    post, and every member session enters the room.  The owner logs in
    at C{home_endpoint} if given (the room's home, for (n): the members
    are users of another domain, at C{endpoint}).  On the relay (no
    C{room}): C{count} connections.

    @return: the members' sessions, the posters' (the owner's first) and
        the C{joiners}' (logged in, not members).
    """
    endpoint = job["endpoint"]
    if "room" not in job:
        members = [await connect(reactor, endpoint) for _ in range(job["count"])]
        # Last: the relay writes to the connections it has accepted.
        return members, [await connect(reactor, endpoint)], []
    room = job["room"]

    async def expect(connection: Connection, verb: str, code: int, **headers):
        answer = await connection.request(verb, room, **headers)
        if answer.code != code:
            raise WorkloadError(f"{verb} {room}: {answer.verb} {answer.argument}")

    home = job.get("home_endpoint", endpoint)
    owner = await login(reactor, home, job["owner"])
    await expect(owner, "CREATE", 201, Public="yes")
    members: list[Connection] = []
    accounts = iter([job["owner"], *numbered_accounts(job["members"])])

    async def join() -> None:
        account = next(accounts)
        at = home if account == job["owner"] else endpoint
        connection = await login(reactor, at, account)
        members.append(connection)
        await expect(connection, "JOIN", 200)

    await concurrently(reactor, job, 1 + job["members"][1], join, "joins")
    posters = [owner]
    for account in numbered_accounts(
        [*job["members"][:1], job["posters"], job["members"][2]]
    ):
        await expect(owner, "ROLE", 200, Address=account[0], Role="moderator")
        posters.append(await login(reactor, endpoint, account))
    entering = iter(members)

    async def enter() -> None:
        await expect(next(entering), "ENTER", 200)

    await concurrently(reactor, job, len(members), enter, "enters")
    joiners = [
        await login(reactor, endpoint, account)
        for account in numbered_accounts(job.get("joiners", ["", 0, ""]))
    ]
    return members, posters, joiners


async def chat(reactor, job: dict) -> dict:
    """
    (l) and (m): a room of members (L{room_of_members}) sees a burst of
    C{lines} lines from its posters (L{RoomBurst}), C{window} ahead at
    most; then, given C{joiners}, each in turn JOINs the room and LEAVEs
    it again, C{warm} times untimed and C{joins} times timed, each JOIN
    timed to its reply and to the last member's push of it
    (L{JoinTimer}; each LEAVE waits for its own before the next JOIN).
    """
    members, posters, joiners = await room_of_members(reactor, job)
    deadline = time.perf_counter() + job["deadline"]
    outcome: dict = {}
    try:
        if job["lines"]:
            burst = RoomBurst(reactor, posters, members)
            try:
                make = line_maker(job)
                outcome.update(burst.run(make, job["lines"], job["window"], deadline))
                if "room" in job:
                    burst.wait_for_replies(job["lines"], deadline)
            finally:
                burst.close()
        if joiners:
            outcome.update(joins(reactor, job, joiners, members, deadline))
    finally:
        for connection in [*members, *posters, *joiners]:
            connection.transport.loseConnection()
    return outcome


def joins(reactor, job: dict, joiners: list, members: list, deadline: float) -> dict:
    """
    (m): the JOINs and LEAVEs of L{chat}, timed by a L{JoinTimer}.
    """
    room = job["room"]
    timer = JoinTimer(reactor, joiners, members)
    replies, events = [], []
    try:
        for n in range(job["warm"] + job["joins"]):
            joiner = n % len(joiners)
            join = serialize(request("JOIN", f"j{n}", room, {}))
            replied, pushed = timer.request(joiner, join, f"j{n}", deadline)
            if n >= job["warm"]:
                replies.append(replied)
                events.append(pushed)
            leave = serialize(request("LEAVE", f"l{n}", room, {}))
            timer.request(joiner, leave, f"l{n}", deadline)
    finally:
        timer.close()
    return {"join_reply_ms": replies, "join_event_ms": events}


WORKLOADS = {
    "burst": burst,
    "pingpong": pingpong,
    "logins": logins,
    "get_tcp": get_tcp,
    "get_udp": get_udp,
    "idle": idle,
    "fanout": fanout,
    "bridged": bridged,
    "chat": chat,
}


def main() -> None:
    job = json.loads(sys.argv[1])
    outcome: dict = {}

    async def run(reactor) -> None:
        try:
            outcome.update(await WORKLOADS[job["workload"]](reactor, job))
        except Exception as e:
            outcome["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(outcome), flush=True)
        if "error" in outcome:
            raise SystemExit(1)

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
