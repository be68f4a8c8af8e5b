"""
The harness's arithmetic: figures from several runs summed up as a median
with its spread, set beside the bare relay's, and laid out as one table.

Pure functions of numbers and strings, so that they are tested without a
server (tests/bench/test_stats.py).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


def percentile(values: list[float], fraction: float) -> float:
    """
    The C{fraction} (0 to 1) percentile of C{values}, nearest rank: the
    smallest value at least C{fraction} of the values are not above.
    """
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[min(len(ordered), int(rank)) - 1]


@dataclass
class Row:
    """
    One line of the table: a workload's figure in each run.

    @ivar higher_is_better: true for rates, false for latencies and sizes;
        it decides how the figure compares with the relay's.
    @ivar relay: the name of the relay row this one is a share of, if any.
    @ivar note: shown instead of figures when there are none (C{n/a}).
    """

    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    higher_is_better: bool = True
    relay: str | None = None
    note: str = ""
    detail: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def spread(self) -> tuple[float, float] | None:
        return (min(self.values), max(self.values)) if self.values else None


def share(row: Row, ceiling: Row | None) -> float | None:
    """
    How near C{row} comes to the relay's C{ceiling}, as a fraction: the
    ratio of the medians for a rate, the inverse ratio for a latency (the
    relay's time over fmtp's), so that 1.0 is always the relay itself.
    """
    if ceiling is None or row.median is None or ceiling.median is None:
        return None
    if row.higher_is_better:
        return row.median / ceiling.median if ceiling.median else None
    return ceiling.median / row.median if row.median else None


def number(value: float) -> str:
    """
    A figure with as many digits as it deserves: 21500, 48.3, 0.42.
    """
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def percent(fraction: float) -> str:
    if fraction >= 0.1:
        return f"{fraction * 100:.0f}%"
    return f"{fraction * 100:.2g}%"


def format_table(rows: list[Row]) -> str:
    """
    The rows as a fixed-width table: name, median, min-max, unit, runs,
    share of the relay's figure, and any detail.
    """
    by_name = {row.name: row for row in rows}
    header = ("workload", "median", "min-max", "unit", "runs", "of relay", "")
    lines = [header]
    for row in rows:
        if row.median is None:
            lines.append((row.name, row.note or "n/a", "", row.unit, "0", "", ""))
            continue
        low, high = row.spread()
        fraction = share(row, by_name.get(row.relay)) if row.relay else None
        lines.append(
            (
                row.name,
                number(row.median),
                f"{number(low)}-{number(high)}",
                row.unit,
                str(len(row.values)),
                percent(fraction) if fraction is not None else "",
                row.detail,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [
            cell.ljust(width) if i in (0, 3, 6) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
