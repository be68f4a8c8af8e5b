"""
What every C{fmtp} command's options have in common.

L{CommandOptions} is the base of each command's L{usage.Options}: it
accepts options after the positional arguments, as people type them
(C{fmtp check-dns poe.net --key-file F}), shows examples and the exit
statuses in C{--help}, and answers C{--version} with fmtp's version.
"""

from __future__ import annotations

import getopt
import sys
from collections.abc import Sequence
from importlib import metadata

from twisted.python import usage

from fmtp.cli.status import EXIT_STATUS_HELP


def fmtp_version() -> str:
    """
    The version of fmtp: the installed distribution's, or the checkout's
    L{fmtp.__version__} when it is not installed.
    """
    try:
        return metadata.version("fmtp")
    except metadata.PackageNotFoundError:
        from fmtp import __version__

        return __version__


def options_first(argv: Sequence[str], short: str, long: Sequence[str]) -> list[str]:
    """
    C{argv} with its options moved before its positional arguments.

    L{usage.Options} parses with L{getopt.getopt}, which stops at the
    first positional argument, so C{DOMAIN --key-file F} fails as three
    arguments.  This reads C{argv} with L{getopt.gnu_getopt} and the
    command's own option table, so it knows exactly which options take a
    value (C{--subject -x} is a subject, C{-} alone and everything after
    C{--} are arguments), and writes the options back first, each in a
    form that cannot be read another way, then C{--} and the arguments.

    @raise usage.UsageError: for an unknown option or a missing value.
    """
    try:
        options, arguments = getopt.gnu_getopt(list(argv), short, list(long))
    except getopt.GetoptError as e:
        raise usage.UsageError(str(e))
    ordered: list[str] = []
    for option, value in options:
        if option.startswith("--"):
            takes_value = option[2:] + "=" in long
            ordered.append(f"{option}={value}" if takes_value else option)
        elif option[1] + ":" in short:
            ordered += [option, value]
        else:
            ordered.append(option)
    return [*ordered, "--", *arguments]


class CommandOptions(usage.Options):
    """
    The options of one C{fmtp} command.

    @cvar examples: command lines shown under C{Examples:} in C{--help}.
    """

    synopsis = "[options]"
    examples: Sequence[str] = ()

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        if options is None:
            options = sys.argv[1:]
        if not getattr(self, "subCommands", None):
            options = options_first(options, self.shortOpt, self.longOpt)
        super().parseOptions(options)

    def opt_version(self) -> None:
        """
        Show fmtp's version and exit.
        """
        print(f"fmtp {fmtp_version()}")
        sys.exit(0)

    def getSynopsis(self) -> str:
        parent = getattr(self, "parent", None)
        words = ["fmtp", parent.subCommand] if parent is not None else ["fmtp"]
        return f"Usage: {' '.join(words)} {self.synopsis}".rstrip()

    def getUsage(self, width: int | None = None) -> str:
        text = super().getUsage(width)
        if hasattr(self, "subOptions"):
            # The sub-command's usage, complete.
            return text
        if self.examples:
            text += "\nExamples:\n" + "".join(f"  {line}\n" for line in self.examples)
        return text + EXIT_STATUS_HELP


class JSONOption:
    """
    Mixin: C{--json} prints what a command lists as JSON, for scripts.
    """

    optFlags = [["json", None, "Print JSON (one document) for scripts."]]
