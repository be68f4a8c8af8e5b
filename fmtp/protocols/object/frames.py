"""
The object protocol's frames that carry an object: a reply, and a push.
"""

from __future__ import annotations

from fmtp.auth.router import Event
from fmtp.objects import FMTPObject
from fmtp.wire import UNSOLICITED_TAG, Frame, reply


def object_frame(code: int, tag: str, text: str | None, obj: FMTPObject) -> Frame:
    """
    A reply carrying an object whole, with its digest.
    """
    headers = obj.to_headers()
    headers["Digest"] = obj.digest()
    return reply(code, tag, text, headers=headers, body=obj.body)


def push_frame(event: Event) -> Frame:
    """
    The frame that hands a live session a message as it is filed (a
    router C{message} event).
    """
    return object_frame(250, UNSOLICITED_TAG, None, event.payload)
