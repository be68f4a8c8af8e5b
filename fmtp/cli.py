"""
The C{fmtp} command: admin tasks (keygen, adduser, passwd) and a small
client (capa, get, put, list, delete) for trying a server from a shell.

An ordinary failure (the server is not running, a bad option, a data
directory of another domain, Ctrl-C, a closed pipe) ends the command with
one line on standard error and an exit status a script can test, never a
traceback: see L{EXIT_STATUS_HELP}.  Everything read from the user (the
password, a body on standard input) is read before the reactor runs, so
that Ctrl-C at a prompt ends the command and a prompt never stalls it.
"""

from __future__ import annotations

import getpass
import math
import os
import signal
import sys
import warnings
from collections.abc import Awaitable, Callable

from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as ReplyTimeout
from twisted.internet.error import (
    ConnectError,
    ConnectionClosed,
    ConnectionRefusedError,
    DNSLookupError,
    ReactorNotRunning,
)
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.python import usage
from twisted.python.failure import Failure

from fmtp import datadir
from fmtp.accounts import check_new_password, hash_password
from fmtp.client import DatagramClient, ProtocolError, connect
from fmtp.datadir import DEFAULT_DATA_DIR, STORE_OPEN_ERRORS, DataDirError, Found
from fmtp.errors import AccountExists, InvalidAddress
from fmtp.keys import (
    DomainSigner,
    KeyFileError,
    generate_private_key,
    load_private_key,
    write_private_key,
    zone_line,
)
from fmtp.objects import domain_of, normalize_address, normalize_domain, user_object
from fmtp.options import DNSOption
from fmtp.store import MemoryStore, SQLiteStore, store_from_url
from fmtp.wire import Frame

DEFAULT_SERVER = "tcp:127.0.0.1:7070"
#: Seconds to wait for a connection, and then for each reply.
DEFAULT_TIMEOUT = 10.0

EXIT_OK = 0
#: The server answered with an error, or the data directory or the store
#: refused the change.
EXIT_REFUSED = 1
#: The command line is wrong: an option, an address, the password.
EXIT_USAGE = 2
#: The server could not be reached, or did not answer in time.
EXIT_UNREACHABLE = 3
#: Ctrl-C (128 + SIGINT, as a shell reports a command SIGINT ended).
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: Standard output was closed early (128 + SIGPIPE): C{fmtp list | head -1}.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

EXIT_STATUS_HELP = f"""
Exit status:
  {EXIT_OK}    done
  {EXIT_REFUSED}    refused: the server answered with an error, or the data
       directory or store refused the change
  {EXIT_USAGE}    usage: a bad option, address or password
  {EXIT_UNREACHABLE}    unreachable: no connection to the server, or no answer within
       --timeout seconds
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
  {EXIT_BROKEN_PIPE}  standard output closed early
"""


class CommandFailed(Exception):
    """
    An ordinary failure: one line for the user, and the exit status.
    """

    status = EXIT_REFUSED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Refused(CommandFailed):
    status = EXIT_REFUSED


class BadUsage(CommandFailed):
    status = EXIT_USAGE


class Unreachable(CommandFailed):
    status = EXIT_UNREACHABLE


class KeygenOptions(usage.Options):
    synopsis = "--domain DOMAIN [--key-file PATH] [--force]"
    longdesc = (
        "Make an Ed25519 domain key, write it with mode 0600, and print the TXT "
        "record to publish at fmtpkey.DOMAIN."
    )
    optParameters = [
        ["domain", "d", None, "The domain the key signs for."],
        ["key-file", "k", datadir.key_path(DEFAULT_DATA_DIR), "Where to write it."],
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
        self["store"] = self["store"] or datadir.store_url(self["data-dir"])
        try:
            store = store_from_url(self["store"])
        except ValueError as e:
            raise usage.UsageError(f"--store: {e}")
        if isinstance(store, MemoryStore):
            raise usage.UsageError(
                "--store memory: keeps nothing; name the server's store"
            )
        self["store-file"] = store.path if isinstance(store, SQLiteStore) else None
        self.setdefault("create-data-dir", False)


class AddUserOptions(StoreOptions):
    synopsis = "[--data-dir DIR] [--create-data-dir] ADDRESS"
    longdesc = (
        "Create an account (and its user object) in a server's store.  The "
        "data directory must be the server's, and ADDRESS of its domain."
    )
    optFlags = [
        [
            "create-data-dir",
            None,
            "Make the data directory for ADDRESS's domain if it does not exist "
            "(a server started on it must then have that --domain).",
        ]
    ]


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
        [
            "timeout",
            None,
            str(int(DEFAULT_TIMEOUT)),
            "Seconds to wait for the connection, and then for each reply.",
        ],
    ]

    def postOptions(self) -> None:
        try:
            self["timeout"] = float(self["timeout"])
        except ValueError:
            self["timeout"] = math.nan
        if not 0 < self["timeout"] < math.inf:
            raise usage.UsageError("--timeout must be a number of seconds")
        self["udp"] = _check_server(self["server"])


