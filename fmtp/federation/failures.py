"""
How a server link fails: the errors every part of the link machinery
reports (L{LinkError} and its kinds), and how failures are described and
combined.

Every failure ends as an L{FMTPError} whose code says what the outbound
queue should do: 4xx, try again later (a server down, DNS failing, TLS
misconfigured: things an admin can fix); 5xx, give up and bounce (the
domain has no fmtp server, its server refuses us or cannot prove who it
is).  Each message names the domain and what failed, for the queue's log
and the bounce.
"""

from __future__ import annotations

from twisted.internet import error as netError
from twisted.python.failure import Failure

from fmtp.errors import FMTPError


class LinkError(FMTPError):
    """
    A server link could not be made or used.

    The code is per instance, copied from whatever failed (a peer's reply,
    a DNS error), so that the queue decides retry or bounce from
    C{error.code} alone: 4xx temporary, 5xx permanent.
    """

    code = 451
    default_message = "server link failed, try again later"

    def __init__(self, message: str | None = None, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def permanent(self) -> bool:
        return self.code >= 500


class LinkFailed(LinkError):
    """
    No link now: connection refused or timed out, TLS required but not
    possible, the peer's keys not found in DNS... Temporary unless a code
    says otherwise.
    """


class LinkRefused(LinkError):
    """
    The peer refused us, or could not prove it is the domain we meant:
    permanent unless a code says otherwise.
    """

    code = 554
    default_message = "server link refused"


class LinkLost(LinkError):
    """
    The connection ended with a request in flight.  Temporary: delivery is
    idempotent by id, so the queue simply tries again.
    """

    default_message = "server link lost, try again later"


class DeliveryFailed(LinkError):
    """
    The peer refused a whole message with one 4xx or 5xx reply.
    """

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text, code)


def failure_reason(failure: Failure | BaseException | None) -> str:
    """
    Why a connection or an attempt failed, in a few words for a log line
    or a bounce ("connection closed" rather than a class name).
    """
    if failure is None:
        return "connection closed"
    value = failure.value if isinstance(failure, Failure) else failure
    if isinstance(value, netError.ConnectionDone):
        return "connection closed"
    text = str(value).strip()
    return text or type(value).__name__


def as_link_error(e: BaseException, what: str) -> LinkError:
    """
    Any failure as a L{LinkError} naming C{what} failed, keeping its code.
    """
    if isinstance(e, LinkError):
        return e
    if isinstance(e, FMTPError):
        return LinkError(f"{what}: {e.message}", e.code)
    return LinkFailed(f"{what}: {failure_reason(e)}")


def combine_failures(
    domain: str, failures: list[LinkError], prefix: str = ""
) -> LinkError:
    """
    One error for every way to reach C{domain} having failed: permanent
    only if every failure was (the domain has no server, or every server
    refused us); otherwise temporary, since a server that is down now may
    be up later.
    """
    head = prefix or f"cannot reach {domain}"
    if not failures:
        return LinkFailed(f"{head}: no route")
    text = f"{head}: " + "; ".join(f.message for f in failures)
    if all(f.permanent for f in failures):
        return LinkRefused(text, failures[0].code)
    return LinkFailed(text, 451)
