"""
What one stream client can make the server hold or do, unit-tested over a
StringTransport and a Clock: the in-flight cap against a read of many
frames, the whole-frame deadline, slow readers, rate-limited logs, and
shutdown.  test_abuse tries the same attacks over real sockets.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from fmtp.client import FrameClientProtocol
from fmtp.framing.stream import FrameStreamProtocol
from fmtp.wire import Frame, reply, request, serialize
from tests.helpers import StreamHarness, add_account, make_services

CAP = FrameStreamProtocol.max_in_flight


class SlowCommands:
    """
    A SLOW command whose answers the test releases.
    """

    def __init__(self, conn: StreamHarness) -> None:
        self.waiting: list[tuple[str, Deferred]] = []
        conn.protocol.handler.groups[0].commands["SLOW"] = self.slow

    async def slow(self, frame: Frame, client) -> Frame:
        d: Deferred = Deferred()
        self.waiting.append((frame.tag, d))
        await d
        return reply(200, frame.tag)

    def release(self, count: int) -> None:
        for _ in range(count):
            tag, d = self.waiting.pop(0)
            d.callback(None)


def slow_requests(first: int, count: int) -> bytes:
    return b"".join(b"SLOW %d\r\n\r\n" % i for i in range(first, first + count))


class InFlightTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.services = make_services(self.clock)
        self.conn = StreamHarness(self.services)
        self.slow = SlowCommands(self.conn)

    def test_one_read_of_many_requests_runs_at_most_the_cap(self) -> None:
        """
        2,700 pipelined requests in one read: 32 run, the rest wait
        unparsed and reading stops; as requests finish, more start, never
        more than 32, until all are answered in order of arrival.
        """
        data = slow_requests(0, 2700)
        self.conn.send_bytes(data)
        self.assertEqual(len(self.slow.waiting), CAP)
        self.assertEqual(self.conn.transport.producerState, "paused")
        held = len(data) - len(slow_requests(0, CAP))
        self.assertEqual(self.conn.protocol._parser.held, held)
        started = CAP
        while self.slow.waiting:
            self.slow.release(5)
            self.assertLessEqual(len(self.slow.waiting), CAP)
            started = int(self.slow.waiting[-1][0]) + 1 if self.slow.waiting else 2700
        self.assertEqual(started, 2700)
        tags = [f.tag for f in self.conn.frames()[0:]]
        self.assertEqual(tags, [str(i) for i in range(2700)])
        self.assertEqual(self.conn.transport.producerState, "producing")

    def test_answers_after_the_connection_is_gone_leave_no_timers(self) -> None:
        self.conn.send_bytes(slow_requests(0, 2))
        self.conn.protocol.connectionLost(None)
        self.slow.release(2)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.services.connections), 0)

    def test_reading_resumes_when_half_are_done(self) -> None:
        self.conn.send_bytes(slow_requests(0, CAP))
        self.assertEqual(self.conn.transport.producerState, "paused")
        self.slow.release(CAP // 2)
        self.assertEqual(self.conn.transport.producerState, "paused")
        self.slow.release(1)
        self.assertEqual(self.conn.transport.producerState, "producing")

    def test_bad_frames_beyond_the_cap_are_all_answered(self) -> None:
        """
        Frames that do not run (errors) do not count against the cap, so
        a read of only bad frames is answered whole.
        """
        self.conn.send_bytes(b"X\n\n" * 1000)
        frames = self.conn.frames()
        self.assertEqual(len(frames), 1000)
        self.assertEqual({f.code for f in frames}, {500})
        self.assertEqual(self.conn.protocol._parser.held, 0)


class AnonymousBodyTests(SynchronousTestCase):
    def test_large_bodies_need_a_login(self) -> None:
        """
        Before LOGIN a stream cannot make the server keep a large body:
        it is skipped and refused with 530; after, it is stored.
        """
        services = make_services(MemoryReactorClock())
        add_account(services.store, "edgar@poe.net", "a long password")
        conn = StreamHarness(services)
        body = b"x" * (services.limits.max_anonymous_body + 1)
        put = serialize(request("PUT", "p", headers={"Type": "post"}, body=body))
        conn.send_bytes(put[:-10])
        self.assertLess(conn.protocol.buffered_bytes, 100)
        conn.send_bytes(put[-10:])
        [refused] = conn.frames()
        self.assertEqual((refused.code, refused.tag), (530, "p"))
        self.assertEqual(conn.login("edgar@poe.net", "a long password").code, 230)
        conn.send_bytes(put)
        self.assertEqual([f.code for f in conn.frames()], [201])


class FrameDeadlineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.services = make_services(self.clock)
        self.conn = StreamHarness(self.services)

    def test_trickled_frame_times_out_from_its_first_byte(self) -> None:
        """
        A request sent one byte a second is closed with 420 when the
        frame timeout has passed since its first byte.
        """
        data = b"GET 1 " + b"x" * 200
        for i in range(int(self.services.frame_timeout) - 1):
            self.conn.send_bytes(data[i : i + 1])
            self.clock.advance(1)
        self.assertFalse(self.conn.transport.disconnecting)
        self.conn.send_bytes(data[59:60])
        self.clock.advance(1)
        [answer] = self.conn.frames()
        self.assertEqual(answer.code, 420)
        self.assertTrue(self.conn.transport.disconnecting)

    def test_each_frame_has_its_own_deadline(self) -> None:
        """
        A frame begun in the read that finishes the one before is timed
        from that read.
        """
        self.conn.send_bytes(b"CAPA 1\r\n")
        self.clock.advance(self.services.frame_timeout - 1)
        self.conn.send_bytes(b"\r\nCAPA 2\r\n")
        self.clock.advance(self.services.frame_timeout - 1)
        self.assertFalse(self.conn.transport.disconnecting)
        self.conn.send_bytes(b"\r\n")
        self.assertEqual([f.code for f in self.conn.frames()], [200, 200])
        self.clock.advance(self.services.frame_timeout)
        self.assertFalse(self.conn.transport.disconnecting)

    def test_waiting_for_the_server_is_not_the_clients_fault(self) -> None:
        """
        While the server holds a client's requests back, no frame
        deadline runs against it.
        """
        slow = SlowCommands(self.conn)
        self.conn.send_bytes(slow_requests(0, CAP + 1) + b"SLOW x\r\n")
        self.clock.advance(self.services.frame_timeout * 2)
        self.assertFalse(self.conn.transport.disconnecting)
        slow.release(CAP)
        self.conn.send_bytes(b"\r\n")
        self.assertEqual(len(slow.waiting), 2)


class SlowReaderTests(SynchronousTestCase):
    """
    The transport pauses the protocol when the client stops reading.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.services = make_services(self.clock)
        add_account(self.services.store, "lost@poe.net", "a long password")
        self.conn = StreamHarness(self.services)
        self.assertEqual(self.conn.login("lost@poe.net", "a long password").code, 230)
        self.protocol = self.conn.protocol
        self.assertIs(self.conn.transport.producer, self.protocol)

    def push(self, count: int) -> None:
        for _ in range(count):
            self.protocol.session.push(reply(250, "*"))

    def test_pushes_are_dropped_and_counted_while_not_reading(self) -> None:
        self.push(2)
        self.assertEqual(len(self.conn.frames()), 2)
        self.protocol.pauseProducing()
        self.assertEqual(self.conn.transport.producerState, "paused")
        self.push(150)
        self.assertEqual(self.conn.frames(), [])
        self.assertEqual(self.protocol.dropped_pushes, 150)
        self.protocol.resumeProducing()
        [notice] = self.conn.frames()
        self.assertEqual((notice.code, notice.tag), (251, "*"))
        self.assertEqual(notice.headers["Dropped"], "150")
        self.assertEqual(self.conn.transport.producerState, "producing")
        self.push(1)
        self.assertEqual([f.code for f in self.conn.frames()], [250])

    def test_replies_wait_and_requests_are_not_read(self) -> None:
        self.protocol.pauseProducing()
        self.conn.send_bytes(b"CAPA 1\r\n\r\n")
        self.assertEqual(self.conn.frames(), [])
        self.assertEqual(self.protocol._parser.held, 10)
        self.protocol.resumeProducing()
        self.assertEqual([f.tag for f in self.conn.frames()], ["1"])

    def test_replies_in_progress_are_kept_for_later(self) -> None:
        slow = SlowCommands(self.conn)
        self.conn.send_bytes(slow_requests(0, 3))
        self.protocol.pauseProducing()
        slow.release(3)
        self.assertEqual(self.conn.frames(), [])
        self.assertGreater(self.protocol.queued_bytes, 0)
        self.protocol.resumeProducing()
        self.assertEqual(len(self.conn.frames()), 3)
        self.assertEqual(self.protocol.queued_bytes, 0)

    def test_an_outbox_only_while_replies_wait(self) -> None:
        """
        A connection holds an outbox only while replies wait for its
        client: an idle session's memory is mostly such empty containers
        (doc/performance.md, row f).
        """
        self.assertIsNone(self.protocol._outbox)
        slow = SlowCommands(self.conn)
        self.conn.send_bytes(slow_requests(0, 2))
        self.protocol.pauseProducing()
        slow.release(2)
        self.assertEqual(len(self.protocol._outbox), 2)
        self.protocol.resumeProducing()
        self.assertIsNone(self.protocol._outbox)
        self.assertEqual(len(self.conn.frames()), 2)

    def test_a_client_that_reads_nothing_is_closed(self) -> None:
        self.protocol.pauseProducing()
        self.clock.advance(self.services.stall_timeout - 1)
        self.assertFalse(self.conn.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(self.conn.transport.disconnecting)

    def test_a_client_that_reads_slowly_is_not(self) -> None:
        for _ in range(5):
            self.protocol.pauseProducing()
            self.clock.advance(self.services.stall_timeout - 1)
            self.protocol.resumeProducing()
        self.assertFalse(self.conn.transport.disconnecting)


class DroppedNoticeTests(SynchronousTestCase):
    def test_client_library_does_not_take_251_for_a_push(self) -> None:
        client = FrameClientProtocol()
        client.frame_received(reply(220, "*", "hi"))
        client.frame_received(reply(251, "*", headers={"Dropped": "3"}))
        self.assertEqual(client.pushes.pending, [])
        self.assertEqual(client.unsolicited[-1].code, 251)


class ErrorLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.services = make_services(self.clock)
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def lines(self) -> list[dict]:
        return [e for e in self.logged if e.get("code") == "500"]

    def test_a_flood_of_bad_frames_logs_a_few_lines(self) -> None:
        """
        60 KB of C{X\\n\\n}: 20,000 replies, ten log lines; when logging
        resumes, the line says how many were held back.
        """
        conn = StreamHarness(self.services)
        conn.send_bytes(b"X\n\n" * 20000)
        self.assertEqual(len(conn.frames()), 20000)
        self.assertEqual(len(self.lines()), 10)
        self.clock.advance(1)
        conn.send_bytes(b"X\n\n")
        last = self.lines()[-1]
        self.assertEqual(last["suppressed"], " (19990 similar lines suppressed)")

    def test_limit_is_per_source_across_connections(self) -> None:
        for _ in range(5):
            StreamHarness(self.services).send_bytes(b"X\n\n" * 3)
        self.assertEqual(len(self.lines()), 10)
        StreamHarness(self.services, host="192.0.2.99").send_bytes(b"X\n\n")
        self.assertEqual(len(self.lines()), 11)


class ShutdownTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.services = make_services(self.clock)
        self.conn = StreamHarness(self.services)
        self.slow = SlowCommands(self.conn)

    def test_requests_in_progress_finish_new_ones_get_421(self) -> None:
        self.conn.send_bytes(slow_requests(0, 2))
        self.conn.protocol.shut_down()
        self.assertFalse(self.conn.transport.disconnecting)
        self.conn.send_bytes(serialize(request("CAPA", "late")))
        self.assertEqual([(f.code, f.tag) for f in self.conn.frames()], [(421, "late")])
        self.assertEqual(len(self.slow.waiting), 2)
        self.slow.release(2)
        frames = self.conn.frames()
        self.assertEqual(
            [(f.code, f.tag) for f in frames], [(200, "0"), (200, "1"), (421, "*")]
        )
        self.assertEqual(frames[-1].argument, "shutting down")
        self.assertTrue(self.conn.transport.disconnecting)

    def test_held_requests_are_answered_421(self) -> None:
        self.conn.send_bytes(slow_requests(0, CAP + 3))
        self.conn.protocol.shut_down()
        late = [f.tag for f in self.conn.frames() if f.code == 421]
        self.assertEqual(late, [str(i) for i in range(CAP, CAP + 3)])
        self.slow.release(CAP)
        self.assertTrue(self.conn.transport.disconnecting)

    def test_idle_stream_closes_at_once(self) -> None:
        self.conn.protocol.shut_down()
        [frame] = self.conn.frames()
        self.assertEqual((frame.code, frame.tag), (421, "*"))
        self.assertTrue(self.conn.transport.disconnecting)
