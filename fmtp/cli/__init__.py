"""
The C{fmtp} command: admin tasks on a server's data directory, and a
client for sending, reading and trying out a server from a shell.

  - L{fmtp.cli.main}: the table of commands, and how a command ends (one
    line on error, an exit status a script can test: L{fmtp.cli.status});
  - L{fmtp.cli.options}, L{fmtp.cli.config}: options after arguments,
    C{--help} with examples, and which server, account and password;
  - L{fmtp.cli.admin}, L{fmtp.cli.queue}, L{fmtp.cli.checkdns}: keys,
    accounts, the outbound queue and DNS, on the server's data directory;
  - L{fmtp.cli.objects}: one request of the object protocol;
  - L{fmtp.cli.messaging}, L{fmtp.cli.reading} (with L{fmtp.cli.compose},
    L{fmtp.cli.verify}, L{fmtp.cli.save}): messages, through
    L{fmtp.client.Client} (L{fmtp.cli.session});
  - L{fmtp.cli.presence}: status, subscriptions and buddies, through
    L{fmtp.client.presence.Presence} on the presence port;
  - L{fmtp.cli.chat}, L{fmtp.cli.rooms}: chat rooms, through
    L{fmtp.client.chat.Chat} on the chat port;
  - L{fmtp.cli.output}, L{fmtp.cli.runner}: what is printed, and the
    reactor run.
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
