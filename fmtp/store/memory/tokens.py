"""
Resumption tokens in memory (L{fmtp.interfaces.ITokenStore}).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred

from fmtp.store.memory.base import MemoryBase


@dataclass
class _Token:
    address: str
    issued: float
    expires: float


class MemoryTokens(MemoryBase):
    """
    L{fmtp.interfaces.ITokenStore}'s methods, over a L{dict} by hash.
    Reads the accounts' state (a token is only added for an account).
    """

    def __init__(self) -> None:
        super().__init__()
        self._tokens: dict[str, _Token] = {}

    def add_token(
        self, address: str, token_hash: str, expires: float, now: float, keep: int
    ) -> Deferred[bool]:
        return self._call(self._add_token, address, token_hash, expires, now, keep)

    def _add_token(
        self, address: str, token_hash: str, expires: float, now: float, keep: int
    ) -> bool:
        if address not in self._accounts:
            return False
        self._tokens.pop(token_hash, None)
        self._tokens[token_hash] = _Token(address, now, expires)
        # Newest first: a dict keeps the order tokens were added in.
        mine = [k for k, t in reversed(self._tokens.items()) if t.address == address]
        for rank, key in enumerate(mine):
            if rank >= max(1, keep) or self._tokens[key].expires <= now:
                del self._tokens[key]
        return True

    def find_token(self, token_hash: str, now: float) -> Deferred[str | None]:
        return self._call(self._find_token, token_hash, now)

    def _find_token(self, token_hash: str, now: float) -> str | None:
        token = self._tokens.get(token_hash)
        if token is None or token.expires <= now:
            return None
        return token.address

    def revoke_token(self, token_hash: str) -> Deferred[bool]:
        return self._call(lambda: self._tokens.pop(token_hash, None) is not None)

    def forget_expired_tokens(self, now: float) -> Deferred[int]:
        return self._call(self._forget_expired_tokens, now)

    def _forget_expired_tokens(self, now: float) -> int:
        expired = [key for key, token in self._tokens.items() if token.expires <= now]
        for key in expired:
            del self._tokens[key]
        return len(expired)

    def _forget_tokens(self, address: str) -> None:
        """
        Delete every token of C{address} (its password changed, or it was
        deleted).
        """
        for key in [k for k, t in self._tokens.items() if t.address == address]:
            del self._tokens[key]
