"""
A real C{twistd -n fmtp} for the benchmarks that need a server process of
its own: in a scratch directory, on a loopback port of its choosing, with
accounts made directly in its SQLite file, and its resident memory read
from C{/proc}.

Used by the harness (C{python -m bench}), C{bench_flood.py} and
C{bench_abuse.py}; not a benchmark itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from twisted.internet import defer, threads
from twisted.internet.task import deferLater

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT))

from fmtp.accounts import hash_password  # noqa: E402
from fmtp.objects import user_object  # noqa: E402
from fmtp.store.bridges import Bridge  # noqa: E402
from fmtp.store.sqlite import SQLiteStore  # noqa: E402

DOMAIN = "localhost"
PASSWORD = "a benchmark password"
SERVING = re.compile(r"Serving the object protocol on tcp:\S+ \(127\.0\.0\.1:(\d+)\)")


def serving(kind: str, host: str, protocol: str = "object") -> re.Pattern[str]:
    """
    The line L{fmtp.listeners.Listener} logs once a C{kind} (C{tcp} or
    C{udp}) listener of C{protocol} is bound on C{host}: it names the port.
    """
    return re.compile(
        rf"Serving the {protocol} protocol on {kind}:\S+ \({re.escape(host)}:(\d+)\)"
    )


def pinned(cpus: str | None) -> list[str]:
    """
    The prefix that runs a command on C{cpus} (C{"0"}, C{"1-3"}) with
    C{taskset}, or nothing where there is no C{taskset} or no C{cpus}.
    """
    taskset = shutil.which("taskset")
    return [taskset, "-c", cpus] if cpus and taskset else []


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
    @ivar udp_port: its UDP port, if it was started with C{udp=True}.
    @ivar presence_port: the TCP port it serves the presence protocol on,
        if it was started with C{presence=True}.
    @ivar presence_udp_port: the UDP port it serves bridges on, then.
    @ivar chat_port: the TCP port it serves the chat protocol on, if it
        was started with C{chat=True}.
    """

    def __init__(
        self,
        directory: Path,
        *options: str,
        host: str = "127.0.0.1",
        udp: bool = False,
        presence: bool = False,
        chat: bool = False,
        cpus: str | None = None,
        unthrottled: bool = False,
        profile: Path | None = None,
    ) -> None:
        """
        @param options: more C{twistd fmtp} options (C{--domain}...).
        @param host: the loopback address it listens on.
        @param udp: also serve the object protocol over UDP on C{host}.
        @param presence: serve the presence protocol too, over TCP on a
            free port of C{host}; without it the server has none.
        @param cpus: pin it to these CPUs with C{taskset}, if there is one.
        @param unthrottled: lift the per-source datagram rate limit (see
            L{bench.unthrottled}), so that UDP measures the server.
        @param profile: write twistd's C{cProfile} statistics of the whole
            run to this file when the server stops (C{pstats} can read it).
        """
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.host = host
        self.udp = udp
        self.presence = presence
        self.chat = chat
        self.database = directory / "fmtp.sqlite"
        self.log_path = directory / "twistd.log"
        entry = (
            ["-m", "bench.unthrottled"]
            if unthrottled
            else ["-c", "from twisted.scripts.twistd import run; run()"]
        )
        listeners = [f"tcp:0:interface={host}"] + (
            [f"udp:0:interface={host}"] if udp else []
        )
        args = [
            *pinned(cpus),
            sys.executable,
            *entry,
            "-n",
            "--pidfile=",
            *(
                [f"--profile={profile}", "--profiler=cprofile", "--savestats"]
                if profile is not None
                else []
            ),
            "fmtp",
            "--data-dir",
            str(directory / "data"),
            "--store",
            f"sqlite:{self.database}",
            *(f"--listen-object={listener}" for listener in listeners),
            # Its default port would be shared by every server of a run.
            *(
                # TCP for sessions, UDP for bridges (doc/protocol.md 9.6).
                [
                    f"--listen-presence=tcp:0:interface={host}",
                    f"--listen-presence=udp:0:interface={host}",
                ]
                if presence
                else ["--listen-presence=none"]
            ),
            f"--listen-chat=tcp:0:interface={host}" if chat else "--listen-chat=none",
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
        self.udp_port = 0
        self.presence_port = 0
        self.presence_udp_port = 0
        self.chat_port = 0

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    async def started(self, reactor, timeout: float = 30.0) -> ServerProcess:
        deadline = time.monotonic() + timeout
        patterns = {"port": serving("tcp", self.host)}
        if self.udp:
            patterns["udp_port"] = serving("udp", self.host)
        if self.presence:
            patterns["presence_port"] = serving("tcp", self.host, "presence")
            patterns["presence_udp_port"] = serving("udp", self.host, "presence")
        if self.chat:
            patterns["chat_port"] = serving("tcp", self.host, "chat")
        while not all(found := [p.search(self.log()) for p in patterns.values()]):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"twistd did not start:\n{self.log()}")
            await deferLater(reactor, 0.05)
        for attribute, match in zip(patterns, found, strict=True):
            setattr(self, attribute, int(match.group(1)))
        return self

    @property
    def endpoint(self) -> str:
        return f"tcp:{self.host}:{self.port}"

    async def add_accounts(self, reactor, addresses: list[str]) -> None:
        """
        Make accounts in the server's database, as C{fmtp adduser} does,
        while it runs (SQLite in WAL mode allows it).
        """
        store = SQLiteStore(self.database, reactor)
        await store.open()
        try:
            encoded = await threads.deferToThread(hash_password, PASSWORD)

            async def add(address: str) -> None:
                await store.add_account(address, encoded)
                await store.put_object(user_object(address))

            # All at once, so that the store commits them in a few batches
            # rather than one fsync each (thousands for the presence rows).
            await defer.gatherResults(
                [defer.Deferred.fromCoroutine(add(a)) for a in addresses],
                consumeErrors=True,
            )
        finally:
            await store.close()

    async def add_bridge(
        self, reactor, bridge: Bridge, subscriptions: list[tuple[str, str]]
    ) -> None:
        """
        Add C{bridge} to the server's store, as C{fmtp bridge add} does,
        and each subscription (subscriber, user), approved.
        """
        store = SQLiteStore(self.database, reactor)
        await store.open()
        try:
            await store.add_bridge(bridge)

            async def subscribe(subscriber: str, user: str) -> None:
                await store.request_subscription(subscriber, user, 0.0, 1000)
                await store.approve_subscription(user, subscriber, 0.0)

            await defer.gatherResults(
                [defer.Deferred.fromCoroutine(subscribe(*s)) for s in subscriptions],
                consumeErrors=True,
            )
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
