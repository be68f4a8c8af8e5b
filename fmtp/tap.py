"""
C{twistd fmtp}: what twistd's C{ServiceMaker} names (L{Options} and
L{makeService}), with the checks that make a start-up fail in one line.

The options are L{fmtp.serveroptions}'; the service tree is
L{fmtp.server}'s.
"""

from __future__ import annotations

import atexit
import os
import sys

from OpenSSL import crypto
from twisted.application.service import MultiService
from twisted.logger import Logger
from twisted.python import usage

from fmtp import datadir
from fmtp.datadir import DataDirError, Found
from fmtp.keys.keyfile import KeyFileError
from fmtp.server import ServerService, build_server, load_tls_context
from fmtp.serveroptions import Options
from fmtp.wire import Limits

#: What twistd's C{ServiceMaker} takes from this module (it names
#: C{"fmtp.tap"} in twisted/plugins/fmtp_server.py).
__all__ = ["Options", "makeService"]

log = Logger()


#: What stops a start-up with one line instead of a traceback: the admin's
#: files (data directory, domain key, TLS key and certificate) are wrong.
STARTUP_ERRORS = (DataDirError, KeyFileError, OSError, crypto.Error, usage.UsageError)


def makeService(options: Options) -> MultiService:
    """
    The service twistd runs, after every check that can be made before
    the reactor runs.

    twistd ends with a non-zero status only when making or starting the
    service raises (and then a daemon's parent reports it too): so the
    data directory, the key and the TLS files are checked here, and a
    failure ends twistd with one line saying why.  A listener that cannot
    bind raises from C{privilegedStartService}, which twistd also turns
    into status 1.  The store opens on its own thread once the reactor
    runs, out of twistd's reach: L{_exit_if_store_failed} gives that
    failure its non-zero status.
    """
    from twisted.internet import reactor

    try:
        found = datadir.prepare_for_server(options["data-dir"], options["domain"])
        tls_context = None
        if options["tls-key"]:
            tls_context = load_tls_context(options["tls-key"], options["tls-cert"])
        root, _ = build_server(
            reactor,
            domain=options["domain"],
            store_url=options["store"],
            key_file=options["key-file"],
            listeners=options["listen"],
            plugins=options["plugins"],
            hosts_file=options["hosts-file"],
            limits=Limits(max_body=options["max-body"]),
            nameservers=options["dns"],
            federation=options["federation"],
            tls_context=tls_context,
            login_limits=options["login-limits"],
            password_cost=options["password-cost"],
            token_lifetime=options["token-lifetime"],
            connection_limits=options["connection-limits"],
            plugin_options=options["plugin-options"],
        )
    except STARTUP_ERRORS as e:
        raise SystemExit(f"fmtp: cannot start: {_reason(e)}") from None
    _log_data_dir(found, options["data-dir"], options["domain"])
    atexit.register(_exit_if_store_failed, root)
    return root


def _reason(error: Exception) -> str:
    if isinstance(error, crypto.Error):
        return f"cannot load --tls-key and --tls-cert: {error}"
    return str(error)


def _log_data_dir(found: Found, path: str, domain: str) -> None:
    if found is Found.CREATED:
        log.info(
            "Made the data directory {path} for {domain}", path=path, domain=domain
        )
    elif found is Found.ADOPTED:
        log.warn(
            "{path} was made by an older fmtp and named no domain: recorded "
            "{domain} in {file}. If its key and accounts are another "
            "domain's, stop the server, write that domain in {file} and "
            "start it with that --domain.",
            path=path,
            domain=domain,
            file=datadir.domain_path(path),
        )


def _exit_if_store_failed(root: ServerService) -> None:
    """
    At exit, end with status 1 if the store could not be opened.

    twistd has no exit status for a failure after its reactor starts: it
    stops, cleans up (pid file, logs) and exits 0, so a service manager's
    restart-on-failure would never fire.  This runs after that clean-up,
    from C{atexit}, and only in a twistd process (L{makeService}).  The
    exit handlers registered before it are skipped (the standard library's
    C{logging} flush among them); fmtp logs through C{twisted.logger},
    whose files are flushed at each event.
    """
    if root.failure is None:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(1)
