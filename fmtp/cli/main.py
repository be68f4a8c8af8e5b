"""
The C{fmtp} command: its table of commands, and how every command ends.

An ordinary failure (the server is not running, a bad option, a data
directory of another domain, Ctrl-C, a closed pipe) ends the command with
one line on standard error and an exit status a script can test, never a
traceback: see L{fmtp.cli.status}.  Everything read from the user (the
password, a body on standard input) is read before the reactor runs, so
that Ctrl-C at a prompt ends the command and a prompt never stalls it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from twisted.python import usage

from fmtp.cli import (
    admin,
    bridges,
    chat,
    checkdns,
    messaging,
    objects,
    presence,
    queue,
    reading,
    rooms,
)
from fmtp.cli.options import CommandOptions
from fmtp.cli.status import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    BadUsage,
    CommandFailed,
)


@dataclass(frozen=True)
class Command:
    """
    One C{fmtp} command: its options, what runs it (returning the exit
    status), and one line for C{fmtp --help}.
    """

    name: str
    options: type[usage.Options]
    run: Callable[[usage.Options], int]
    summary: str


def _object_command(name: str) -> Callable[[usage.Options], int]:
    return lambda options: objects.object_command(name, options)


def _account_command(name: str) -> Callable[[usage.Options], int]:
    return lambda options: admin.account_command(name, options)


def _subscription_command(name: str) -> Callable[[usage.Options], int]:
    return lambda options: presence.subscription_command(name, options)


def _senders_command(name: str) -> Callable[[usage.Options], int]:
    return lambda options: messaging.senders_command(name, options)


COMMANDS = [
    Command(
        "send",
        messaging.SendOptions,
        messaging.compose_command,
        "Send a message.",
    ),
    Command(
        "inbox",
        messaging.InboxOptions,
        messaging.inbox_command,
        "List the messages in your inbox.",
    ),
    Command(
        "read",
        reading.ReadOptions,
        reading.read_command,
        "Show a message, check its signature, save its attachments.",
    ),
    Command(
        "reply",
        messaging.ReplyOptions,
        messaging.compose_command,
        "Answer a message, in its thread.",
    ),
    Command(
        "watch",
        reading.WatchOptions,
        reading.watch_command,
        "Show messages (or, --presence, buddies) as they come, until Ctrl-C.",
    ),
    Command(
        "held",
        messaging.HeldOptions,
        _senders_command("held"),
        "List the senders waiting for your approval.",
    ),
    Command(
        "approve",
        messaging.ApproveOptions,
        _senders_command("approve"),
        "Accept a sender; their held messages join your inbox.",
    ),
    Command(
        "refuse",
        messaging.RefuseOptions,
        _senders_command("refuse"),
        "Drop a sender's held messages.",
    ),
    Command(
        "status",
        presence.StatusOptions,
        presence.status_command,
        "Set your presence (until Ctrl-C), or show it.",
    ),
    Command(
        "buddies",
        presence.BuddiesOptions,
        presence.buddies_command,
        "List your contacts, with their status.",
    ),
    Command(
        "subscribe",
        presence.SubscribeOptions,
        _subscription_command("subscribe"),
        "Ask to see someone's presence.",
    ),
    Command(
        "unsubscribe",
        presence.UnsubscribeOptions,
        _subscription_command("unsubscribe"),
        "Stop seeing someone's presence.",
    ),
    Command(
        "approve-sub",
        presence.ApproveSubOptions,
        _subscription_command("approve-sub"),
        "Let someone see your presence.",
    ),
    Command(
        "deny-sub",
        presence.DenySubOptions,
        _subscription_command("deny-sub"),
        "Refuse or stop someone seeing your presence.",
    ),
    Command(
        "chat",
        chat.ChatOptions,
        chat.chat_command,
        "Talk in a chat room, from the terminal.",
    ),
    Command(
        "room",
        rooms.RoomOptions,
        rooms.room_command,
        "Create, configure, list chat rooms; invite, kick, ban, give roles.",
    ),
    Command(
        "keygen",
        admin.KeygenOptions,
        admin.keygen,
        "Make a domain key and print its DNS record.",
    ),
    Command(
        "check-dns",
        checkdns.CheckDNSOptions,
        checkdns.check_dns_command,
        "Check a domain's DNS records.",
    ),
    Command(
        "adduser",
        admin.AddUserOptions,
        _account_command("adduser"),
        "Create an account.",
    ),
    Command(
        "passwd",
        admin.PasswdOptions,
        _account_command("passwd"),
        "Change an account's password.",
    ),
    Command(
        "users",
        admin.UsersOptions,
        admin.users_command,
        "List the accounts, or delete one.",
    ),
    Command(
        "bridge",
        bridges.BridgeOptions,
        bridges.bridge_command,
        "Add, list or remove the ISP bridges that publish presence.",
    ),
    Command(
        "queue",
        queue.QueueOptions,
        queue.queue_command,
        "Show the outbound queue; retry or drop what waits.",
    ),
    Command(
        "capa",
        objects.CapaOptions,
        _object_command("capa"),
        "Ask what a server offers.",
    ),
    Command("get", objects.GetOptions, _object_command("get"), "Fetch an object."),
    Command("put", objects.PutOptions, _object_command("put"), "Store an object."),
    Command(
        "list",
        objects.ListOptions,
        _object_command("list"),
        "List public objects (or your own).",
    ),
    Command(
        "delete",
        objects.DeleteOptions,
        _object_command("delete"),
        "Delete one of your objects.",
    ),
]


class Options(CommandOptions):
    synopsis = "COMMAND [options] [ARGUMENTS]"
    longdesc = "Run 'fmtp COMMAND --help' for a command's options and examples."
    subCommands = [
        [command.name, None, command.options, command.summary] for command in COMMANDS
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("a command is required")


def run_command(name: str, options: usage.Options) -> int:
    (command,) = [command for command in COMMANDS if command.name == name]
    return command.run(options)


def main(argv: list[str] | None = None) -> int:
    """
    The C{fmtp} command.

    @return: the exit status (see L{fmtp.cli.status}).
    """
    options = Options()
    try:
        try:
            options.parseOptions(sys.argv[1:] if argv is None else argv)
        except usage.UsageError as e:
            command = f"fmtp {options.subCommand}" if options.subCommand else "fmtp"
            raise BadUsage(f"{e} (see {command} --help)")
        status = run_command(options.subCommand, options.subOptions)
        sys.stdout.flush()
        return status
    except CommandFailed as e:
        _flush_quietly()
        print(f"fmtp: {e.message}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whatever is still buffered would fail again at exit, with a
        # complaint on standard error: send it nowhere instead.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _flush_quietly() -> None:
    try:
        sys.stdout.flush()
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
