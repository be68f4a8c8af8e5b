"""
The fmtp benchmark harness: real servers, real sockets, one table.

    python -m bench [--runs 3] [--quick] ...

It starts C{twistd -n fmtp} servers (SQLite, on loopback; see
L{bench.serverprocess}) and the bare Twisted relay (L{bench.relay}) pinned
to one core (but for the login rows' own server, which runs on both),
and runs each workload in a load generator process of its own
(L{bench.loadgen}) pinned to the other, where C{taskset} exists.  This
process runs the DNS server through which the two federation servers find
each other (L{tests.dnsserver}), and prints the table: each figure the
median of C{--runs} runs with their spread, and beside the fmtp figures
their share of the relay's.  Rows are explained in doc/performance.md.

It exits non-zero if a workload fails (a request refused, a message never
delivered), never because of a figure: C{--quick} (small counts, one run,
under a minute) is the smoke test CI runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, protocol, task
from twisted.python import usage

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT))

from bench.serverprocess import (  # noqa: E402
    PASSWORD,
    ServerProcess,
    child_environment,
    pinned,
)
from bench.stats import Row, format_table, percentile  # noqa: E402
from fmtp.keys.keyfile import load_or_create_signer  # noqa: E402
from fmtp.store.bridges import Bridge  # noqa: E402
from tests.dnsserver import fmtp_zone, start_dns_server  # noqa: E402

SERVER_CPUS, CLIENT_CPUS = "0", "1"
#: Every core: the harness pins itself to CLIENT_CPUS, and a server
#: started without a CPU list would inherit that one core.
ALL_CPUS = f"0-{(os.cpu_count() or 1) - 1}"
A, B, IDLE = "a@localhost", "b@localhost", "idle@localhost"
#: The (i) rows' user whose status changes, seen by every subscriber.
TARGET = "target@localhost"
#: The (j) rows' bridge: the users it publishes for are "pub*"; its rate
#: (datagrams a second from 127.0.0.1, bursts of twice as many) is ten
#: times the default so that it is never what is measured: at 25 or more
#: updates a datagram it allows over a million updates a second, 50 times
#: the target, and its burst allowance holds a whole burst of 50,000
#: updates (some 2,000 datagrams) with room to spare.
BRIDGE = ("bench-isp", "ab" * 32)
BRIDGE_RATE = 50_000
POE, LENORE = "poe.net", "lenore.org"
EDGAR, LOST = f"edgar@{POE}", f"lost@{LENORE}"
ADDRESSES = {POE: "127.0.0.2", LENORE: "127.0.0.3"}

#: The login throttle raised, so that concurrent LOGINs from the one
#: address of the load generator are measured rather than refused (429).
LOGIN_LIMITS = (
    "--login-concurrent=1000",
    "--login-failures-per-account=1000",
    "--login-failures-per-source=1000",
)

#: (l) and (m): the owner of every room, the members (the first
#: CHAT_POSTERS of them made moderators, who post with the owner), and the
#: users who JOIN and LEAVE the largest room in (m).
CHAT_OWNER = "owner@localhost"
MEMBER, JOINER = "member{}@localhost", "joiner{}@localhost"
#: (n)'s members, on poe.net, of a room of lenore.org, and its size.
FEDERATED_MEMBER = "member{}@poe.net"
FEDERATED_ROOM = 100
CHAT_POSTERS, CHAT_JOINERS = 3, 4
#: Lines a burst of (l) may be ahead of what the members have had.
CHAT_WINDOW = 100
#: The bytes of the line the relay fans out in (l): about a chat push's
#: (the (l) rows show what one was).
CHAT_PUSH_BYTES = 570
#: The chat server's limits raised (doc/admin.md, "Chat rooms"), so that
#: no rate and no room size is what (l) and (m) measure: every JOIN and
#: the bursts' lines within them (the posters, owner and moderators, are
#: exempt from the member and room line rates anyway, not from the user's).
CHAT_LIMITS = (
    "--chat-member-rate=6000",
    "--chat-room-rate=600000",
    "--chat-user-rate=600000",
    "--chat-join-rate=6000",
)

RELAY_BURST = "(g) relay: 1:1 burst"
RELAY_P50 = "(g) relay: ping-pong p50"
RELAY_P99 = "(g) relay: ping-pong p99"
FANOUT_P50 = "(i) relay: fan-out p50"
FANOUT_P99 = "(i) relay: fan-out p99"


def warm_sessions(sessions: int) -> int:
    """
    The sessions a memory figure lets in before its first reading.
    """
    return max(8, sessions // 10)


def federated_subscribers(count: int) -> list[str]:
    """
    (k)'s subscribers, on poe.net, of a user of lenore.org.
    """
    return [f"fed{i}@{POE}" for i in range(count)]


def chat_accounts(template: str, count: int) -> list[str]:
    """
    C{count} addresses made from C{template} (as the load generator's
    C{numbered_accounts} makes them).
    """
    return [template.format(i) for i in range(count)]


def presence_users(prefix: str, count: int) -> list[str]:
    """
    C{count} addresses of the presence server, one per session.
    """
    return [f"{prefix}{i}@localhost" for i in range(count)]


class Options(usage.Options):
    synopsis = "python -m bench [options]"
    optFlags = [
        ["quick", "q", "Small counts and one run (under a minute): the CI smoke test."],
        ["keep", None, "Keep the scratch directory (servers' logs and databases)."],
    ]
    optParameters = [
        ["runs", "r", 3, "Runs of each workload; the table shows their median.", int],
        ["messages", "m", 20000, "Most messages in one burst.", int],
        ["budget", "b", 5.0, "Seconds a burst (or a GET run) keeps sending.", float],
        ["window", "w", 1000, "Messages sent but not yet received, at most.", int],
        ["rounds", None, 2000, "Ping-pong round trips (at most --budget x 2 s).", int],
        ["logins", None, 100, "LOGINs in each login run.", int],
        ["sessions", None, 1000, "Idle sessions for the memory figures.", int],
        ["subscribers", None, 100, "Subscribers a status change reaches (i).", int],
        ["changes", None, 200, "Timed status changes in each (i) run.", int],
        ["gets", None, 100000, "Most GETs in one run.", int],
        ["bridged", None, 1000, "Users a bridge publishes for in (j).", int],
        ["updates", None, 50000, "Status updates a bridge publishes in (j).", int],
        ["rooms", None, "100,1000", "Room sizes of (l); (m) joins the largest."],
        [
            "deliveries",
            None,
            200000,
            "Deliveries of each (l) burst (lines x members).",
            int,
        ],
        ["joins", None, 100, "Timed JOINs in each (m) run.", int],
        ["only", None, "", "Only these workloads, by letter (--only ae)."],
        [
            "profile",
            None,
            None,
            "Profile each server (cProfile) into DIR/NAME.prof, for pstats.",
        ],
    ]

    def postOptions(self) -> None:
        if self["quick"]:
            self.update(
                runs=1,
                messages=500,
                budget=1.0,
                window=200,
                rounds=100,
                logins=20,
                sessions=50,
                gets=2000,
                changes=30,
                bridged=100,
                updates=3000,
                rooms="20,50",
                deliveries=2000,
                joins=10,
            )
        try:
            self["room_sizes"] = sorted({int(n) for n in self["rooms"].split(",")})
        except ValueError:
            raise usage.UsageError("--rooms takes sizes: 100,1000") from None
        if not self["room_sizes"] or self["room_sizes"][0] < 2:
            raise usage.UsageError("a room of (l) has at least 2 members")


class LoadGenerator(protocol.ProcessProtocol):
    """
    One C{python -m bench.loadgen} child: its output, a Deferred for a
    C{ready} line and one for its end.
    """

    def __init__(self, announces: bool = False) -> None:
        self.announces = announces
        self.out = b""
        self.err = b""
        self.warm: defer.Deferred = defer.Deferred()
        self.ready: defer.Deferred = defer.Deferred()
        self.ended: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data
        for line, d in ((b"warm\n", self.warm), (b"ready\n", self.ready)):
            if line in self.out and not d.called:
                d.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason) -> None:
        for d in (self.warm, self.ready):
            if self.announces and not d.called:
                d.errback(RuntimeError(self.failure()))
        self.ended.callback(None)

    def outcome(self) -> dict:
        lines = [line for line in self.out.splitlines() if line.startswith(b"{")]
        if not lines:
            raise RuntimeError(self.failure())
        outcome = json.loads(lines[-1])
        if "error" in outcome:
            raise RuntimeError(outcome["error"])
        return outcome

    def failure(self) -> str:
        output = (self.out + self.err).decode(errors="replace")
        return f"load generator failed:\n{output[-2000:]}"


def spawn(reactor, job: dict) -> tuple[LoadGenerator, object]:
    generator = LoadGenerator(announces=job["workload"] == "idle")
    args = [
        *pinned(CLIENT_CPUS),
        sys.executable,
        "-m",
        "bench.loadgen",
        json.dumps(job),
    ]
    transport = reactor.spawnProcess(
        generator, args[0], args, env=child_environment(), path=str(CHECKOUT)
    )
    return generator, transport


async def run_job(reactor, job: dict) -> dict:
    generator, transport = spawn(reactor, job)
    transport.closeStdin()
    await generator.ended
    return generator.outcome()


class Harness:
    """
    The servers of one run of the harness, and the table's rows.
    """

    def __init__(self, reactor, options: Options, directory: Path) -> None:
        self.reactor = reactor
        self.options = options
        self.directory = directory
        self.rows: dict[str, Row] = {}
        self.errors: list[str] = []
        self.servers: list[ServerProcess] = []
        self.relay: subprocess.Popen | None = None
        self.dns = None
        self.logins: ServerProcess | None = None
        self.presence: ServerProcess | None = None
        self.chat: ServerProcess | None = None
        self.chat_rounds = 0
        self.reactor_class = "unknown"

    def row(self, name: str, unit: str, **kw) -> Row:
        if name not in self.rows:
            self.rows[name] = Row(name, unit, **kw)
        return self.rows[name]

    async def measure(
        self, name: str, unit: str, job: dict, figure, **kw
    ) -> dict | None:
        """
        Run C{job}, add C{figure(outcome)} to row C{name}; note an error.
        """
        if not self.wanted(name):
            return None
        row = self.row(name, unit, **kw)
        outcome = await self.attempt(row, job)
        if outcome is None:
            return None
        value = figure(outcome)
        if value is None:
            row.note = "n/a"
        else:
            row.values.append(value)
            print(f"  {name}: {value:.4g} {unit}", file=sys.stderr, flush=True)
        return outcome

    async def attempt(self, row: Row, job: dict) -> dict | None:
        """
        Run C{job} for C{row}: its outcome, or L{None} with the error noted.
        """
        try:
            return await run_job(self.reactor, job)
        except Exception as e:
            self.errors.append(f"{row.name}: {e}")
            row.note = "error"
            print(f"  {row.name}: ERROR {e}", file=sys.stderr, flush=True)
            return None

    # Servers

    def wanted(self, name: str) -> bool:
        """
        Whether row C{name} ("(a) ...") is among the workloads C{--only}
        names (all of them without it).
        """
        only = self.options["only"]
        return not only or name[1] in only

    async def start_server(
        self, name: str, *options: str, cpus: str | None = SERVER_CPUS, **kw
    ) -> ServerProcess:
        profile = self.options["profile"]
        if profile is not None:
            Path(profile).mkdir(parents=True, exist_ok=True)
            kw["profile"] = Path(profile).resolve() / f"{name}.prof"
        server = ServerProcess(self.directory / name, *options, cpus=cpus, **kw)
        self.servers.append(server)
        return await server.started(self.reactor)

    async def start(self) -> None:
        self.relay = subprocess.Popen(
            [*pinned(SERVER_CPUS), sys.executable, "-m", "bench.relay"],
            stdout=subprocess.PIPE,
            cwd=CHECKOUT,
            env=child_environment(),
        )
        self.relay_port = int(self.relay.stdout.readline().split()[1])
        self.single = await self.start_server(
            "single", *LOGIN_LIMITS, udp=True, unthrottled=True
        )
        await self.single.add_accounts(self.reactor, [A, B, IDLE])
        if self.wanted("(d)"):
            # The targets for logins are "on two cores": the (d) rows have
            # a server of their own on every core, whose password hash
            # pool is sized to them (fmtp.accounts.hash_threads).
            self.logins = await self.start_server(
                "logins", *LOGIN_LIMITS, cpus=ALL_CPUS
            )
            await self.logins.add_accounts(self.reactor, [A])
        if self.wanted("(h)") or self.wanted("(i)") or self.wanted("(j)"):
            # The presence rows: a server of their own (same settings as
            # the single one), so that nothing else lives in its memory.
            self.presence = await self.start_server(
                "presence", *LOGIN_LIMITS, presence=True
            )
            await self.presence.add_accounts(
                self.reactor,
                [
                    TARGET,
                    *presence_users("sub", self.options["subscribers"]),
                    *presence_users("idle", self.idle_presence_sessions()),
                ],
            )
        if self.wanted("(j)"):
            await self.add_bridged_users()
        if self.wanted("(l)") or self.wanted("(m)"):
            # The chat rows: a server of their own, whose limits let a room
            # take its largest size and one joiner more.
            largest = self.options["room_sizes"][-1]
            self.chat = await self.start_server(
                "chat",
                *LOGIN_LIMITS,
                *CHAT_LIMITS,
                f"--chat-max-members={max(1000, largest + CHAT_JOINERS)}",
                chat=True,
            )
            await self.chat.add_accounts(
                self.reactor,
                [
                    CHAT_OWNER,
                    *chat_accounts(MEMBER, largest - 1),
                    *chat_accounts(JOINER, CHAT_JOINERS),
                ],
            )
        named = re.search(r"reactor class: (\S+?)\.?$", self.single.log(), re.M)
        if named:
            self.reactor_class = named.group(1)
        self.dns = start_dns_server({}, self.reactor)
        self.federated = {}
        for domain, user in ((POE, EDGAR), (LENORE, LOST)):
            key_file = self.directory / f"{domain}.key"
            signer, _ = load_or_create_signer(key_file, domain)
            server = await self.start_server(
                domain,
                f"--domain={domain}",
                f"--key-file={key_file}",
                f"--dns={self.dns.dns_option}",
                *LOGIN_LIMITS,
                # (k)'s subscribers are all of poe.net: let them all wait
                # for the one user they follow.
                f"--presence-remote-max-pending={self.options['subscribers']}",
                *(CHAT_LIMITS if self.wanted("(n)") else ()),
                host=ADDRESSES[domain],
                presence=self.wanted("(k)"),
                chat=self.wanted("(n)"),
            )
            zone = fmtp_zone(domain, server.host, server.port, [signer.public_key()])
            self.dns.set_zone(domain, zone)
            await server.add_accounts(self.reactor, [user])
            self.federated[domain] = server
        if self.wanted("(k)"):
            await self.federated[POE].add_accounts(
                self.reactor, federated_subscribers(self.options["subscribers"])
            )
        if self.wanted("(n)"):
            await self.federated[POE].add_accounts(
                self.reactor, chat_accounts(FEDERATED_MEMBER, FEDERATED_ROOM - 1)
            )

    async def add_bridged_users(self) -> None:
        """
        (j)'s set-up, once: the bridge (its source 127.0.0.1/32), the
        users it publishes for, and one subscriber of each, approved.
        """
        count = self.options["bridged"]
        users = presence_users("pub", count)
        watchers = presence_users("watch", count)
        await self.presence.add_accounts(self.reactor, [*users, *watchers])
        await self.presence.add_bridge(
            self.reactor,
            Bridge(
                BRIDGE[0],
                "pub*@localhost",
                BRIDGE[1],
                0.0,
                ("127.0.0.1/32",),
                BRIDGE_RATE,
            ),
            list(zip(watchers, users, strict=True)),
        )

    def idle_presence_sessions(self) -> int:
        """
        (h)'s sessions, warm ones included: one user each.
        """
        sessions = self.options["sessions"]
        return sessions + warm_sessions(sessions)

    async def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.relay is not None:
            self.relay.terminate()
            self.relay.wait()
        if self.dns is not None:
            await self.dns.stop()

    # Workloads

    def burst_job(self, a, b, **kw) -> dict:
        o = self.options
        return {
            "workload": "burst",
            "a": a,
            "b": b,
            "messages": o["messages"],
            "budget": o["budget"],
            "window": o["window"],
            "deadline": o["budget"] * 10 + 30,
            **kw,
        }

    async def warm_up(self) -> None:
        """
        Untimed: a few messages on each path, so that first costs (the DNS
        lookups and HELLOs between the two servers, SQLite's caches) are
        paid before anything is timed.
        """
        single = ["127.0.0.1", self.single.port]
        poe = [ADDRESSES[POE], self.federated[POE].port]
        lenore = [ADDRESSES[LENORE], self.federated[LENORE].port]
        for job in (
            self.burst_job(
                single, single, a_login=[A, PASSWORD], b_login=[B, PASSWORD], to=B
            ),
            self.burst_job(
                poe,
                lenore,
                a_login=[EDGAR, PASSWORD],
                b_login=[LOST, PASSWORD],
                to=LOST,
            ),
        ):
            job.update(messages=20, deadline=60)
            await run_job(self.reactor, job)

    async def run_once(self, first: bool) -> None:
        o = self.options
        relay = ["127.0.0.1", self.relay_port]
        single = ["127.0.0.1", self.single.port]
        poe = [ADDRESSES[POE], self.federated[POE].port]
        lenore = [ADDRESSES[LENORE], self.federated[LENORE].port]
        a_b = {"a_login": [A, PASSWORD], "b_login": [B, PASSWORD]}
        rate = lambda outcome: outcome["rate"]  # noqa: E731

        if first:
            await self.memory(
                "(f) memory per idle session",
                self.single,
                {"login": [IDLE, PASSWORD]},
            )
            if self.presence is not None:
                await self.memory(
                    "(h) memory per idle presence session",
                    self.presence,
                    {
                        "logins": [
                            [user, PASSWORD]
                            for user in presence_users(
                                "idle", self.idle_presence_sessions()
                            )
                        ],
                        "status": True,
                        "port": self.presence.presence_port,
                    },
                )
        await self.measure(RELAY_BURST, "msgs/s", self.burst_job(relay, relay), rate)
        await self.measure(
            "(a) 1:1 burst, one server",
            "msgs/s",
            self.burst_job(single, single, to=B, **a_b),
            rate,
            relay=RELAY_BURST,
        )
        await self.measure(
            "(b) 1:1 burst, two servers",
            "msgs/s",
            self.burst_job(
                poe,
                lenore,
                to=LOST,
                a_login=[EDGAR, PASSWORD],
                b_login=[LOST, PASSWORD],
            ),
            rate,
            relay=RELAY_BURST,
        )
        pingpong = {
            "workload": "pingpong",
            "rounds": o["rounds"],
            "budget": o["budget"] * 2,
            "deadline": o["budget"] * 2 + 30,
        }
        for prefix, job, p50_relay, p99_relay in (
            ("(g) relay: ping-pong", {**pingpong, "a": relay, "b": relay}, None, None),
            (
                "(c) ping-pong",
                {**pingpong, "a": single, "b": single, "to_b": B, "to_a": A, **a_b},
                RELAY_P50,
                RELAY_P99,
            ),
        ):
            outcome = await self.latencies(prefix, job, p50_relay, p99_relay)
            if outcome is not None:
                self.rows[
                    f"{prefix} p50"
                ].detail = f"{len(outcome['latencies_ms'])} round trips"
        logins = {
            "workload": "logins",
            "endpoint": ["127.0.0.1", self.logins.port] if self.logins else single,
            "login": [A, PASSWORD],
            "count": o["logins"],
            "concurrency": 8,
            "deadline": 600,
        }
        for name, mode in (
            ("(d) password LOGIN", "open"),
            ("(d) reconnect + password LOGIN", "reconnect"),
            ("(d) reconnect + token LOGIN", "token"),
        ):
            await self.measure(
                name,
                "/s",
                {**logins, "mode": mode},
                lambda out: None if out.get("unsupported") else out["rate"],
            )
        object_id = await self.public_object()
        gets = {
            "count": o["gets"],
            "budget": o["budget"],
            "deadline": o["budget"] + 30,
            "id": object_id,
        }
        await self.measure(
            "(e) GET over TCP, pipelined",
            "req/s",
            {
                **gets,
                "workload": "get_tcp",
                "endpoint": single,
                "login": [A, PASSWORD],
                "window": 32,
            },
            rate,
            relay=RELAY_BURST,
        )
        outcome = await self.measure(
            "(e) GET over UDP",
            "req/s",
            {
                **gets,
                "workload": "get_udp",
                "server": ["127.0.0.1", self.single.udp_port],
                "window": 32,
                "resend": 0.2,
            },
            rate,
            relay=RELAY_BURST,
        )
        if outcome is not None:
            self.rows["(e) GET over UDP"].detail = f"{outcome['lost']} lost"
        if self.presence is not None:
            await self.fanout()
            await self.bridged()
        if self.wanted("(k)"):
            await self.federated_fanout()
        if self.wanted("(n)"):
            await self.federated_room()
        if self.chat is not None:
            await self.chat_rooms()

    async def chat_rooms(self) -> None:
        """
        (l): for each room size, a burst of lines from the posters to
        every member's session, and the same fan-out through the relay;
        (m): in the largest room, JOINs timed to their reply and to the
        last member's push of them.  Each run makes new rooms.
        """
        o = self.options
        self.chat_rounds += 1
        largest = o["room_sizes"][-1]
        for size in o["room_sizes"]:
            lines = max(10, o["deliveries"] // size) if self.wanted("(l)") else 0
            timed_joins = size == largest and self.wanted("(m)")
            if not lines and not timed_joins:
                continue
            job = {
                "workload": "chat",
                "lines": lines,
                "window": CHAT_WINDOW,
                "concurrency": 8,
                "deadline": lines * size / 2000 + o["joins"] * 0.5 + 60,
            }
            relay = f"(l) relay: fan-out to {size:,}"
            if lines:
                outcome = await self.measure(
                    relay,
                    "deliveries/s",
                    {
                        **job,
                        "endpoint": ["127.0.0.1", self.relay_port],
                        "count": size,
                        "line_bytes": CHAT_PUSH_BYTES,
                    },
                    lambda out: out["rate"],
                )
                if outcome is not None:
                    self.rows[relay].detail = burst_detail(outcome, 1)
            job.update(
                endpoint=["127.0.0.1", self.chat.chat_port],
                room=f"room{size}-{self.chat_rounds}@localhost",
                owner=[CHAT_OWNER, PASSWORD],
                members=[MEMBER, size - 1, PASSWORD],
                posters=min(CHAT_POSTERS, size - 1),
            )
            if timed_joins:
                job.update(
                    joiners=[JOINER, CHAT_JOINERS, PASSWORD], joins=o["joins"], warm=5
                )
            name = f"(l) chat: deliveries/s, room of {size:,}"
            if lines:
                outcome = await self.measure(
                    name, "deliveries/s", job, lambda out: out["rate"], relay=relay
                )
                if outcome is not None:
                    self.rows[name].detail = burst_detail(outcome, 1 + job["posters"])
            else:
                prefix = f"(m) chat: JOIN reply, room of {size:,}"
                row = self.row(f"{prefix} p50", "ms", higher_is_better=False)
                outcome = await self.attempt(row, job)
            if timed_joins and outcome is not None:
                self.join_rows(size, outcome)

    async def federated_room(self) -> None:
        """
        (n): a room of lenore.org whose members but its owner are users
        of poe.net, entered there: each line its owner says crosses once
        (a room-push through lenore.org's queue) and poe.net pushes it to
        its members' sessions (doc/protocol.md 10.9).
        """
        o = self.options
        self.chat_rounds += 1
        poe, lenore = self.federated[POE], self.federated[LENORE]
        lines = max(10, o["deliveries"] // (4 * FEDERATED_ROOM))
        job = {
            "workload": "chat",
            "lines": lines,
            "window": CHAT_WINDOW,
            "concurrency": 8,
            "deadline": lines * FEDERATED_ROOM / 1000 + 60,
            "endpoint": [poe.host, poe.chat_port],
            "home_endpoint": [lenore.host, lenore.chat_port],
            "room": f"fed{self.chat_rounds}@{LENORE}",
            "owner": [LOST, PASSWORD],
            "members": [FEDERATED_MEMBER, FEDERATED_ROOM - 1, PASSWORD],
            "posters": 0,
        }
        name = f"(n) chat across domains: deliveries/s, room of {FEDERATED_ROOM}"
        outcome = await self.measure(name, "deliveries/s", job, lambda out: out["rate"])
        if outcome is not None:
            self.rows[name].detail = (
                f"{burst_detail(outcome, 1)}; {FEDERATED_ROOM - 1} members on the "
                "other domain"
            )

    def join_rows(self, size: int, outcome: dict) -> None:
        """
        (m)'s rows from a chat job's outcome: each JOIN's reply, and its
        member change reaching the last of the members, p50 and p99.
        """
        for what, key in (
            (f"JOIN reply, room of {size:,}", "join_reply_ms"),
            (f"JOIN pushed to {size:,} members", "join_event_ms"),
        ):
            values = outcome[key]
            for suffix, fraction in (("p50", 0.5), ("p99", 0.99)):
                row = self.row(
                    f"(m) chat: {what} {suffix}", "ms", higher_is_better=False
                )
                row.values.append(percentile(values, fraction))
                row.detail = f"{len(values)} JOINs" if suffix == "p50" else ""
            print(
                f"  (m) chat: {what} p50: {percentile(values, 0.5):.3g} ms",
                file=sys.stderr,
                flush=True,
            )

    async def federated_fanout(self) -> None:
        """
        (k): a status change of a user of lenore.org reaching their
        C{--subscribers} subscribers on poe.net: one update between the
        servers, then one push per session (doc/protocol.md 9.7).
        """
        count = self.options["subscribers"]
        poe, lenore = self.federated[POE], self.federated[LENORE]
        job = {
            **self.fanout_job(),
            "deadline": self.options["changes"] * 0.5 + 60,
            "endpoint": [poe.host, poe.presence_port],
            "target_endpoint": [lenore.host, lenore.presence_port],
            "changers": 4,
            "target": [LOST, PASSWORD],
            "subscribers": [[u, PASSWORD] for u in federated_subscribers(count)],
        }
        prefix = f"(k) status across domains to {count} subscribers"
        outcome = await self.latencies(prefix, job, None, None)
        if outcome is not None:
            self.rows[f"{prefix} p50"].detail = (
                f"{len(outcome['latencies_ms'])} changes, {count} sessions on "
                "the other domain"
            )

    async def bridged(self) -> None:
        """
        (j): a bridge's status updates over UDP, accepted and delivered to
        each user's subscriber over TCP.
        """
        o = self.options
        count, updates = o["bridged"], o["updates"]
        name = "(j) UDP updates accepted"
        outcome = await self.measure(
            name,
            "updates/s",
            {
                "workload": "bridged",
                "endpoint": ["127.0.0.1", self.presence.presence_port],
                "server": ["127.0.0.1", self.presence.presence_udp_port],
                "bridge": list(BRIDGE),
                "users": presence_users("pub", count),
                "watchers": [[w, PASSWORD] for w in presence_users("watch", count)],
                "updates": updates,
                "window": 64,
                "resend": 0.5,
                "concurrency": 8,
                "deadline": updates / 500 + 60,
            },
            lambda out: out["accepted"],
        )
        if outcome is None:
            return
        cpu = outcome["client_cpu_seconds"] / outcome["seconds"]
        self.rows[name].detail = (
            f"{updates} updates, {outcome['datagrams']} datagrams, {count} users; "
            f"{outcome['resent']} resent; client CPU {cpu:.0%}"
        )
        delivered = self.row("(j) UDP updates delivered", "pushes/s")
        delivered.values.append(outcome["delivered"])
        delivered.detail = (
            f"{outcome['pushes']} pushes to {count} subscribers (coalesced), "
            f"all on their final state after {outcome['delivered_seconds']:.2f} s "
            f"({updates / outcome['delivered_seconds']:.0f} updates/s)"
        )

    def fanout_job(self) -> dict:
        """
        What (i) and (k) share: C{--subscribers} sessions see C{--changes}
        status changes, one at a time, after 5 untimed.
        """
        o = self.options
        return {
            "workload": "fanout",
            "count": o["subscribers"],
            "changes": o["changes"],
            "warm": 5,
            "interval": 0.03,
            "concurrency": 8,
            "deadline": o["changes"] * 0.5 + 30,
        }

    async def fanout(self) -> None:
        """
        (i): a status change reaching C{--subscribers} subscribers'
        sessions, on the presence server and, for comparison, as a line
        the relay writes to as many connections.
        """
        count = self.options["subscribers"]
        job = self.fanout_job()
        relay = {**job, "endpoint": ["127.0.0.1", self.relay_port], "changers": 1}
        presence = {
            **job,
            "endpoint": ["127.0.0.1", self.presence.presence_port],
            # Round four sessions of the target, each under its 10
            # changes a second (doc/protocol.md 9.1).
            "changers": 4,
            "target": [TARGET, PASSWORD],
            "subscribers": [[u, PASSWORD] for u in presence_users("sub", count)],
        }
        for prefix, job, p50_relay, p99_relay in (
            ("(i) relay: fan-out", relay, None, None),
            (f"(i) status to {count} subscribers", presence, FANOUT_P50, FANOUT_P99),
        ):
            outcome = await self.latencies(prefix, job, p50_relay, p99_relay)
            if outcome is not None:
                client = percentile(outcome["client_ms"], 0.5)
                self.rows[f"{prefix} p50"].detail = (
                    f"{len(outcome['latencies_ms'])} changes, "
                    f"{count} sessions; client CPU {client:.2f} ms"
                )

    async def latencies(
        self, prefix: str, job: dict, p50_relay: str | None, p99_relay: str | None
    ) -> dict | None:
        """
        Run C{job}, whose outcome holds C{latencies_ms}; add their median
        to row C{prefix p50} and their 99th percentile to C{prefix p99},
        each a share of the relay row named beside it (if any).
        """
        outcome = await self.measure(
            f"{prefix} p50",
            "ms",
            job,
            lambda out: percentile(out["latencies_ms"], 0.5),
            higher_is_better=False,
            relay=p50_relay,
        )
        if outcome is not None:
            row = self.row(
                f"{prefix} p99", "ms", higher_is_better=False, relay=p99_relay
            )
            row.values.append(percentile(outcome["latencies_ms"], 0.99))
        return outcome

    async def public_object(self) -> str:
        """
        The id of a public object of A's on the single server (made once).
        """
        if not hasattr(self, "object_id"):
            from fmtp.client import connect

            client = await connect(self.reactor, self.single.endpoint)
            try:
                answer = await client.request(
                    "LOGIN", headers={"Address": A, "Password": PASSWORD}
                )
                assert answer.code == 230, answer
                answer = await client.request(
                    "PUT", headers={"Type": "post", "Public": "yes"}, body=b"x" * 512
                )
                assert answer.code == 201, answer
                self.object_id = answer.headers["Id"]
            finally:
                client.transport.loseConnection()
        return self.object_id

    async def memory(self, name: str, server: ServerProcess, how: dict) -> None:
        """
        (f) and (h): the growth of C{server}'s resident memory while
        C{--sessions} idle sessions log in, over their number, measured
        after a tenth as many (at least 8) are in: those pay for what
        concurrent LOGINs cost once (threads, scrypt's buffers).

        @param how: the load generator's C{login} (or C{logins}, one
            account a session), C{status} (make each session available
            with a first C{STATUS}) and C{port} (by default the server's
            object protocol).
        """
        if not self.wanted(name):
            return
        row = self.row(name, "bytes", higher_is_better=False)
        sessions = self.options["sessions"]
        generator, transport = spawn(
            self.reactor,
            {
                "workload": "idle",
                "endpoint": ["127.0.0.1", how.pop("port", server.port)],
                **how,
                "sessions": sessions,
                "warm": warm_sessions(sessions),
                "concurrency": 8,
                "deadline": 600,
            },
        )
        try:
            await generator.warm
            await task.deferLater(self.reactor, 1.0)
            before = server.rss()
            transport.write(b"go\n")
            await generator.ready
            await task.deferLater(self.reactor, 1.0)
            after = server.rss()
        except Exception as e:
            self.errors.append(f"{name}: {e}")
            row.note = "error"
            generator.ready.addErrback(lambda failure: None)
            return
        finally:
            transport.closeStdin()
            await generator.ended
        row.values.append((after - before) / sessions)
        row.detail = f"RSS growth over {sessions} sessions"
        print(f"  {name}: {row.values[-1]:.0f} bytes", file=sys.stderr, flush=True)


def burst_detail(outcome: dict, posters: int) -> str:
    """
    What an (l) row says beside its figure: the burst's size, a push's
    bytes and the load generator's share of its own core.
    """
    cpu = outcome["client_cpu_seconds"] / outcome["seconds"]
    return (
        f"{outcome['lines']} lines x {outcome['members']} members from "
        f"{posters} poster(s); {outcome['bytes_per_delivery']:.0f} B a push; "
        f"client CPU {cpu:.0%}"
    )


async def main(reactor, options: Options) -> int:
    directory = Path(tempfile.mkdtemp(prefix="fmtp-bench-"))
    harness = Harness(reactor, options, directory)
    started = time.monotonic()
    try:
        await harness.start()
        await harness.warm_up()
        for run in range(options["runs"]):
            print(f"run {run + 1} of {options['runs']}", file=sys.stderr, flush=True)
            await harness.run_once(first=run == 0)
    except Exception as e:
        harness.errors.append(f"set-up: {e}")
    finally:
        await harness.stop()
        if options["keep"]:
            print(f"scratch directory kept: {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    # The relay's rows last.
    order = sorted(harness.rows.values(), key=lambda row: "relay:" in row.name)
    pinning = (
        "server on CPU 0, clients on CPU 1"
        if pinned("0")
        else "not pinned (no taskset)"
    )
    print(
        f"fmtp benchmark: {os.cpu_count()} cores, {pinning}; "
        f"{options['runs']} run(s), median and min-max; "
        f"{time.monotonic() - started:.0f} s; server reactor: "
        f"{harness.reactor_class}"
    )
    print(format_table(order))
    for error in harness.errors:
        print(f"ERROR {error}")
    return 1 if harness.errors else 0


def run(argv: list[str] | None = None) -> None:
    options = Options()
    try:
        options.parseOptions(argv if argv is not None else sys.argv[1:])
    except usage.UsageError as e:
        raise SystemExit(f"{e}\n{options}")
    if pinned(CLIENT_CPUS) and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(CLIENT_CPUS)})
    from twisted.internet import reactor

    status = [1]

    def finished(result) -> None:
        if isinstance(result, int):
            status[0] = result
        else:
            print(result.getTraceback(), file=sys.stderr)
        reactor.stop()

    def start() -> None:
        defer.Deferred.fromCoroutine(main(reactor, options)).addBoth(finished)

    reactor.callWhenRunning(start)
    reactor.run()
    raise SystemExit(status[0])


if __name__ == "__main__":
    run()
