"""
The messaging and server-link commands of the object protocol.

Clients: SEND a message, FETCH what waits for them, and decide about held
senders (HELD, APPROVE, REFUSE); a logged-in stream is pushed each message
as it arrives (a C{250} frame tagged C{*}).  Servers: HELLO to prove their
domain, DELIVER messages for this domain's users, and CONFIRM (the
countersign) that they sent a message.  As everywhere, the commands only
frame: the rules are in L{fmtp.federation}.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.logger import Logger

from fmtp.delivery import RecipientResult, sender_of
from fmtp.errors import FMTPError, InvalidObject, LoginRequired
from fmtp.federation.countersign import vouches_for
from fmtp.federation.hello import HelloVerifier, make_hello
from fmtp.federation.inbound import DeliveryReceiver
from fmtp.federation.relay import ChildRelay
from fmtp.federation.sending import IDEMPOTENCY_KEY, MessageSender
from fmtp.objects import FMTPObject, domain_of, normalize_address
from fmtp.objectservice import MAX_LIST_LIMIT, ObjectService
from fmtp.protocols.framing import Client, int_header, required_argument
from fmtp.services import SharedServices
from fmtp.wire import UNSOLICITED_TAG, Frame, reply


class HelloFirst(FMTPError):
    code = 530
    default_message = "HELLO first: DELIVER is for servers that proved their domain"


@dataclass
class Federation:
    """
    The federation pieces one server shares between its listeners.
    """

    receiver: DeliveryReceiver
    sender: MessageSender
    hello: HelloVerifier
    #: Takes the messages of child domains for other domains.
    relay: ChildRelay
    #: Looks up a user object of another domain for a child:
    #: C{lookup(address, cache_only)}.
    lookup: object | None = None

    @classmethod
    def build(
        cls,
        services: SharedServices,
        objects: ObjectService | None = None,
        *,
        hello: HelloVerifier | None = None,
        countersign=None,
        always_countersign: bool = False,
        kick=lambda: None,
        relay_for: frozenset[str] = frozenset(),
        lookup=None,
    ) -> Federation:
        """
        The receiver, sender and handshake of one server around its
        services.  With only C{services}, federation without links to other
        domains: local delivery works and remote recipients wait in the
        queue, which nothing drains (unit tests, servers without a link
        pool); L{fmtp.federation.node.build_federation} passes the rest.

        @param kick: called when SEND or a relay has queued deliveries.
        @param relay_for: the child domains this server relays for.
        @param lookup: looks up other domains' user objects for children.
        """
        receiver = DeliveryReceiver(
            services.domain,
            services.store,
            services.keys,
            services.reactor,
            push=services.sessions.push,
            countersign=countersign,
            always_countersign=always_countersign,
        )
        sender = MessageSender(
            services.domain,
            services.store,
            services.signer,
            services.reactor,
            receiver,
            objects or ObjectService(services.store, services.reactor),
            kick,
        )
        hello = hello or HelloVerifier(services.keys, services.reactor, services.domain)
        relay = ChildRelay(services.store, receiver, services.reactor, relay_for, kick)
        return cls(receiver, sender, hello, relay, lookup)


def object_frame(code: int, tag: str, text: str | None, obj: FMTPObject) -> Frame:
    """
    A reply carrying an object whole, with its digest.
    """
    headers = obj.to_headers()
    headers["Digest"] = obj.digest()
    return reply(code, tag, text, headers=headers, body=obj.body)


def push_frame(obj: FMTPObject) -> Frame:
    """
    The frame that hands a live session a message as it arrives.
    """
    return object_frame(250, UNSOLICITED_TAG, None, obj)


def results_frame(tag: str, results: list[RecipientResult]) -> Frame:
    body = "".join(f"{result.line()}\r\n" for result in results)
    return reply(200, tag, "per-recipient results", body=body.encode("utf-8"))


class MessagingCommands:
    """
    Adds the messaging and server-link commands to a command handler
    (L{fmtp.protocols.object.ObjectCommands} mixes this in).
    """

    _log = Logger()
    services: SharedServices
    federation: Federation

    def messaging_commands(self) -> dict:
        return {
            "SEND": self.send_message,
            "FETCH": self.fetch,
            "HELD": self.held,
            "APPROVE": self.approve,
            "REFUSE": self.refuse,
            "HELLO": self.hello,
            "DELIVER": self.deliver,
            "CONFIRM": self.confirm,
        }

    def open_session(self, client: Client, address: str) -> str:
        """
        Open a session that receives pushed messages on its stream.
        """
        push = client.push
        if push is None:
            return self.services.sessions.open(address)
        return self.services.sessions.open(address, lambda obj: push(push_frame(obj)))

    def _user(self, client: Client) -> str:
        if client.address is None:
            raise LoginRequired()
        return client.address

    async def send_message(self, frame: Frame, client: Client) -> Frame:
        user = self._user(client)
        obj, results = await self.federation.sender.send(
            user, frame.headers, frame.body, frame.headers.get(IDEMPOTENCY_KEY)
        )
        headers = {"Id": obj.id, "Digest": obj.digest()}
        body = "".join(f"{result.line()}\r\n" for result in results).encode("utf-8")
        return reply(201, frame.tag, "sent", headers=headers, body=body)

    async def fetch(self, frame: Frame, client: Client) -> Frame:
        user = self._user(client)
        since = int_header(frame, "Since", 0)
        limit = int_header(frame, "Limit", 50)
        if not 0 < limit <= MAX_LIST_LIMIT:
            raise InvalidObject(f"Limit must be 1 to {MAX_LIST_LIMIT}")
        entries = await self.services.store.inbox(user, since, limit)
        lines = []
        for seq, obj in entries:
            lines.append(f"{seq} {obj.id} {sender_of(obj)} {obj.digest()}\r\n")
        headers = {"Count": str(len(entries))}
        headers["Next-Since"] = str(entries[-1][0] if entries else since)
        return reply(200, frame.tag, headers=headers, body="".join(lines).encode())

    async def held(self, frame: Frame, client: Client) -> Frame:
        senders = await self.services.store.held_senders(self._user(client))
        body = "".join(f"{sender}\r\n" for sender in senders).encode("utf-8")
        return reply(200, frame.tag, headers={"Count": str(len(senders))}, body=body)

    def _sender_argument(self, frame: Frame) -> str:
        return normalize_address(required_argument(frame, "ADDRESS"))

    async def approve(self, frame: Frame, client: Client) -> Frame:
        user, sender = self._user(client), self._sender_argument(frame)
        store = self.services.store
        await store.approve_sender(user, sender)
        released = await store.release_held(user, sender)
        return reply(200, frame.tag, "approved", headers={"Released": str(released)})

    async def refuse(self, frame: Frame, client: Client) -> Frame:
        user, sender = self._user(client), self._sender_argument(frame)
        dropped = await self.services.store.drop_held(user, sender)
        return reply(200, frame.tag, "refused", headers={"Dropped": str(dropped)})

    async def hello(self, frame: Frame, client: Client) -> Frame:
        if client.peer_domain is not None:
            return reply(503, frame.tag, "HELLO already done")
        peer = await self.federation.hello.verify(frame.headers)
        client.peer_domain = peer.domain
        client.peer_verified = peer.verified
        self._log.info(
            "{host} is {domain} ({how})",
            host=client.host,
            domain=peer.domain,
            how="verified" if peer.verified else "unverified: countersigns required",
        )
        answer = make_hello(
            self.services.signer,
            peer.domain,
            self.services.reactor.seconds(),
            in_reply_to=peer.nonce,
        )
        return reply(200, frame.tag, "hello", headers=answer)

    async def deliver(self, frame: Frame, client: Client) -> Frame:
        if client.peer_domain is None:
            raise HelloFirst()
        recipients = frame.argument.split()
        if not recipients:
            raise InvalidObject("DELIVER needs recipients: DELIVER TAG ADDRESS...")
        obj = FMTPObject.from_headers(frame.headers, frame.body)
        local, remote = [], []
        for recipient in recipients:
            address = normalize_address(recipient)
            mine = domain_of(address) == self.services.domain
            (local if mine else remote).append(address)
        peer = client.peer_domain
        results = []
        if remote:
            results += await self.federation.relay.relay(obj, remote, peer)
        if local:
            results += await self.federation.receiver.receive(obj, local, peer)
        return results_frame(frame.tag, results)

    async def lookup_for_child(
        self, frame: Frame, client: Client, object_id: str
    ) -> Frame | None:
        """
        The draft's parent lookup: a parent fetches a user object of
        another domain for a child that cannot reach that domain (or, with
        C{Cache-Only: yes}, says what it holds).  Only for children it
        relays for, so no server becomes an open lookup proxy.

        @return: the reply, or L{None} if this is an ordinary GET.
        """
        federation = self.federation
        if federation.lookup is None or not federation.relay.relays_for(
            client.peer_domain
        ):
            return None
        try:
            address = normalize_address(object_id)
        except FMTPError:
            return None
        if domain_of(address) == self.services.domain:
            return None
        cache_only = frame.headers.get("Cache-Only", "").lower() == "yes"
        obj = await federation.lookup(address, cache_only)
        if obj is None:
            return reply(550, frame.tag)
        return object_frame(200, frame.tag, None, obj)

    async def confirm(self, frame: Frame, client: Client) -> Frame:
        """
        The countersign: say whether this server sent the object with this
        id and digest to the asking server's domain.  It tells the asker
        nothing it did not already hold.
        """
        if client.peer_domain is None:
            raise HelloFirst(
                "HELLO first: CONFIRM answers servers that proved a domain"
            )
        digest = frame.headers.get("Digest", "").lower()
        object_id = frame.argument
        if not object_id or not digest:
            raise InvalidObject("CONFIRM needs an id and a Digest header")
        if not await vouches_for(
            self.services.store,
            self.services.domain,
            client.peer_domain,
            object_id,
            digest,
        ):
            return reply(550, frame.tag, "not sent from here")
        return reply(200, frame.tag, "yes")
