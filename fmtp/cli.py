"""
The C{fmtp} command: admin tasks (keygen, adduser, passwd) and a small
client (capa, get, put, list, delete) for trying a server from a shell.
"""

from __future__ import annotations

import getpass
import os
import sys

from twisted.internet import task
from twisted.internet.defer import ensureDeferred
from twisted.python import usage

from fmtp.accounts import check_new_password, hash_password
from fmtp.checkdns import ERROR, check_dns, format_findings
from fmtp.client import DatagramClient, connect
from fmtp.dns import DNSResolver
from fmtp.errors import AccountExists, InvalidAddress
from fmtp.keys import (
    DomainSigner,
    generate_private_key,
    load_private_key,
    write_private_key,
    zone_line,
)
from fmtp.objects import normalize_address, normalize_domain, user_object
from fmtp.options import DNSOption
from fmtp.store import store_from_url
from fmtp.wire import Frame

DEFAULT_SERVER = "tcp:127.0.0.1:7070"
DEFAULT_DATA_DIR = "fmtp-data"


class KeygenOptions(usage.Options):
    synopsis = "--domain DOMAIN [--key-file PATH] [--force]"
    longdesc = (
        "Make an Ed25519 domain key, write it with mode 0600, and print the TXT "
        "record to publish at fmtpkey.DOMAIN."
    )
    optParameters = [
        ["domain", "d", None, "The domain the key signs for."],
        [
            "key-file",
            "k",
            os.path.join(DEFAULT_DATA_DIR, "domain.key"),
            "Where to write it.",
        ],
    ]
    optFlags = [["force", None, "Replace an existing key file."]]

    def postOptions(self) -> None:
        if not self["domain"]:
            raise usage.UsageError("--domain is required")
        self["domain"] = _domain(self["domain"])


def _domain(text: str) -> str:
    try:
        return normalize_domain(text)
    except InvalidAddress as e:
        raise usage.UsageError(e.message)


class StoreOptions(usage.Options):
    optParameters = [
        ["data-dir", None, DEFAULT_DATA_DIR, "The server's data directory."],
        ["store", None, None, "The store URL (default sqlite:DATA-DIR/fmtp.sqlite)."],
        [
            "password-file",
            None,
            None,
            "Read the password from this file's first line ('-' for standard "
            "input) instead of asking.",
        ],
    ]

    def parseArgs(self, address: str) -> None:
        try:
            self["address"] = normalize_address(address)
        except InvalidAddress as e:
            raise usage.UsageError(e.message)

    def postOptions(self) -> None:
        self["store"] = self["store"] or "sqlite:" + os.path.join(
            self["data-dir"], "fmtp.sqlite"
        )


class AddUserOptions(StoreOptions):
    synopsis = "[--data-dir DIR] ADDRESS"
    longdesc = "Create an account (and its user object) in a server's store."


class PasswdOptions(StoreOptions):
    synopsis = "[--data-dir DIR] ADDRESS"
    longdesc = "Set a new password for an account."


class ClientOptions(usage.Options):
    optParameters = [
        [
            "server",
            "s",
            DEFAULT_SERVER,
            "The server: a stream endpoint, or udp:HOST:PORT.",
        ],
        ["user", "u", None, "Log in as this address first."],
        ["password-file", None, None, "Read the password from this file ('-': stdin)."],
    ]


class CapaOptions(ClientOptions):
    synopsis = "[--server ENDPOINT]"


class GetOptions(ClientOptions):
    synopsis = "[--server ENDPOINT] [--user ADDRESS] ID"

    def parseArgs(self, object_id: str) -> None:
        self["id"] = object_id


class DeleteOptions(GetOptions):
    synopsis = "--user ADDRESS [--server ENDPOINT] ID"


class ListOptions(ClientOptions):
    synopsis = (
        "[--server ENDPOINT] [--start N] [--limit N] [--type TYPE] [--owner ADDRESS]"
    )
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
    longdesc = "Store an object; its body is FILE, or standard input if FILE is '-'."
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


class CheckDNSOptions(DNSOption, usage.Options):
    synopsis = "[--dns HOST:PORT] [--key-file PATH] DOMAIN"
    longdesc = (
        "Say whether DOMAIN's key and route records are published and "
        "consistent with the local key, as needed before going live."
    )
    optParameters = [
        ["key-file", "k", None, "This server's key file, to check it is published."],
    ]

    def parseArgs(self, domain: str) -> None:
        self["domain"] = _domain(domain)


