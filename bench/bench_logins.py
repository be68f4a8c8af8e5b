"""
Logins per second of a real C{twistd -n fmtp}: with a password (an scrypt
hash each, in the server's hash pool) and with a resumption token (a store
lookup each), every login on a new TCP connection, as a reconnect storm
after a network blip makes them.

    python bench/bench_logins.py [--seconds S] [--concurrency N] [--scrypt-n N]

The server runs in its own process (L{serverprocess}), with
C{--login-concurrent} raised so that the one source address of this
benchmark is not throttled; the clients run here, C{--concurrency} at a
time, each connecting, logging in and closing in a loop.  Prints one line
per kind; asserts nothing (refused logins are counted as errors).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import task
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

            async def with_password(client: Client, index: int) -> None:
                await client.login(USERS[index], PASSWORD)

            async def with_token(client: Client, index: int) -> None:
                await client.login_with_token(USERS[index], tokens[index])

            for name, login in [("password", with_password), ("token", with_token)]:
                rate, errors = await storm(
                    reactor, server.endpoint, args.seconds, args.concurrency, login
                )
                print(
                    f"{name:<9} logins/s {rate:8.0f}   errors {errors}"
                    f"   (scrypt N={args.scrypt_n}, {args.concurrency} at once)"
                )
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--scrypt-n", type=int, default=4096)
    args = parser.parse_args()
    task.react(lambda reactor: ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
