"""
How an C{fmtp} command ends: its exit status, and the one-line failures
that choose it.

A command that fails in an ordinary way (the server refused, is not
running, the command line is wrong) raises one of the L{CommandFailed}
classes below; L{fmtp.cli.main.main} prints its message on one line of
standard error and exits with its status.  Anything else is a bug, and
keeps its traceback.
"""

from __future__ import annotations

import signal

EXIT_OK = 0
#: The server answered with an error, or the data directory or the store
#: refused the change, or a message's signature does not verify.
EXIT_REFUSED = 1
#: The command line is wrong: an option, an address, the password.
EXIT_USAGE = 2
#: The server could not be reached, did not answer in time, or closed the
#: connection.
EXIT_UNREACHABLE = 3
#: Ctrl-C (128 + SIGINT, as a shell reports a command SIGINT ended).
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: Standard output was closed early (128 + SIGPIPE): C{fmtp list | head -1}.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

EXIT_STATUS_HELP = f"""
Exit status:
  {EXIT_OK}    done
  {EXIT_REFUSED}    refused: the server answered with an error, the data
       directory or store refused the change, or a signature does not verify
  {EXIT_USAGE}    usage: a bad option, address or password
  {EXIT_UNREACHABLE}    unreachable: no connection to the server, no answer within
       --timeout seconds, or the server closed the connection
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
