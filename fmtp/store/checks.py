"""
The argument checks every store makes, so that all of them refuse the same
bad arguments with the same L{ValueError} (the conformance suites check
that they do).
"""

from __future__ import annotations

import math

from fmtp.delivery import QueuedDelivery
from fmtp.errors import InvalidAddress
from fmtp.objects import FMTPObject, normalize_address, normalize_domain


def check_page(start: object, limit: object) -> None:
    """
    Refuse a listing page that is not two non-negative integers.

    Shared by every store so that they reject the same arguments: a
    negative C{start} or C{limit} has no meaning, and SQLite would read a
    negative C{LIMIT} as "no limit" where a list slice would count from the
    end.

    @raise ValueError: if C{start} or C{limit} is not a non-negative L{int}.
    """
    check_counts(start=start, limit=limit)


def check_counts(**values: object) -> None:
    """
    Refuse any of the named values that is not a non-negative integer: the
    rule of L{check_page}, for the other paging arguments (an inbox's
    C{since}, a queue batch's C{limit}).

    @raise ValueError: naming the first bad value.
    """
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {value!r}")


def check_deliveries(obj: FMTPObject, deliveries: list[QueuedDelivery]) -> None:
    """
    Refuse an C{enqueue} whose deliveries are not all for C{obj}: a queue
    row for another id would send an object the caller did not mean to.

    @raise ValueError: naming the first delivery that is not for C{obj}.
    """
    for delivery in deliveries:
        if not isinstance(delivery, QueuedDelivery):
            raise ValueError(f"not a QueuedDelivery: {delivery!r}")
        if delivery.object_id != obj.id:
            raise ValueError(
                f"delivery to {delivery.domain} is for {delivery.object_id!r}, "
                f"not for the object enqueued, {obj.id!r}"
            )


def check_address(**values: object) -> None:
    """
    Refuse any of the named values that is not an address in its normal
    form (L{fmtp.objects.normalize_address}): the presence and room stores
    compare addresses as given, so one written another way would be
    another user.

    @raise InvalidAddress: (a L{ValueError}) naming the first bad value.
    """
    for name, value in values.items():
        if not isinstance(value, str):
            raise InvalidAddress(f"{name} must be an address, not {value!r}")
        if normalize_address(value) != value:
            raise InvalidAddress(
                f"{name} {value!r} is not in normal form: {normalize_address(value)!r}"
            )


def check_time(**values: object) -> None:
    """
    Refuse any of the named values that is not a time (seconds since the
    epoch, an L{int} or a finite L{float}).

    @raise ValueError: naming the first bad value.
    """
    for name, value in values.items():
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{name} must be a time in seconds, not {value!r}")


def check_domain(**values: object) -> None:
    """
    Refuse any of the named values that is not a domain in its normal form
    (an IDNA A-label in lower case, L{fmtp.objects.normalize_domain}).

    @raise InvalidAddress: (a L{ValueError}) naming the first bad value.
    """
    for name, value in values.items():
        if not isinstance(value, str) or normalize_domain(value) != value:
            raise InvalidAddress(f"{name} must be a domain in normal form: {value!r}")
