"""
Logins per second of a real C{twistd -n fmtp}: with a password (an scrypt
hash each, in the server's hash pool) and with a resumption token (a store
lookup each), every login on a new TCP connection, as a reconnect storm
after a network blip makes them.

    python bench/bench_logins.py [--seconds S] [--processes P]
                                 [--concurrency N] [--scrypt-n N]

The server runs in its own process (L{serverprocess}), with
C{--login-concurrent} raised so that the one source address of this
benchmark is not throttled; the clients run in C{--processes} other
processes (one Python client alone cannot open connections as fast as the
server takes token logins), C{--concurrency} at a time in each, each
connecting, logging in and closing in a loop.  Prints one line per kind;
asserts nothing (refused logins are counted as errors).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import task, threads
from twisted.internet.defer import ensureDeferred, gatherResults

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serverprocess import DOMAIN, PASSWORD, ServerProcess  # noqa: E402

from fmtp.client import Client, ReplyError  # noqa: E402

USERS = [f"user{i}@{DOMAIN}" for i in range(32)]


async def storm(reactor, endpoint: str, seconds: float, concurrency: int, login):
    """
    C{concurrency} loops of connect, C{login(client, index)}, close, for
    C{seconds}; the logins per second and the errors.
    """
    done = errors = 0
    deadline = time.monotonic() + seconds

    async def loop(index: int) -> None:
        nonlocal done, errors
        while time.monotonic() < deadline:
            client = await Client.connect(reactor, endpoint, timeout=30)
            try:
                await login(client, index % len(USERS))
                done += 1
            except ReplyError:
                errors += 1
            finally:
                await client.close()

    start = time.monotonic()
    await gatherResults([ensureDeferred(loop(i)) for i in range(concurrency)])
    return done / (time.monotonic() - start), errors


async def client_process(reactor, args) -> None:
    """
    One load generator: logins of one kind against a running server; prints
    C{rate errors}.
    """
    tokens = json.loads(Path(args.client[1]).read_text())
    kind = args.client[2]

    async def login(client: Client, index: int) -> None:
        if kind == "token":
            await client.login_with_token(USERS[index], tokens[index])
        else:
            await client.login(USERS[index], PASSWORD)

    rate, errors = await storm(
        reactor, args.client[0], args.seconds, args.concurrency, login
    )
    print(rate, errors)


def spread(args, endpoint: str, tokens_file: Path, kind: str) -> tuple[float, int]:
    """
    Run C{args.processes} load generators at once; their summed rate and
    errors.
    """
    command = [sys.executable, __file__, "--seconds", str(args.seconds)]
    command += ["--concurrency", str(args.concurrency)]
    command += ["--client", endpoint, str(tokens_file), kind]
    children = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        for _ in range(args.processes)
    ]
    total, errors = 0.0, 0
    for child in children:
        out, _ = child.communicate(timeout=args.seconds + 120)
        rate, failed = out.split()[-2:]
        total += float(rate)
        errors += int(failed)
    return total, errors


async def run(reactor, args) -> None:
    with tempfile.TemporaryDirectory(prefix="fmtp-bench-logins-") as scratch:
        server = ServerProcess(
            Path(scratch),
            "--login-concurrent",
            "100000",
            "--scrypt-n",
            str(args.scrypt_n),
        )
        try:
            await server.started(reactor)
            await server.add_accounts(reactor, USERS)
            tokens = []
            for user in USERS:
                client = await Client.connect(reactor, server.endpoint)
                # The first login also re-hashes at the server's cost.
                await client.login(user, PASSWORD, issue_token=True)
                tokens.append(client.token)
                await client.close()

            tokens_file = Path(scratch) / "tokens.json"
            tokens_file.write_text(json.dumps(tokens))
            for kind in ("password", "token"):
                rate, errors = await threads.deferToThread(
                    spread, args, server.endpoint, tokens_file, kind
                )
                print(
                    f"{kind:<9} logins/s {rate:8.0f}   errors {errors}   "
                    f"(scrypt N={args.scrypt_n}, {args.processes} client "
                    f"processes x {args.concurrency} at once)"
                )
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--scrypt-n", type=int, default=4096)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--client", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    main_of = client_process if args.client else run
    task.react(lambda reactor: ensureDeferred(main_of(reactor, args)))


if __name__ == "__main__":
    main()
