"""
The data directory: one domain's key, store and accounts, and the record
of which domain they belong to.

A server keeps everything that makes it who it is in one directory
(C{--data-dir}, C{./fmtp-data} by default): the domain key, the SQLite
store, and a one-line file, C{DATA-DIR/domain}, naming the domain they
belong to.  That file is what lets the server and the admin commands
refuse to mix domains: a server started with another C{--domain} would
otherwise sign with the old domain's key and serve its accounts, and an
C{fmtp adduser} run from the wrong directory would create a new empty
store that no server reads.

The rules:

  - A server's first start creates the directory (mode 0700) and records
    its domain.  Later starts refuse a directory of another domain.
  - A directory an older fmtp made holds a key or a store but no domain
    file: the server records the domain it is started with, once, and
    says so in its log.
  - A directory that holds other files and none of fmtp's is not a data
    directory (C{--data-dir /var/lib} by mistake): refused.
  - Admin commands (C{adduser}, C{passwd}) never create a directory or
    decide its domain, unless asked to (C{--create-data-dir}): they refuse
    a missing or empty directory, one without a domain file, and an
    address of another domain.
"""

from __future__ import annotations

import enum
import os
import sqlite3

from fmtp.errors import InvalidAddress, StoreUnavailable
from fmtp.objects import normalize_domain
from fmtp.store import SchemaTooNew

#: The data directory of C{twistd fmtp} and C{fmtp adduser} by default,
#: relative to the working directory.
DEFAULT_DATA_DIR = "fmtp-data"

#: The file naming the directory's domain, in its ASCII (IDNA) form.
DOMAIN_FILE = "domain"
#: The domain's private key, unless C{--key-file} says otherwise.
KEY_FILE = "domain.key"
#: The SQLite store, unless C{--store} says otherwise.
STORE_FILE = "fmtp.sqlite"

#: Files whose presence marks a directory an older fmtp made.
_FMTP_FILES = (KEY_FILE, STORE_FILE)


#: What a store's C{open()} fails with when the fault is in its files (a
#: corrupt or newer database, a full disk, a permission), not in fmtp: an
#: admin is told the reason in one line rather than shown a traceback.
STORE_OPEN_ERRORS = (sqlite3.Error, SchemaTooNew, StoreUnavailable, OSError)


class DataDirError(Exception):
    """
    A data directory that cannot be used as asked.  The message says why
    and what to do, in one line.
    """


class Found(enum.Enum):
    """
    What L{prepare_for_server} or L{check_for_admin} found.
    """

    #: A data directory of the expected domain.
    EXISTING = "existing"
    #: A new data directory, made and recorded now.
    CREATED = "created"
    #: A directory an older fmtp made, whose domain was recorded now.
    ADOPTED = "adopted"


def key_path(data_dir: str) -> str:
    """
    Where the domain key is kept, unless C{--key-file} says otherwise.
    """
    return os.path.join(data_dir, KEY_FILE)


def store_url(data_dir: str) -> str:
    """
    The store URL used unless C{--store} says otherwise.
    """
    return "sqlite:" + os.path.join(data_dir, STORE_FILE)


def domain_path(data_dir: str) -> str:
    return os.path.join(data_dir, DOMAIN_FILE)


def read_domain(data_dir: str) -> str | None:
    """
    The domain recorded in a data directory.

    @return: the domain, or L{None} if the directory has no domain file.
    @raise DataDirError: if the file cannot be read or names no domain.
    @raise FileNotFoundError: if the directory does not exist.
    """
    path = domain_path(data_dir)
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        if not os.path.isdir(data_dir):
            raise
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise DataDirError(f"cannot read {path}: {e}") from None
    try:
        return normalize_domain(text)
    except InvalidAddress as e:
        raise DataDirError(
            f"{path} should hold this data directory's domain: {e.message}"
        ) from None


def write_domain(data_dir: str, domain: str) -> None:
    """
    Record C{domain} in an existing data directory, atomically: the file
    holds the whole name or is absent, never half of it.
    """
    path = domain_path(data_dir)
    temporary = path + ".new"
    with open(temporary, "w", encoding="ascii") as f:
        f.write(domain + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def prepare_for_server(data_dir: str, domain: str) -> Found:
    """
    Make C{data_dir} ready for a server of C{domain}, or refuse it.

    @raise DataDirError: if it belongs to another domain, or is not a data
        directory; the message says what to do.
    @raise OSError: if it cannot be made or written.
    """
    try:
        recorded = read_domain(data_dir)
    except FileNotFoundError:
        create(data_dir, domain)
        return Found.CREATED
    if recorded is not None:
        if recorded != domain:
            raise DataDirError(
                f"{data_dir} is the data directory of {recorded}, not {domain}: "
                f"start with --domain {recorded}, or give {domain} a data "
                f"directory of its own (e.g. --data-dir /var/lib/fmtp/{domain})"
            )
        return Found.EXISTING
    contents = set(os.listdir(data_dir))
    if contents and not contents.intersection(_FMTP_FILES):
        raise DataDirError(
            f"{data_dir} is not an fmtp data directory: it holds other files "
            f"and no {DOMAIN_FILE} file; give --data-dir a new or empty directory"
        )
    write_domain(data_dir, domain)
    return Found.ADOPTED if contents else Found.CREATED


def check_for_admin(data_dir: str, domain: str, create: bool = False) -> Found:
    """
    Check that C{data_dir} is the data directory of a server of
    C{domain}, before an admin command changes its store.  Nothing is
    changed: the caller makes a missing directory with L{create}, once it
    has all it needs (a password), so a refused command leaves no trace.

    @param create: accept a directory that does not exist or is empty.
    @return: L{Found.EXISTING}, or L{Found.CREATED} if C{create} and the
        directory is still to be made.
    @raise DataDirError: if it does not exist (unless C{create}), holds
        no domain file, or belongs to another domain.
    """
    where = os.path.abspath(data_dir)
    try:
        recorded = read_domain(data_dir)
    except FileNotFoundError:
        if not create:
            raise DataDirError(
                f"no data directory {where}: run this where the server's data "
                "directory is, name it with --data-dir, or add --create-data-dir "
                f"to make a new one for {domain}"
            ) from None
        return Found.CREATED
    if recorded is None:
        if create and not os.listdir(data_dir):
            return Found.CREATED
        raise DataDirError(
            f"{where} records no domain ({DOMAIN_FILE} is missing): start the "
            "server on it once to record its domain, or use --create-data-dir "
            "on a new or empty directory"
        )
    if recorded != domain:
        raise DataDirError(
            f"{where} is the data directory of {recorded}; {domain} is another domain"
        )
    return Found.EXISTING


def domain_for_admin(data_dir: str) -> str:
    """
    The domain of an existing data directory, for an admin command that
    names no address (C{fmtp users}, C{fmtp queue}) and so has no domain
    to check it against.

    @raise DataDirError: if it does not exist or records no domain.
    """
    where = os.path.abspath(data_dir)
    try:
        recorded = read_domain(data_dir)
    except FileNotFoundError:
        raise DataDirError(
            f"no data directory {where}: run this where the server's data "
            "directory is, or name it with --data-dir"
        ) from None
    if recorded is None:
        raise DataDirError(
            f"{where} records no domain ({DOMAIN_FILE} is missing): start the "
            "server on it once to record its domain"
        )
    return recorded


def create(data_dir: str, domain: str) -> None:
    """
    Make a data directory for C{domain} (mode 0700), or record C{domain}
    in an empty one.

    @raise OSError: if it cannot be made or written.
    """
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    write_domain(data_dir, domain)
