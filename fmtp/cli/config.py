"""
Which server, which account, which password: the client commands'
settings, from options, the environment and a small config file.

Each setting is taken from the first of these that gives it:

  1. the command line (C{--server}, C{--user}, C{--password-file},
     C{--timeout}, for the presence commands C{--presence-server}, and
     for the chat commands C{--chat-server});
  2. the environment (C{FMTP_SERVER}, C{FMTP_USER}, C{FMTP_PASSWORD_FILE},
     C{FMTP_PRESENCE_SERVER}, C{FMTP_CHAT_SERVER});
  3. the config file, C{$XDG_CONFIG_HOME/fmtp/client.ini} (by default
     C{~/.config/fmtp/client.ini})::

        [client]
        server = tcp:mail.poe.net:7070
        user = edgar@poe.net
        password-file = ~/.config/fmtp/password
        timeout = 20

  4. the default: C{tcp:127.0.0.1:7070}, no account, a 10 second timeout;
     the presence server is the server's host on port 7071, the chat
     server its host on port 7072.

The password itself is never an option, an environment variable or a
config setting (other users can read command lines, and environments
leak into child processes and logs): it is read from the file named as
above, or asked on the terminal.
"""

from __future__ import annotations

import configparser
import getpass
import math
import os
import re
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

from twisted.internet import endpoints
from twisted.python import usage

from fmtp.cli.options import CommandOptions
from fmtp.cli.status import BadUsage
from fmtp.client import DEFAULT_TIMEOUT
from fmtp.errors import InvalidAddress
from fmtp.objects import normalize_address
from fmtp.util.hostport import CHAT_PORT, OBJECT_PORT, PRESENCE_PORT, parse_host_port

DEFAULT_SERVER = f"tcp:127.0.0.1:{OBJECT_PORT}"
SECTION = "client"
#: Config file settings, and the environment variable for each (if any).
SETTINGS = {
    "server": "FMTP_SERVER",
    "user": "FMTP_USER",
    "password-file": "FMTP_PASSWORD_FILE",
    "timeout": None,
    "presence-server": "FMTP_PRESENCE_SERVER",
    "chat-server": "FMTP_CHAT_SERVER",
}


def config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """
    The client config file: under C{$XDG_CONFIG_HOME} if that is an
    absolute path (the XDG rule), else under C{~/.config}.
    """
    base = environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "fmtp" / "client.ini"


def read_config(path: Path) -> dict[str, str]:
    """
    The settings of a config file; none if it does not exist.

    A file that does not parse, or names a setting this version does not
    know (a typo would otherwise be silently ignored), is refused.

    @raise usage.UsageError: saying what is wrong, on one line.
    """
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, configparser.Error) as e:
        reason = " ".join(str(e).split())
        raise usage.UsageError(f"{path}: {reason}")
    for section in parser.sections():
        if section != SECTION:
            raise usage.UsageError(f"{path}: unknown section [{section}]")
    settings = dict(parser[SECTION]) if parser.has_section(SECTION) else {}
    for name in settings:
        if name not in SETTINGS:
            known = ", ".join(SETTINGS)
            raise usage.UsageError(
                f"{path}: unknown setting {name!r} in [{SECTION}] (known: {known})"
            )
    return settings


def check_server(server: str, source: str) -> tuple[str, int] | None:
    """
    Refuse a server that cannot name one, before connecting.

    @param source: where it came from, for the message (C{--server}...).
    @return: the host and port of a C{udp:HOST:PORT} server, L{None} for a
        stream endpoint.
    """
    if server.startswith("udp:"):
        try:
            return parse_host_port(server.removeprefix("udp:"))
        except ValueError:
            raise usage.UsageError(f"{source} {server}: expected udp:HOST:PORT")
    from twisted.internet import reactor

    try:
        endpoints.clientFromString(reactor, server)
    except (ValueError, TypeError, KeyError) as e:
        raise usage.UsageError(
            f"{source} {server}: {e} (expected e.g. tcp:HOST:PORT or udp:HOST:PORT)"
        )
    return None


