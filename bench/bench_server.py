"""
Round trips per second of one fmtp server, over real loopback sockets.

Run it as C{python bench/bench_server.py}.  It builds a server in this
process with L{fmtp.server.build_server} (the same service tree C{twistd fmtp}
runs) on the real reactor, with an SQLite store in a temporary directory,
and drives it with L{fmtp.client}, the client the C{fmtp} command and the
tests use, so what is measured is what users run:

  - PUT and GET over TCP, one request at a time (each waits for the
    previous reply: latency-bound) and pipelined, L{WINDOW} requests in
    flight on one connection (throughput-bound);
  - GET over UDP with L{DatagramClient}, one at a time and L{WINDOW} at
    once.

Client and server share one process and one reactor, so the figures are
for both ends together on one core: a lower bound on what a server alone
does, good for comparing one change with another on the same machine,
not for capacity planning.

Each measurement stops at L{MAX_REQUESTS} or after L{BUDGET} seconds,
whichever comes first, so the whole run takes well under a minute.  The
script prints a table and asserts nothing: replies other than the expected
code are counted in the table's C{errors} column.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import task, threads
from twisted.internet.defer import Deferred, ensureDeferred

# Measure the checkout this script is in, not some installed fmtp.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fmtp.accounts import hash_password  # noqa: E402
from fmtp.client import DatagramClient, FrameClientProtocol, connect  # noqa: E402
from fmtp.framing.datagram import FrameDatagramProtocol  # noqa: E402
from fmtp.listeners import is_datagram  # noqa: E402
from fmtp.objects import user_object  # noqa: E402
from fmtp.protocols.object.plugin import ObjectProtocolPlugin  # noqa: E402
from fmtp.ratelimit import SourceRateLimiter  # noqa: E402
from fmtp.server import ServerService, build_server  # noqa: E402
from fmtp.services import SharedServices  # noqa: E402
from fmtp.wire import Frame  # noqa: E402

DOMAIN = "bench.example"
USER = f"bench@{DOMAIN}"
PASSWORD = "a benchmark password"

#: Requests in flight in the pipelined runs: the server's own
#: C{FrameStreamProtocol.max_in_flight}, so it never needs to pause reading.
WINDOW = 32
#: Each measurement stops after this many requests...
MAX_REQUESTS = 20000
#: ...or this many seconds, whichever comes first.
BUDGET = 4.0
#: Untimed requests before each measurement, so that first-call costs
#: (imports, SQLite page cache, the UDP cookie) are not timed.
WARMUP = 20
#: The body of every object: binary, and small enough that a GET reply fits
#: one datagram (1200 bytes with its headers), so TCP and UDP GETs fetch
#: the same thing.
BODY = bytes(range(256)) * 2


@dataclass
class Result:
    name: str
    mode: str
    requests: int
    seconds: float
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class UnthrottledObjectPlugin(ObjectProtocolPlugin):
    """
    The object protocol with its per-source datagram rate limit lifted.

    A server allows each source 20 datagrams a second (bursts of 40) and
    drops the rest, so from the single source a benchmark has, UDP would
    measure that limit (and the client's one-second retry timer), not the
    server.
    """

    def datagram_protocol(self, services: SharedServices) -> FrameDatagramProtocol:
        protocol = super().datagram_protocol(services)
        protocol.limiter = SourceRateLimiter(services.reactor, rate=1e9, burst=1e9)
        return protocol


async def sequential(
    name: str, send: Callable[[], Deferred[Frame]], expected: int
) -> Result:
    """
    Send requests one after another, each after the previous reply.
    """
    for _ in range(WARMUP):
        await send()
    done = errors = 0
    start = time.perf_counter()
    while done < MAX_REQUESTS and time.perf_counter() - start < BUDGET:
        try:
            answer = await send()
        except Exception:
            errors += 1
        else:
            errors += answer.code != expected
        done += 1
    return Result(name, "sequential", done, time.perf_counter() - start, errors)


async def pipelined(
    name: str, send: Callable[[], Deferred[Frame]], expected: int
) -> Result:
    """
    Keep L{WINDOW} requests in flight: each reply sends the next request,
    until the count or the time budget is spent and the last reply is in.
    """
    for _ in range(WARMUP):
        await send()
    finished: Deferred[None] = Deferred()
    issued = done = errors = 0
    start = time.perf_counter()

    def issue() -> None:
        nonlocal issued
        issued += 1
        send().addCallbacks(answered, failed)

    def answered(answer: Frame) -> None:
        nonlocal errors
        errors += answer.code != expected
        completed()

    def failed(failure) -> None:
        nonlocal errors
        errors += 1
        completed()

    def completed() -> None:
        nonlocal done
        done += 1
        if issued < MAX_REQUESTS and time.perf_counter() - start < BUDGET:
            issue()
        elif done == issued and not finished.called:
            finished.callback(None)

    for _ in range(WINDOW):
        issue()
    await finished
    elapsed = time.perf_counter() - start
    return Result(name, f"{WINDOW} in flight", done, elapsed, errors)


async def bound_ports(root: ServerService) -> dict[str, int]:
    """
    The ports the listeners bound, by C{"tcp"} and C{"udp"}: the server
    listens on port 0, so a benchmark never races anything for a port.
    """
    ports = {}
    for listener in root.listeners():
        port = await listener.listening
        if port is None:
            raise RuntimeError(f"cannot listen on {listener.description}")
        ports["udp" if is_datagram(listener.description) else "tcp"] = (
            port.getHost().port
        )
    return ports


async def benchmark(reactor, directory: Path) -> list[Result]:
    root, services = build_server(
        reactor,
        domain=DOMAIN,
        store_url=f"sqlite:{directory / 'fmtp.sqlite'}",
        key_file=str(directory / "domain.key"),
        listeners={
            "object": ["tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"]
        },
        plugins={"object": UnthrottledObjectPlugin()},
    )
    root.startService()
    results: list[Result] = []
    connection: FrameClientProtocol | None = None
    udp_port = None
    try:
        ports = await bound_ports(root)
        # hash_password is scrypt at full cost: tens of milliseconds of
        # CPU, so it runs in a thread like the server's own checks.
        encoded = await threads.deferToThread(hash_password, PASSWORD)
        await services.store.add_account(USER, encoded)
        await services.store.put_object(user_object(USER))

        connection = await connect(reactor, f"tcp:127.0.0.1:{ports['tcp']}")
        login = await connection.request(
            "LOGIN", headers={"Address": USER, "Password": PASSWORD}
        )
        if login.code != 230:
            raise RuntimeError(f"cannot log in: {login}")
        tcp = connection

        def put() -> Deferred[Frame]:
            return tcp.request(
                "PUT", headers={"Type": "post", "Public": "yes"}, body=BODY
            )

        # Each PUT is one autocommit transaction under synchronous=FULL:
        # its reply waits for an fsync of the WAL, so the PUT figures
        # measure this machine's fsync latency as much as fmtp.  They are
        # printed as measured; a PUT that did not wait would not be durable.
        results.append(await sequential("PUT  TCP", put, 201))
        results.append(await pipelined("PUT  TCP", put, 201))

        stored = await put()
        object_id = stored.headers["Id"]

        def get() -> Deferred[Frame]:
            return tcp.request("GET", object_id)

        results.append(await sequential("GET  TCP", get, 200))
        results.append(await pipelined("GET  TCP", get, 200))

        client = DatagramClient(reactor, "127.0.0.1", ports["udp"], timeout=1.0)
        udp_port = reactor.listenUDP(0, client, interface="127.0.0.1")

        def get_datagram() -> Deferred[Frame]:
            return Deferred.fromCoroutine(client.request("GET", object_id))

        # The first request fetches the cookie (an extra round trip), and is
        # part of the warm-up; every timed request echoes it.
        results.append(await sequential("GET  UDP", get_datagram, 200))
        results.append(await pipelined("GET  UDP", get_datagram, 200))
    finally:
        if udp_port is not None:
            await udp_port.stopListening()
        if connection is not None:
            connection.transport.loseConnection()
            await connection.closed
        await root.stopService()
    return results


def print_table(results: list[Result]) -> None:
    print(f"fmtp server, loopback, SQLite store; {len(BODY)}-byte bodies")
    print(
        f"{'operation':<10}{'mode':<14}{'requests':>9}{'seconds':>9}"
        f"{'req/s':>10}{'errors':>8}"
    )
    for r in results:
        print(
            f"{r.name:<10}{r.mode:<14}{r.requests:>9}{r.seconds:>9.2f}"
            f"{r.rate:>10.0f}{r.errors:>8}"
        )
    print(
        "PUT figures include an fsync per PUT (SQLite synchronous=FULL). "
        "UDP is measured with the per-source rate limit lifted."
    )


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="fmtp-bench-"))

    async def run(reactor) -> None:
        print_table(await benchmark(reactor, directory))

    try:
        task.react(lambda reactor: ensureDeferred(run(reactor)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
