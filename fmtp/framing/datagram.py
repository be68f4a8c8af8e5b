"""
One datagram listener of any fmtp protocol, under the rules that keep a
server from being used to amplify or reflect traffic.
"""

from __future__ import annotations

from functools import partial

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from fmtp.cookies import SourceCookies
from fmtp.framing.handler import HandlerCollection, answer_request, error_reply
from fmtp.framing.session import Session
from fmtp.interfaces import IDatagramLimiter
from fmtp.ratelimit import LogLimiter, SourceRateLimiter
from fmtp.wire import (
    MAX_DATAGRAM,
    UNSOLICITED_TAG,
    Frame,
    FrameError,
    parse_datagram,
    reply,
    serialize,
)


class FrameDatagramProtocol(DatagramProtocol):
    """
    One datagram listener, under the rules that keep a server from being
    used to amplify or reflect traffic (doc/protocol.md, Datagrams):

      - every source is rate-limited, and a source over its rate is
        dropped without a reply; the C{limiter} (by default per source)
        may also hold back refusals;
      - no reply to a source that has not echoed a cookie is larger than
        its request; the first reply it can get is a small cookie;
      - no datagram larger than L{MAX_DATAGRAM} is sent: a larger answer
        becomes a 305 "use TCP";
      - replies go only to the datagram's source, and replies are never
        answered, so two servers cannot be set to ping-pong.
    """

    _log = Logger()

    def __init__(
        self,
        handler: HandlerCollection,
        limiter: IDatagramLimiter | None = None,
        cookies: SourceCookies | None = None,
    ) -> None:
        self.handler = handler
        clock = handler.services.reactor
        self.limiter = limiter or SourceRateLimiter(clock)
        self.cookies = cookies or SourceCookies(clock)
        # One log line per source per ten seconds about dropped datagrams,
        # so a flood cannot fill the disk with logs either.
        self._log_limiter = LogLimiter(clock, rate=0.1, burst=1)

    def _note(self, host: str, message: str, **kw) -> None:
        self._log_limiter.emit(
            self._log, host, "datagram from {host}: " + message, host=host, **kw
        )

    def datagramReceived(self, data: bytes, addr) -> None:
        host = addr[0]
        if not self.limiter.allow(host):
            self._note(host, "over its rate limit, dropped")
            return
        if len(data) > MAX_DATAGRAM:
            self._answer(
                reply(
                    552, UNSOLICITED_TAG, f"datagram larger than {MAX_DATAGRAM} bytes"
                ),
                data,
                addr,
                verified=False,
            )
            return
        try:
            frame = parse_datagram(data, self.handler.services.limits)
        except FrameError as e:
            self._answer(e.to_reply(), data, addr, verified=False)
            return
        if frame.is_reply:
            self._note(host, "a reply, not a request; not answered")
            return
        verified = self.cookies.is_valid(host, frame.headers.get("Cookie"))
        if not verified:
            cookie = self.cookies.cookie_for(host)
            self._answer(
                reply(432, frame.tag, headers={"Cookie": cookie}), data, addr, False
            )
            return
        session = Session(
            host=host,
            datagram=True,
            datagram_bytes=data,
            send_to_source=partial(self.send_unsolicited, addr=addr),
        )
        d = Deferred.fromCoroutine(answer_request(self.handler, frame, session))
        d.addErrback(error_reply, frame.tag, self._log, host)
        d.addCallback(self._answer, data, addr, True)

    def send_unsolicited(self, data: bytes, addr) -> bool:
        """
        Send C{data}, which no request of C{addr} asked for now, to
        C{addr}: only for a command that learned C{addr} from a datagram
        whose sender proved a secret (L{Session.send_to_source}), never
        for an address taken from a payload.

        @return: whether it was sent: not if larger than L{MAX_DATAGRAM},
            nor once the listener stopped.
        """
        if len(data) > MAX_DATAGRAM or self.transport is None:
            return False
        self.transport.write(data, addr)
        return True

    def _answer(self, answer: Frame, request: bytes, addr, verified: bool) -> None:
        host = addr[0]
        if answer.code >= 400 and answer.code != 432:
            self._note(host, "{code} {text}", code=answer.verb, text=answer.argument)
        encoded = serialize(answer)
        if len(encoded) > MAX_DATAGRAM:
            encoded = serialize(reply(305, answer.tag))
        refusal = answer.code >= 400 or answer.code == 432
        if refusal and not self.limiter.allow_refusal(host, len(encoded), len(request)):
            self._note(host, "refusals to it over their limit; dropped")
            return
        if not verified and len(encoded) > len(request):
            self._note(
                host,
                "reply of {size} bytes exceeds the {request}-byte request of an "
                "unverified source; dropped (clients pad first requests)",
                size=len(encoded),
                request=len(request),
            )
            return
        if self.transport is not None:
            self.transport.write(encoded, addr)
