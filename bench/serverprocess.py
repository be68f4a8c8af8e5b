"""
A real C{twistd -n fmtp} for the benchmarks that need a server process of
its own: in a scratch directory, on a loopback port of its choosing, with
accounts made directly in its SQLite file, and its resident memory read
from C{/proc}.

Used by C{bench_flood.py} and C{bench_abuse.py}; not a benchmark itself.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from twisted.internet import threads
from twisted.internet.task import deferLater

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT))

from fmtp.accounts import hash_password  # noqa: E402
from fmtp.objects import user_object  # noqa: E402
from fmtp.store.sqlite import SQLiteStore  # noqa: E402

DOMAIN = "localhost"
PASSWORD = "a benchmark password"
SERVING = re.compile(r"Serving the object protocol on tcp:\S+ \(127\.0\.0\.1:(\d+)\)")


def child_environment() -> dict[str, str]:
    """
    The checkout first on C{PYTHONPATH}, so twistd finds this fmtp.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(CHECKOUT), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerProcess:
    """
    One C{twistd -n fmtp} child.

    @ivar port: the TCP port it serves the object protocol on.
    """

    def __init__(self, directory: Path, *options: str) -> None:
        self.directory = directory
        self.database = directory / "fmtp.sqlite"
        self.log_path = directory / "twistd.log"
        args = [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "--pidfile=",
            "fmtp",
            "--data-dir",
            str(directory / "data"),
            "--store",
            f"sqlite:{self.database}",
            "--listen-object",
            "tcp:0:interface=127.0.0.1",
            *options,
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                args,
                cwd=directory,
                env=child_environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.port = 0

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    async def started(self, reactor, timeout: float = 30.0) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while not (found := SERVING.search(self.log())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"twistd did not start:\n{self.log()}")
            await deferLater(reactor, 0.05)
        self.port = int(found.group(1))
        return self

    @property
    def endpoint(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    async def add_accounts(self, reactor, addresses: list[str]) -> None:
        """
        Make accounts in the server's database, as C{fmtp adduser} does,
        while it runs (SQLite in WAL mode allows it).
        """
        store = SQLiteStore(self.database, reactor)
        await store.open()
        try:
            encoded = await threads.deferToThread(hash_password, PASSWORD)
            for address in addresses:
                await store.add_account(address, encoded)
                await store.put_object(user_object(address))
        finally:
            await store.close()

    def rss(self) -> int:
        """
        The server's resident memory, in bytes.
        """
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
