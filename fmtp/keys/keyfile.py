"""
Domain private key files: written readable by their owner only, from the
first byte, and refused when others could read them, as ssh does.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fmtp.keys.signing import DomainSigner, generate_private_key


class KeyFileError(ValueError):
    """
    A key file (a private key, or a file of key records) cannot be used.
    """


class InsecureKeyFileError(KeyFileError):
    """
    A private key file is readable or writable by users other than its
    owner.  As ssh does, such a key is refused rather than used: it may
    already have been copied.
    """


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_fd(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: str) -> None:
    # Make the new directory entry durable, so that a crash right after
    # does not lose the key that was just published.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_private_key(
    path: str | os.PathLike[str], key: Ed25519PrivateKey, overwrite: bool = False
) -> None:
    """
    Save a private key as unencrypted PKCS#8 PEM, readable by its owner
    only.

    The file is created with mode 0600 from the start, never created first
    and restricted after, so there is no moment when another user could
    open it.  A missing parent directory is created with mode 0700.

    @param overwrite: replace an existing file.  The new key is written to
        a temporary file beside it and renamed over it, so the file always
        holds either the old key or the new one, whole.  Without it an
        existing file is an error: losing a domain key means re-publishing
        DNS records, so it is never done by accident.
    @raise FileExistsError: if the file exists and C{overwrite} is false.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    data = _pem(key)
    if not overwrite:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            raise FileExistsError(
                errno.EEXIST,
                "refusing to overwrite an existing key file "
                "(losing a domain key means publishing a new one)",
                path,
            ) from None
        # The umask can only have removed bits; make it exactly 0600.
        os.fchmod(fd, 0o600)
        _write_fd(fd, data)
    else:
        # mkstemp creates the file with mode 0600 and O_EXCL.
        fd, temporary = tempfile.mkstemp(
            prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory
        )
        try:
            os.fchmod(fd, 0o600)
            _write_fd(fd, data)
            os.replace(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
    _fsync_dir(directory)


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """
    Read a private key written by L{write_private_key}.

    @raise InsecureKeyFileError: if the file's mode lets its group or
        others read or write it.  Like ssh, this refuses a key that may
        already have been copied rather than quietly use it.
    @raise KeyFileError: if the file is not an unencrypted Ed25519 PEM key.
    @raise OSError: if the file cannot be read.
    """
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        # fstat on the open file: checking the name and then opening it
        # would check one file and read another if it were swapped between.
        mode = os.fstat(f.fileno()).st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureKeyFileError(
                f"{path}: permissions {stat.S_IMODE(mode):04o} are too open; "
                f"the domain private key must be readable by its owner only: "
                f"run chmod 600 {path}"
            )
        data = f.read()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyFileError(
            f"{path}: not an unencrypted PEM private key ({e})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(
            f"{path}: a {type(key).__name__}, but a domain key must be Ed25519"
        )
    return key


def load_or_create_signer(
    path: str | os.PathLike[str], domain: str
) -> tuple[DomainSigner, bool]:
    """
    The signer of C{domain} with the key at C{path}, generating and saving
    a new key if there is none yet (a server's first start).

    @return: the signer, and whether its key was just created (in which
        case its record must be published: see
        L{fmtp.keys.records.zone_line}).
    """
    try:
        return DomainSigner(load_private_key(path), domain), False
    except FileNotFoundError:
        pass
    key = generate_private_key()
    try:
        write_private_key(path, key)
    except FileExistsError:
        # Another process created it between our two calls: use theirs.
        return DomainSigner(load_private_key(path), domain), False
    return DomainSigner(key, domain), True
