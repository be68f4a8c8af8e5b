"""
The presence commands as a user runs them: real C{python -m fmtp}
processes against the server of L{tests.cli.test_messaging} (its presence
listener on a loopback port of its own, named by edgar's config file and
annabel's C{FMTP_PRESENCE_SERVER}), over real sockets and SQLite.
"""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.testing import MemoryReactorClock

from fmtp.cli import EXIT_INTERRUPTED, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE
from fmtp.cli.config import presence_server
from fmtp.cli.presence import hold
from fmtp.client import ConnectionLost
from fmtp.client.presence import Buddy, PushesDropped
from tests.cli.test_messaging import (  # noqa: F401 (fixtures)
    ANNABEL,
    COMMAND_TIMEOUT,
    EDGAR,
    Children,
    CLIServer,
    Ran,
    assert_clean,
    children,
    server,
)
from tests.helpers import eventually
from tests.integration.test_twistd import wait_for_exit


def buddies_of(ran: Ran) -> list[dict]:
    assert_clean(ran)
    return ran.json()["buddies"]


async def interrupt(child, err: Path) -> None:
    """
    Ctrl-C: the command ends with status 130 and says nothing.
    """
    child.send_signal(signal.SIGINT)
    assert await wait_for_exit(child, COMMAND_TIMEOUT) == EXIT_INTERRUPTED
    assert err.read_text() == ""


@pytest_twisted.ensureDeferred
async def test_subscribe_approve_buddies_status(
    server: CLIServer,  # noqa: F811
    children: Children,  # noqa: F811
) -> None:
    """
    Edgar asks to see annabel; she finds his request in her buddies and
    approves it; he sees her offline, then away with her note while her
    C{fmtp status away} runs, and offline again at once when she stops
    it with Ctrl-C (it logs out: no grace period).
    """
    asked = await children.run(["subscribe", ANNABEL], server.edgar)
    assert_clean(asked)
    assert asked.out == (
        f"{ANNABEL}: pending-out (you asked to see them; waiting for their answer)\n"
    )
    hers = await children.run(["buddies", "--json"], server.annabel)
    assert buddies_of(hers) == [
        {
            "address": EDGAR,
            "subscription": "pending-in",
            "status": "offline",
            "note": "",
        }
    ]
    approved = await children.run(["approve-sub", EDGAR, "--json"], server.annabel)
    assert_clean(approved)
    assert approved.json() == {"address": EDGAR, "subscription": "from"}

    holder, out, err = children.start(
        ["status", "away", "--note", "In the kingdom by the sea"], server.annabel
    )
    shown = await eventually(lambda: "subscribers see" in out.read_text())
    assert shown
    assert out.read_text() == (
        "Your status: away: In the kingdom by the sea (priority 0)\n"
        "Your subscribers see: away\n"
    )
    table = await children.run(["buddies"], server.edgar)
    assert_clean(table)
    assert table.out.splitlines() == [
        "CONTACT          SUBSCRIPTION  STATUS  NOTE",
        f"{ANNABEL}  to            away    In the kingdom by the sea",
    ]
    mine = await children.run(["status"], server.edgar)
    assert_clean(mine)
    assert mine.out == "Your subscribers see: offline\n"

    await interrupt(holder, err)
    gone = await children.run(["buddies", "--json"], server.edgar)
    assert buddies_of(gone) == [
        {"address": ANNABEL, "subscription": "to", "status": "offline", "note": ""}
    ]
    dropped = await children.run(["unsubscribe", ANNABEL], server.edgar)
    assert_clean(dropped)
    assert dropped.out == f"{ANNABEL}: none (neither of you sees the other)\n"


@pytest_twisted.ensureDeferred
async def test_watch_presence(
    server: CLIServer,  # noqa: F811
    children: Children,  # noqa: F811
) -> None:
    """
    C{fmtp watch --presence} prints annabel as she is, then her change
    made by another process, then her subscription request, one line
    each, and ends cleanly at Ctrl-C.
    """
    for ran in await children.run_all(
        (["subscribe", ANNABEL], server.edgar),
        (["approve-sub", EDGAR], server.annabel),
    ):
        assert_clean(ran)
    watcher, out, err = children.start(["watch", "--presence"], server.edgar)
    first = await eventually(lambda: out.read_text())
    assert first == f"{ANNABEL} is offline\n"

    holder, _, holder_err = children.start(
        ["status", "busy", "--note", "Writing"], server.annabel
    )
    await eventually(lambda: out.read_text().count("\n") == 2)
    asked = await children.run(["subscribe", EDGAR], server.annabel)
    assert_clean(asked)
    await eventually(lambda: out.read_text().count("\n") == 3)
    await interrupt(holder, holder_err)
    await eventually(lambda: out.read_text().count("\n") == 4)
    await interrupt(watcher, err)
    assert out.read_text().splitlines() == [
        f"{ANNABEL} is offline",
        f"{ANNABEL} is busy: Writing",
        f"{ANNABEL} asks to see your presence: fmtp approve-sub {ANNABEL} "
        "(or deny-sub)",
        f"{ANNABEL} is offline",
    ]


