"""
Writing a message's attachments into a directory the user chose, whatever
names their sender gave them.

A name is the sender's, so it is never used as a path: only its last
component is kept, without leading dots (L{fmtp.attachments.safe_name}).
A file is created, never opened: C{O_CREAT|O_EXCL} fails on any existing
name, a symbolic link included (so a link planted in the directory is
never followed), and C{O_NOFOLLOW} says so again; the name then gets a
number (C{photo-1.png}, C{photo-2.png}...) instead.  Files are made
readable by the user only, as the message was.  Every file is created
relative to the directory opened once, so the directory cannot be swapped
for a link to another one halfway.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from fmtp.attachments import Attachment, safe_name
from fmtp.cli.output import Progress
from fmtp.cli.status import BadUsage, Refused

#: How many numbered names to try before giving up.
MAX_TRIES = 1000
#: The longest file name most file systems take, in bytes.
MAX_NAME_BYTES = 255
#: Write in pieces of this size, for progress.
CHUNK = 1 << 20

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Saved:
    """
    One attachment written: the name the sender gave it, and where it is.
    """

    attachment: Attachment
    path: str


def _fit(name: str, suffix: str) -> str:
    """
    C{name} with C{suffix} before its extension, cut (at a character) to
    fit in L{MAX_NAME_BYTES}.
    """
    stem, extension = os.path.splitext(name)
    if len(extension.encode()) > 32:
        stem, extension = name, ""
    tail = suffix + extension
    room = MAX_NAME_BYTES - len(tail.encode())
    stem = stem.encode()[:room].decode("utf-8", "ignore")
    return stem + tail


def create_new(dir_fd: int, name: str) -> tuple[int, str]:
    """
    Create a new file for C{name} in the directory C{dir_fd}: C{name}
    itself, or, if anything already has that name, C{name-1},
    C{name-2}...

    @return: the open file and the name it got.
    @raise Refused: if no name is free, or the file cannot be made.
    """
    for n in range(MAX_TRIES):
        candidate = _fit(name, f"-{n}" if n else "")
        try:
            return os.open(candidate, _CREATE, 0o600, dir_fd=dir_fd), candidate
        except FileExistsError:
            continue
        except OSError as e:
            if e.errno == getattr(os, "ELOOP", None):
                continue
            raise Refused(f"cannot create {candidate}: {e.strerror}") from None
    raise Refused(f"no free name for {name} after {MAX_TRIES} tries")


def _write(fd: int, data: bytes, progress: Progress) -> None:
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.write(fd, view[done : done + CHUNK])
        progress.update(done, len(view), "bytes")


def save_attachments(
    directory: str, attachments: Sequence[Attachment], progress_shown: bool
) -> list[Saved]:
    """
    Write each attachment into C{directory} (which must exist), under a
    safe, new name.

    @raise BadUsage: if C{directory} is not a directory.
    @raise Refused: if a file cannot be written (what was written of it
        is removed).
    """
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise BadUsage(f"--save {directory}: {e.strerror}") from None
    saved = []
    try:
        for n, attachment in enumerate(attachments, 1):
            fd, name = create_new(dir_fd, safe_name(attachment.name, n))
            progress = Progress(f"saving {name}", progress_shown)
            try:
                try:
                    _write(fd, attachment.data, progress)
                finally:
                    os.close(fd)
                    progress.done()
            except OSError as e:
                os.unlink(name, dir_fd=dir_fd)
                raise Refused(f"cannot write {name}: {e.strerror}") from None
            saved.append(Saved(attachment, os.path.join(directory, name)))
    finally:
        os.close(dir_fd)
    return saved
