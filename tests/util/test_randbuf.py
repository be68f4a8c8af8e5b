"""
Unit tests of L{fmtp.util.randbuf}: buffered bytes from the OS's CSPRNG.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from fmtp.util.randbuf import RandomBuffer, default_buffer


class CountingSource:
    """
    A stand-in for C{os.urandom} whose bytes count up, so a test can tell
    which bytes were handed out, and which calls it got.
    """

    def __init__(self) -> None:
        self.calls: list[int] = []
        self._next = 0

    def __call__(self, n: int) -> bytes:
        self.calls.append(n)
        data = bytes((self._next + i) % 256 for i in range(n))
        self._next += n
        return data


class RandomBufferTests(SynchronousTestCase):
    def test_each_byte_once(self) -> None:
        """
        Slices follow each other through the chunk, and a slice that does
        not fit starts a new chunk: no byte is handed out twice.
        """
        source = CountingSource()
        buffer = RandomBuffer(chunk=10, urandom=source)
        self.assertEqual(buffer.take(4), bytes([0, 1, 2, 3]))
        self.assertEqual(buffer.take(4), bytes([4, 5, 6, 7]))
        self.assertEqual(buffer.take(4), bytes([10, 11, 12, 13]))
        self.assertEqual(source.calls, [10, 10])

    def test_more_than_a_chunk(self) -> None:
        source = CountingSource()
        buffer = RandomBuffer(chunk=4, urandom=source)
        self.assertEqual(len(buffer.take(9)), 9)
        self.assertEqual(source.calls, [9])

    def test_one_call_per_chunk(self) -> None:
        """
        A chunk of 4096 bytes serves 682 nonces of 6 bytes.
        """
        source = CountingSource()
        buffer = RandomBuffer(urandom=source)
        for _ in range(682):
            buffer.token_hex(6)
        self.assertEqual(source.calls, [4096])

    def test_token_hex(self) -> None:
        tokens = {default_buffer.token_hex(6) for _ in range(5000)}
        self.assertEqual(len(tokens), 5000)
        for token in tokens:
            self.assertRegex(token, "^[0-9a-f]{12}$")

    def test_forget(self) -> None:
        """
        What a forked child must not reuse is dropped.
        """
        source = CountingSource()
        buffer = RandomBuffer(chunk=10, urandom=source)
        buffer.take(2)
        buffer.forget()
        self.assertEqual(buffer.take(2), bytes([10, 11]))

    def test_fork_forgets(self) -> None:
        """
        A forked child hands out other bytes than its parent.
        """
        if not hasattr(os, "fork"):
            raise self.skipTest("no fork here")
        default_buffer.take(1)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.write(write, default_buffer.take(16))
            finally:
                os._exit(0)
        os.close(write)
        child = os.read(read, 16)
        os.close(read)
        os.waitpid(pid, 0)
        self.assertNotEqual(child, default_buffer.take(16))
