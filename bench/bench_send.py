"""
Messages per second of a pipelined burst of SENDs between two users of
one fmtp server (SQLite, durable), over real loopback sockets: what group
commit and one store call per SEND change.

Run it as C{python bench/bench_send.py}.  As L{bench_server}, it builds
the server in this process (L{fmtp.server.build_server}) and drives it
with L{fmtp.client}: client and server share one reactor and one core,
so the figures are for both ends together, for comparing one change with
another on the same machine.  A sender on L{CONNECTIONS} connections
keeps L{WINDOW} SENDs in flight on each to a recipient who is logged in
(and so is pushed each message), until L{MAX_REQUESTS} or L{BUDGET}
seconds.  It prints messages per second and the store's commits.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import task, threads
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_server import DOMAIN, PASSWORD, WINDOW, bound_ports  # noqa: E402

from fmtp.accounts import hash_password  # noqa: E402
from fmtp.client import connect  # noqa: E402
from fmtp.objects import user_object  # noqa: E402
from fmtp.server import build_server  # noqa: E402

SENDER = f"alice@{DOMAIN}"
RECIPIENT = f"bob@{DOMAIN}"
CONNECTIONS = 4
MAX_REQUESTS = 20000
BUDGET = 5.0


async def benchmark(reactor, directory: Path) -> None:
    root, services = build_server(
        reactor,
        domain=DOMAIN,
        store_url=f"sqlite:{directory / 'fmtp.sqlite'}",
        key_file=str(directory / "domain.key"),
        listeners={"object": ["tcp:0:interface=127.0.0.1"]},
    )
    root.startService()
    try:
        ports = await bound_ports(root)
        encoded = await threads.deferToThread(hash_password, PASSWORD)
        store = services.store
        for user in (SENDER, RECIPIENT):
            await store.add_account(user, encoded)
            await store.put_object(user_object(user))
        endpoint = f"tcp:127.0.0.1:{ports['tcp']}"

        async def login(address: str):
            connection = await connect(reactor, endpoint)
            answer = await connection.request(
                "LOGIN", headers={"Address": address, "Password": PASSWORD}
            )
            assert answer.code == 230, answer
            return connection

        await login(RECIPIENT)
        senders = [await login(SENDER) for _ in range(CONNECTIONS)]
        commits_before = getattr(store, "commits", None)
        issued = done = errors = 0
        start = time.perf_counter()

        def run(connection) -> Deferred[None]:
            finished: Deferred[None] = Deferred()
            state = {"issued": 0, "done": 0}

            def issue() -> None:
                nonlocal issued
                issued += 1
                state["issued"] += 1
                connection.request(
                    "SEND", headers={"To": RECIPIENT}, body=b"hello"
                ).addBoth(answered)

            def answered(answer) -> None:
                nonlocal done, errors
                done += 1
                state["done"] += 1
                errors += getattr(answer, "code", 0) != 201
                if issued < MAX_REQUESTS and time.perf_counter() - start < BUDGET:
                    issue()
                elif state["done"] == state["issued"] and not finished.called:
                    finished.callback(None)

            for _ in range(WINDOW):
                issue()
            return finished

        await gatherResults([run(c) for c in senders])
        elapsed = time.perf_counter() - start
        commits = getattr(store, "commits", None)
        print(
            f"{done} SENDs in {elapsed:.2f} s: {done / elapsed:,.0f} msgs/s, "
            f"{errors} errors, {CONNECTIONS}x{WINDOW} in flight"
        )
        if commits is not None and commits_before is not None:
            print(f"store commits: {commits - commits_before}")
    finally:
        await root.stopService()


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="fmtp-bench-send-"))
    try:
        task.react(lambda reactor: ensureDeferred(benchmark(reactor, directory)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
