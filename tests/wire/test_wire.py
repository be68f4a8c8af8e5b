"""
Tests for L{fmtp.wire}: the frame grammar, the limits, error recovery, the
datagram rules and the serializer, then property tests (round trips, and
hostile input that must never crash the parser or grow its buffer).
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from fmtp.objects import canonical_name
from fmtp.wire import (
    DEFAULT_LIMITS,
    REPLY_TEXT,
    UNSOLICITED_TAG,
    Frame,
    FrameError,
    FrameParser,
    Limits,
    parse_datagram,
    reply,
    request,
    serialize,
)
from fmtp.wire import grammar as wire

SMALL = Limits(max_line=40, max_headers=3, max_header_bytes=100, max_body=50)


def feedAll(data: bytes, limits: Limits = DEFAULT_LIMITS, chunk: int = 0) -> list:
    """
    Feed C{data} to a new parser, whole or C{chunk} bytes at a time, and
    return everything it produced.
    """
    parser = FrameParser(limits)
    if not chunk:
        return parser.feed(data)
    out = []
    for i in range(0, len(data), chunk):
        out.extend(parser.feed(data[i : i + chunk]))
    return out


def describe(item: Frame | FrameError) -> tuple:
    """
    A comparable form of a parser result (FrameError has no equality).
    """
    if isinstance(item, FrameError):
        return ("error", item.code, item.message, item.tag, item.fatal)
    return ("frame", item.verb, item.tag, item.argument, item.headers, item.body)


class ParseTests(SynchronousTestCase):
    """
    Valid frames, however they are written and however they arrive.
    """

    def test_request(self) -> None:
        [frame] = feedAll(b"GET 17 1700000000000.ab12cd.edgar@poe.net\r\n\r\n")
        self.assertEqual(
            frame, Frame("GET", "17", "1700000000000.ab12cd.edgar@poe.net")
        )
        self.assertFalse(frame.is_reply)

    def test_verbUpperCased(self) -> None:
        [frame] = feedAll(b"capa-x 1\r\n\r\n")
        self.assertEqual(frame.verb, "CAPA-X")

    def test_argumentKeepsInnerSpaces(self) -> None:
        [frame] = feedAll(b"SAY 1 \t hello,  w\xc3\xb6rld \t \r\n\r\n")
        self.assertEqual(frame.argument, "hello,  w\xf6rld")

    def test_noArgument(self) -> None:
        frames = feedAll(b"CAPA 1\r\n\r\nCAPA 2 \r\n\r\n")
        self.assertEqual([frame.argument for frame in frames], ["", ""])

    def test_looseSpacing(self) -> None:
        """
        Runs of spaces and tabs separate fields, for people typing into nc.
        """
        [frame] = feedAll(b"get \t  a.b:c_d-9\t x y\n\n")
        self.assertEqual(
            (frame.verb, frame.tag, frame.argument), ("GET", "a.b:c_d-9", "x y")
        )

    def test_reply(self) -> None:
        [frame] = feedAll(b"200 1 ok then\r\nId: x\r\n\r\n")
        self.assertEqual(frame, Frame("200", "1", "ok then", {"Id": "x"}))
        self.assertTrue(frame.is_reply)
        self.assertEqual(frame.code, 200)

    def test_unsolicitedTag(self) -> None:
        [frame] = feedAll(b"220 * ready\r\n\r\n")
        self.assertEqual(frame.tag, UNSOLICITED_TAG)

    def test_longestVerbAndTag(self) -> None:
        line = b"V" * 32 + b" " + b"t" * 32 + b"\r\n\r\n"
        [frame] = feedAll(line)
        self.assertEqual((frame.verb, frame.tag), ("V" * 32, "t" * 32))

    def test_headers(self) -> None:
        [frame] = feedAll(
            b"PUT 1\r\ncontent-TYPE:text/plain\r\nUrl: \t http://x:80/ \t\r\n"
            b"Empty:\r\nNote: caf\xc3\xa9\r\n\r\n"
        )
        self.assertEqual(
            frame.headers,
            {
                "Content-Type": "text/plain",
                "Url": "http://x:80/",
                "Empty": "",
                "Note": "caf\xe9",
            },
        )

    def test_body(self) -> None:
        [frame] = feedAll(b"PUT 1\r\nId: x\r\nLength: 5\r\n\r\nhello")
        self.assertEqual(frame.body, b"hello")
        self.assertEqual(frame.headers, {"Id": "x"})
        self.assertIsInstance(frame.body, bytes)

    def test_binaryBody(self) -> None:
        body = b"\r\n\r\nGET 2\r\n\r\n\x00\n\r\xff"
        data = b"PUT 1\r\nLength: %d\r\n\r\n" % len(body) + body + b"GET 3\r\n\r\n"
        first, second = feedAll(data)
        self.assertEqual(first.body, body)
        self.assertEqual(second.tag, "3")

    def test_zeroLength(self) -> None:
        [frame] = feedAll(b"PUT 1\r\nLength: 0\r\n\r\n")
        self.assertEqual((frame.headers, frame.body), ({}, b""))

    def test_leadingZeros(self) -> None:
        [frame] = feedAll(b"PUT 1\r\nLength: 007\r\n\r\n1234567")
        self.assertEqual(frame.body, b"1234567")

    def test_lengthAnySpelling(self) -> None:
        [frame] = feedAll(b"PUT 1\r\nlength:2\r\n\r\nab")
        self.assertEqual((frame.headers, frame.body), ({}, b"ab"))

    def test_bareLF(self) -> None:
        [frame] = feedAll(b"PUT 1 x\nId: y\nLength: 2\n\nab")
        self.assertEqual(frame, Frame("PUT", "1", "x", {"Id": "y"}, b"ab"))

    def test_mixedLineEndings(self) -> None:
        [frame] = feedAll(b"PUT 1 x\r\nId: y\nType: z\r\n\n")
        self.assertEqual(frame.headers, {"Id": "y", "Type": "z"})

    def test_blankLinesSkipped(self) -> None:
        """
        Blank lines, and lines of only spaces and tabs, are skipped where
        a command line is expected.
        """
        parser = FrameParser()
        self.assertEqual(parser.feed(b"\r\n\n \t\r\n"), [])
        self.assertFalse(parser.pending)
        result = parser.feed(b"GET 1\r\n\r\n\r\n\r\nGET 2\n\n")
        self.assertEqual([f.tag for f in result], ["1", "2"])

    def test_manyFrames(self) -> None:
        data = b"".join(b"GET %d x\r\n\r\n" % i for i in range(100))
        self.assertEqual([f.tag for f in feedAll(data)], [str(i) for i in range(100)])

    def test_byteByByte(self) -> None:
        data = (
            b"\r\nPUT 1 x\r\nId: y\r\nLength: 4\r\n\r\n\r\n\r\n"
            b"G@T 2\nLength: 1\n\nzGET 3\n\n200 4 ok\r\nA: b\r\n\r\n"
        )
        whole = [describe(i) for i in feedAll(data)]
        self.assertEqual(len(whole), 4)
        self.assertEqual([describe(i) for i in feedAll(data, chunk=1)], whole)

    def test_bodyInManyChunks(self) -> None:
        body = bytes(range(256)) * 40
        parser = FrameParser()
        self.assertEqual(parser.feed(b"PUT 1\r\nLength: %d\r\n\r\n" % len(body)), [])
        for i in range(0, len(body) - 1, 7):
            self.assertEqual(parser.feed(body[i : min(i + 7, len(body) - 1)]), [])
            self.assertTrue(parser.pending)
        first, second = parser.feed(body[-1:] + b"GET 2\r\n\r\n")
        self.assertEqual(first.body, body)
        self.assertEqual(second.tag, "2")

    def test_notBytes(self) -> None:
        """
        A bytearray or memoryview is accepted like bytes.
        """
        parser = FrameParser()
        self.assertEqual(parser.feed(bytearray(b"GET 1\r\n")), [])
        [frame] = parser.feed(memoryview(b"Length: 1\r\n\r\nx"))
        self.assertEqual(frame.body, b"x")

    def test_newNames(self) -> None:
        """
        Names are canonicalised whether or not they have been seen before.
        """
        [frame] = feedAll(b"PUT 1\r\nzz-new-NAME-qq: 1\r\n\r\n")
        self.assertEqual(frame.headers, {"Zz-New-Name-Qq": "1"})
        [frame] = feedAll(b"PUT 1\r\nZz-New-Name-Qq: 1\r\n\r\n")
        self.assertEqual(frame.headers, {"Zz-New-Name-Qq": "1"})

    def test_mixedFramesInOneChunk(self) -> None:
        """
        LF frames, CRLF frames and frames whose body holds a blank line,
        all in one chunk, whole or byte by byte.
        """
        data = (
            b"GET 1\n\nPUT 2\r\nId: x\r\nLength: 6\r\n\r\n\r\n\r\nab"
            b"GET 3\nId: y\r\n\r\nGET 4 z\r\n\r\nget 5\r\nid: w\n\r\n"
        )
        expected = [
            Frame("GET", "1"),
            Frame("PUT", "2", "", {"Id": "x"}, b"\r\n\r\nab"),
            Frame("GET", "3", "", {"Id": "y"}),
            Frame("GET", "4", "z"),
            Frame("GET", "5", "", {"Id": "w"}),
        ]
        self.assertEqual(feedAll(data), expected)
        self.assertEqual(feedAll(data, chunk=1), expected)

    def test_framesIndependent(self) -> None:
        """
        A frame returned is not changed by what the parser reads later.
        """
        parser = FrameParser()
        [first] = parser.feed(b"PUT 1\r\nId: a\r\n\r\n")
        parser.feed(b"PUT 2\r\nType: b\r\n")
        parser.feed(b"Length: 2\r\n\r\nx")
        self.assertEqual(first, Frame("PUT", "1", "", {"Id": "a"}))

    def test_cachesBounded(self) -> None:
        """
        A peer inventing verbs and header names cannot grow the parser's
        caches without bound.
        """
        for cache in (wire._verbs, wire._canonicalNames):
            self.addCleanup(cache.update, dict(cache))
            self.addCleanup(cache.clear)
        data = b"".join(b"V%d 1\r\nName-%d: x\r\n\r\n" % (i, i) for i in range(5000))
        self.assertEqual(len(feedAll(data)), 5000)
        self.assertLessEqual(len(wire._verbs), wire._CACHE_SIZE)
        self.assertLessEqual(len(wire._canonicalNames), wire._CACHE_SIZE)


class PendingTests(SynchronousTestCase):
    """
    L{FrameParser.pending} says whether a frame is half received.
    """

    def test_idle(self) -> None:
        self.assertFalse(FrameParser().pending)

    def test_states(self) -> None:
        parser = FrameParser()
        steps = [
            (b"G", True),
            (b"ET 1\r", True),
            (b"\n", True),
            (b"Length: 3\r\n", True),
            (b"\r\n", True),
            (b"ab", True),
            (b"c", False),
            (b"\r\n", False),
            (b"\r", True),
            (b"\n", False),
        ]
        for data, pending in steps:
            parser.feed(data)
            self.assertEqual(parser.pending, pending, data)

    def test_skipping(self) -> None:
        """
        A frame being skipped after an error is still pending.
        """
        parser = FrameParser()
        self.assertEqual(parser.feed(b"GET\r\nX: y\r\n"), [])
        self.assertTrue(parser.pending)
        self.assertEqual(parser.feed(b"Length: 3\r\n\r\nab"), [])
        self.assertTrue(parser.pending)
        self.assertEqual(parser.buffered, 0)
        [error] = parser.feed(b"c")
        self.assertEqual(error.code, 500)
        self.assertFalse(parser.pending)


class ErrorTests(SynchronousTestCase):
    """
    Each error has its code, a message an admin understands, the tag of
    the bad frame when it could be read, and is fatal only when framing is
    lost or a limit is broken.
    """

    def assertError(
        self,
        data: bytes,
        code: int,
        message: str,
        tag: str = UNSOLICITED_TAG,
        fatal: bool = False,
        limits: Limits = DEFAULT_LIMITS,
    ) -> FrameError:
        """
        Parse C{data} followed by a valid frame, whole and byte by byte:
        check the error, and that the next frame parses unless the error
        was fatal.
        """
        follow = b"GET next\r\n\r\n"
        for chunk in (0, 1):
            results = feedAll(data + follow, limits, chunk)
            error = results[0]
            self.assertIsInstance(error, FrameError)
            self.assertEqual(
                (error.code, error.message, error.tag, error.fatal),
                (code, message, tag, fatal),
            )
            if fatal:
                self.assertEqual(len(results), 1)
            else:
                self.assertEqual(
                    [describe(i) for i in results[1:]],
                    [describe(Frame("GET", "next"))],
                )
            # The message can be sent back as a reply.
            serialize(error.to_reply())
        return error

    # 500: the command line

    def test_badVerb(self) -> None:
        self.assertError(
            b"G@T 5 x\r\n\r\n",
            500,
            "bad verb 'G@T': 1 to 32 letters, digits or dashes",
            "5",
        )

    def test_verbTooLong(self) -> None:
        self.assertError(
            b"V" * 33 + b" 5\r\n\r\n",
            500,
            f"bad verb {'V' * 33!r}: 1 to 32 letters, digits or dashes",
            "5",
        )

    def test_badTag(self) -> None:
        self.assertError(
            b"GET a/b\r\n\r\n",
            500,
            "bad tag 'a/b': 1 to 32 letters, digits or . _ : -, or *",
        )

    def test_tagTooLong(self) -> None:
        error = self.assertError(
            b"GET " + b"t" * 33 + b"\r\n\r\n",
            500,
            f"bad tag {'t' * 33!r}: 1 to 32 letters, digits or . _ : -, or *",
        )
        self.assertEqual(error.tag, UNSOLICITED_TAG)

    def test_missingTag(self) -> None:
        self.assertError(
            b"GET\r\n\r\n",
            500,
            "missing tag after GET: a command line is VERB TAG [ARGUMENT]",
        )
        self.assertError(
            b"GET \t\n\n",
            500,
            "missing tag after GET: a command line is VERB TAG [ARGUMENT]",
        )

    def test_badCode(self) -> None:
        for code in (b"199", b"600", b"099", b"20", b"2000"):
            self.assertError(
                code + b" 7 ok\r\n\r\n",
                500,
                f"bad reply code {code.decode()}: three digits, 200 to 599",
                "7",
            )

    def test_commandNotUTF8(self) -> None:
        self.assertError(
            b"GET 8 \xff\xfe\r\n\r\n", 500, "command line is not valid UTF-8", "8"
        )
        self.assertError(
            b"\xffET 8 x\r\n\r\n", 500, "command line is not valid UTF-8", "8"
        )

    def test_commandCR(self) -> None:
        self.assertError(
            b"GET 9 a\rb\r\n\r\n", 500, "carriage return inside the command line", "9"
        )

    def test_commandLeadingSpace(self) -> None:
        self.assertError(
            b" GET 9\r\n\r\n", 500, "command line starts with a space or tab", "9"
        )

    def test_errorSkipsHeadersAndBody(self) -> None:
        """
        After a bad command line the frame's headers and body are skipped,
        even a body that looks like frames.
        """
        self.assertError(
            b"G@T 1\r\nX: y\r\nbad line\r\nLength: 11\r\n\r\nGET 2\r\n\r\nxx",
            500,
            "bad verb 'G@T': 1 to 32 letters, digits or dashes",
            "1",
        )

    # 501: headers

    def test_noColon(self) -> None:
        self.assertError(
            b"GET 3\r\nId x\r\n\r\n", 501, "header line without a colon", "3"
        )

    def test_badName(self) -> None:
        message = "bad header name {}: a letter, then letters, digits or dashes"
        self.assertError(b"GET 3\r\nId : x\r\n\r\n", 501, message.format("'Id '"), "3")
        self.assertError(b"GET 3\r\n: x\r\n\r\n", 501, message.format("''"), "3")
        self.assertError(b"GET 3\r\n1d: x\r\n\r\n", 501, message.format("'1d'"), "3")
        self.assertError(
            b"GET 3\r\nA_b: x\r\nLength: 2\r\n\r\nab", 501, message.format("'A_b'"), "3"
        )

    def test_folded(self) -> None:
        self.assertError(
            b"GET 3\r\nId: x\r\n  y\r\n\r\n",
            501,
            "header line starts with a space or tab (folded lines are not allowed)",
            "3",
        )

    def test_headerNotUTF8(self) -> None:
        self.assertError(
            b"GET 3\r\nId: \xc3\r\n\r\n", 501, "header is not valid UTF-8", "3"
        )

    def test_headerCR(self) -> None:
        self.assertError(
            b"GET 3\r\nId: a\rb\r\n\r\n",
            501,
            "carriage return inside a header line",
            "3",
        )

    def test_duplicate(self) -> None:
        self.assertError(
            b"PUT 4\r\nId: 1\r\nType: t\r\nID: 2\r\nLength: 3\r\n\r\nabc",
            501,
            "duplicate header: Id",
            "4",
        )

    def test_firstErrorWins(self) -> None:
        self.assertError(
            b"PUT 4\r\nno colon\r\nId: 1\r\nid: 2\r\n\r\n",
            501,
            "header line without a colon",
            "4",
        )

    def test_badLength(self) -> None:
        """
        A C{Length} that is not a number loses the body's end: fatal.
        """
        for value in (
            b"-1",
            b"+1",
            b"1.0",
            b"",
            b"x",
            b"1 2",
            b"\xd9\xa1",
            b"0x10",
            b"1_0",
        ):
            self.assertError(
                b"PUT 4\r\nLength: " + value + b"\r\n\r\n",
                501,
                "Length must be digits",
                "4",
                fatal=True,
            )

    def test_badLengthWhileSkipping(self) -> None:
        self.assertError(
            b"G@T 4\r\nLength: x\r\n\r\n", 501, "Length must be digits", "4", fatal=True
        )

    def test_unreadableLength(self) -> None:
        """
        A line meant as C{Length} but unreadable is fatal too.
        """
        self.assertError(
            b"PUT 4\r\nLength: 3\xff\r\n\r\n",
            501,
            "header is not valid UTF-8",
            "4",
            True,
        )
        self.assertError(
            b"PUT 4\r\nLength : 3\r\n\r\n",
            501,
            "bad header name 'Length ': a letter, then letters, digits or dashes",
            "4",
            fatal=True,
        )

    def test_duplicateLength(self) -> None:
        self.assertError(
            b"PUT 4\r\nLength: 1\r\nlength: 1\r\n\r\nx",
            501,
            "duplicate header: Length",
            "4",
            fatal=True,
        )

    # 552: limits

    def test_commandLineTooLong(self) -> None:
        self.assertError(
            b"GET 5 " + b"x" * 8200 + b"\r\n\r\n",
            552,
            "line longer than 8192 bytes",
            "5",
            fatal=True,
        )

    def test_commandLineTooLongNoTag(self) -> None:
        self.assertError(
            b"x" * 9000, 552, "line longer than 8192 bytes", UNSOLICITED_TAG, fatal=True
        )

    def test_longestLine(self) -> None:
        """
        C{max_line} counts the line ending: CRLF or LF.
        """
        limits = Limits(max_line=20)
        for ending in (b"\r\n", b"\n"):
            line = b"GET 1 " + b"x" * (20 - 6 - len(ending)) + ending
            self.assertEqual(len(line), 20)
            for chunk in (0, 1, 3):
                [frame] = feedAll(line + ending, limits, chunk)
                self.assertIsInstance(frame, Frame)
                longer = b"GET 1 " + b"x" * (20 - 6 - len(ending) + 1) + ending
                [error] = feedAll(longer + ending, limits, chunk)
                self.assertEqual((error.code, error.fatal), (552, True))

    def test_headerLineTooLong(self) -> None:
        self.assertError(
            b"PUT 6\r\nNote: " + b"x" * 8192 + b"\r\n\r\n",
            552,
            "line longer than 8192 bytes",
            "6",
            fatal=True,
        )

    def test_lineTooLongWhileSkipping(self) -> None:
        self.assertError(
            b"G@T 6\r\nNote: " + b"x" * 8192 + b"\r\n\r\n",
            552,
            "line longer than 8192 bytes",
            "6",
            fatal=True,
        )

    def test_tooManyHeaders(self) -> None:
        limits = Limits(max_headers=3)
        self.assertEqual(
            len(feedAll(b"GET 1\r\nA: 1\r\nB: 2\r\nLength: 0\r\n\r\n", limits)), 1
        )
        self.assertError(
            b"GET 7\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
            552,
            "more than 3 header lines",
            "7",
            fatal=True,
            limits=limits,
        )

    def test_headerBytes(self) -> None:
        """
        C{max_header_bytes} counts the command line and the header lines
        with their endings, not the blank line.
        """
        limits = Limits(max_header_bytes=20)
        frame = b"GET 1\r\nA: 12345678\r\n"
        self.assertEqual(len(frame), 20)
        [ok] = feedAll(frame + b"\r\n", limits)
        self.assertIsInstance(ok, Frame)
        self.assertError(
            b"GET 1\r\nA: 123456789\r\n\r\n",
            552,
            "header section longer than 20 bytes",
            "1",
            fatal=True,
            limits=limits,
        )
        self.assertError(
            b"GET " + b"1" * 20 + b"\r\n\r\n",
            552,
            "header section longer than 20 bytes",
            "1" * 20,
            fatal=True,
            limits=limits,
        )

    def test_bodyTooLarge(self) -> None:
        limits = Limits(max_body=10)
        [ok] = feedAll(b"PUT 1\r\nLength: 10\r\n\r\n" + b"x" * 10, limits)
        self.assertEqual(len(ok.body), 10)
        for value in (b"11", b"9" * 30, b"0" * 40 + b"11"):
            self.assertError(
                b"PUT 8\r\nLength: " + value + b"\r\n\r\n",
                552,
                "Length is larger than 10 bytes",
                "8",
                fatal=True,
                limits=limits,
            )

    def test_bodyTooLargeWhileSkipping(self) -> None:
        self.assertError(
            b"G@T 8\r\nLength: 11\r\n\r\n",
            552,
            "Length is larger than 10 bytes",
            "8",
            fatal=True,
            limits=Limits(max_body=10),
        )

    def test_framesBeforeFatal(self) -> None:
        """
        Frames completed before a fatal error come first; after it the
        parser returns nothing and holds nothing.
        """
        parser = FrameParser()
        result = parser.feed(b"GET 1\r\n\r\nPUT 2\r\nLength: no\r\n\r\nGET 3\r\n\r\n")
        self.assertEqual([describe(i)[0] for i in result], ["frame", "error"])
        self.assertTrue(result[1].fatal)
        self.assertFalse(parser.pending)
        self.assertEqual(parser.feed(b"GET 4\r\n\r\n"), [])

    def test_overlongLineNotBuffered(self) -> None:
        """
        An overlong line is refused once C{max_line} bytes of it are seen,
        however it arrives, and never held beyond that.
        """
        limits = Limits(max_line=100)
        parser = FrameParser(limits)
        for _ in range(99):
            self.assertEqual(parser.feed(b"x"), [])
            self.assertLess(parser.buffered, 100)
        [error] = parser.feed(b"x")
        self.assertEqual((error.code, error.fatal), (552, True))
        self.assertEqual(parser.buffered, 0)

        parser = FrameParser(limits)
        parser.feed(b"GET 1 ")
        [error] = parser.feed(b"y" * 1_000_000)
        self.assertEqual((error.code, error.tag), (552, "1"))
        self.assertEqual(parser.buffered, 0)


class DatagramTests(SynchronousTestCase):
    """
    L{parse_datagram} reads exactly one frame, whose body runs to the end
    of the datagram; every error is non-fatal.
    """

    def assertDatagramError(
        self,
        data: bytes,
        code: int,
        message: str,
        tag: str = UNSOLICITED_TAG,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        error = self.assertRaises(FrameError, parse_datagram, data, limits)
        self.assertEqual(
            (error.code, error.message, error.tag, error.fatal),
            (code, message, tag, False),
        )

    def test_valid(self) -> None:
        self.assertEqual(parse_datagram(b"GET 1 x\r\n\r\n"), Frame("GET", "1", "x"))
        self.assertEqual(
            parse_datagram(b"PUT 1\nId: a\nLength: 3\n\n\r\n\x00"),
            Frame("PUT", "1", "", {"Id": "a"}, b"\r\n\x00"),
        )

    def test_extraBytes(self) -> None:
        for data in (
            b"GET 1\r\n\r\nx",
            b"GET 1\r\n\r\n\r\n",
            b"GET 1\r\n\r\nGET 2\r\n\r\n",
            b"PUT 1\r\nLength: 2\r\n\r\nabc",
        ):
            self.assertDatagramError(
                data, 501, "Length does not match the datagram", "1"
            )

    def test_shortBody(self) -> None:
        self.assertDatagramError(
            b"PUT 1\r\nLength: 4\r\n\r\nabc",
            501,
            "Length does not match the datagram",
            "1",
        )

    def test_empty(self) -> None:
        for data in (b"", b"\r\n", b"\n\n \r\n"):
            self.assertDatagramError(data, 500, "empty datagram: expected a frame")

    def test_noLineEnding(self) -> None:
        self.assertDatagramError(
            b"GET 2 x", 500, "datagram has no line ending after the command line", "2"
        )

    def test_noBlankLine(self) -> None:
        for data in (b"GET 2\r\n", b"GET 2\r\nId: x\r\n", b"GET 2\r\nId: x"):
            self.assertDatagramError(
                data, 501, "datagram has no blank line after the headers", "2"
            )

    def test_frameErrors(self) -> None:
        """
        Stream errors are reported the same, but never fatal.
        """
        self.assertDatagramError(
            b"G@T 3\r\n\r\n",
            500,
            "bad verb 'G@T': 1 to 32 letters, digits or dashes",
            "3",
        )
        self.assertDatagramError(
            b"GET 3\r\nId: 1\r\nId: 1\r\n\r\n", 501, "duplicate header: Id", "3"
        )
        self.assertDatagramError(
            b"GET 3\r\nLength: x\r\n\r\n", 501, "Length must be digits", "3"
        )
        self.assertDatagramError(
            b"GET 3\r\nId x\r\nLength: 2\r\n\r\nab",
            501,
            "header line without a colon",
            "3",
        )
        self.assertDatagramError(
            b"GET 3\r\nId x\r\nLength: 5\r\n\r\nab",
            501,
            "header line without a colon",
            "3",
        )

    def test_limits(self) -> None:
        limits = Limits(max_line=20, max_headers=1, max_body=4)
        self.assertDatagramError(
            b"GET 4 " + b"x" * 30, 552, "line longer than 20 bytes", "4", limits
        )
        self.assertDatagramError(
            b"GET 4\r\nA: 1\r\nB: 2\r\n\r\n",
            552,
            "more than 1 header lines",
            "4",
            limits,
        )
        self.assertDatagramError(
            b"GET 4\r\nLength: 5\r\n\r\n12345",
            552,
            "Length is larger than 4 bytes",
            "4",
            limits,
        )


class SerializeTests(SynchronousTestCase):
    """
    L{serialize} writes the one canonical form and refuses what it cannot
    write.
    """

    def test_request(self) -> None:
        frame = request("put", "1", "a b", {"id": "x", "Type": "message"}, b"\r\n")
        self.assertEqual(
            serialize(frame),
            b"PUT 1 a b\r\nId: x\r\nType: message\r\nLength: 2\r\n\r\n\r\n",
        )

    def test_reply(self) -> None:
        self.assertEqual(serialize(reply(200, "7")), b"200 7 ok\r\n\r\n")
        self.assertEqual(serialize(reply(250, "*", "")), b"250 *\r\n\r\n")

    def test_noLengthWithoutBody(self) -> None:
        frame = request("GET", "1", headers={"Length": "5", "length": "9"})
        self.assertEqual(serialize(frame), b"GET 1\r\n\r\n")

    def test_utf8(self) -> None:
        frame = request("SAY", "1", "h\xe9", {"Note": "\u2028\U0001f600"})
        self.assertEqual(parse_datagram(serialize(frame)), frame)

    def test_badVerb(self) -> None:
        for verb in (
            "",
            "G T",
            "GET\r\n",
            "V" * 33,
            "G\xc9T",
            "100",
            "600",
            "20",
            "\xb2\xb2\xb2",
        ):
            self.assertRaises(ValueError, serialize, Frame(verb, "1"))

    def test_badTag(self) -> None:
        for tag in ("", "a b", "a/b", "t" * 33, "1\r\n", "**"):
            self.assertRaises(ValueError, serialize, Frame("GET", tag))

    def test_badHeaderName(self) -> None:
        for name in ("", "1a", "a b", "a_b", "Id\n", "a:b"):
            self.assertRaises(ValueError, serialize, Frame("GET", "1", "", {name: "x"}))

    def test_sameNameTwice(self) -> None:
        self.assertRaises(
            ValueError, serialize, Frame("GET", "1", "", {"Id": "x", "id": "y"})
        )

    def test_lineBreaks(self) -> None:
        for bad in ("a\rb", "a\nb", "a\r\nb", "\r", "\n"):
            self.assertRaises(ValueError, serialize, Frame("GET", "1", bad))
            self.assertRaises(ValueError, serialize, Frame("GET", "1", "", {"Id": bad}))

    def test_replyText(self) -> None:
        """
        Every default reply text can be written.
        """
        for code in REPLY_TEXT:
            self.assertEqual(
                parse_datagram(serialize(reply(code, "1"))), reply(code, "1")
            )


# Property tests.

_lineCharacters = st.characters(exclude_characters="\r\n", exclude_categories=("Cs",))
_verbs = st.one_of(
    st.text(
        string.ascii_uppercase + string.digits + "-", min_size=1, max_size=32
    ).filter(lambda verb: not verb.isdigit()),
    st.integers(200, 599).map(str),
)
_tags = st.one_of(
    st.text(string.ascii_letters + string.digits + "._:-", min_size=1, max_size=32),
    st.just(UNSOLICITED_TAG),
)
_texts = st.text(_lineCharacters, max_size=40).map(lambda text: text.strip(" \t"))
_names = (
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)
    .map(canonical_name)
    .filter(lambda name: name != "Length")
)
_frames = st.builds(
    Frame,
    _verbs,
    _tags,
    _texts,
    st.dictionaries(_names, _texts, max_size=6),
    st.binary(max_size=200),
)

# Pieces that make random input likely to reach deep into the grammar.
_pieces = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"\r",
        b" ",
        b"\t",
        b":",
        b"GET",
        b"200",
        b"1",
        b"*",
        b"Id",
        b"Length: ",
        b"3",
        b"999",
        b"\x00",
        b"\xff",
        b"\xc3\xa9",
        b"x" * 30,
    ]
)
_garbage = st.one_of(
    st.binary(max_size=300), st.lists(_pieces, max_size=60).map(b"".join)
)
_limits = st.builds(
    Limits,
    st.integers(2, 60),
    st.integers(0, 4),
    st.integers(1, 150),
    st.integers(0, 60),
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def _checkResults(testCase, parser: FrameParser, results: list) -> None:
    """
    What must hold of any parser output, whatever the input.
    """
    limits = parser._limits
    testCase.assertLessEqual(parser.buffered, max(limits.max_line, limits.max_body))
    for i, item in enumerate(results):
        if isinstance(item, FrameError):
            testCase.assertIn(item.code, (500, 501, 552))
            serialize(item.to_reply())
            if item.fatal:
                testCase.assertEqual(i, len(results) - 1)
        else:
            testCase.assertIsInstance(item, Frame)
            testCase.assertLessEqual(len(item.body), limits.max_body)
            testCase.assertLessEqual(len(item.headers), limits.max_headers)
            # Whatever the parser accepts can be written back as it was.
            testCase.assertEqual(
                describe(parse_datagram(serialize(item))), describe(item)
            )


_settings = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class PropertyTests(SynchronousTestCase):
    @_settings
    @given(st.lists(_frames, min_size=1, max_size=4), st.lists(st.integers(0, 5000)))
    def test_roundTrip(self, frames: list[Frame], cuts: list[int]) -> None:
        """
        Any valid frames come back equal from the stream parser, whole or
        split anywhere, and each from L{parse_datagram}.
        """
        data = b"".join(serialize(frame) for frame in frames)
        self.assertEqual(FrameParser().feed(data), frames)
        parser = FrameParser()
        results = []
        for piece in _split(data, cuts):
            results.extend(parser.feed(piece))
        self.assertEqual(results, frames)
        self.assertFalse(parser.pending)
        for frame in frames:
            self.assertEqual(parse_datagram(serialize(frame)), frame)

    @settings(max_examples=30, deadline=None)
    @given(_frames)
    def test_roundTripByteByByte(self, frame: Frame) -> None:
        data = serialize(frame)
        parser = FrameParser()
        results = []
        for i in range(len(data)):
            results.extend(parser.feed(data[i : i + 1]))
            self.assertEqual(parser.pending, i < len(data) - 1)
        self.assertEqual(results, [frame])

    @_settings
    @given(_garbage, st.lists(st.integers(0, 400), max_size=10), _limits)
    def test_garbage(self, data: bytes, cuts: list[int], limits: Limits) -> None:
        """
        Arbitrary bytes, however split, give frames and errors (never an
        exception), the same as when fed whole, within bounded memory.
        """
        self._checkStream(data, cuts, limits)

    @_settings
    @given(
        st.lists(_frames, min_size=1, max_size=3),
        st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.binary(max_size=3)),
            min_size=1,
            max_size=6,
        ),
        st.lists(st.integers(0, 2000), max_size=6),
        st.sampled_from([DEFAULT_LIMITS, SMALL]),
    )
    def test_mutations(self, frames, mutations, cuts, limits: Limits) -> None:
        """
        Valid frames with bytes inserted, deleted or replaced anywhere.
        """
        data = bytearray(b"".join(serialize(frame) for frame in frames))
        for op, where, piece in mutations:
            where %= len(data) + 1
            if op == 0:
                data[where:where] = piece
            elif op == 1:
                del data[where : where + len(piece) + 1]
            else:
                data[where : where + len(piece)] = piece
        self._checkStream(bytes(data), cuts, limits)

    def _checkStream(self, data: bytes, cuts: list[int], limits: Limits) -> None:
        whole = FrameParser(limits)
        expected = whole.feed(data)
        _checkResults(self, whole, expected)
        parser = FrameParser(limits)
        results = []
        for piece in _split(data, cuts):
            out = parser.feed(piece)
            _checkResults(self, parser, out)
            results.extend(out)
        self.assertEqual(
            [describe(i) for i in results], [describe(i) for i in expected]
        )
        self.assertEqual(parser.pending, whole.pending)
        try:
            frame = parse_datagram(data, limits)
        except FrameError as e:
            self.assertFalse(e.fatal)
            self.assertIn(e.code, (500, 501, 552))
        else:
            self.assertEqual(len(expected), 1)
            self.assertEqual(describe(frame), describe(expected[0]))
