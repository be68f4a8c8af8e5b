"""
Exceptions shared across fmtp.

An exception that a client should see carries the reply code it maps to
(see doc/protocol.md), so that protocol code turns any of them into a reply
in one place.
"""

from __future__ import annotations


class FMTPError(Exception):
    """
    An error with a reply code and a message fit to send to the peer.
    """

    code = 451
    default_message = "local error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidAddress(FMTPError, ValueError):
    code = 553
    default_message = "bad address"


class InvalidObjectId(FMTPError, ValueError):
    code = 553
    default_message = "bad object id"


class InvalidObject(FMTPError, ValueError):
    code = 501
    default_message = "bad object"


class NotFound(FMTPError):
    code = 550
    default_message = "no such object"


class Forbidden(FMTPError):
    code = 554
    default_message = "forbidden"


class LoginRequired(FMTPError):
    code = 530
    default_message = "log in first"


class AuthenticationFailed(FMTPError):
    code = 535
    default_message = "authentication failed"


class AccountExists(FMTPError):
    code = 554
    default_message = "account exists"


class ObjectSealed(FMTPError):
    """
    The object was sent or filed for a recipient, so it is no longer only
    its owner's (DESIGN decision 15): it cannot be replaced, and an
    inbound copy of the same id with other content is refused.
    """

    code = 554
    default_message = "a sent message cannot be changed; send a new one"


class SendKeyUsed(FMTPError):
    """
    An C{Idempotency-Key} that already named another message of the same
    sender: a client bug, since a retry repeats its request unchanged.
    """

    code = 554
    default_message = "this Idempotency-Key was used for another message"


class TooManyRequests(FMTPError):
    """
    A user or a session asked faster than its rate allows: temporary,
    retry later and more slowly.
    """

    code = 429
    default_message = "too many requests, slow down"


class StoreUnavailable(FMTPError):
    code = 451
    default_message = "storage unavailable, try again later"


class DomainKeyError(FMTPError):
    """
    Base of the domain-key failures; never raised itself.
    """


class NoKeyPublished(DomainKeyError):
    """
    The domain publishes no usable key: permanent.
    """

    code = 554
    default_message = "no key published"


class KeyLookupFailed(DomainKeyError):
    """
    The key could not be looked up now (DNS failure): temporary.
    """

    code = 451
    default_message = "key lookup failed, try again later"


class BadSignature(DomainKeyError):
    """
    The signature is missing, malformed, made by a revoked or expired key,
    or does not verify: reject.
    """

    code = 554
    default_message = "bad signature"


class InvalidKeyRecord(ValueError):
    """
    A key record (C{v=FMTP1; ...}) that does not parse.
    """
