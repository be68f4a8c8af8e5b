"""
Presence across domains (doc/protocol.md 9.7), on the shared server links
and nothing else.

Subscriptions are durable: signed objects through the outbound queue
(L{fmtp.protocols.presence.actions}).

Status is volatile: a user's change goes as one C{PRESENCE} update per
remote domain that holds approved subscribers (not one per subscriber),
coalesced by the server links (a newer one replaces one unsent), naming
the subscribers there who may see it.  A server asks (C{PRESENCE-PROBE})
each domain it follows at start, every C{remote_refresh} seconds, and when
that domain's server comes back (its HELLO): the answer is the current
presence of every subscription the two share.  A domain that answered
nothing for C{remote_timeout} seconds turns its users C{unknown}
(L{RemotePresence}).  Only a user's own domain speaks for them: the
C{From} of an update, and every user of an answer, must be of the
HELLO-proven domain.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from fmtp.auth.router import Event
from fmtp.errors import FMTPError, Forbidden, InvalidObject, TooManyRequests
from fmtp.federation.failures import LinkError
from fmtp.federation.hello import Peer
from fmtp.interfaces import IDomainSigner, IServerLinks
from fmtp.objects import domain_of, normalize_address
from fmtp.protocols.presence.actions import SUBSCRIPTION_TYPE, SubscriptionActions
from fmtp.protocols.presence.announce import soon
from fmtp.protocols.presence.events import PRESENCE, PresenceChanged
from fmtp.protocols.presence.remote import Heard, RemotePresence
from fmtp.protocols.presence.status import NOTHING, OFFLINE, Shown, parse_shown
from fmtp.ratelimit import LogLimiter, SourceRateLimiter
from fmtp.util.sweep import PeriodicSweep
from fmtp.wire import Frame, reply

if TYPE_CHECKING:
    from fmtp.protocols.presence.service import PresenceService

#: The server verbs: a pushed change, and a question for current presence.
PUSH_VERB = "PRESENCE"
PROBE_VERB = "PRESENCE-PROBE"
#: Most users one probe may ask about, and most addresses an update names.
MAX_ASKED = 1000
MAX_VIEWERS = 10000
#: PRESENCE updates a second one peer domain may push, after a burst: a
#: change of one of its users each, so a domain far busier than any real
#: one; past it the peer is answered 429 and its volatile queue tries the
#: (coalesced) update again a little later.
PUSH_RATE, PUSH_BURST = 200.0, 2000.0
#: The most an answer to a probe holds; past it, lines are left off (and
#: their subscribers see the user offline until the next change).
MAX_ANSWER = 900 * 1024


def addresses_of(body: bytes, limit: int) -> list[str]:
    """
    The addresses of a body holding one per line.

    @raise InvalidObject: for more than C{limit}, or a malformed line.
    """
    try:
        lines = body.decode("ascii").split()
    except UnicodeDecodeError:
        raise InvalidObject("addresses are ASCII, one per line") from None
    if len(lines) > limit:
        raise InvalidObject(f"at most {limit} addresses")
    return [normalize_address(line) for line in lines]


def address_lines(addresses: Iterable[str]) -> bytes:
    return "".join(f"{address}\r\n" for address in addresses).encode("ascii")


def presence_headers(address: str, shown: Shown) -> dict[str, str]:
    headers = {"From": address, "Status": shown.status}
    if shown.note:
        headers["Note"] = shown.note
    return headers


def parse_answer(body: bytes, domain: str, own: str) -> dict[str, Heard]:
    """
    The presence a probe's answer says: lines C{USER VIEWER STATUS
    [NOTE]}, C{USER} of the answering C{domain}, C{VIEWER} of this one.

    @raise InvalidObject: for a malformed line.
    @raise Forbidden: for a user of another domain than the one answering.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidObject("a probe's answer is UTF-8") from None
    said: dict[str, tuple[Shown, set[str]]] = {}
    for line in text.split("\r\n"):
        if not line:
            continue
        parts = line.split(" ", 3)
        if len(parts) < 3:
            raise InvalidObject(f"bad answer line {line[:80]!r}")
        user, viewer = normalize_address(parts[0]), normalize_address(parts[1])
        if domain_of(user) != domain:
            raise Forbidden(f"{domain} answered for {user}, of another domain")
        if domain_of(viewer) != own:
            raise InvalidObject(f"{viewer} is not of {own}")
        shown = parse_shown(parts[2], parts[3] if len(parts) > 3 else "")
        entry = said.setdefault(user, (shown, set()))
        if entry[0] != shown:
            raise InvalidObject(f"{user} is said twice, differently")
        entry[1].add(viewer)
    return {user: Heard(shown, frozenset(v)) for user, (shown, v) in said.items()}


