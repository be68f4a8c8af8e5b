"""
The client library for scripts that do not run a reactor.

L{BlockingClient} has the methods of L{fmtp.client.api.Client}, each
blocking until its reply::

    from fmtp.client import BlockingClient

    with BlockingClient.connect("tcp:127.0.0.1:7070") as client:
        client.login("edgar@localhost", password)
        sent = client.send(["annabel@localhost"], b"Quoth the raven")
        for entry in client.inbox():
            print(entry.seq, entry.sender, client.get(entry.id).body)

Twisted's reactor runs in a daemon thread, started on first use and
shared by every blocking client of the process; each call is handed to it
with L{twisted.internet.threads.blockingCallFromThread}.  Code that runs
the reactor itself (a Twisted program) uses L{Client} directly: a
blocking call from the reactor's own thread would wait for ever, so it is
refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread
from twisted.python.threadable import isInIOThread

from fmtp.client.api import DEFAULT_TIMEOUT, Client
from fmtp.client.values import InboxEntry

_started = threading.Lock()
_reactor_thread: threading.Thread | None = None


def running_reactor() -> Any:
    """
    The global reactor, running in a background thread if no one runs it.
    """
    global _reactor_thread
    from twisted.internet import reactor

    with _started:
        if not reactor.running and _reactor_thread is None:
            ready = threading.Event()
            reactor.callWhenRunning(ready.set)
            _reactor_thread = threading.Thread(
                target=reactor.run,
                kwargs={"installSignalHandlers": False},
                name="fmtp-client-reactor",
                daemon=True,
            )
            _reactor_thread.start()
            ready.wait()
    return reactor


def _blocking(reactor: Any, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """
    Run the coroutine function C{call} in the reactor thread and wait for
    its result (or exception).
    """
    if isInIOThread():
        raise RuntimeError(
            "BlockingClient called from the reactor's thread; use "
            "fmtp.client.Client there"
        )
    return blockingCallFromThread(
        reactor, lambda: Deferred.fromCoroutine(call(*args, **kwargs))
    )


class BlockingClient:
    """
    A L{Client} whose calls block; see the module docstring.

    @ivar client: the underlying L{Client}, to be used only from the
        reactor's thread.
    """

    def __init__(self, client: Client, reactor: Any) -> None:
        self.client = client
        self._reactor = reactor

    @classmethod
    def connect(
        cls, endpoint: str, *, timeout: float = DEFAULT_TIMEOUT, starttls: Any = None
    ) -> BlockingClient:
        """
        Connect to C{endpoint}, as L{Client.connect} does.
        """
        reactor = running_reactor()
        client = _blocking(
            reactor,
            Client.connect,
            reactor,
            endpoint,
            timeout=timeout,
            starttls=starttls,
        )
        return cls(client, reactor)

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return _blocking(self._reactor, method, *args, **kwargs)

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def address(self) -> str | None:
        return self.client.address

    def close(self) -> None:
        async def close() -> None:
            await self.client.close()

        self._call(close)

    def capa(self) -> dict[str, str]:
        return self._call(self.client.capa)

    def login(self, address: str, password: str) -> str:
        return self._call(self.client.login, address, password)

    def logout(self) -> None:
        self._call(self.client.logout)

    def get(self, object_id: str):
        return self._call(self.client.get, object_id)

    def put(self, object_type: str, properties=None, body: bytes = b"", object_id=None):
        return self._call(self.client.put, object_type, properties, body, object_id)

    def delete(self, object_id: str) -> str:
        return self._call(self.client.delete, object_id)

    def list(self, start: int = 0, limit: int = 50, object_type=None, owner=None):
        return self._call(self.client.list, start, limit, object_type, owner)

    def send(self, to, body: bytes = b"", **kwargs: Any):
        return self._call(self.client.send, to, body, **kwargs)

    def fetch(self, since: int = 0, limit: int = 50):
        return self._call(self.client.fetch, since, limit)

    def inbox(self, since: int = 0) -> list[InboxEntry]:
        """
        Every inbox entry after C{since}.
        """

        async def collect() -> list[InboxEntry]:
            return [entry async for entry in self.client.inbox(since)]

        return self._call(collect)

    def held(self) -> list[str]:
        return self._call(self.client.held)

    def approve(self, sender: str) -> int:
        return self._call(self.client.approve, sender)

    def refuse(self, sender: str) -> int:
        return self._call(self.client.refuse, sender)

    def messages(self) -> Iterator[Any]:
        """
        The messages pushed to this session as they arrive, until the
        connection closes.
        """
        while (message := self._call(self.client.next_message)) is not None:
            yield message
