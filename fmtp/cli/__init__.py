"""
The C{fmtp} command: admin tasks on a server's data directory, and a
client for sending, reading and trying out a server from a shell.

  - L{fmtp.cli.main}: the command table, the options, and how a command
    ends (one line on error, an exit status a script can test);
  - L{fmtp.cli.admin}, L{fmtp.cli.users}, L{fmtp.cli.queue}: keys,
    accounts and the outbound queue, on the server's data directory;
  - L{fmtp.cli.objects}: one request of the object protocol;
  - L{fmtp.cli.messaging}, L{fmtp.cli.reading}: messages, through
    L{fmtp.client.Client};
  - L{fmtp.cli.config}: which server, account and password.
"""

from fmtp.cli.main import main
from fmtp.cli.status import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_STATUS_HELP,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_STATUS_HELP",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "main",
]
