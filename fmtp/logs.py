"""
Log observers for C{twistd --logger}: the server's log as JSON, one event
a line, for log collectors.

    twistd -n --logger fmtp.logs.json_to_stdout fmtp ...

twistd calls the factory named by C{--logger} with no argument; the
observer it returns receives every event.  The lines are
L{twisted.logger.eventAsJSON}'s, which L{twisted.logger.eventsFromJSONLogFile}
reads back.
"""

from __future__ import annotations

import os
import sys

from twisted.logger import ILogObserver, jsonFileLogObserver

#: The file L{json_to_file} appends to, named by this environment variable.
LOG_FILE_VARIABLE = "FMTP_JSON_LOG"


def json_to_stdout() -> ILogObserver:
    """
    JSON lines on standard output: what systemd's journal and container
    runtimes collect.
    """
    return jsonFileLogObserver(sys.stdout)


def json_to_file() -> ILogObserver:
    """
    JSON lines appended to the file that C{$FMTP_JSON_LOG} names (twistd
    gives a C{--logger} factory no argument, so the path comes from the
    environment).

    @raise RuntimeError: if the variable is not set, so that twistd stops
        with the reason rather than logging nowhere.
    """
    path = os.environ.get(LOG_FILE_VARIABLE)
    if not path:
        raise RuntimeError(
            f"--logger fmtp.logs.json_to_file needs ${LOG_FILE_VARIABLE} to name "
            "the log file"
        )
    return jsonFileLogObserver(open(path, "a", encoding="utf-8"))  # noqa: SIM115
