"""
The store of resumption tokens: what lets a client that logged in with
its password log in again without it (L{fmtp.auth.tokens}).
"""

from __future__ import annotations

from zope.interface import Interface


class ITokenStore(Interface):
    """
    Durable storage of resumption tokens, by their hash: the store never
    sees a token, only the SHA-256 of it, so a copy of the store logs no
    one in.

    A token belongs to one account and goes with it: the account's
    C{delete_account} and C{set_password_hash}
    (L{fmtp.interfaces.IAccountStore}) delete its tokens in the same
    durable step.  Every method returns a L{Deferred}; a write fires once
    it is durable.
    """

    def add_token(address, token_hash, expires, now, keep):
        """
        Keep a new token of an existing account.

        In the same step, the account's tokens expired at C{now} are
        deleted, and its oldest beyond C{keep} (this one counted), so a
        client that asks for a token at every login does not make the
        store grow.

        @param address: the normalized address the token logs in as.
        @param token_hash: the token's SHA-256, in hex.
        @param expires: POSIX seconds after which it is refused.
        @param now: the current time, in POSIX seconds.
        @param keep: the most tokens one account keeps (at least 1).
        @return: a L{Deferred} that fires with C{True} once the token is
            durable, or C{False} (and nothing is kept) if there is no such
            account.
        """

    def find_token(token_hash, now):
        """
        The account of a token that has not expired.

        @return: a L{Deferred} that fires with the address, or L{None} if
            no token has this hash or it expired at or before C{now}.
        """

    def revoke_token(token_hash):
        """
        Delete a token (its session logged out).

        @return: a L{Deferred} that fires with C{True} once it is gone, or
            C{False} if there was none.
        """

    def forget_expired_tokens(now):
        """
        Delete every token expired at or before C{now}, for housekeeping:
        an expired token is refused whether or not it is still kept.

        @return: a L{Deferred} that fires with how many were deleted.
        """
