"""
Random bytes from the operating system's CSPRNG, fetched in chunks.

Every message gets a fresh random nonce in its id.  C{secrets.token_hex}
costs a C{getrandom} system call each time, and the call releases the
GIL: on a server whose reactor shares a core with the store's thread,
each release can hand the core to that thread, so a 1 µs call cost
about 130 µs of the reactor's time in a burst (doc/performance.md).
L{RandomBuffer} asks the kernel for a few kilobytes at once and hands
them out in slices: the same C{os.urandom} bytes, each byte handed out
once, one system call per several hundred ids.

A forked child starts with an empty buffer, so that it can never hand
out the bytes its parent does.
"""

from __future__ import annotations

import os
import threading
import weakref

#: Bytes fetched from the kernel at a time.
CHUNK = 4096

_buffers: weakref.WeakSet[RandomBuffer] = weakref.WeakSet()


class RandomBuffer:
    """
    Slices of C{os.urandom} output, C{chunk} bytes fetched at a time;
    safe to share between threads.
    """

    def __init__(self, chunk: int = CHUNK, urandom=os.urandom) -> None:
        self._chunk = chunk
        self._urandom = urandom
        self._lock = threading.Lock()
        self._data = b""
        self._offset = 0
        _buffers.add(self)

    def take(self, n: int) -> bytes:
        """
        The next C{n} random bytes, never handed out before.
        """
        with self._lock:
            start = self._offset
            end = start + n
            if end > len(self._data):
                self._data = self._urandom(max(self._chunk, n))
                start, end = 0, n
            self._offset = end
            return self._data[start:end]

    def token_hex(self, n: int) -> str:
        """
        C{n} random bytes as lower-case hex (as C{secrets.token_hex}).
        """
        return self.take(n).hex()

    def forget(self) -> None:
        """
        Drop what is buffered (in a forked child: the parent has it too).
        """
        self._lock = threading.Lock()
        self._data = b""
        self._offset = 0


def _after_fork() -> None:
    for buffer in list(_buffers):
        buffer.forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)

#: The process's buffer, for object ids.
default_buffer = RandomBuffer()
