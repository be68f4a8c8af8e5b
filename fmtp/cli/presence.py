"""
C{fmtp status|subscribe|unsubscribe|approve-sub|deny-sub|buddies} and
C{fmtp watch --presence}: presence (doc/protocol.md section 9), through
L{fmtp.client.presence.Presence} on the presence port.

A status counts only while its session's connection is open (the server
keeps it for a grace period, 30 s by default, after a connection drops),
so C{fmtp status WORD} and C{fmtp watch --presence} stay connected until
Ctrl-C; on Ctrl-C they say C{QUIT} before the reactor stops, so that the
user's subscribers see them offline at once rather than after the grace
period.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python import usage

from fmtp.cli.config import PresenceClientOptions, login_password
from fmtp.cli.messaging import parse_recipient
from fmtp.cli.options import JSONOption
from fmtp.cli.output import print_json, printable, table
from fmtp.cli.runner import run_on_reactor
from fmtp.cli.session import connected, keep_alive
from fmtp.cli.status import EXIT_OK
from fmtp.client import Client, ClientError, ConnectionLost
from fmtp.client.presence import (
    SUBSCRIPTION_STATES,
    Presence,
    PresenceChanged,
    PresenceEvent,
    PushesDropped,
    SessionStatus,
    SubscriptionChanged,
    SubscriptionRequested,
)
from fmtp.errors import InvalidObject
from fmtp.protocols.presence.status import parse_note, parse_priority, parse_status

#: Seconds a QUIT at Ctrl-C may take before the command gives up on it
#: (the server then ends the session after its grace period).
QUIT_TIMEOUT = 2.0

#: What C{--help} says about how long a status lasts.
LASTS = (
    "A status counts only while its connection is open: the command stays "
    "connected until Ctrl-C (status 130), and then logs out, so that your "
    "subscribers see you offline at once.  A connection that drops without "
    "that (the machine sleeps, the network goes) keeps your status for the "
    "server's grace period, 30 seconds by default, then you show offline."
)


def _checked(parse: Any, text: str, option: str) -> Any:
    """
    C{parse(text)} with the server's own rule, before connecting.
    """
    try:
        return parse(text)
    except InvalidObject as e:
        raise usage.UsageError(f"{option}: {e.message}")


class SetStatusOptions(PresenceClientOptions):
    """
    What C{status} and C{watch --presence} share: the presence to set.
    """

    optParameters = [
        ["note", None, None, "A note shown with the status (one line)."],
        ["priority", None, None, "Priority of this session, -128 to 127 (0)."],
    ]

    def check_presence(self, status: str | None) -> None:
        """
        Check the status word and C{--note}, C{--priority}, as the server
        will, and keep them: C{self["status"]}, C{self["priority"]} (an
        int or L{None}).
        """
        if status is not None:
            status = _checked(parse_status, status, "STATUS")
        elif self["note"] is not None or self["priority"] is not None:
            raise usage.UsageError("--note and --priority need a STATUS to go with")
        self["status"] = status
        if self["note"] is not None:
            self["note"] = _checked(parse_note, self["note"], "--note")
        if self["priority"] is not None:
            self["priority"] = _checked(parse_priority, self["priority"], "--priority")


class StatusOptions(JSONOption, SetStatusOptions):
    synopsis = "[STATUS] [--note TEXT] [--priority N] [--json]"
    longdesc = (
        "Set your presence: STATUS is online, away, busy or invisible (your "
        "subscribers see you offline; you still see them), with an optional "
        "--note.  Prints your status and what your subscribers see.  "
        + LASTS
        + "  With several sessions (fmtp watch --presence elsewhere), the one "
        "with the highest --priority decides, and among equals the one "
        "changed last.  With no STATUS, prints what your subscribers see now "
        "and exits."
    )
    examples = (
        "fmtp status",
        "fmtp status away --note 'At lunch'",
        "fmtp status busy --priority 10 &",
    )

    def parseArgs(self, status: str | None = None) -> None:
        self.check_presence(status)


class SubscriptionOptions(JSONOption, PresenceClientOptions):
    synopsis = "ADDRESS [--json]"

    def parseArgs(self, address: str) -> None:
        self["address"] = parse_recipient(address)


class SubscribeOptions(SubscriptionOptions):
    longdesc = (
        "Ask to see ADDRESS's presence; they approve or deny it (now, or when "
        "next online).  Prints how you now stand with them.  Only users of "
        "your own server for now."
    )
    examples = ("fmtp subscribe annabel@poe.net",)


class UnsubscribeOptions(SubscriptionOptions):
    longdesc = "Stop seeing ADDRESS's presence, or withdraw your request."
    examples = ("fmtp unsubscribe annabel@poe.net",)


class ApproveSubOptions(SubscriptionOptions):
    longdesc = (
        "Let ADDRESS see your presence: approve their request, or approve "
        "them before they ask (their request is then approved at once)."
    )
    examples = ("fmtp approve-sub edgar@poe.net",)


class DenySubOptions(SubscriptionOptions):
    longdesc = (
        "Stop ADDRESS seeing your presence: deny their request, cancel their "
        "subscription, or withdraw an approval given before they asked."
    )
    examples = ("fmtp deny-sub edgar@poe.net",)


class BuddiesOptions(JSONOption, PresenceClientOptions):
    synopsis = "[--json]"
    longdesc = (
        "List your contacts: how you stand with each (SUBSCRIPTION: to, you "
        "see them; from, they see you; both; pending-out, you asked; "
        "pending-in, they asked: fmtp approve-sub or deny-sub), and their "
        "status and note as you see them (offline when you do not)."
    )
    examples = ("fmtp buddies", "fmtp buddies --json")


def state_text(address: str, state: str) -> str:
    """
    One line for how the user stands with C{address}: the token, and
    what it means.
    """
    meaning = SUBSCRIPTION_STATES.get(state)
    words = f" ({meaning})" if meaning else ""
    return f"{printable(address)}: {printable(state)}{words}"


def presence_text(status: str, note: str) -> str:
    return printable(f"{status}: {note}" if note else status)


def event_text(event: PresenceEvent) -> str:
    """
    One line for a pushed event.
    """
    if isinstance(event, PresenceChanged):
        return (
            f"{printable(event.address)} is {presence_text(event.status, event.note)}"
        )
    if isinstance(event, PushesDropped):
        return (
            f"{event.count} changes were missed while this was not reading; "
            "your buddies now:"
        )
    if isinstance(event, SubscriptionRequested):
        who = printable(event.address)
        return f"{who} asks to see your presence: fmtp approve-sub {who} (or deny-sub)"
    return f"subscription changed: {state_text(event.address, event.subscription)}"


def event_json(event: PresenceEvent) -> dict[str, object]:
    if isinstance(event, PresenceChanged):
        return {
            "event": "presence",
            "address": event.address,
            "status": event.status,
            "note": event.note,
        }
    if isinstance(event, SubscriptionRequested):
        return {"event": "subscription-request", "address": event.address}
    if isinstance(event, PushesDropped):
        return {"event": "dropped", "count": event.count}
    assert isinstance(event, SubscriptionChanged)
    return {
        "event": "subscription",
        "address": event.address,
        "subscription": event.subscription,
    }


def status_json(mine: SessionStatus, note: str | None) -> dict[str, Any]:
    return {
        "status": mine.status,
        "note": note,
        "priority": mine.priority,
        "resource": mine.resource,
        "subscribers_see": mine.user_status,
    }


def quit_at_shutdown(reactor: Any, client: Client) -> None:
    """
    When the reactor stops (Ctrl-C), say C{QUIT} first, waiting at most
    L{QUIT_TIMEOUT} seconds: a session that quits ends at once, one whose
    connection just drops lasts the server's grace period.
    """

    async def quit() -> None:
        client.timeout = min(client.timeout, QUIT_TIMEOUT)
        try:
            await client.quit()
        except ClientError:
            client.close()

    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: Deferred.fromCoroutine(quit())
    )


async def hold(reactor: Any, client: Client, presence: Presence, options) -> None:
    """
    Stay connected until Ctrl-C, printing each pushed event if the
    command watches (else reading them, unprinted, so none piles up).

    @raise ConnectionLost: when the server closes the connection.
    """
    quit_at_shutdown(reactor, client)
    keepalive = keep_alive(reactor, client)
    watching = options.get("presence", False)
    try:
        async for event in presence.events():
            if not watching:
                continue
            shown = [event]
            if isinstance(event, PushesDropped):
                # What the dropped pushes said is read again.
                shown += [
                    PresenceChanged(buddy.address, buddy.status, buddy.note)
                    for buddy in await presence.buddies()
                ]
            for each in shown:
                if options["json"]:
                    print(json.dumps(event_json(each), ensure_ascii=False), flush=True)
                else:
                    print(event_text(each), flush=True)
    finally:
        keepalive.stop()
    raise ConnectionLost("the presence session ended")


async def set_status(reactor: Any, options: SetStatusOptions, password: str) -> int:
    """
    C{fmtp status} and C{fmtp watch --presence}.
    """
    server = options["presence-server"]
    async with connected(reactor, options, password, server) as client:
        presence = Presence(client)
        word = options["status"]
        mine = await presence.status(
            word, note=options["note"], priority=options["priority"]
        )
        watching = options.get("presence", False)
        if watching:
            # Only events on standard output, as C{watch} prints messages.
            pass
        elif options["json"]:
            print_json(status_json(mine, options["note"] if word else None))
        else:
            if word is not None:
                note = options["note"] or ""
                print(
                    f"Your status: {presence_text(mine.status, note)} "
                    f"(priority {mine.priority})"
                )
            print(f"Your subscribers see: {mine.user_status}", flush=True)
        if word is None:
            return EXIT_OK
        if sys.stderr.isatty():
            doing = (
                f"Watching your buddies, {mine.status} for your subscribers"
                if watching
                else "Keeping this status"
            )
            print(f"{doing}; Ctrl-C to stop.", file=sys.stderr)
        sys.stdout.flush()
        await hold(reactor, client, presence, options)
    return EXIT_OK


async def subscription(
    reactor: Any, name: str, options: SubscriptionOptions, password: str
) -> int:
    """
    C{fmtp subscribe}, C{unsubscribe}, C{approve-sub} and C{deny-sub}.
    """
    server = options["presence-server"]
    async with connected(reactor, options, password, server) as client:
        presence = Presence(client)
        act = {
            "subscribe": presence.subscribe,
            "unsubscribe": presence.unsubscribe,
            "approve-sub": presence.approve,
            "deny-sub": presence.deny,
        }[name]
        state = await act(options["address"])
    if options["json"]:
        print_json({"address": options["address"], "subscription": state})
    else:
        print(state_text(options["address"], state))
    return EXIT_OK


async def buddies(reactor: Any, options: BuddiesOptions, password: str) -> int:
    server = options["presence-server"]
    async with connected(reactor, options, password, server) as client:
        listed = await Presence(client).buddies()
    if options["json"]:
        print_json(
            {
                "buddies": [
                    {
                        "address": b.address,
                        "subscription": b.subscription,
                        "status": b.status,
                        "note": b.note,
                    }
                    for b in listed
                ]
            }
        )
    elif not listed:
        print("No contacts: fmtp subscribe ADDRESS asks to see someone.")
    else:
        rows = [
            [printable(b.address), b.subscription, b.status, printable(b.note)]
            for b in listed
        ]
        print(table(["CONTACT", "SUBSCRIPTION", "STATUS", "NOTE"], rows), end="")
    return EXIT_OK


def status_command(options: SetStatusOptions) -> int:
    password = login_password(options)
    return run_on_reactor(lambda reactor: set_status(reactor, options, password))


def subscription_command(name: str, options: SubscriptionOptions) -> int:
    password = login_password(options)
    return run_on_reactor(
        lambda reactor: subscription(reactor, name, options, password)
    )


def buddies_command(options: BuddiesOptions) -> int:
    password = login_password(options)
    return run_on_reactor(lambda reactor: buddies(reactor, options, password))
