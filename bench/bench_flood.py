"""
Does one client flooding a server take it from everyone else?

    python bench/bench_flood.py

A real C{twistd -n fmtp} runs in a scratch directory (L{serverprocess}).
A victim, in this process, GETs a small public object one request after
another, and its throughput and latency are measured alone, then while
flooders in another process keep L{WINDOW} SENDs each in flight (a 1 KiB
message to themselves): one flooder, then eight flooders who are eight
users, then eight connections of one user.

With the store's calls served first come first served, a flooder with 32
requests in flight gets 32 turns of the store's one thread for each of
the victim's; with the fair scheduler (L{fmtp.fairness}) each user (or
host) takes its turn.  The figures are printed as measured; the three
processes share this machine's cores, so compare runs on one machine.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import protocol, task
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serverprocess import (  # noqa: E402
    DOMAIN,
    PASSWORD,
    ServerProcess,
    child_environment,
)

from fmtp.client import connect  # noqa: E402

#: SENDs each flooder keeps in flight: the server's in-flight cap.
WINDOW = 32
#: Seconds the victim is measured in each phase...
MEASURE = 4.0
#: ...after the flooders have been at it for this long.
WARMUP = 1.0
BODY = b"x" * 1024
VICTIM = f"victim@{DOMAIN}"


def flooder_address(i: int) -> str:
    return f"flood{i}@{DOMAIN}"


async def flood(reactor, endpoint: str, users: list[str], seconds: float) -> None:
    """
    The flooders' process: log each user in on a connection of its own,
    say C{ready}, keep L{WINDOW} SENDs in flight on each for C{seconds},
    then print how many were answered.
    """
    connections = []
    for user in users:
        connection = await connect(reactor, endpoint)
        answer = await connection.request(
            "LOGIN", headers={"Address": user, "Password": PASSWORD}
        )
        assert answer.code == 230, answer
        connections.append((user, connection))
    print("ready", flush=True)
    stop = time.monotonic() + seconds
    sent = 0
    finished: list[Deferred] = []

    def keep_sending(user, connection) -> Deferred:
        done: Deferred = Deferred()
        in_flight = 0

        def issue() -> None:
            nonlocal in_flight
            in_flight += 1
            d = connection.request("SEND", headers={"To": user}, body=BODY)
            d.addBoth(answered)

        def answered(result) -> None:
            nonlocal in_flight, sent
            in_flight -= 1
            sent += 1
            if time.monotonic() < stop:
                issue()
            elif not in_flight:
                done.callback(None)

        for _ in range(WINDOW):
            issue()
        return done

    for user, connection in connections:
        finished.append(keep_sending(user, connection))
    await gatherResults(finished)
    print(json.dumps({"sends": sent, "seconds": seconds}), flush=True)
    for _, connection in connections:
        connection.transport.loseConnection()


class Flooders(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.ready: Deferred = Deferred()
        self.ended: Deferred = Deferred()
        self.output = b""

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if b"ready" in self.output and not self.ready.called:
            self.ready.callback(None)

    def errReceived(self, data: bytes) -> None:
        sys.stderr.write(data.decode(errors="replace"))

    def processEnded(self, reason) -> None:
        self.ended.callback(self.output.decode())


async def victim(reactor, endpoint: str, object_id: str, seconds: float) -> dict:
    connection = await connect(reactor, endpoint)
    latencies = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        start = time.perf_counter()
        answer = await connection.request("GET", object_id)
        latencies.append(time.perf_counter() - start)
        assert answer.code == 200, answer
    connection.transport.loseConnection()
    latencies.sort()
    return {
        "ops": len(latencies) / seconds,
        "p50": statistics.median(latencies) * 1000,
        "p95": latencies[int(len(latencies) * 0.95)] * 1000,
    }


async def phase(reactor, server: ServerProcess, name: str, users: list[str], oid):
    flooders = None
    if users:
        flooders = Flooders()
        reactor.spawnProcess(
            flooders,
            sys.executable,
            [
                sys.executable,
                __file__,
                "--flood",
                server.endpoint,
                str(WARMUP + MEASURE + 0.5),
                *users,
            ],
            env=child_environment(),
        )
        await flooders.ready
        await task.deferLater(reactor, WARMUP)
    measured = await victim(reactor, server.endpoint, oid, MEASURE)
    flood_rate = ""
    if flooders is not None:
        output = await flooders.ended
        report = json.loads(output.strip().splitlines()[-1])
        flood_rate = f"{report['sends'] / report['seconds']:>9.0f}"
    print(
        f"{name:<34}{measured['ops']:>9.0f}{measured['p50']:>9.1f}"
        f"{measured['p95']:>9.1f}{flood_rate}",
        flush=True,
    )


async def benchmark(reactor) -> None:
    directory = Path(tempfile.mkdtemp(prefix="fmtp-bench-flood-"))
    server = await ServerProcess(directory).started(reactor)
    try:
        flooders = [flooder_address(i) for i in range(8)]
        await server.add_accounts(reactor, [VICTIM, *flooders])
        connection = await connect(reactor, server.endpoint)
        answer = await connection.request(
            "LOGIN", headers={"Address": VICTIM, "Password": PASSWORD}
        )
        assert answer.code == 230, answer
        stored = await connection.request(
            "PUT", headers={"Type": "post", "Public": "yes"}, body=b"hello"
        )
        connection.transport.loseConnection()
        oid = stored.headers["Id"]
        print(f"victim: one GET at a time for {MEASURE:g} s; flooders: SENDs")
        print(f"{'':<34}{'GET/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'SEND/s':>9}")
        await phase(reactor, server, "alone", [], oid)
        await phase(reactor, server, "1 flooder", flooders[:1], oid)
        await phase(reactor, server, "8 flooders (8 users)", flooders, oid)
        await phase(reactor, server, "8 flooders (1 user)", flooders[:1] * 8, oid)
    finally:
        server.stop()


def main() -> None:
    if sys.argv[1:2] == ["--flood"]:
        endpoint, seconds, *users = sys.argv[2:]
        task.react(
            lambda reactor: ensureDeferred(
                flood(reactor, endpoint, users, float(seconds))
            )
        )
    else:
        task.react(lambda reactor: ensureDeferred(benchmark(reactor)))


if __name__ == "__main__":
    main()
