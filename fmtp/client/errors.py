"""
What a L{fmtp.client.Client} call raises: L{ReplyError} when the server
refuses (its reply code says whether to retry), L{ReplyTimeout} when no
reply comes in time, L{ConnectionLost} when the connection ends first;
all are L{ClientError}s.
"""

from __future__ import annotations

from fmtp.wire import Frame


class ClientError(Exception):
    """
    Base of what a L{Client} call raises.
    """


class ReplyError(ClientError):
    """
    The server refused a request: its reply code says why and whether to
    retry (4xx: later, 5xx: not unchanged).

    @ivar frame: the reply, whole.
    """

    def __init__(self, verb: str, frame: Frame) -> None:
        self.verb = verb
        self.frame = frame
        self.code = frame.code
        self.text = frame.argument
        super().__init__(f"{verb}: {frame.verb} {frame.argument}".rstrip())

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


class ReplyTimeout(ClientError):
    """
    No reply in time; the request may or may not have been carried out.
    """


class ConnectionLost(ClientError):
    """
    The connection ended before the reply; the request may or may not
    have been carried out.
    """