class ClientOptions(CommandOptions):
    """
    The options of a command that speaks to a server; see the module
    docstring for where each comes from when not given.

    After parsing, C{self["server"]}, C{self["timeout"]} (a float),
    C{self["user"]} (a normalized address or L{None}) and
    C{self["password-file"]} hold the settings in effect, and
    C{self["udp"]} the host and port of a C{udp:} server.

    @cvar needs_account: whether the command must log in.
    @cvar login_if_named: whether the command logs in only when
        C{--user} is given on its command line (a command that also works
        anonymously, such as C{get} and C{list}).
    """

    needs_account = False
    login_if_named = False
    optParameters = [
        [
            "server",
            "s",
            None,
            f"The server: a stream endpoint, or udp:HOST:PORT "
            f"(default: $FMTP_SERVER, the config file, or {DEFAULT_SERVER}).",
        ],
        ["user", "u", None, "Log in as this address (default: $FMTP_USER)."],
        [
            "password-file",
            None,
            None,
            "Read the password from this file's first line ('-': standard "
            "input; default: the file $FMTP_PASSWORD_FILE names, or ask).",
        ],
        [
            "timeout",
            None,
            None,
            "Seconds to wait for the connection, and then for each reply "
            f"(default {DEFAULT_TIMEOUT:g}).",
        ],
    ]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.environ = os.environ if environ is None else environ

    def postOptions(self) -> None:
        path = config_path(self.environ)
        config = read_config(path)
        named_user = self["user"] is not None
        self.sources: dict[str, str] = {}
        sources = self.sources
        for name, variable in SETTINGS.items():
            if name not in self:
                # A setting of other commands (--presence-server...).
                continue
            if self[name] is not None:
                sources[name] = f"--{name}"
            elif variable and self.environ.get(variable):
                self[name] = self.environ[variable]
                sources[name] = variable
            elif name in config:
                value = config[name]
                if name == "password-file":
                    value = str(path.parent / os.path.expanduser(value))
                self[name] = value
                sources[name] = f"{name} in {path}:"
        self["server"] = self["server"] or DEFAULT_SERVER
        self["udp"] = check_server(self["server"], sources.get("server", "--server"))
        self["timeout"] = _seconds(self["timeout"], sources.get("timeout"))
        if self["user"] is not None:
            try:
                self["user"] = normalize_address(self["user"])
            except InvalidAddress as e:
                raise usage.UsageError(f"{sources['user']} {self['user']}: {e}")
        if self.login_if_named and not named_user:
            self["user"] = None
        if self.needs_account and self["user"] is None:
            raise usage.UsageError(
                "no account to log in with: give --user ADDRESS, set FMTP_USER, "
                f"or set user in {path}"
            )


#: A colon that separates two parts of an endpoint description (one
#: written C{\\:} is part of a value, as in an IPv6 address).
_ENDPOINT_COLON = re.compile(r"(?<!\\):")


def server_on_port(server: str, port: int) -> str | None:
    """
    The endpoint of another of fmtp's protocols on the host of C{server}:
    the same description with its port replaced by C{port}, that
    protocol's well-known port, as 7070 is the object protocol's.  A
    C{udp:} server gives C{tcp:} (the other protocols are served over
    streams).

    @return: L{None} for an endpoint that names no host and port
        (C{unix:...}): the user must name the server.
    """
    kind, _, rest = server.partition(":")
    if kind == "udp":
        host, _ = parse_host_port(rest)
        escaped = host.replace(":", "\\:")
        return f"tcp:{escaped}:{port}"
    if kind not in ("tcp", "tls"):
        return None
    parts = _ENDPOINT_COLON.split(rest)
    positional = [i for i, part in enumerate(parts) if "=" not in part]
    named = [i for i, part in enumerate(parts) if part.startswith("port=")]
    if named:
        parts[named[0]] = f"port={port}"
    elif len(positional) >= 2:
        parts[positional[1]] = str(port)
    else:
        return None
    return f"{kind}:{':'.join(parts)}"


