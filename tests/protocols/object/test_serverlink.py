"""
L{fmtp.protocols.object.serverlink}: a peer's verbs reach their handlers
with what the link knows of the peer.
"""

from __future__ import annotations

from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SynchronousTestCase

from fmtp.framing.session import Session
from fmtp.protocols.object.serverlink import ServerLinkCommands
from fmtp.wire import Frame, reply
from tests.helpers import make_services


class DispatchTests(SynchronousTestCase):
    def test_the_handler_sees_what_the_link_holds_for_the_peer(self) -> None:
        """
        A verb whose answer may be large (a room's HISTORY, 10.9) is
        sized by what the link holds while the peer does not read.
        """
        services = make_services()
        seen = []

        async def handler(peer, frame):
            seen.append(peer)
            return reply(200, frame.tag)

        services.links.register("TESTVERB", handler)
        group = ServerLinkCommands(services, None)
        session = Session(host="192.0.2.1", queued=lambda: 4096)
        session.peer_domain, session.peer_verified = "lenore.org", True
        frame = Frame("TESTVERB", "1", "", {}, b"")
        answer = self.successResultOf(ensureDeferred(group.dispatch(frame, session)))
        self.assertEqual(answer.code, 200)
        [peer] = seen
        self.assertEqual((peer.domain, peer.queued()), ("lenore.org", 4096))