def _check_server(server: str) -> tuple[str, int] | None:
    """
    Refuse a C{--server} that cannot name a server, before connecting.

    @return: the host and port of a C{udp:HOST:PORT} server, L{None} for a
        stream endpoint.
    """
    if server.startswith("udp:"):
        _, host, port = (server.split(":") + ["", ""])[:3]
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise usage.UsageError(f"--server {server}: expected udp:HOST:PORT")
        return host, int(port)
    from twisted.internet import reactor

    try:
        endpoints.clientFromString(reactor, server)
    except (ValueError, TypeError, KeyError) as e:
        raise usage.UsageError(
            f"--server {server}: {e} (expected e.g. tcp:HOST:PORT or udp:HOST:PORT)"
        )
    return None


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

    def getUsage(self, width: int | None = None) -> str:
        return super().getUsage(width) + EXIT_STATUS_HELP


def read_password(path: str | None, confirm: bool) -> str:
    """
    A password from a file, standard input, or the terminal (asked twice
    when setting one, so a typo does not lock the user out).

    Without a terminal, C{getpass} would read standard input with the
    password echoed, and then fail at its end: refused instead, naming
    C{--password-file}.

    @raise BadUsage: if there is no terminal, the file cannot be read, or
        the two passwords differ.
    """
    if path == "-":
        # From the binary layer, which keeps the rest of standard input
        # for a body that follows (C{fmtp put --password-file - -}).
        line = sys.stdin.buffer.readline()
        try:
            return line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise BadUsage(f"the password on standard input: {e}")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise BadUsage(f"--password-file: {e}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            password = getpass.getpass("Password: ")
            if confirm and getpass.getpass("Again: ") != password:
                raise BadUsage("the passwords differ")
        except (getpass.GetPassWarning, EOFError):
            raise BadUsage(
                "no terminal to ask the password on: use --password-file FILE "
                "(or --password-file - to read it from standard input)"
            ) from None
    return password


def keygen(options: KeygenOptions) -> None:
    key = generate_private_key()
    try:
        write_private_key(options["key-file"], key, overwrite=options["force"])
    except FileExistsError:
        raise Refused(
            f"{options['key-file']} exists; use --force to replace it "
            "(and publish the new record before removing the old one)"
        )
    except OSError as e:
        raise Refused(f"cannot write {options['key-file']}: {e}")
    signer = DomainSigner(key, options["domain"])
    print(f"Wrote {options['key-file']} (mode 0600). Publish this TXT record:")
    print(zone_line(options["domain"], signer.public_key()))


def check_data_dir(options: StoreOptions) -> Found:
    """
    Refuse, before asking for a password, to change a store that no server
    of the address's domain reads: see L{fmtp.datadir}.

    @return: L{Found.CREATED} if the data directory is to be made.
    @raise Refused: saying why.
    """
    address, create = options["address"], options["create-data-dir"]
    try:
        found = datadir.check_for_admin(options["data-dir"], domain_of(address), create)
    except DataDirError as e:
        raise Refused(str(e))
    store_file = options["store-file"]
    if store_file is not None and not store_file.exists() and not create:
        raise Refused(
            f"no store {store_file}: the server keeps it elsewhere? Give --store "
            "as the server has it"
        )
    return found


def make_data_dir(options: StoreOptions) -> None:
    domain = domain_of(options["address"])
    try:
        datadir.create(options["data-dir"], domain)
    except OSError as e:
        raise Refused(f"cannot make {options['data-dir']}: {e}")
    print(f"Made the data directory {options['data-dir']} for {domain}")


async def set_account(reactor, options: StoreOptions, password: str, create: bool):
    encoded = hash_password(password)
    store = store_from_url(options["store"], reactor)
    try:
        await store.open()
    except STORE_OPEN_ERRORS as e:
        raise Refused(f"cannot open the store {options['store']}: {e}")
    try:
        address = options["address"]
        if create:
            try:
                await store.add_account(address, encoded)
            except AccountExists:
                raise Refused(f"{address} already has an account")
            if await store.get_object(address) is None:
                await store.put_object(user_object(address))
            print(f"Created {address}")
        elif not await store.set_password_hash(address, encoded):
            raise Refused(f"no account {address}")
        else:
            print(f"Changed the password of {address}")
    finally:
        await store.close()


async def check_dns_command(reactor, options: CheckDNSOptions) -> int:
    # Imported here: DNS is the slowest import, and only check-dns needs it.
    from fmtp.checkdns import ERROR, check_dns, format_findings
    from fmtp.dns import DNSResolver

    local_key = None
    if options["key-file"]:
        try:
            private_key = load_private_key(options["key-file"])
        except (OSError, KeyFileError) as e:
            raise BadUsage(f"--key-file: {e}")
        local_key = DomainSigner(private_key, options["domain"]).public_key()
    resolver = DNSResolver(reactor, options["dns"] or None)
    findings = await check_dns(resolver, options["domain"], local_key, reactor)
    print(format_findings(findings), end="")
    if any(finding.level == ERROR for finding in findings):
        return EXIT_REFUSED
    return EXIT_OK


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


def client_request(
    name: str, options: ClientOptions, body: bytes
) -> tuple[str, str, dict[str, str]]:
    """
    The request a client command sends: its verb, argument and headers.
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


async def run_client(
    reactor, name: str, options: ClientOptions, password: str | None, body: bytes
) -> int:
    """
    Send one request (after a LOGIN, with C{--user}) and print the reply.

    @return: L{EXIT_OK}, or L{EXIT_REFUSED} if the server refused.
    @raise Unreachable: if the server cannot be reached or does not answer
        within C{--timeout} seconds.
    """
    server, timeout = options["server"], options["timeout"]
    verb, argument, headers = client_request(name, options, body)
    try:
        if options["udp"]:
            answer = await _udp_request(reactor, options, verb, argument, headers)
        else:
            connection = await connect(reactor, server, timeout=timeout)
            try:
                if password is not None:
                    credentials = {"Address": options["user"], "Password": password}
                    login = await connection.request(
                        "LOGIN", headers=credentials
                    ).addTimeout(timeout, reactor)
                    if login.code != 230:
                        print_frame(login)
                        return EXIT_REFUSED
                answer = await connection.request(
                    verb, argument, headers, body
                ).addTimeout(timeout, reactor)
            finally:
                connection.transport.loseConnection()
    except (ReplyTimeout, ConnectTimeout):
        raise Unreachable(f"no answer from {server} within {timeout:g} s")
    except ConnectError as e:
        raise Unreachable(f"cannot connect to {server}: {_connect_reason(e)}")
    except DNSLookupError as e:
        raise Unreachable(f"cannot connect to {server}: {e}")
    except ConnectionClosed:
        raise Unreachable(f"{server} closed the connection before answering")
    except ProtocolError as e:
        raise Unreachable(f"{server} does not speak fmtp: {e}")
    print_frame(answer)
    return EXIT_OK if answer.code < 300 else EXIT_REFUSED


def _connect_reason(error: ConnectError) -> str:
    reason = (error.osError and os.strerror(error.osError)) or str(error)
    if isinstance(error, ConnectionRefusedError):
        return f"{reason} (is the server running?)"
    return reason


async def _udp_request(
    reactor, options: ClientOptions, verb: str, argument: str, headers
) -> Frame:
    host, port = options["udp"]
    address = await reactor.resolve(host)
    # Three tries within the timeout: one may be spent fetching a cookie,
    # one may be lost.
    client = DatagramClient(reactor, address, port, timeout=options["timeout"] / 3)
    listening = reactor.listenUDP(0, client)
    try:
        return await client.request(verb, argument, headers)
    finally:
        await listening.stopListening()


def run_on_reactor(main: Callable[[object], Awaitable[int | None]]) -> int:
    """
    Run C{main(reactor)} on the global reactor until it finishes.

    Not L{twisted.internet.task.react}: a signal that stops the reactor
    would make it exit 0, as if the command had succeeded.  Here SIGINT
    and SIGTERM stop the reactor and give status 128 + the signal, as a
    shell reports for a command a signal ended.

    @return: the exit status C{main} returned, or the signal's.
    @raise Exception: what C{main} raised.
    """
    from twisted.internet import reactor

    outcome: list[object] = []
    signals: list[int] = []

    def stop() -> None:
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    def on_signal(number: int, frame: object) -> None:
        signals.append(number)
        reactor.callFromThread(stop)

    previous = {
        number: signal.signal(number, on_signal)
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        finished = Deferred.fromCoroutine(main(reactor))
        finished.addBoth(outcome.append)
        finished.addBoth(lambda _: reactor.callWhenRunning(stop))
        reactor.run(installSignalHandlers=False)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if signals:
        return 128 + signals[0]
    (result,) = outcome
    if isinstance(result, Failure):
        result.raiseException()
    return EXIT_OK if result is None else int(result)


def run_command(name: str, sub: usage.Options) -> int:
    """
    Run a parsed command: what needs the user (a password, standard
    input) first, then what needs the reactor.
    """
    if name == "keygen":
        keygen(sub)
        return EXIT_OK
    if name == "check-dns":
        return run_on_reactor(lambda reactor: check_dns_command(reactor, sub))
    if name in ("adduser", "passwd"):
        found = check_data_dir(sub)
        try:
            password = check_new_password(read_password(sub["password-file"], True))
        except ValueError as e:
            raise BadUsage(str(e))
        if found is Found.CREATED:
            make_data_dir(sub)
        return run_on_reactor(
            lambda reactor: set_account(reactor, sub, password, name == "adduser")
        )
    password = None
    if sub["user"]:
        password = read_password(sub["password-file"], False)
    body = read_body(sub)
    return run_on_reactor(
        lambda reactor: run_client(reactor, name, sub, password, body)
    )


def main(argv: list[str] | None = None) -> int:
    """
    The C{fmtp} command.

    @return: the exit status (see L{EXIT_STATUS_HELP}).
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
