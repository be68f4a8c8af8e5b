"""
C{fmtp bridge}: the ISP bridges a server's presence protocol accepts
(doc/protocol.md 9.6), kept in its store in its data directory, changed
directly as the other admin commands change accounts (L{fmtp.cli.admin}).
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import replace
from typing import Any

from twisted.python import usage

from fmtp.cli.admin import StoreOptions, data_dir_domain, open_store
from fmtp.cli.options import JSONOption
from fmtp.cli.output import print_json
from fmtp.cli.runner import run_on_reactor
from fmtp.cli.status import EXIT_OK, Refused
from fmtp.store.bridges import (
    BRIDGE_NAME,
    DEFAULT_BRIDGE_RATE,
    MAX_BRIDGE_RATE,
    Bridge,
)


class BridgeOptions(JSONOption, StoreOptions):
    synopsis = (
        "[--data-dir DIR] add NAME --users PATTERN [--source CIDR]... [--rate N] "
        "| set NAME [--users PATTERN] [--source CIDR]... [--no-sources] [--rate N] "
        "| list [--json] | remove NAME"
    )
    longdesc = (
        "Manage the ISP bridges that publish presence for some of the server's "
        "users over UDP (doc/admin.md, 'ISP bridges').  'add' prints the new "
        "bridge's secret once: give it to the bridge, it is not shown again.  "
        "PATTERN is one or more space-separated address patterns ('*' the only "
        "wildcard), each of the server's own domain.  The datagrams from a "
        "bridge's --source networks (CIDR, repeatable) may come at its --rate "
        f"(datagrams a second, all its networks together; {DEFAULT_BRIDGE_RATE} "
        "by default); a bridge with no source is limited as any source (20 a "
        "second).  Of overlapping networks of two bridges, the most specific "
        "decides.  'set' changes what it is given ('--source' replaces the "
        "networks, '--no-sources' removes them).  A running server sees a "
        "change within a few seconds."
    )
    examples = (
        "fmtp bridge add poe-dsl --users '*@poe.net' --source 192.0.2.0/28 "
        "--data-dir /var/lib/fmtp",
        "fmtp bridge set poe-dsl --source 192.0.2.0/28 --source 2001:db8::/64 "
        "--rate 8000 --data-dir /var/lib/fmtp",
        "fmtp bridge list --data-dir /var/lib/fmtp",
        "fmtp bridge remove poe-dsl --data-dir /var/lib/fmtp",
    )
    optFlags = [
        ["no-sources", None, "set: remove the bridge's source networks."],
    ]
    optParameters = [
        [
            "users",
            None,
            None,
            "add, set: the patterns of the users it may publish for.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["source"] = None
        self["rate"] = None

    def opt_rate(self, text: str) -> None:
        """
        add, set: datagrams a second its source networks may send, together.
        """
        if not text.isdigit() or not 1 <= int(text) <= MAX_BRIDGE_RATE:
            raise usage.UsageError(
                f"--rate must be from 1 to {MAX_BRIDGE_RATE} datagrams a second"
            )
        self["rate"] = int(text)

    def opt_source(self, text: str) -> None:
        """
        add, set: a network the bridge sends from, as CIDR (repeatable).
        """
        if self["source"] is None:
            self["source"] = []
        self["source"].append(parse_bridge_source(text))

    def parseArgs(self, action: str, name: str | None = None) -> None:
        if action == "list" and name is None:
            self["action"], self["name"] = action, None
        elif action in ("add", "set", "remove") and name is not None:
            if not BRIDGE_NAME.fullmatch(name):
                raise usage.UsageError(
                    "a bridge's name is 1 to 64 letters, digits, '.', '_' or '-'"
                )
            self["action"], self["name"] = action, name
        else:
            raise usage.UsageError("expected add NAME, set NAME, list, or remove NAME")

    def postOptions(self) -> None:
        super().postOptions()
        action = self["action"]
        changes = [self[k] is not None for k in ("users", "source", "rate")]
        changes.append(bool(self["no-sources"]))
        if action == "add" and self["users"] is None:
            raise usage.UsageError("add needs --users")
        if action == "set" and not any(changes):
            raise usage.UsageError(
                "set needs --users, --source, --no-sources or --rate"
            )
        if action in ("list", "remove") and any(changes):
            raise usage.UsageError(
                "--users, --source, --no-sources and --rate go with add or set"
            )
        if self["no-sources"] and (action != "set" or self["source"] is not None):
            raise usage.UsageError("--no-sources goes with set, without --source")


def parse_bridge_source(text: str) -> str:
    """
    A bridge's source network, as C{--source} gives it, written as
    L{ipaddress} writes it.

    @raise usage.UsageError: if it is not a network, has host bits set
        (a typo more often than not), or is wider than a /8 of IPv4 or a
        /16 of IPv6 (all its addresses would share the bridge's rate, and
        a spoofer of any of them could use it up).
    """
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise usage.UsageError(f"--source {text!r} is not a network in CIDR: {e}")
    widest = 8 if network.version == 4 else 16
    if network.prefixlen < widest:
        raise usage.UsageError(
            f"--source {text!r} is wider than a /{widest}: name the bridge's own "
            "networks"
        )
    return str(network)


def check_bridge_users(patterns: str, domain: str) -> str:
    """
    The patterns of C{bridge add --users}, each of C{domain} exactly (a
    bridge publishes only for the server's own users).

    @raise Refused: naming the first that is not.
    """
    words = patterns.split()
    if not words:
        raise Refused("--users names no pattern")
    for word in words:
        local, at, pattern_domain = word.rpartition("@")
        if not at or not local or pattern_domain.lower() != domain:
            raise Refused(
                f"--users pattern {word!r} is not of this server's domain: "
                f"write it as LOCAL@{domain}, with '*' in LOCAL"
            )
    return " ".join(word.lower() for word in words)


def describe_bridge(bridge: Bridge) -> str:
    """
    One line of C{fmtp bridge list}.
    """
    if not bridge.sources:
        return f"{bridge.name} {bridge.users}"
    sources = ",".join(bridge.sources)
    return f"{bridge.name} {bridge.users} from {sources} at {bridge.rate}/s"


async def bridges(reactor: Any, options: BridgeOptions) -> int:
    store = await open_store(reactor, options)
    try:
        action, name = options["action"], options["name"]
        if action == "add":
            users = options["users"]
            secret = secrets.token_hex(32)
            bridge = Bridge(
                name,
                users,
                secret,
                reactor.seconds(),
                tuple(options["source"] or ()),
                options["rate"] or DEFAULT_BRIDGE_RATE,
            )
            if not await store.add_bridge(bridge):
                raise Refused(f"a bridge {name} exists; remove it first")
            print(f"Added the bridge {name} for {users}. Its secret (shown once):")
            print(secret)
            return EXIT_OK
        if action == "set":
            bridge = await store.get_bridge(name)
            changed = bridge and replace(
                bridge,
                users=options["users"] or bridge.users,
                sources=(
                    ()
                    if options["no-sources"]
                    else tuple(options["source"] or bridge.sources)
                ),
                rate=options["rate"] or bridge.rate,
            )
            if not changed or not await store.update_bridge(changed):
                raise Refused(f"no bridge {name}")
            print(describe_bridge(changed))
            return EXIT_OK
        if action == "remove":
            if not await store.remove_bridge(name):
                raise Refused(f"no bridge {name}")
            print(f"Removed the bridge {name}")
            return EXIT_OK
        found = await store.list_bridges()
    finally:
        await store.close()
    if options["json"]:
        print_json(
            {
                "bridges": [
                    {
                        "name": b.name,
                        "users": b.users,
                        "sources": list(b.sources),
                        "rate": b.rate,
                    }
                    for b in found
                ]
            }
        )
    else:
        for bridge in found:
            print(describe_bridge(bridge))
    return EXIT_OK


def bridge_command(options: BridgeOptions) -> int:
    domain = data_dir_domain(options)
    if options["users"] is not None:
        options["users"] = check_bridge_users(options["users"], domain)
    return run_on_reactor(lambda reactor: bridges(reactor, options))
