"""
The inbound server-to-server verbs: who answers each verb another server
sends once its HELLO is done (Synapse's C{register_edu_handler}).

The object protocol's DELIVER and CONFIRM are registered here as any
plugin's verb is, and the server-link command group hands every request
after HELLO to L{VerbRegistry.dispatch} with the peer the HELLO proved.
So a handler never sees a server that has not said who it is (the group
answers those with 530), and never has to parse that itself.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from twisted.logger import Logger

from fmtp.federation.hello import Peer
from fmtp.wire import Frame, reply

#: A handler: C{handler(peer, frame)} returns an awaitable of the reply.
Handler = Callable[[Peer, Frame], Awaitable[Frame]]

#: Verbs no handler may take: server links arrive on the object
#: protocol's port, whose HELLO, STARTTLS and commands they share (a
#: plugin registering HELLO would replace the handshake; one registering
#: GET would clash with the object protocol's).
RESERVED_VERBS = frozenset(
    "HELLO STARTTLS CAPA LOGIN LOGOUT QUIT GET PUT DELETE LIST "
    "SEND FETCH HELD APPROVE REFUSE".split()
)

#: What a verb may be on the wire (letters, digits and hyphens), and not
#: all digits, which would read as a reply code.
_VERB = re.compile(r"[A-Za-z0-9-]{1,32}")


def check_verb(verb: str) -> str:
    """
    C{verb} as it travels (upper case).

    @raise ValueError: if it cannot be a verb on the wire.
    """
    if not isinstance(verb, str) or not _VERB.fullmatch(verb) or verb.isdigit():
        raise ValueError(
            f"{verb!r} is not a verb: 1 to 32 letters, digits or hyphens, "
            "not all digits"
        )
    return verb.upper()


@dataclass(frozen=True, slots=True)
class _Registration:
    handler: Handler
    unverified: bool


class VerbRegistry:
    """
    The handlers of the verbs other servers may send this one.

    By default a verb is answered only for peers whose HELLO was signed
    with a key their domain publishes (L{Peer.verified}): a domain that
    publishes no key only claims its name, and a handler that believed
    the claim would take anyone's word.  A verb registered with
    C{unverified=True} (DELIVER, CONFIRM: they check each message through
    a countersign instead) is answered for those too.
    """

    _log = Logger()

    def __init__(self) -> None:
        self._handlers: dict[str, _Registration] = {}

    def register(self, verb: str, handler: Handler, unverified: bool = False) -> None:
        """
        Answer C{verb} with C{handler(peer, frame)}.

        @param unverified: also for peers whose domain publishes no key.
        @raise KeyError: if C{verb} already has a handler, or is one of
            the L{RESERVED_VERBS}.
        @raise ValueError: if C{verb} cannot be a verb on the wire.
        """
        verb = check_verb(verb)
        if verb in RESERVED_VERBS:
            raise KeyError(f"{verb} is the object protocol's own, not a plugin's")
        if verb in self._handlers:
            raise KeyError(f"{verb} already has a server-to-server handler")
        self._log.info("Registering the server-to-server verb {verb}", verb=verb)
        self._handlers[verb] = _Registration(handler, unverified)

    def verbs(self) -> frozenset[str]:
        """
        The registered verbs, for C{CAPA}.
        """
        return frozenset(self._handlers)

    async def dispatch(self, verb: str, peer: Peer, frame: Frame) -> Frame:
        """
        Answer one request of a peer whose HELLO is done.

        @return: the handler's reply; C{502} for a verb nobody registered
            (as for any unknown command), C{530} for a peer that publishes
            no key asking for a verb that needs one.
        @raise fmtp.errors.FMTPError: as the handler raises it, for the
            command group to answer with its code.
        """
        registration = self._handlers.get(verb.upper())
        if registration is None:
            return reply(502, frame.tag, f"unknown command {frame.verb}")
        if not peer.verified and not registration.unverified:
            self._log.info(
                "Refused {verb} from {domain}: its HELLO was not signed",
                verb=verb,
                domain=peer.domain,
            )
            return reply(
                530,
                frame.tag,
                f"{peer.domain} publishes no key, so it cannot prove who it is; "
                f"{frame.verb} is only for servers that can",
            )
        return await registration.handler(peer, frame)
