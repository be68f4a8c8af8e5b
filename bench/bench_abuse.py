"""
What abuse costs a server in memory, and whether it gives it back.

    python bench/bench_abuse.py [--connections N] [--held N] [--tracemalloc]

A real C{twistd -n fmtp} runs in a scratch directory (L{serverprocess});
load generators in other processes attack it, and the server's resident
memory (RSS, from C{/proc}) is printed before and after each attack, and
once more after the attackers are gone:

  - B{bad frames}: C{N} connections (19,000 by default) from
    L{WORKERS} processes, each sending about ten malformed frames of
    every kind (200,000 in all) and reading the replies;
  - B{held bodies}: 600 connections that have not logged in, each
    sending all but the last kilobyte of a 1 MB body, held for two
    seconds;
  - B{slow reader}: a session that never reads while another user SENDs
    it 150 messages of 1 MiB, then disconnects.

With C{--tracemalloc} the server runs in this process instead (the same
service tree, built by L{fmtp.server.build_server}), the attackers still in
others, and the Python allocations it still holds after the bad-frames
attack, then while the held bodies come in, are listed by where they were
made: how the culprit was found (the bodies of unauthenticated frames,
C{body += buf[pos:]} in the parser, 373 MB for 400 connections).
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from twisted.internet import task, threads
from twisted.internet.defer import ensureDeferred

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serverprocess import (  # noqa: E402
    DOMAIN,
    PASSWORD,
    ServerProcess,
    megabytes,
)

from fmtp.client import FrameClientProtocol, connect  # noqa: E402

#: Processes generating the bad-frames load.
WORKERS = 4
#: Connections each worker keeps open at once.
CONCURRENT = 25

#: About ten frames that each break a different rule, sent on every
#: connection; the last (an overlong line) makes the server close it.
BAD_FRAMES = b"".join(
    [
        b"X\n\n",
        b"GET\r\n\r\n",
        b"\xff\xfe 1\r\n\r\n",
        b"FROB%(n)d 1\r\n\r\n",
        b"200 r ok\r\n\r\n",
        b"LIST d\r\nLimit: 1\r\nlimit: 2\r\n\r\n",
        b"LIST e\r\nX-%(n)d: 1\r\n no colon\r\n\r\n",
        b"GET 2 not-an-id\r\n\r\n",
        b"PUT 3\r\nType: post\r\n\r\n",
        b"LIST 4\r\nType: \xff\r\n\r\n",
    ]
)
#: One connection in L{BIG_EVERY} also sends a PUT of almost 1 MiB without
#: logging in: refused, but only once its body is in.
BIG_BODY = b"PUT 9\r\nType: post\r\nLength: 1000000\r\n\r\n" + b"x" * 1000000
BIG_EVERY = 4
#: Every connection ends with an overlong line, which makes the server
#: close it.
LAST = b"GET 5 " + b"a" * 9000
FRAMES_PER_CONNECTION = 11


def attack(port: int, first: int, count: int) -> int:
    """
    One worker: C{count} connections, C{CONCURRENT} at a time, each
    sending L{BAD_FRAMES} (and one in L{BIG_EVERY} L{BIG_BODY}) then
    L{LAST}, and reading until the server closes it.

    @return: bytes of replies read.
    """
    received = 0
    numbers = iter(range(first, first + count))
    open_sockets: list[socket.socket] = []
    done = False
    while not done or open_sockets:
        while not done and len(open_sockets) < CONCURRENT:
            n = next(numbers, None)
            if n is None:
                done = True
                break
            s = socket.create_connection(("127.0.0.1", port))
            big = BIG_BODY if n % BIG_EVERY == 0 else b""
            s.sendall(BAD_FRAMES % {b"n": n} + big + LAST)
            open_sockets.append(s)
        s = open_sockets.pop(0)
        s.settimeout(30)
        try:
            while chunk := s.recv(65536):
                received += len(chunk)
        except OSError:
            pass
        s.close()
    return received


def hold_bodies(port: int, count: int, seconds: float) -> None:
    """
    One worker: C{count} connections at once, each sending all but the
    last kilobyte of L{BIG_BODY}'s frame, held for C{seconds}, then closed.
    """
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(BIG_BODY[:-1000])
        sockets.append(s)
    time.sleep(seconds)
    for s in sockets:
        s.close()


def run_held_bodies(port: int, connections: int, seconds: float = 2.0) -> None:
    with ProcessPoolExecutor(WORKERS) as pool:
        list(
            pool.map(
                hold_bodies,
                [port] * WORKERS,
                [connections // WORKERS] * WORKERS,
                [seconds] * WORKERS,
            )
        )


def show(snapshot, before, title: str) -> None:
    print(title)
    for stat in snapshot.compare_to(before, "traceback")[:5]:
        print(f"{stat.size_diff / 1e6:+.2f} MB in {stat.count_diff:+,} blocks")
        for line in stat.traceback.format()[-6:]:
            print("   ", line)


def run_attack(port: int, connections: int) -> tuple[int, float]:
    start = time.monotonic()
    share = connections // WORKERS
    with ProcessPoolExecutor(WORKERS) as pool:
        received = sum(
            pool.map(
                attack,
                [port] * WORKERS,
                [i * share for i in range(WORKERS)],
                [share] * WORKERS,
            )
        )
    return received, time.monotonic() - start


async def slow_reader(reactor, endpoint: str) -> tuple[int, FrameClientProtocol]:
    """
    lost logs in and never reads; edgar SENDs him 150 messages of 1 MiB.

    @return: how many SENDs were accepted, and lost's connection, still
        open and not reading.
    """
    edgar = await connect(reactor, endpoint)
    lost = await connect(reactor, endpoint)
    for connection, user in ((edgar, "edgar"), (lost, "lost")):
        answer = await connection.request(
            "LOGIN", headers={"Address": f"{user}@{DOMAIN}", "Password": PASSWORD}
        )
        assert answer.code == 230, answer
    lost.transport.pauseProducing()
    accepted = 0
    body = b"x" * (1 << 20)
    for _ in range(150):
        answer = await edgar.request(
            "SEND", headers={"To": f"lost@{DOMAIN}"}, body=body
        )
        accepted += answer.code == 201
    edgar.transport.loseConnection()
    return accepted, lost


async def twistd_run(reactor, connections: int, held: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="fmtp-bench-abuse-"))
    server = await ServerProcess(directory).started(reactor)
    try:
        await server.add_accounts(reactor, [f"edgar@{DOMAIN}", f"lost@{DOMAIN}"])
        print(f"server started:                 RSS {megabytes(server.rss())}")
        received, seconds = await threads.deferToThread(
            run_attack, server.port, connections
        )
        frames = connections * FRAMES_PER_CONNECTION
        print(
            f"{frames:,} bad frames on {connections:,} connections in "
            f"{seconds:.1f} s ({received / 1e6:.1f} MB of replies)"
        )
        print(f"after the bad frames:           RSS {megabytes(server.rss())}")
        await threads.deferToThread(run_held_bodies, server.port, held)
        print(
            f"after {held} connections each held 1 MB of a body, unauthenticated: "
            f"RSS {megabytes(server.rss())}"
        )
        accepted, lost = await slow_reader(reactor, server.endpoint)
        print(
            f"after {accepted} SENDs of 1 MiB to a session that never reads: "
            f"RSS {megabytes(server.rss())}"
        )
        lost.transport.abortConnection()
        await task.deferLater(reactor, 1.0)
        print(f"after it disconnected:          RSS {megabytes(server.rss())}")
        log = server.log_path.stat().st_size
        print(f"log written: {log / 1e6:.1f} MB")
    finally:
        server.stop()


async def tracemalloc_run(reactor, connections: int, held: int) -> None:
    """
    The server in this process, to see what its allocations are.
    """
    from fmtp.server import build_server

    directory = Path(tempfile.mkdtemp(prefix="fmtp-bench-abuse-"))
    root, services = build_server(
        reactor,
        domain=DOMAIN,
        store_url=f"sqlite:{directory / 'fmtp.sqlite'}",
        key_file=str(directory / "domain.key"),
        listeners={
            "object": ["tcp:0:interface=127.0.0.1"],
            "presence": ["none"],
            "chat": ["none"],
        },
    )
    root.startService()
    [listener] = root.listeners()
    port = (await listener.listening).getHost().port
    # The attack's first connections warm every cache; what is measured
    # is what the rest leave behind.
    await threads.deferToThread(run_attack, port, 400)
    gc.collect()
    tracemalloc.start(12)
    before = tracemalloc.take_snapshot()
    await threads.deferToThread(run_attack, port, connections)
    await task.deferLater(reactor, 1.0)
    gc.collect()
    after = tracemalloc.take_snapshot()
    current, peak = tracemalloc.get_traced_memory()
    print(f"traced now {megabytes(current)}, peak {megabytes(peak)}")
    show(after, before, "held after the bad frames:")
    holding = threads.deferToThread(run_held_bodies, port, held, 8.0)
    await task.deferLater(reactor, 6.0)
    show(tracemalloc.take_snapshot(), after, f"held while {held} bodies come in:")
    await holding
    await root.stopService()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=19000)
    parser.add_argument("--held", type=int, default=600)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args()
    run = tracemalloc_run if args.tracemalloc else twistd_run
    print(f"pid {os.getpid()}")
    task.react(
        lambda reactor: ensureDeferred(run(reactor, args.connections, args.held))
    )


if __name__ == "__main__":
    main()
