"""
The client library: a typed call for every command of the object
protocol, on one pipelined connection.

    client = await Client.connect(reactor, "tcp:mail.poe.net:7070")
    await client.login("edgar@poe.net", password)
    sent = await client.send(["lost@lenore.org"], b"Quoth the raven")
    async for message in client.messages():
        print(message.properties["From"], message.body)

Every call waits at most L{Client.timeout} seconds for its reply, and
fails with L{ReplyError} (carrying the reply code: 4xx temporary, 5xx
permanent) when the server refuses, L{ReplyTimeout} when it does not
answer in time, and L{ConnectionLost} when the connection ends first.
A send is named by an C{Idempotency-Key} (one is made when none is
given), so that repeating it after a lost reply never sends it twice.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.error import ConnectionClosed

from fmtp.attachments import Attachment, attach
from fmtp.client.errors import ConnectionLost, ReplyError, ReplyTimeout
from fmtp.client.protocol import FrameClientProtocol, ProtocolError, connect
from fmtp.client.values import InboxEntry, InboxPage, ObjectPage, SendResult
from fmtp.delivery import parse_results
from fmtp.errors import FMTPError
from fmtp.objects import FMTPObject, ObjectSummary, is_ascii_digits
from fmtp.wire import DEFAULT_LIMITS, Frame, Limits

#: Seconds to wait for a connection, and then for each reply.
DEFAULT_TIMEOUT = 10.0
#: The code of a pushed message (doc/protocol.md 4.4); other pushes are
#: presence events (L{fmtp.client.presence}).
MESSAGE_PUSH = 250
#: The header that names a send (doc/protocol.md 4.4).
IDEMPOTENCY_KEY = "Idempotency-Key"


def object_from_reply(frame: Frame) -> FMTPObject:
    """
    The object a reply carries (a GET's, or a push), checked against the
    C{Digest} the server announced with it.

    @raise ProtocolError: if it does not parse or does not match its
        digest.
    """
    headers = dict(frame.headers)
    announced = headers.pop("Digest", None)
    try:
        obj = FMTPObject.from_headers(headers, frame.body)
        digest = obj.digest()
    except FMTPError as e:
        raise ProtocolError(f"the server sent a bad object: {e.message}") from None
    if announced is not None and announced.lower() != digest:
        raise ProtocolError(f"{obj.id} does not match the digest the server sent")
    return obj


def _int_header(frame: Frame, name: str, default: int | None = None) -> int | None:
    value = frame.headers.get(name)
    if value is not None and is_ascii_digits(value):
        return int(value)
    return default


def object_page(frame: Frame) -> ObjectPage:
    """
    The page of objects a LIST reply carries, over a stream or in a
    datagram: one C{ID TYPE DIGEST} line each.
    """
    items = []
    for line in frame.body.decode("utf-8", "replace").splitlines():
        parts = line.split(" ")
        if len(parts) == 3:
            items.append(ObjectSummary(*parts))
    return ObjectPage(items, _int_header(frame, "Next-Start"))


def thread_headers(parent: FMTPObject) -> dict[str, str]:
    """
    The headers of a reply to C{parent}: C{Parent}, its digest, and the
    thread's C{Top}, so the thread is a hash-linked chain (doc/protocol.md
    3.5).
    """
    return {
        "Parent": parent.id,
        "Parent-Digest": parent.digest(),
        "Top": parent.properties.get("Top", parent.id),
    }


class Client:
    """
    One connection to an fmtp server, and the calls made on it.

    Calls may run concurrently: they are pipelined, each matched to its
    reply by tag.

    @ivar address: the logged-in address, or L{None}.
    @ivar token: the resumption token of this session (L{login} with
        C{issue_token}, or L{login_with_token}), or L{None}.
    @ivar timeout: seconds each call waits for its reply.
    """

    def __init__(
        self,
        protocol: FrameClientProtocol,
        clock: Any,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.protocol = protocol
        self._clock = clock
        self.timeout = timeout
        self.address: str | None = None
        #: The resumption token this session got or logged in with.
        self.token: str | None = None
        self.token_expires: float | None = None
        self._closed = False
        protocol.closed.addCallback(self._connection_closed)

    @classmethod
    async def connect(
        cls,
        reactor: Any,
        endpoint: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        starttls: Any = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> Client:
        """
        Connect to a stream endpoint (C{tcp:HOST:PORT}, or C{tls:...} for
        TLS from the first byte) and wait for the greeting, then switch to
        TLS with STARTTLS if C{starttls} (client TLS options, e.g. from
        L{twisted.internet.ssl.optionsForClientTLS}) is given.

        @raise ReplyTimeout: if the connection or the greeting takes longer
            than C{timeout}.
        @raise ConnectionLost: if the connection is refused or fails.
        """
        try:
            protocol = await connect(reactor, endpoint, limits, timeout=timeout)
        except DeferredTimeout as e:
            raise ReplyTimeout(f"{endpoint}: {e}") from None
        except (ConnectionClosed, ProtocolError, OSError) as e:
            raise ConnectionLost(f"{endpoint}: {e}") from None
        except Exception as e:
            if type(e).__module__.startswith("twisted.internet.error"):
                raise ConnectionLost(f"{endpoint}: {e}") from None
            raise
        client = cls(protocol, reactor, timeout)
        if starttls is not None:
            try:
                await client.start_tls(starttls)
            except BaseException:
                protocol.transport.abortConnection()
                raise
        return client

    # Plumbing

    def _connection_closed(self, result: object) -> object:
        self._closed = True
        # Wake whoever waits for a push: there will be no more.
        self.protocol.pushes.put(None)
        return result

    async def request(
        self,
        verb: str,
        argument: str = "",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Frame:
        """
        Send a request and return its reply, whatever its code.

        @raise ReplyTimeout: after L{timeout} seconds without a reply.
        @raise ConnectionLost: if the connection ends first.
        """
        if self._closed:
            raise ConnectionLost("the connection is closed")
        return await self._timed(
            self.protocol.request(verb, argument, headers, body), verb
        )

    async def call(
        self,
        verb: str,
        argument: str = "",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Frame:
        """
        L{request}, for a reply that must be a success (2xx).

        @raise ReplyError: for any other reply.
        """
        answer = await self.request(verb, argument, headers, body)
        if not 200 <= answer.code < 300:
            raise ReplyError(verb, answer)
        return answer

    async def start_tls(self, options: Any) -> None:
        """
        Switch the connection to TLS (STARTTLS), before any other request.

        @raise ReplyError: if the server does not offer it.
        """
        answer = await self._timed(self.protocol.start_tls(options), "STARTTLS")
        if answer.code != 220:
            raise ReplyError("STARTTLS", answer)
        await self._timed(self.protocol.tls_ready, "STARTTLS")

    async def _timed(self, d: Deferred, verb: str) -> Any:
        """
        Wait for C{d}, the answer to C{verb}, at most L{timeout} seconds.
        """
        d.addTimeout(self.timeout, self._clock)
        try:
            return await d
        except (DeferredTimeout, CancelledError):
            raise ReplyTimeout(
                f"{verb}: no reply within {self.timeout:g} seconds"
            ) from None
        except (ConnectionClosed, ProtocolError) as e:
            raise ConnectionLost(f"{verb}: {e}") from None

    def close(self) -> Deferred:
        """
        Close the connection.

        @return: a Deferred that fires once it is closed.
        """
        if not self._closed:
            self.protocol.transport.loseConnection()
        return self._when_closed()

    def _when_closed(self) -> Deferred:
        d: Deferred = Deferred()
        if self._closed:
            d.callback(None)
        else:
            self.protocol.closed.addBoth(lambda result: (d.callback(None), result)[1])
        return d

    # Session

    async def capa(self) -> dict[str, str]:
        """
        What the server offers: C{Domain}, C{Commands}, C{Max-Body}...
        """
        return dict((await self.call("CAPA")).headers)

    async def login(
        self, address: str, password: str, issue_token: bool = False
    ) -> str:
        """
        Log in; later calls act as this user.

        @param issue_token: ask for a resumption token, kept in L{token}
            (and its expiry in L{token_expires}) if the server gives one,
            to log in again with L{login_with_token} without the password.
        @return: the address in its normal form.
        @raise ReplyError: 535 for a wrong address or password, 429 when
            the server throttles logins (see C{frame.headers["Retry-After"]}).
        """
        headers = {"Address": address, "Password": password}
        if issue_token:
            headers["Issue-Token"] = "yes"
        answer = await self.call("LOGIN", headers=headers)
        self.token = answer.headers.get("Token")
        expires = _int_header(answer, "Token-Expires")
        self.token_expires = None if expires is None else float(expires)
        self.address = answer.headers.get("Address", address)
        return self.address

    async def login_with_token(self, address: str, token: str) -> str:
        """
        Log in again with a resumption token from an earlier L{login}
        (a reconnect: no password, no scrypt on the server).  The token
        stays valid until it expires or a L{logout} revokes it.

        @return: the address in its normal form.
        @raise ReplyError: 535 if the token is not valid (expired, revoked
            by a LOGOUT or a password change, or another address's): log
            in with the password.
        """
        answer = await self.call("LOGIN", headers={"Address": address, "Token": token})
        self.token = token
        self.address = answer.headers.get("Address", address)
        return self.address

    async def logout(self) -> None:
        """
        Log out; the server revokes this session's resumption token.
        """
        await self.call("LOGOUT")
        self.address = None
        self.token = self.token_expires = None

    async def quit(self) -> None:
        """
        Say goodbye and wait for the server to close.
        """
        try:
            await self.call("QUIT")
        except ConnectionLost:
            pass
        await self.close()

    # Objects

    async def get(self, object_id: str) -> FMTPObject:
        """
        @raise ReplyError: 550 if there is no such object, or none this
            user may see.
        """
        return object_from_reply(await self.call("GET", object_id))

    async def put(
        self,
        object_type: str,
        properties: dict[str, str] | None = None,
        body: bytes = b"",
        object_id: str | None = None,
    ) -> tuple[str, str]:
        """
        Store an object (a new one, or C{object_id} replaced).

        @return: its id and digest.
        """
        headers = {"Type": object_type, **(properties or {})}
        if object_id is not None:
            headers["Id"] = object_id
        answer = await self.call("PUT", headers=headers, body=body)
        return answer.headers["Id"], answer.headers["Digest"]

    async def delete(self, object_id: str) -> str:
        """
        Delete one of the user's objects, or remove a message from their
        inbox.

        @return: what the server did (C{deleted}, C{removed from your
            inbox}).
        """
        return (await self.call("DELETE", object_id)).argument

    async def list(
        self,
        start: int = 0,
        limit: int = 50,
        object_type: str | None = None,
        owner: str | None = None,
    ) -> ObjectPage:
        """
        A page of public objects, or of the user's own (C{owner} = the
        user).
        """
        headers = {"Start": str(start), "Limit": str(limit)}
        if object_type is not None:
            headers["Type"] = object_type
        if owner is not None:
            headers["Owner"] = owner
        return object_page(await self.call("LIST", headers=headers))

    # Messages

    async def send(
        self,
        to: Iterable[str],
        body: bytes = b"",
        *,
        subject: str | None = None,
        parent: FMTPObject | str | None = None,
        attachments: Sequence[Attachment] = (),
        properties: dict[str, str] | None = None,
        key: str | None = None,
    ) -> SendResult:
        """
        Send a message to C{to} (addresses of any domain).

        @param parent: the message this answers: an object (its digest and
            thread are then set here) or an id (the server links it if it
            holds the parent).
        @param attachments: files to carry after the text (see
            L{fmtp.attachments}).
        @param key: the C{Idempotency-Key}; a new one is made if L{None}.
            Calling again with the same key and message after a
            L{ReplyTimeout} or L{ConnectionLost} is safe: the server
            answers with the message it already sent, if it did.
        """
        headers = dict(properties or {})
        headers["To"] = " ".join(to)
        if subject is not None:
            headers["Subject"] = subject
        if isinstance(parent, FMTPObject):
            headers.update(thread_headers(parent))
        elif parent is not None:
            headers["Parent"] = parent
        table, payload = attach(body, attachments)
        headers.update(table)
        key = key or uuid.uuid4().hex
        headers[IDEMPOTENCY_KEY] = key
        answer = await self.call("SEND", headers=headers, body=payload)
        return SendResult(
            answer.headers["Id"],
            answer.headers["Digest"],
            parse_results(answer.body.decode("utf-8", "replace")),
            key,
        )

    async def fetch(self, since: int = 0, limit: int = 50) -> InboxPage:
        """
        The messages waiting for the user after sequence number C{since}.
        """
        answer = await self.call(
            "FETCH", headers={"Since": str(since), "Limit": str(limit)}
        )
        entries = []
        for line in answer.body.decode("utf-8", "replace").splitlines():
            parts = line.split(" ")
            if len(parts) == 4 and is_ascii_digits(parts[0]):
                entries.append(InboxEntry(int(parts[0]), *parts[1:]))
        return InboxPage(entries, _int_header(answer, "Next-Since", since))

    async def inbox(
        self, since: int = 0, page_size: int = 200
    ) -> AsyncIterator[InboxEntry]:
        """
        Every inbox entry after C{since}, page by page.
        """
        while True:
            page = await self.fetch(since, page_size)
            for entry in page.entries:
                yield entry
            if len(page.entries) < page_size:
                return
            since = page.next_since

    async def held(self) -> list[str]:
        """
        The senders whose messages wait for the user's approval.
        """
        body = (await self.call("HELD")).body.decode("utf-8", "replace")
        return [line for line in body.splitlines() if line]

    async def approve(self, sender: str) -> int:
        """
        Accept C{sender} from now on; their held messages join the inbox.

        @return: how many were released.
        """
        answer = await self.call("APPROVE", sender)
        return _int_header(answer, "Released", 0)

    async def refuse(self, sender: str) -> int:
        """
        Drop C{sender}'s held messages.

        @return: how many were dropped.
        """
        answer = await self.call("REFUSE", sender)
        return _int_header(answer, "Dropped", 0)

    # Pushes

    async def next_message(self) -> FMTPObject | None:
        """
        The next message pushed to this session (while logged in, the
        server pushes each message filed for the user as it arrives), or
        L{None} once the connection has closed.
        """
        return await self.next_push(
            lambda frame: (
                object_from_reply(frame) if frame.code == MESSAGE_PUSH else None
            )
        )

    async def next_push(self, parse: Callable[[Frame], Any]) -> Any:
        """
        C{parse(frame)} of the next frame pushed to this session for which
        it is not L{None} (the others are dropped: a push of another
        protocol's kind), or L{None} once the connection has closed.
        """
        pushes = self.protocol.pushes
        while True:
            frame = await pushes.get()
            if frame is None:
                # Left for whoever waits next: the connection stays closed.
                pushes.put(None)
                return None
            event = parse(frame)
            if event is not None:
                return event

    async def messages(self) -> AsyncIterator[FMTPObject]:
        """
        The messages pushed to this session, as they arrive, until the
        connection closes: C{async for message in client.messages(): ...}
        """
        while (message := await self.next_message()) is not None:
            yield message

    def on_message(self, callback: Callable[[FMTPObject], object]) -> Deferred:
        """
        Call C{callback(message)} for each message pushed to this session.

        @return: a Deferred that fires when the connection has closed.
        """

        async def loop() -> None:
            async for message in self.messages():
                callback(message)

        return Deferred.fromCoroutine(loop())
