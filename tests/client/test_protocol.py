"""
Unit tests of the client protocol against a misbehaving server.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from fmtp.client import FrameClientProtocol, connect


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

    def test_cancelled_request_forgets_its_tag(self) -> None:
        """
        A request given up on (a timeout cancels it) does not fire again
        when its reply comes late: the reply is kept as unsolicited.
        """
        pending = self.client.request("CAPA")
        pending.cancel()
        self.failureResultOf(pending, CancelledError)
        self.client.dataReceived(b"200 1 ok\r\n\r\n")
        self.assertEqual([f.tag for f in self.client.unsolicited], ["1"])


class ConnectTimeoutTests(SynchronousTestCase):
    """
    L{connect} with a timeout, driven by a L{MemoryReactorClock}.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()

    def connect(self, timeout: float = 5.0):
        return Deferred.fromCoroutine(
            connect(self.reactor, "tcp:127.0.0.1:7070", timeout=timeout)
        )

    def test_no_connection(self) -> None:
        d = self.connect()
        self.assertNoResult(d)
        self.reactor.advance(5.0)
        self.failureResultOf(d, TimeoutError)

    def test_no_greeting(self) -> None:
        """
        Connected, but the peer never greets: the wait for the greeting
        gets the same timeout, and the connection is closed.
        """
        d = self.connect()
        self.reactor.advance(4.0)
        factory = self.reactor.tcpClients[0][2]
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.reactor.advance(4.9)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        self.failureResultOf(d, TimeoutError)
        self.assertTrue(transport.disconnecting)

    def test_greeted_in_time(self) -> None:
        d = self.connect()
        factory = self.reactor.tcpClients[0][2]
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"220 * poe.net fmtp/1 object ready\r\n\r\n")
        self.assertIsInstance(self.successResultOf(d), FrameClientProtocol)
        self.reactor.advance(60)
