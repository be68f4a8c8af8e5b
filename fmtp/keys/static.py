"""
A key verifier whose records are given up front: for tests, closed
federations, and a server's own key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from fmtp.errors import InvalidAddress, NoKeyPublished
from fmtp.interfaces import IDomainSigner, IKeyVerifier
from fmtp.keys.records import DomainPublicKey, format_key_record, usable_keys
from fmtp.keys.signing import verify_with
from fmtp.objects import FMTPObject, normalize_domain


@implementer(IKeyVerifier)
class StaticKeyVerifier:
    """
    A key verifier whose records are given up front instead of looked up
    in DNS: for tests, closed federations, and a server's own key.

    Records are kept as text and parsed at each lookup, exactly as records
    fetched from DNS would be, so both verifiers treat a bad record alike.
    """

    _log = Logger()

    def __init__(
        self, records: Mapping[str, Sequence[str]], clock: IReactorTime
    ) -> None:
        """
        @param records: domain to the texts of its key records.
        @param clock: the source of the current time, for expiry.
        """
        self._clock = clock
        self._records: dict[str, list[str]] = {}
        for domain, texts in records.items():
            self.add_records(domain, texts)

    def add_records(self, domain: str, texts: Iterable[str]) -> None:
        """
        Add key records for C{domain}, after any it has.
        """
        if isinstance(texts, str):
            # A lone string would otherwise be taken for a list of
            # one-character records.
            raise TypeError("records must be a sequence of strings, not a string")
        self._records.setdefault(normalize_domain(domain), []).extend(texts)

    def add_signer(self, signer: IDomainSigner) -> None:
        """
        Publish C{signer}'s own key, so that a server can always verify
        what it signed itself, whatever its key file or DNS says.
        """
        self.add_records(signer.domain, [format_key_record(signer.public_key())])

    def _keys(self, domain: str) -> list[DomainPublicKey]:
        try:
            domain = normalize_domain(domain)
        except InvalidAddress as e:
            raise NoKeyPublished(f"no key published: {e.message}") from None
        keys = usable_keys(domain, self._records.get(domain, ()), self._log)
        if not keys:
            raise NoKeyPublished(f"no key published for {domain}")
        return keys

    def keys_for_domain(self, domain: str) -> Deferred[list[DomainPublicKey]]:
        """
        See L{IKeyVerifier.keys_for_domain}.
        """
        try:
            return succeed(self._keys(domain))
        except NoKeyPublished:
            return fail()

    def verify_object(self, obj: FMTPObject) -> Deferred[DomainPublicKey]:
        """
        See L{IKeyVerifier.verify_object}.
        """
        return verify_with(self, obj, self._clock)
