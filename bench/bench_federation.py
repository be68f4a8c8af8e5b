"""
How fast one server delivers its users' messages to another's.

    python bench/bench_federation.py

Two servers run in this process, as C{test_federation} runs them:
poe.net on 127.0.0.2 and lenore.org on 127.0.0.3, each built by
L{fmtp.server.build_server} with its SQLite store in a scratch directory, and
a real DNS server on 127.0.0.1 (L{tests.dnsserver}) publishing their SRV,
A and key records, so every message takes the path it takes between two
machines: edgar@poe.net SENDs, poe.net signs and queues it (durably, before
the 201), its queue finds lenore.org through DNS and delivers it over the
server link, lenore.org verifies poe.net's signature against the key in
DNS, files it in lost's inbox (durably) and pushes it to lost's session.

edgar keeps L{WINDOW} SENDs in flight, for L{MAX_MESSAGES} messages or
L{SEND_BUDGET} seconds, whichever comes first; the run ends when lost has
had every accepted message pushed to him, or at L{DEADLINE}.  Each message
carries its sequence number as a property, so its push is matched to the
moment it was sent without relying on the 201 arriving before the push.

Before that, two smaller runs.  A warm-up message goes first and is timed
alone: it pays for the DNS lookups and the HELLO handshake that every
later message finds done.  Then up to L{UNLOADED_MESSAGES} messages go one
at a time, each sent only once the previous one was pushed: the latency of
the path itself, with nothing waiting in the queue.  Under the pipelined
load the latency is mostly time spent waiting in poe.net's queue, since
SENDs are accepted faster than the queue delivers them (it delivers one
domain's messages one after another, on one link).

Reported: SENDs accepted per second (each 201 means the message and its
queue row are on disk), deliveries per second end to end (each push means
lenore.org has filed the message on disk), and the latency from SEND to
push, median and 95th percentile.  Nothing is asserted: this is a
measurement, printed as measured.  Both servers use the default SQLite
store with C{synchronous=FULL}, so the figures depend on this machine's
fsync as much as on fmtp.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet import task, threads
from twisted.internet.defer import Deferred, ensureDeferred

# Run from a checkout without installing: the checkout's fmtp (and its test
# DNS server) come first, not some installed fmtp.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fmtp.accounts import hash_password  # noqa: E402
from fmtp.client import FrameClientProtocol, connect  # noqa: E402
from fmtp.federation.queue import OutboundQueue  # noqa: E402
from fmtp.objects import user_object  # noqa: E402
from fmtp.server import ServerService, build_server  # noqa: E402
from fmtp.wire import Frame  # noqa: E402
from tests.dnsserver import fmtp_zone, start_dns_server  # noqa: E402

POE, LENORE = "poe.net", "lenore.org"
EDGAR, LOST = f"edgar@{POE}", f"lost@{LENORE}"
ADDRESSES = {POE: "127.0.0.2", LENORE: "127.0.0.3"}
PASSWORD = "a benchmark password"

#: SENDs in flight: the server's own C{FrameStreamProtocol.max_in_flight},
#: so it never needs to pause reading edgar's connection.
WINDOW = 32
#: edgar sends at most this many messages...
MAX_MESSAGES = 2000
#: ...for at most this many seconds...
SEND_BUDGET = 10.0
#: ...and the run ends this many seconds after the first SEND even if lost
#: is still missing some: the figures then cover what arrived.
DEADLINE = 20.0
#: The one-at-a-time run sends at most this many messages, for at most
#: this many seconds.
UNLOADED_MESSAGES = 200
UNLOADED_BUDGET = 3.0
#: Seconds the queue gets to settle its last rows after the run, before
#: its counters are read.
SETTLE_TIMEOUT = 5.0
#: The property that carries each message's sequence number.
SEQUENCE = "Bench-Seq"
#: A short letter: the cost measured is the path, not the bytes.
BODY = b"Once upon a midnight dreary, while I pondered, weak and weary\n" * 4


@dataclass
class Run:
    """
    What one measured run saw, in seconds since its first SEND.
    """

    mode: str
    sent_at: dict[int, float] = field(default_factory=dict)
    accepted_at: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    delivered_at: list[float] = field(default_factory=list)
    refused: int = 0
    #: Pushes that matched no message of the run (bounces, say).
    strays: int = 0


@dataclass
class Server:
    root: ServerService
    services: object
    endpoint: str

    @property
    def queue(self) -> OutboundQueue:
        return next(s for s in self.root if isinstance(s, OutboundQueue))


async def start_server(
    reactor, directory: Path, dns, domain: str, address: str
) -> Server:
    """
    Start C{domain}'s server on port 0 of C{address}, then publish its
    zone (SRV, A and key records) with the port it bound.
    """
    (directory / domain).mkdir()
    root, services = build_server(
        reactor,
        domain=domain,
        store_url=f"sqlite:{directory / domain / 'fmtp.sqlite'}",
        key_file=str(directory / f"{domain}.key"),
        listeners={"object": [f"tcp:0:interface={address}"]},
        nameservers=[dns.nameserver],
    )
    root.startService()
    [listener] = root.listeners()
    port = await listener.listening
    if port is None:
        raise RuntimeError(f"cannot listen on {listener.description}")
    bound = port.getHost().port
    dns.set_zone(
        domain, fmtp_zone(domain, address, bound, [services.signer.public_key()])
    )
    return Server(root, services, f"tcp:{address}:{bound}")


async def add_account(server: Server, address: str, encoded: str) -> None:
    store = server.services.store
    await store.add_account(address, encoded)
    await store.put_object(user_object(address))


async def login(reactor, server: Server, address: str) -> FrameClientProtocol:
    client = await connect(reactor, server.endpoint)
    answer = await client.request(
        "LOGIN", headers={"Address": address, "Password": PASSWORD}
    )
    if answer.code != 230:
        raise RuntimeError(f"cannot log in as {address}: {answer}")
    return client


async def measure(
    reactor, edgar: FrameClientProtocol, lost: FrameClientProtocol
) -> Run:
    """
    Send and count pushes as described in the module docstring.
    """
    run = Run(f"{WINDOW} in flight")
    finished: Deferred[None] = Deferred()
    issued = answered = 0
    sending = True

    def now() -> float:
        return time.perf_counter() - start

    def check_done() -> None:
        everything = not sending and answered == issued
        if everything and len(run.delivered_at) >= len(run.accepted_at):
            if not finished.called:
                finished.callback(None)

    def issue() -> None:
        nonlocal issued
        seq = issued
        issued += 1
        run.sent_at[seq] = now()
        d = edgar.request("SEND", headers={"To": LOST, SEQUENCE: str(seq)}, body=BODY)
        d.addCallbacks(sent, failed)

    def sent(answer: Frame) -> None:
        if answer.code == 201:
            run.accepted_at.append(now())
        else:
            run.refused += 1
        completed()

    def failed(failure) -> None:
        run.refused += 1
        completed()

    def completed() -> None:
        nonlocal answered, sending
        answered += 1
        if sending and issued < MAX_MESSAGES and now() < SEND_BUDGET:
            issue()
        else:
            sending = False
            check_done()

    def pushed(frame: Frame) -> None:
        at = now()
        seq = int(frame.headers.get(SEQUENCE, "-1"))
        if seq not in run.sent_at:
            run.strays += 1
        else:
            run.latencies.append(at - run.sent_at.pop(seq))
            run.delivered_at.append(at)
        check_done()
        if not finished.called:
            lost.pushes.get().addCallback(pushed)

    lost.pushes.get().addCallback(pushed)
    start = time.perf_counter()
    for _ in range(WINDOW):
        issue()
    finished.addTimeout(DEADLINE, reactor)
    try:
        await finished
    except Exception:
        pass  # the deadline: report what arrived
    sending = False
    return run


async def one_at_a_time(
    reactor, edgar: FrameClientProtocol, lost: FrameClientProtocol
) -> Run:
    """
    Send a message, wait until it is pushed, send the next: the latency of
    the path with nothing queued ahead.
    """
    run = Run("1 at a time")
    start = time.perf_counter()
    seq = 0
    while seq < UNLOADED_MESSAGES and time.perf_counter() - start < UNLOADED_BUDGET:
        sent_at = time.perf_counter() - start
        answer = await edgar.request(
            "SEND", headers={"To": LOST, SEQUENCE: str(seq)}, body=BODY
        )
        if answer.code != 201:
            run.refused += 1
            continue
        run.accepted_at.append(time.perf_counter() - start)
        while True:
            push = lost.pushes.get()
            push.addTimeout(DEADLINE, reactor)
            frame = await push
            if frame.headers.get(SEQUENCE) == str(seq):
                break
            run.strays += 1
        delivered_at = time.perf_counter() - start
        run.delivered_at.append(delivered_at)
        run.latencies.append(delivered_at - sent_at)
        seq += 1
    return run


async def settle(reactor, server: Server, domain: str) -> int:
    """
    Wait (briefly) until C{server} has no row queued for C{domain}: the
    last push can reach lost before poe.net has heard the DELIVER reply and
    removed its row.

    @return: the rows still queued.
    """
    deadline = time.perf_counter() + SETTLE_TIMEOUT
    while True:
        queued = len(await server.services.store.queued_for(domain))
        if not queued or time.perf_counter() > deadline:
            return queued
        await task.deferLater(reactor, 0.05, lambda: None)


async def benchmark(reactor, directory: Path) -> tuple[float, list[Run], dict]:
    """
    Start both servers and the DNS server, run the three measurements, and
    stop everything whatever happens.

    @return: the cold message's latency, the runs, and poe.net's queue
        counters.
    """
    dns = start_dns_server({}, reactor)
    servers: list[Server] = []
    clients: list[FrameClientProtocol] = []
    try:
        poe = await start_server(reactor, directory, dns, POE, ADDRESSES[POE])
        servers.append(poe)
        lenore = await start_server(reactor, directory, dns, LENORE, ADDRESSES[LENORE])
        servers.append(lenore)
        # scrypt at full cost, in a thread as the server's own checks are.
        encoded = await threads.deferToThread(hash_password, PASSWORD)
        await add_account(poe, EDGAR, encoded)
        await add_account(lenore, LOST, encoded)
        edgar = await login(reactor, poe, EDGAR)
        clients.append(edgar)
        lost = await login(reactor, lenore, LOST)
        clients.append(lost)

        # The warm-up: DNS lookups, HELLO both ways, the link.
        start = time.perf_counter()
        answer = await edgar.request("SEND", headers={"To": LOST}, body=BODY)
        if answer.code != 201:
            raise RuntimeError(f"cannot send: {answer}")
        first = lost.pushes.get()
        first.addTimeout(DEADLINE, reactor)
        await first
        cold = time.perf_counter() - start

        runs = [
            await one_at_a_time(reactor, edgar, lost),
            await measure(reactor, edgar, lost),
        ]
        still_queued = await settle(reactor, poe, LENORE)
        stats = poe.queue.stats
        queue = {
            "delivered": stats.delivered,
            "retried": stats.retried,
            "bounced": stats.bounced,
            "still queued": still_queued,
        }
        return cold, runs, queue
    finally:
        for client in clients:
            client.transport.loseConnection()
            await client.closed
        for server in servers:
            await server.root.stopService()
        await dns.stop()


def percentile(values: list[float], fraction: float) -> float:
    """
    The C{fraction} quantile of C{values} (nearest rank).
    """
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def rate(times: list[float]) -> float:
    """
    Events per second, from the first SEND to the last event.
    """
    return len(times) / max(times) if times else 0.0


def print_table(cold: float, runs: list[Run], queue: dict) -> None:
    print(
        f"fmtp federation: edgar@poe.net -> lost@lenore.org, two servers on "
        f"loopback, SQLite stores, {len(BODY)}-byte bodies"
    )
    print(
        f"{'mode':<13}{'sent':>6}{'sent/s':>8}{'pushed':>8}{'pushed/s':>10}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'missing':>9}{'errors':>8}"
    )
    for run in runs:
        ms = [1000 * x for x in run.latencies] or [0.0]
        print(
            f"{run.mode:<13}{len(run.accepted_at):>6}{rate(run.accepted_at):>8.0f}"
            f"{len(run.delivered_at):>8}{rate(run.delivered_at):>10.0f}"
            f"{percentile(ms, 0.5):>9.1f}{percentile(ms, 0.95):>9.1f}"
            f"{max(ms):>9.1f}"
            f"{len(run.accepted_at) - len(run.delivered_at):>9}"
            f"{run.refused + run.strays:>8}"
        )
    print(f"first message (DNS lookups, HELLO, link): {1000 * cold:.1f} ms")
    print("poe.net queue: " + ", ".join(f"{k} {v}" for k, v in queue.items()))
    print(
        "sent: SENDs answered 201 (message and queue row fsynced on poe.net); "
        "pushed: 250s on lost's session (filed and fsynced on lenore.org); "
        "latency: SEND to push; missing: sent, not pushed by the deadline."
    )


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="fmtp-bench-federation-"))

    async def run(reactor) -> None:
        print_table(*await benchmark(reactor, directory))

    try:
        task.react(lambda reactor: ensureDeferred(run(reactor)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