class PresenceFederation(SubscriptionActions):
    """
    The presence of one server's users with other domains.

    @param service: the server's presence (its users' presence, their
        sessions, the subscription rules).
    @param links: the server links, where this registers its verbs and
        its object type.
    @param signer: signs the subscription objects as this domain.
    """

    _log = Logger()

    def __init__(
        self,
        service: PresenceService,
        clock: IReactorTime,
        domain: str,
        store,
        links: IServerLinks,
        signer: IDomainSigner,
    ) -> None:
        settings = service.settings
        self._service = service
        self._clock = clock
        self._domain = domain
        self._store = store
        self._links = links
        self._signer = signer
        self.remote = RemotePresence(clock, settings.remote_timeout)
        #: Inbound subscription actions and probes, per peer domain.
        self._peer_rate = SourceRateLimiter(
            clock, settings.remote_rate, settings.remote_burst
        )
        self._log_limiter = LogLimiter(clock, rate=1.0, burst=10.0)
        #: Inbound PRESENCE updates, per peer domain.
        self._push_rate = SourceRateLimiter(clock, PUSH_RATE, PUSH_BURST)
        #: The pairs whose action is being applied now.
        self._acting: set[tuple[str, str]] = set()
        self._followed: set[str] = set()
        self._probing: set[str] = set()
        self._sweep = PeriodicSweep(
            service.timers, settings.remote_refresh, self.refresh
        )
        links.register(PUSH_VERB, self._receive_push)
        links.register(PROBE_VERB, self._answer_probe)
        links.register_object_type(SUBSCRIPTION_TYPE, self._receive_action)
        links.observe_peers(self._peer_back)

    def start(self) -> None:
        """
        Ask every followed domain now, and again every C{remote_refresh}.
        """
        self._sweep.start()

    def stop(self):
        return self._sweep.stop()

    # -- status going out -----------------------------------------------------

    def announce(
        self, address: str, shown: Shown, subscribers: list[str], blocked: frozenset
    ) -> None:
        """
        Local C{address} now shows C{shown}: one update per domain holding
        approved subscribers of theirs, naming those it may be shown to
        (the others, blocked, see them offline).  A domain where nobody may
        see it is told C{offline} only: neither the status nor the note
        goes where no subscriber may see it.
        """
        viewers: dict[str, list[str]] = {}
        for subscriber in subscribers:
            domain = domain_of(subscriber)
            if domain != self._domain:
                allowed = viewers.setdefault(domain, [])
                if subscriber not in blocked:
                    allowed.append(subscriber)
        for domain, allowed in viewers.items():
            try:
                self._links.notify(
                    domain,
                    f"presence {address}",
                    PUSH_VERB,
                    headers=presence_headers(address, shown if allowed else NOTHING),
                    body=address_lines(allowed),
                    lifetime=self._service.settings.remote_timeout,
                )
            except LinkError:
                return

    async def _answer_probe(self, peer: Peer, frame: Frame) -> Frame:
        """
        A followed domain asks for the presence of the subscriptions its
        users share with this server's (or of those it names): one line
        per subscriber that may see a user showing more than offline.
        """
        if not self._peer_rate.allow(peer.domain):
            raise TooManyRequests("too many probes, slow down")
        asked = set(addresses_of(frame.body, MAX_ASKED))
        pairs = await self._store.shared_with_domain(peer.domain)
        by_target: defaultdict[str, list[str]] = defaultdict(list)
        for subscriber, target in pairs:
            if (
                domain_of(subscriber) == peer.domain
                and domain_of(target) == self._domain
                and (not asked or target in asked)
            ):
                by_target[target].append(subscriber)
        lines: list[bytes] = []
        size = 0
        for target, subscribers in by_target.items():
            shown = self._service.user_presence(target)
            if shown == NOTHING:
                continue
            blocked = await self._service.subscriptions.blocked_among(
                target, subscribers
            )
            note = f" {shown.note}" if shown.note else ""
            for subscriber in subscribers:
                if subscriber in blocked:
                    continue
                line = f"{target} {subscriber} {shown.status}{note}\r\n".encode()
                size += len(line)
                if size > MAX_ANSWER:
                    self._log.warn(
                        "Presence: the answer to {domain}'s probe is cut at "
                        "{size} bytes",
                        domain=peer.domain,
                        size=MAX_ANSWER,
                    )
                    return reply(200, frame.tag, body=b"".join(lines))
                lines.append(line)
        return reply(200, frame.tag, body=b"".join(lines))

    # -- status coming in -----------------------------------------------------

    async def _receive_push(self, peer: Peer, frame: Frame) -> Frame:
        """
        A remote domain's update of one of its users' presence.
        """
        contact = normalize_address(frame.headers.get("From", ""))
        if domain_of(contact) != peer.domain:
            self._log_limiter.emit(
                self._log,
                peer.domain,
                "Presence: {peer} sent the presence of {contact}, not its user: "
                "refused",
                level="warn",
                peer=peer.domain,
                contact=contact,
            )
            raise Forbidden(f"{peer.domain} speaks only for its own users")
        if not self._push_rate.allow(peer.domain):
            self._log_limiter.emit(
                self._log,
                peer.domain,
                "Presence: too many updates from {peer}",
                level="warn",
                peer=peer.domain,
            )
            raise TooManyRequests("too many presence updates, slow down")
        shown = self._shown(frame)
        viewers = addresses_of(frame.body, MAX_VIEWERS)
        pairs = [
            (subscriber, contact)
            for subscriber in await self._store.subscribers(contact)
            if domain_of(subscriber) == self._domain
        ]
        if pairs or self.remote.knows(peer.domain):
            # Else nobody here follows the domain: nothing of it is held.
            said = {contact: Heard(shown, frozenset(viewers))}
            self._apply(peer.domain, said, pairs, full=False)
        return reply(200, frame.tag)

    @staticmethod
    def _shown(frame: Frame) -> Shown:
        shown = parse_shown(
            frame.headers.get("Status", ""), frame.headers.get("Note", "")
        )
        return NOTHING if shown.status == OFFLINE else shown

    def probe(self, domain: str, contacts: list[str] | None = None) -> None:
        """
        Ask C{domain} now for the presence of the subscriptions shared with
        it (or only of C{contacts}), on the next turn; one full probe per
        domain at a time.
        """
        if not contacts:
            if domain in self._probing:
                return
            self._probing.add(domain)
        soon(self._service.timers, self._probe, domain, domain, contacts or [])

    async def _probe(self, domain: str, contacts: list[str]) -> None:
        try:
            answer = await self._links.request(
                domain, PROBE_VERB, body=address_lines(contacts)
            )
        except LinkError as e:
            # Once per refresh while the domain is away: rate-limited.
            self._log_limiter.emit(
                self._log,
                domain,
                "Presence: cannot ask {domain} for its users' presence: {why}",
                domain=domain,
                why=e.message,
            )
            return
        finally:
            if not contacts:
                self._probing.discard(domain)
        if answer.code != 200:
            self._log.info(
                "Presence: {domain} answered {code} {text} to a probe",
                domain=domain,
                code=answer.code,
                text=answer.argument,
            )
            return
        try:
            said = parse_answer(answer.body, domain, self._domain)
        except FMTPError as e:
            self._log.warn(
                "Presence: {domain}'s answer to a probe is refused: {why}",
                domain=domain,
                why=e.message,
            )
            return
        if contacts:
            pairs = [
                (subscriber, contact)
                for contact in contacts
                for subscriber in await self._store.subscribers(contact)
                if domain_of(subscriber) == self._domain
            ]
        else:
            pairs = await self._shared_pairs(domain)
        self._apply(domain, said, pairs, full=not contacts)

    async def _shared_pairs(self, domain: str) -> list[tuple[str, str]]:
        """
        The approved subscriptions of local users to users of C{domain}.
        """
        return [
            (subscriber, target)
            for subscriber, target in await self._store.shared_with_domain(domain)
            if domain_of(subscriber) == self._domain and domain_of(target) == domain
        ]

    def _apply(
        self,
        domain: str,
        said: dict[str, Heard],
        pairs: list[tuple[str, str]],
        full: bool,
    ) -> None:
        """
        Hold what C{domain} said of its users, for the local subscribers
        of C{pairs}, and push to each what they now see if it changed.

        @param full: whether C{said} is all C{domain} has to say (a full
            probe's answer): what was held before is replaced.
        """
        remote = self.remote
        before = {pair: remote.seen(*pair) for pair in pairs}
        if full:
            remote.drop(domain)
        remote.heard_from(domain)
        viewers_of: defaultdict[str, set[str]] = defaultdict(set)
        for subscriber, contact in pairs:
            viewers_of[contact].add(subscriber)
        for contact, local in viewers_of.items():
            heard = said.get(contact, Heard(NOTHING, frozenset()))
            remote.set(contact, heard.shown, heard.viewers & local)
        self._push_changes(before)

    def _push_changes(self, before: dict[tuple[str, str], Shown]) -> None:
        for (subscriber, contact), shown in before.items():
            now = self.remote.seen(subscriber, contact)
            if now != shown:
                changed = PresenceChanged(contact, now)
                self._service.push(subscriber, Event(PRESENCE, changed))

    # -- links coming and going -----------------------------------------------

    def _peer_back(self, domain: str) -> None:
        """
        C{domain}'s server proved itself: if this server follows its users,
        it asks it for their presence now.
        """
        if domain in self._followed:
            self.probe(domain)

    async def refresh(self) -> None:
        """
        Ask every followed domain for its users' presence, and turn to
        C{unknown} the users of those not heard from within the timeout.
        """
        try:
            followed = await self._store.followed_domains(self._domain)
        except Exception:
            self._log.failure("Presence: reading the followed domains failed")
            return
        self._followed = set(followed)
        for domain in followed:
            self.probe(domain)
        for domain in self.remote.stale_domains():
            await self._went_away(domain)

    async def _went_away(self, domain: str) -> None:
        try:
            pairs = await self._shared_pairs(domain)
        except Exception:
            self._log.failure(
                "Presence: reading what {domain} shares failed", domain=domain
            )
            return
        if domain not in self.remote.stale_domains():
            return
        self._log.info(
            "Presence: {domain} not heard from for {timeout} s: its users' "
            "presence is unknown",
            domain=domain,
            timeout=self.remote.timeout,
        )
        before = {pair: self.remote.seen(*pair) for pair in pairs}
        self.remote.drop(domain)
        self._push_changes(before)
