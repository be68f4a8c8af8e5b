"""
The server handshake: a signed HELLO in each direction.

The connecting server says who it is, whom it means to talk to, when, and a
fresh nonce, signed with its domain key; the answering server does the same
and names the nonce it answers.  Each side checks the other's signature
against the keys the other's domain publishes, so neither can be
impersonated; the time window and the nonce memory stop a recorded HELLO
from being played again; naming the addressee stops one server's HELLO
from being relayed to a third.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime

from fmtp.errors import BadSignature, FMTPError, InvalidAddress, NoKeyPublished
from fmtp.interfaces import IDomainSigner, IKeyVerifier
from fmtp.keys.records import format_signature, parse_signature
from fmtp.keys.signing import check_signed_bytes
from fmtp.objects import normalize_domain
from fmtp.util.ttlcache import TTLCache

HELLO_LABEL = b"fmtp-hello/1\n"

#: How far a HELLO's time may be from ours, either way, in seconds.
HELLO_WINDOW = 300.0

#: A nonce: 16 to 64 base64url characters, ASCII only (C{str.isalnum}
#: would let any script's letters and digits through).
NONCE_FORMAT = re.compile(r"[A-Za-z0-9_-]{16,64}")


class HelloRefused(FMTPError):
    code = 554
    default_message = "HELLO refused"


def hello_input(
    sender: str, receiver: str, time: int, nonce: str, in_reply_to: str
) -> bytes:
    """
    The bytes a HELLO's signature covers.  All fields are checked to hold no
    line breaks before they get here (domains are normalized, the nonce is
    base64url, the time is an int), so a line per field is unambiguous.
    """
    fields = [
        f"from:{sender}",
        f"to:{receiver}",
        f"t:{time}",
        f"nonce:{nonce}",
        f"in-reply-to:{in_reply_to}",
    ]
    return HELLO_LABEL + "".join(f"{field}\n" for field in fields).encode()


def new_nonce() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(18)).decode("ascii")


def make_hello(
    signer: IDomainSigner,
    peer_domain: str,
    now: float,
    in_reply_to: str = "",
    nonce: str | None = None,
) -> dict[str, str]:
    """
    The headers of a HELLO (or of the answer to one, with C{in_reply_to}
    set to the nonce answered).
    """
    nonce = nonce or new_nonce()
    data = hello_input(signer.domain, peer_domain, int(now), nonce, in_reply_to)
    headers = {
        "Domain": signer.domain,
        "To": peer_domain,
        "Nonce": nonce,
        "Signature": format_signature(signer.sign_bytes(data, now)),
    }
    if in_reply_to:
        headers["In-Reply-To"] = in_reply_to
    return headers


@dataclass(frozen=True, slots=True)
class Peer:
    """
    The other side of a handshake.

    @ivar domain: the domain it proved, or claimed.
    @ivar verified: C{True} if it signed with a key its domain publishes;
        C{False} for a domain that publishes no key, whose every message
        must then be countersigned (confirmed with it through DNS).
    @ivar nonce: the nonce of its HELLO, which an answer must name.
    @ivar queued: the bytes of replies the link holds while the peer does
        not read them (L{fmtp.framing.session.Session.queued}), or
        L{None}: a verb whose answer may be large makes it smaller while
        some wait.
    """

    domain: str
    verified: bool
    nonce: str
    queued: Callable[[], int] | None = field(default=None, compare=False)


class HelloVerifier:
    """
    Checks HELLOs addressed to C{own_domain}, remembering the nonces seen
    within the time window so none is accepted twice.
    """

    def __init__(
        self,
        keys: IKeyVerifier,
        clock: IReactorTime,
        own_domain: str,
        window: float = HELLO_WINDOW,
        max_nonces: int = 100_000,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self.own_domain = own_domain
        self.window = window
        #: (domain, nonce) of the HELLOs accepted, each kept while a HELLO
        #: of its time still passes the window check; the oldest go first
        #: when C{max_nonces} are held.
        self._seen: TTLCache[tuple[str, str], None] = TTLCache(clock, max_nonces)

    def _remember(self, domain: str, nonce: str, time: int) -> None:
        self._seen.set(
            (domain, nonce), None, time + self.window - self._clock.seconds()
        )

    async def verify(self, headers: Mapping[str, str], in_reply_to: str = "") -> Peer:
        """
        Check a HELLO (or, with C{in_reply_to}, the answer to ours).

        @raise HelloRefused: for a malformed, misaddressed, stale or replayed
            HELLO, or one whose signature does not verify (permanent).
        @raise fmtp.errors.KeyLookupFailed: if the peer's keys could not be
            looked up now (temporary).
        """
        try:
            domain = normalize_domain(headers.get("Domain", ""))
            receiver = normalize_domain(headers.get("To", ""))
        except InvalidAddress as e:
            raise HelloRefused(f"HELLO refused: {e.message}") from None
        nonce = headers.get("Nonce", "")
        if not NONCE_FORMAT.fullmatch(nonce):
            raise HelloRefused(
                "HELLO refused: Nonce must be 16 to 64 base64url characters"
            )
        if receiver != self.own_domain:
            raise HelloRefused(
                f"HELLO refused: addressed to {receiver}, this is {self.own_domain}"
            )
        if headers.get("In-Reply-To", "") != in_reply_to:
            raise HelloRefused("HELLO refused: it does not answer our HELLO")
        if "Signature" not in headers:
            return await self._unsigned(domain, nonce)
        try:
            info = parse_signature(headers["Signature"])
        except BadSignature as e:
            raise HelloRefused(f"HELLO refused: {e.message}") from None
        if info.domain != domain:
            raise HelloRefused(f"HELLO refused: signed by {info.domain} for {domain}")
        now = self._clock.seconds()
        if abs(now - info.time) > self.window:
            raise HelloRefused(
                "HELLO refused: its time is outside the window; check clocks"
            )
        if (domain, nonce) in self._seen:
            raise HelloRefused("HELLO refused: replayed")
        try:
            keys = await self._keys.keys_for_domain(domain)
        except NoKeyPublished:
            # Signed with a key nobody can check: as good as unsigned.
            self._remember(domain, nonce, info.time)
            return Peer(domain, False, nonce)
        data = hello_input(domain, receiver, info.time, nonce, in_reply_to)
        try:
            check_signed_bytes(data, info, keys, now)
        except BadSignature as e:
            raise HelloRefused(f"HELLO refused: {e.message}") from None
        self._remember(domain, nonce, info.time)
        return Peer(domain, True, nonce)

    async def _unsigned(self, domain: str, nonce: str) -> Peer:
        """
        An unsigned HELLO is a claim, acceptable only from a domain that
        publishes no key at all: the claim is then checked message by
        message through countersigns.  A domain with a key must use it.
        """
        try:
            await self._keys.keys_for_domain(domain)
        except NoKeyPublished:
            return Peer(domain, False, nonce)
        raise HelloRefused(f"HELLO refused: {domain} publishes a key, so must sign")
