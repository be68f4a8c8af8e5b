"""
Unit tests of the client protocol against a misbehaving server.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from fmtp.client import FrameClientProtocol


class ClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.client = FrameClientProtocol()
        self.transport = StringTransport()
        self.client.makeConnection(self.transport)
        self.client.dataReceived(b"220 * poe.net fmtp/1 object ready\r\n\r\n")

    def test_greeting_and_replies_by_tag(self) -> None:
        self.assertEqual(self.successResultOf(self.client.greeting).code, 220)
        first, second = self.client.request("CAPA"), self.client.request("CAPA")
        self.client.dataReceived(b"200 2 ok\r\n\r\n200 1 ok\r\n\r\n")
        self.assertEqual(self.successResultOf(first).tag, "1")
        self.assertEqual(self.successResultOf(second).tag, "2")

    def test_requests_from_the_server_are_kept_not_fatal(self) -> None:
        self.client.dataReceived(b"FOO *\r\n\r\nBAR 1\r\n\r\n")
        self.assertEqual([f.verb for f in self.client.unsolicited], ["FOO", "BAR"])
        self.assertFalse(self.transport.disconnecting)

    def test_unsolicited_memory_is_bounded(self) -> None:
        self.client.dataReceived(b"421 * bye\r\n\r\n" * 100)
        self.assertEqual(len(self.client.unsolicited), self.client.max_unsolicited)

    def test_pushes(self) -> None:
        self.client.dataReceived(b"250 * message for you\r\nId: x\r\n\r\n")
        self.assertEqual(self.successResultOf(self.client.pushes.get()).code, 250)

    def test_bad_frame_fails_pending_requests(self) -> None:
        pending = self.client.request("CAPA")
        self.client.dataReceived(b"200 1 ok\r\nLength: x\r\n\r\n")
        self.failureResultOf(pending)
        self.assertTrue(self.transport.disconnecting)
