"""
L{FrameParser.feed} with a C{limit}: a stream that pipelines many requests
in one read is parsed only as far as the caller can run them, the rest
held unparsed, and the frames come out exactly as without a limit.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from fmtp.wire import FrameError, FrameParser, request, serialize
from tests.wire.test_wire import _frames, _garbage, _split, describe

_settings = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _drain(parser: FrameParser, pieces: list[bytes], limits: list[int]) -> list:
    """
    Feed C{pieces} in turn, each feed limited by the next of C{limits}
    (cycling), then keep feeding C{b""} until nothing is held.
    """
    results: list = []
    turn = 0
    for piece in pieces:
        results.extend(parser.feed(piece, limits[turn % len(limits)]))
        turn += 1
    while parser.held:
        results.extend(parser.feed(b"", max(1, limits[turn % len(limits)])))
        turn += 1
    return results


class LimitTests(SynchronousTestCase):
    def test_parses_at_most_the_limit(self) -> None:
        """
        2,700 pipelined GETs in one read: 32 are parsed, the rest held as
        bytes, and each later call parses only what it is allowed to.
        """
        data = b"".join(
            serialize(request("GET", str(i), "edgar@poe.net")) for i in range(2700)
        )
        parser = FrameParser()
        first = parser.feed(data, 32)
        self.assertEqual([f.tag for f in first], [str(i) for i in range(32)])
        self.assertFalse(parser.pending)
        parsed = sum(len(serialize(frame)) for frame in first)
        self.assertEqual(parser.held, len(data) - parsed)
        self.assertEqual([f.tag for f in parser.feed(b"", 3)], ["32", "33", "34"])
        rest = parser.feed(b"")
        self.assertEqual(len(rest), 2700 - 35)
        self.assertEqual(parser.held, 0)

    def test_zero_only_holds(self) -> None:
        """
        With no room at all, bytes are held without being looked at, even
        bytes that would be an error.
        """
        parser = FrameParser()
        self.assertEqual(parser.feed(b"CAPA 1\r\n\r\n", 0), [])
        self.assertEqual(parser.feed(b"\xff\r\n\r\n", 0), [])
        self.assertEqual(parser.held, 15)
        [capa, error] = parser.feed(b"", 5)
        self.assertEqual(capa.tag, "1")
        self.assertIsInstance(error, FrameError)

    def test_new_bytes_join_held_ones(self) -> None:
        """
        Bytes that arrive while others are held are parsed after them,
        including a frame that straddles the two.
        """
        parser = FrameParser()
        data = serialize(request("CAPA", "a")) + serialize(request("CAPA", "b"))
        self.assertEqual(len(parser.feed(data + b"CAP", 1)), 1)
        tags = [f.tag for f in parser.feed(b"A c\r\n\r\n", 5)]
        self.assertEqual(tags, ["b", "c"])
        self.assertFalse(parser.pending)
        self.assertEqual(parser.held, 0)

    def test_partial_frame_after_held_ones_stays_pending(self) -> None:
        parser = FrameParser()
        data = serialize(request("CAPA", "a")) * 3 + b"PUT 9\r\nLength: 5\r\n\r\nab"
        self.assertEqual(len(parser.feed(data, 2)), 2)
        self.assertFalse(parser.pending)
        self.assertEqual(len(parser.feed(b"", 5)), 1)
        self.assertTrue(parser.pending)
        [put] = parser.feed(b"cde")
        self.assertEqual(put.body, b"abcde")

    @_settings
    @given(
        st.lists(_frames, min_size=1, max_size=6),
        st.lists(st.integers(0, 5000), max_size=6),
        st.lists(st.integers(0, 4), min_size=1, max_size=6),
    )
    def test_frames_are_those_of_an_unlimited_parse(self, frames, cuts, limits):
        data = b"".join(serialize(frame) for frame in frames)
        parser = FrameParser()
        self.assertEqual(_drain(parser, _split(data, cuts), limits), frames)
        self.assertFalse(parser.pending)

    @_settings
    @given(
        _garbage,
        st.lists(st.integers(0, 400), max_size=10),
        st.lists(st.integers(0, 3), min_size=1, max_size=5),
    )
    def test_garbage_gives_the_same_items(self, data, cuts, limits) -> None:
        whole = FrameParser().feed(data)
        parser = FrameParser()
        results = _drain(parser, _split(data, cuts), limits)
        self.assertEqual([describe(i) for i in results], [describe(i) for i in whole])


class BodyLimitTests(SynchronousTestCase):
    """
    A body larger than L{FrameParser.body_limit} is skipped, not kept, and
    refused with 530; the stream goes on.
    """

    def test_large_body_skipped_unbuffered(self) -> None:
        parser = FrameParser()
        parser.body_limit = 100
        head = b"PUT 1\r\nType: post\r\nLength: 5000\r\n\r\n"
        self.assertEqual(parser.feed(head + b"x" * 4000), [])
        self.assertEqual(parser.buffered, 0)
        [error, capa] = parser.feed(b"x" * 1000 + b"CAPA 2\r\n\r\n")
        self.assertIsInstance(error, FrameError)
        self.assertEqual((error.code, error.tag, error.fatal), (530, "1", False))
        self.assertIn("larger than 100 bytes", error.message)
        self.assertEqual(capa.tag, "2")

    def test_line_by_line_path_too(self) -> None:
        parser = FrameParser()
        parser.body_limit = 3
        [error, ok] = parser.feed(b"PUT 1\nLength: 4\n\nabcdPUT 2\nLength: 3\n\nabc")
        self.assertEqual(error.code, 530)
        self.assertEqual(ok.body, b"abc")

    def test_up_to_the_limit_is_kept(self) -> None:
        parser = FrameParser()
        parser.body_limit = 5
        [frame] = parser.feed(serialize(request("PUT", "1", body=b"12345")))
        self.assertEqual(frame.body, b"12345")