def presence_server(server: str) -> str | None:
    """
    The presence protocol's endpoint on the host of C{server}, on
    L{PRESENCE_PORT} (7071).
    """
    return server_on_port(server, PRESENCE_PORT)


def chat_server(server: str) -> str | None:
    """
    The chat protocol's endpoint on the host of C{server}, on
    L{CHAT_PORT} (7072).
    """
    return server_on_port(server, CHAT_PORT)


def settle_server(options: ClientOptions, setting: str, port: int, what: str) -> None:
    """
    Keep in C{options[setting]} the stream endpoint of a protocol served
    on a port of its own: as given, or else C{--server}'s host on
    C{port}.

    @param what: the protocol, for the messages (C{presence}).
    @raise usage.UsageError: if there is none to derive, or it is not a
        stream endpoint.
    """
    source = options.sources.get(setting, f"--{setting}")
    if options[setting] is None:
        options[setting] = server_on_port(options["server"], port)
        source = f"--{setting} (from {options['server']})"
        if options[setting] is None:
            raise usage.UsageError(
                f"no {what} server to derive from {options['server']}: give "
                f"--{setting} ENDPOINT"
            )
    if check_server(options[setting], source) is not None:
        raise usage.UsageError(
            f"{source} {options[setting]}: {what} is served over streams only "
            "(tcp:HOST:PORT)"
        )


class PresenceClientOptions(ClientOptions):
    """
    The options of a command that speaks the presence protocol, which is
    served on a port of its own: C{self["presence-server"]} is the
    endpoint, from C{--presence-server}, C{FMTP_PRESENCE_SERVER} or the
    config file's C{presence-server}, or else the server's host on port
    7071 (L{presence_server}).

    @cvar needs_presence: whether the command speaks it (C{fmtp watch}
        does only with C{--presence}).
    """

    needs_account = True
    optParameters = [
        [
            "presence-server",
            None,
            None,
            "The presence server, a stream endpoint (default: "
            "$FMTP_PRESENCE_SERVER, the config file, or --server's host on "
            f"port {PRESENCE_PORT}).",
        ],
    ]

    def needs_presence(self) -> bool:
        return True

    def postOptions(self) -> None:
        super().postOptions()
        if self.needs_presence():
            settle_server(self, "presence-server", PRESENCE_PORT, "presence")


class ChatClientOptions(ClientOptions):
    """
    The options of a command that speaks the chat protocol, served on a
    port of its own: C{self["chat-server"]} is the endpoint, from
    C{--chat-server}, C{FMTP_CHAT_SERVER} or the config file's
    C{chat-server}, or else the server's host on port 7072.
    """

    needs_account = True
    optParameters = [
        [
            "chat-server",
            None,
            None,
            "The chat server, a stream endpoint (default: $FMTP_CHAT_SERVER, "
            f"the config file, or --server's host on port {CHAT_PORT}).",
        ],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        settle_server(self, "chat-server", CHAT_PORT, "chat")


def _seconds(value: str | None, source: str | None) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise usage.UsageError(f"{source} must be a number of seconds")
    return seconds


def read_password(
    path: str | None, confirm: bool = False, source: str = "--password-file"
) -> str:
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
            with open(os.path.expanduser(path), encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise BadUsage(f"{source} {path}: {getattr(e, 'strerror', None) or e}")
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


def login_password(options: ClientOptions) -> str | None:
    """
    The password to log in with, read before the reactor runs, or L{None}
    for a command that does not log in.
    """
    if options["user"] is None:
        return None
    source = options.sources.get("password-file", "--password-file")
    return read_password(options["password-file"], source=source)
