"""
C{fmtp capa|get|put|list|delete}: one request of the object protocol,
and its reply printed as the server sent it (or as JSON, for C{capa} and
C{list}), for trying a server from a shell.

Over a stream these go through L{fmtp.client.Client}; C{capa}, C{get}
and C{list} also work over UDP (C{--server udp:HOST:PORT}), through
L{fmtp.client.DatagramClient}.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import TimeoutError as DatagramTimeout
from twisted.python import usage

from fmtp.cli.config import ClientOptions, login_password
from fmtp.cli.options import JSONOption
from fmtp.cli.output import print_frame, print_json
from fmtp.cli.runner import run_on_reactor
from fmtp.cli.session import connected
from fmtp.cli.status import EXIT_OK, EXIT_REFUSED, BadUsage, Unreachable
from fmtp.client import DatagramClient
from fmtp.client.api import object_page
from fmtp.wire import Frame


class CapaOptions(JSONOption, ClientOptions):
    synopsis = "[--server ENDPOINT] [--json]"
    longdesc = "Ask a server what it offers: its domain, commands, limits and key."
    examples = ("fmtp capa --server tcp:127.0.0.1:7070", "fmtp capa --json")


class GetOptions(ClientOptions):
    synopsis = "[--server ENDPOINT] [--user ADDRESS] ID"
    longdesc = (
        "Fetch an object and print the reply as the server sent it.  Anonymous "
        "unless --user is given: then the user's own objects too."
    )
    examples = ("fmtp get 1763800000000.9f53fe42a795.edgar@poe.net",)
    login_if_named = True

    def parseArgs(self, object_id: str) -> None:
        self["id"] = object_id


class DeleteOptions(ClientOptions):
    synopsis = "[--server ENDPOINT] [--user ADDRESS] ID"
    longdesc = (
        "Delete one of your objects, or remove a message from your inbox.  A "
        "message once sent stays with its recipients."
    )
    examples = (
        "fmtp delete --user edgar@poe.net 1763800000000.9f53fe42a795.edgar@poe.net",
    )
    needs_account = True

    def parseArgs(self, object_id: str) -> None:
        self["id"] = object_id


class ListOptions(JSONOption, ClientOptions):
    synopsis = (
        "[--server ENDPOINT] [--start N] [--limit N] [--type TYPE] "
        "[--owner ADDRESS] [--json]"
    )
    longdesc = (
        "List public objects, or all your own (--user and --owner yourself), "
        "in the order they were stored."
    )
    examples = (
        "fmtp list --type post --limit 10",
        "fmtp list --user edgar@poe.net --owner edgar@poe.net --json",
    )
    login_if_named = True
    optParameters = [
        ["start", None, "0", "Skip this many objects."],
        ["limit", None, "50", "List at most this many."],
        ["type", "t", None, "Only objects of this type."],
        [
            "owner",
            None,
            None,
            "Only objects of this owner (all of them, if it is you).",
        ],
    ]


class PutOptions(ClientOptions):
    synopsis = "--user ADDRESS [--type TYPE] [--public] [--set NAME=VALUE]... [FILE]"
    longdesc = (
        "Store an object; its body is FILE, or standard input if FILE is '-'.  "
        "To send a message, use fmtp send: a message stored with put is "
        "delivered to nobody."
    )
    examples = (
        "echo 'Once upon a midnight dreary' | fmtp put --public --set Title=Raven -",
    )
    needs_account = True
    optParameters = [
        ["type", "t", "post", "The object's type."],
        ["id", None, None, "Replace this object (default: a new id)."],
    ]
    optFlags = [["public", "p", "Mark the object Public: yes."]]

    def __init__(self) -> None:
        super().__init__()
        self["set"] = {}

    def opt_set(self, pair: str) -> None:
        """
        Set a property, NAME=VALUE (repeatable).
        """
        name, sep, value = pair.partition("=")
        if not sep:
            raise usage.UsageError(f"--set {pair}: expected NAME=VALUE")
        self["set"][name] = value

    def parseArgs(self, path: str | None = None) -> None:
        self["file"] = path


def client_request(
    name: str, options: ClientOptions
) -> tuple[str, str, dict[str, str]]:
    """
    The request a command sends: its verb, argument and headers.
    """
    verb, argument, headers = name.upper(), "", {}
    if name in ("get", "delete"):
        argument = options["id"]
    elif name == "list":
        headers = {"Start": options["start"], "Limit": options["limit"]}
        headers.update({k.title(): options[k] for k in ("type", "owner") if options[k]})
    elif name == "put":
        headers = {"Type": options["type"], **options["set"]}
        if options["public"]:
            headers["Public"] = "yes"
        if options["id"]:
            headers["Id"] = options["id"]
    return verb, argument, headers


def read_body(options: ClientOptions) -> bytes:
    path = options.get("file")
    if path == "-":
        return sys.stdin.buffer.read()
    if not path:
        return b""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise BadUsage(f"{path}: {e.strerror}")


async def request_once(
    reactor: Any, name: str, options: ClientOptions, password: str | None, body: bytes
) -> int:
    """
    Send one request (after a LOGIN, with a password) and print the reply.

    @return: L{EXIT_OK}, or L{EXIT_REFUSED} if the server refused.
    @raise Unreachable: if the server cannot be reached or does not answer
        within C{--timeout} seconds.
    """
    verb, argument, headers = client_request(name, options)
    if options["udp"]:
        answer = await _udp_request(reactor, options, verb, argument, headers)
    else:
        async with connected(reactor, options, password) as client:
            answer = await client.request(verb, argument, headers, body)
    if options.get("json") and answer.code < 300:
        if name == "list":
            page = object_page(answer)
            print_json(
                {
                    "objects": [
                        {"id": item.id, "type": item.type, "digest": item.digest}
                        for item in page.items
                    ],
                    "next_start": page.next_start,
                }
            )
        else:
            print_json(dict(answer.headers))
    else:
        print_frame(answer)
    return EXIT_OK if answer.code < 300 else EXIT_REFUSED


async def _udp_request(
    reactor: Any, options: ClientOptions, verb: str, argument: str, headers
) -> Frame:
    host, port = options["udp"]
    server, timeout = options["server"], options["timeout"]
    try:
        address = await reactor.resolve(host)
    except Exception as e:
        raise Unreachable(f"cannot connect to {server}: {e}") from None
    # Three tries within the timeout: one may be spent fetching a cookie,
    # one may be lost.
    client = DatagramClient(reactor, address, port, timeout=timeout / 3)
    listening = reactor.listenUDP(0, client)
    try:
        return await client.request(verb, argument, headers)
    except DatagramTimeout:
        raise Unreachable(f"no answer from {server} within {timeout:g} s") from None
    finally:
        await listening.stopListening()


def object_command(name: str, options: ClientOptions) -> int:
    """
    Run C{fmtp NAME}: what needs the user (a password, standard input)
    first, then what needs the reactor.
    """
    password = login_password(options)
    body = read_body(options)
    return run_on_reactor(
        lambda reactor: request_once(reactor, name, options, password, body)
    )
