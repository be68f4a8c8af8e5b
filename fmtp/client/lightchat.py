"""
A light chat client (doc/protocol.md 10.10): lines posted and received in
UDP datagrams, for a session logged in over TCP.

    client = ChatDatagramClient(reactor, "127.0.0.1", 7072, session_key)
    port = reactor.listenUDP(0, client)
    await client.listen("lounge@poe.net")      # again within 60 s to keep it
    await client.say("lounge@poe.net", "Once upon a midnight dreary")
    line = await client.pushes.get()           # a 256 frame, its MAC checked

Every datagram it sends carries the session's public id, a fresh C{Seq}
and a C{Mac} keyed by the session key; a request whose answer is lost is
sent again byte for byte, so the server runs it once.  Pushes whose MAC
is wrong are dropped.  A client watches the C{Seq} of the lines pushed
and fills a gap with C{HISTORY} over its TCP connection.
"""

from __future__ import annotations

import hmac
import itertools
from collections.abc import Mapping

from twisted.internet.defer import DeferredQueue

from fmtp.auth.router import datagram_mac, session_id, sign_frame, unsigned_bytes
from fmtp.client.protocol import DatagramClient
from fmtp.wire import UNSOLICITED_TAG, Frame, request


class ChatDatagramClient(DatagramClient):
    """
    Speaks the chat protocol's datagrams for the session of C{key} (the
    C{Session} header of its LOGIN over TCP).

    @ivar pushes: the signed pushes received (room lines C{256}, C{305}
        for a line too large, C{259}), MACs checked and removed, in
        arrival order.
    @ivar forged: how many pushes were dropped for a wrong MAC.
    """

    def __init__(
        self,
        reactor,
        host: str,
        port: int,
        key: str,
        timeout: float = 1.0,
        attempts: int = 3,
    ) -> None:
        super().__init__(reactor, host, port, timeout, attempts)
        self._key = key
        self.session_id = session_id(key)
        self._seqs = itertools.count(1)
        self.pushes: DeferredQueue = DeferredQueue()
        self.forged = 0

    def encode(self, frame: Frame) -> bytes:
        """
        C{frame} with the session's id and a fresh C{Seq}, signed.
        """
        return signed_request(
            self._key,
            next(self._seqs),
            frame.verb,
            frame.tag,
            frame.argument,
            frame.headers,
            frame.body,
        )

    def frame_received(self, frame: Frame, data: bytes) -> None:
        if frame.tag != UNSOLICITED_TAG or "Mac" not in frame.headers:
            super().frame_received(frame, data)
            return
        mac = frame.headers.pop("Mac")
        expected = datagram_mac(self._key, unsigned_bytes(data))
        if not hmac.compare_digest(expected.encode(), mac.encode()):
            self.forged += 1
            return
        self.pushes.put(frame)

    def say(self, room: str, text: str | bytes, fmt: str | None = None):
        """
        Post a line: the reply (C{201} with the line's C{Seq}).
        """
        body = text.encode() if isinstance(text, str) else text
        headers = {"Format": fmt} if fmt else {}
        return self.request("SAY", room, headers, body)

    def listen(self, room: str):
        """
        Receive C{room}'s new lines here for 60 seconds (again to keep
        them coming): the reply (C{200} with the room's last C{Seq}).
        """
        return self.request("LISTEN", room)

    def unlisten(self, room: str):
        return self.request("UNLISTEN", room)


def signed_request(
    key: str,
    seq: int,
    verb: str,
    tag: str,
    argument: str = "",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    """
    A chat request as a light client sends it in a datagram: with the
    C{Session-Id} of session key C{key}, its C{Seq}, and its C{Mac} first
    (L{ChatDatagramClient} sends these; tests too).
    """
    signing = {"Session-Id": session_id(key), "Seq": str(seq), **(headers or {})}
    return sign_frame(request(verb, tag, argument, signing, body), key)
