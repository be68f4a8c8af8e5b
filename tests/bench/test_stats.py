"""
The harness's arithmetic and its table (L{bench.stats}): pure functions,
tested without a server; the harness itself runs in CI as
C{python -m bench --quick}.
"""

from __future__ import annotations

import pytest

from bench.loadgen import MarkCounter, frame_maker
from bench.stats import Row, format_table, number, percent, percentile, share
from fmtp.wire import FrameParser


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2
    assert percentile([7.0], 0.99) == 7


def test_percentile_of_nothing() -> None:
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_row_median_and_spread() -> None:
    row = Row("burst", "msgs/s", [300.0, 100.0, 200.0])
    assert row.median == 200
    assert row.spread() == (100, 300)
    assert Row("empty", "msgs/s").median is None


def test_share_of_a_rate_and_of_a_latency() -> None:
    relay = Row("relay", "msgs/s", [1000.0])
    assert share(Row("fmtp", "msgs/s", [250.0]), relay) == 0.25
    relay_latency = Row("relay p50", "ms", [0.5], higher_is_better=False)
    fmtp_latency = Row("p50", "ms", [2.0], higher_is_better=False)
    assert share(fmtp_latency, relay_latency) == 0.25
    assert share(Row("fmtp", "msgs/s"), relay) is None
    assert share(Row("fmtp", "msgs/s", [1.0]), None) is None


def test_number_and_percent() -> None:
    assert number(21543.2) == "21543"
    assert number(48.26) == "48.3"
    assert number(0.423) == "0.42"
    assert percent(0.25) == "25%"
    assert percent(0.0123) == "1.2%"


def test_table() -> None:
    rows = [
        Row("(a) burst", "msgs/s", [100.0, 300.0, 200.0], relay="(g) relay"),
        Row("(d) token", "/s", note="n/a"),
        Row("(g) relay", "msgs/s", [1000.0]),
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == [
        "workload",
        "median",
        "min-max",
        "unit",
        "runs",
        "of",
        "relay",
    ]
    assert lines[1].split() == ["(a)", "burst", "200", "100-300", "msgs/s", "3", "20%"]
    assert lines[2].split() == ["(d)", "token", "n/a", "/s", "0"]
    assert lines[3].split() == ["(g)", "relay", "1000", "1000-1000", "msgs/s", "1"]
    # Columns line up: every median ends in the same column.
    assert len({len(line.split("  msgs/s")[0]) for line in (lines[1], lines[3])}) == 1


def test_mark_counter_across_chunks() -> None:
    counter = MarkCounter(b"<mark>")
    stream = b"xx<mark>yy<mark><mark>z"
    for i in range(len(stream)):
        counter.feed(stream[i : i + 1])
    assert counter.count == 3


def test_frame_maker_splices_the_tag() -> None:
    make = frame_maker("SEND", {"To": "b@localhost"}, b"hello\r\n")
    parsed = FrameParser().feed(make("s1") + make("s22"))
    assert [(f.verb, f.tag, f.headers, f.body) for f in parsed] == [
        ("SEND", "s1", {"To": "b@localhost"}, b"hello\r\n"),
        ("SEND", "s22", {"To": "b@localhost"}, b"hello\r\n"),
    ]