class Options(usage.Options):
    synopsis = "COMMAND [options]"
    subCommands = [
        ["keygen", None, KeygenOptions, "Make a domain key and print its DNS record."],
        ["check-dns", None, CheckDNSOptions, "Check a domain's DNS records."],
        ["adduser", None, AddUserOptions, "Create an account."],
        ["passwd", None, PasswdOptions, "Change an account's password."],
        ["capa", None, CapaOptions, "Ask a server what it offers."],
        ["get", None, GetOptions, "Fetch an object."],
        ["put", None, PutOptions, "Store an object."],
        ["list", None, ListOptions, "List public objects (or your own)."],
        ["delete", None, DeleteOptions, "Delete one of your objects."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("a command is required")


def read_password(path: str | None, confirm: bool) -> str:
    """
    A password from a file, standard input, or the terminal (asked twice
    when setting one, so a typo does not lock the user out).
    """
    if path == "-":
        return sys.stdin.readline().rstrip("\r\n")
    if path:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Again: ") != password:
        raise SystemExit("fmtp: the passwords differ")
    return password


def keygen(options: KeygenOptions) -> None:
    key = generate_private_key()
    try:
        write_private_key(options["key-file"], key, overwrite=options["force"])
    except FileExistsError:
        raise SystemExit(
            f"fmtp: {options['key-file']} exists; use --force to replace it "
            "(and publish the new record before removing the old one)"
        )
    signer = DomainSigner(key, options["domain"])
    print(f"Wrote {options['key-file']} (mode 0600). Publish this TXT record:")
    print(zone_line(options["domain"], signer.public_key()))


async def set_account(reactor, options: StoreOptions, create: bool) -> None:
    try:
        password = check_new_password(read_password(options["password-file"], True))
    except ValueError as e:
        raise SystemExit(f"fmtp: {e}")
    encoded = hash_password(password)
    store = store_from_url(options["store"], reactor)
    await store.open()
    try:
        address = options["address"]
        if create:
            try:
                await store.add_account(address, encoded)
            except AccountExists:
                raise SystemExit(f"fmtp: {address} already has an account")
            if await store.get_object(address) is None:
                await store.put_object(user_object(address))
            print(f"Created {address}")
        elif not await store.set_password_hash(address, encoded):
            raise SystemExit(f"fmtp: no account {address}")
        else:
            print(f"Changed the password of {address}")
    finally:
        await store.close()


async def check_dns_command(reactor, options: CheckDNSOptions) -> None:
    local_key = None
    if options["key-file"]:
        signer = DomainSigner(load_private_key(options["key-file"]), options["domain"])
        local_key = signer.public_key()
    resolver = DNSResolver(reactor, options["dns"] or None)
    findings = await check_dns(resolver, options["domain"], local_key, reactor)
    print(format_findings(findings), end="")
    if any(finding.level == ERROR for finding in findings):
        raise SystemExit(1)


def print_frame(frame: Frame) -> None:
    print(f"{frame.verb} {frame.argument}".rstrip())
    for name, value in frame.headers.items():
        print(f"{name}: {value}")
    if frame.body:
        print()
        sys.stdout.flush()
        sys.stdout.buffer.write(frame.body)
        if not frame.body.endswith(b"\n"):
            print()


async def run_client(reactor, name: str, options: ClientOptions) -> int:
    verb, argument, headers, body = name.upper(), "", {}, b""
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
        if options["file"] == "-":
            body = sys.stdin.buffer.read()
        elif options["file"]:
            with open(options["file"], "rb") as f:
                body = f.read()
    server = options["server"]
    if server.startswith("udp:"):
        _, host, port = server.split(":")
        client = DatagramClient(reactor, host, int(port))
        listening = reactor.listenUDP(0, client)
        try:
            answer = await client.request(verb, argument, headers)
        finally:
            await listening.stopListening()
    else:
        connection = await connect(reactor, server)
        if options["user"]:
            password = read_password(options["password-file"], False)
            login = await connection.request(
                "LOGIN", headers={"Address": options["user"], "Password": password}
            )
            if login.code != 230:
                print_frame(login)
                return 1
        answer = await connection.request(verb, argument, headers, body)
        connection.transport.loseConnection()
    print_frame(answer)
    return 0 if answer.code < 300 else 1


def main(argv: list[str] | None = None) -> None:
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        raise SystemExit(f"{options}\nfmtp: {e}")
    name, sub = options.subCommand, options.subOptions
    if name == "keygen":
        keygen(sub)
        return

    async def run(reactor) -> None:
        if name == "check-dns":
            await check_dns_command(reactor, sub)
            return
        if name in ("adduser", "passwd"):
            await set_account(reactor, sub, create=name == "adduser")
            return
        code = await run_client(reactor, name, sub)
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