@pytest_twisted.ensureDeferred
async def test_watch_presence_json(
    server: CLIServer,  # noqa: F811
    children: Children,  # noqa: F811
) -> None:
    """
    C{--json}: one document a line, for scripts; the watcher's own
    C{--status} is what its subscribers see meanwhile.
    """
    approved = await children.run(["approve-sub", EDGAR], server.annabel)
    assert_clean(approved)
    watcher, out, err = children.start(
        ["watch", "--presence", "--status", "away", "--json"], server.annabel
    )
    # No buddy she sees: nothing printed until edgar asks.
    await eventually(lambda: len(server.services.router) == 1)
    asked = await children.run(["subscribe", ANNABEL, "--json"], server.edgar)
    assert_clean(asked)
    # Pre-approved: approved at once.
    assert asked.json() == {"address": ANNABEL, "subscription": "to"}
    seen = await children.run(["buddies", "--json"], server.edgar)
    assert buddies_of(seen) == [
        {"address": ANNABEL, "subscription": "to", "status": "away", "note": ""}
    ]
    await interrupt(watcher, err)
    assert out.read_text() == ""
    assert json.loads(asked.out)["subscription"] == "to"


@pytest_twisted.ensureDeferred
async def test_failures_are_one_line(
    server: CLIServer,  # noqa: F811
    children: Children,  # noqa: F811
) -> None:
    """
    Bad arguments: one line and status 2, before connecting; another
    domain's contact: the server's 554 on one line, status 1; no presence
    listener: status 3.
    """
    bad = [
        ["status", "offline"],
        ["status", "dancing"],
        ["status", "--note", "no word"],
        ["status", "away", "--priority", "500"],
        ["status", "away", "--note", "two\nlines"],
        ["subscribe"],
        ["subscribe", "not-an-address"],
        ["approve-sub", EDGAR, ANNABEL],
        ["watch", "--status", "away"],
        ["buddies", "--presence-server", "udp:127.0.0.1:7071"],
    ]
    ran = await children.run_all(*[(args, server.edgar) for args in bad])
    for args, result in zip(bad, ran, strict=True):
        assert_clean(result, EXIT_USAGE)
        assert "--help" in result.err, (args, result)

    # A contact of another domain is asked through the server links.
    remote = await children.run(["subscribe", "lost@lenore.org"], server.edgar)
    assert_clean(remote, 0)
    assert remote.out.startswith("lost@lenore.org: pending-out")
    self_ = await children.run(["subscribe", EDGAR], server.edgar)
    assert_clean(self_, EXIT_REFUSED)

    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        nobody = dict(server.annabel, FMTP_PRESENCE_SERVER=f"tcp:127.0.0.1:{port}")
        refused = await children.run(["buddies"], nobody)
    assert_clean(refused, EXIT_UNREACHABLE)
    assert "Connection refused" in refused.err


def test_presence_server_is_derived() -> None:
    """
    The presence server defaults to the server's host on port 7071.
    """
    assert presence_server("tcp:mail.poe.net:7070") == "tcp:mail.poe.net:7071"
    assert presence_server("tls:host=mail.poe.net:port=17070") == (
        "tls:host=mail.poe.net:port=7071"
    )
    assert presence_server("tcp:\\:\\:1:7070:timeout=5") == "tcp:\\:\\:1:7071:timeout=5"
    assert presence_server("udp:[::1]:7070") == "tcp:\\:\\:1:7071"
    assert presence_server("unix:/run/fmtp.sock") is None


class DroppingPresence:
    """
    A presence session whose server dropped pushes: it says so once, and
    BUDDIES tells the present.
    """

    def __init__(self) -> None:
        self.asked = 0

    async def events(self):
        yield PushesDropped(5)

    async def buddies(self) -> list[Buddy]:
        self.asked += 1
        return [
            Buddy("annabel@poe.net", "both", "away", "out"),
            Buddy("lost@lenore.org", "to", "unknown", ""),
        ]


@pytest_twisted.ensureDeferred
async def test_watch_catches_up_after_dropped_pushes(capsys) -> None:
    """
    A watcher that fell behind (251) prints what it missed as the present
    state of each buddy, read again with BUDDIES.
    """
    reactor = MemoryReactorClock()
    presence = DroppingPresence()
    with pytest.raises(ConnectionLost):
        await hold(reactor, object(), presence, {"presence": True, "json": False})
    assert presence.asked == 1
    assert capsys.readouterr().out.splitlines() == [
        "5 changes were missed while this was not reading; your buddies now:",
        "annabel@poe.net is away: out",
        "lost@lenore.org is unknown",
    ]
