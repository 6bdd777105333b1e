"""Latency statistics and their text, laid out as etcd's benchmark tool prints them.

Pure functions only: latencies go in as integer nanoseconds (as Go's
``time.Duration``), a string comes out. Numbers are written as Go's ``fmt``
writes them (``%4.4f`` by default, ``%g`` with ``--precise``), so that the
output can be read by the same scripts that read etcd's.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

PERCENTILES: tuple[float, ...] = (10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9)
BAR_CHAR = "∎"
BAR_WIDTH = 40
BUCKETS = 10
NS_PER_SEC = 1_000_000_000


def seconds(ns: int) -> float:
    """A duration in seconds, rounded as Go's ``Duration.Seconds`` rounds it."""
    whole, frac = divmod(ns, NS_PER_SEC)
    return float(whole) + frac / 1e9


def go_g(x: float) -> str:
    """``x`` as Go's ``%g``/``%v`` writes a float64: shortest digits, exponent below 1e-4 or from 1e6."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0:
        return sign + "0"
    _, digit_tuple, exponent = Decimal(repr(abs(x))).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    point = len(digit_tuple) + exponent  # digits before the decimal point
    exp10 = point - 1
    if exp10 < -4 or exp10 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def format_number(x: float, precise: bool) -> str:
    """A float as the report's precision verb writes it: Go's ``%4.4f``, or ``%g`` if precise."""
    if precise:
        return go_g(x)
    if math.isnan(x):
        return " NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return f"{x:4.4f}"


def _frac_digits(value: int, places: int) -> str:
    whole, frac = divmod(value, 10**places)
    text = f"{frac:0{places}d}".rstrip("0")
    return f"{whole}.{text}" if text else str(whole)


def go_duration(ns: int) -> str:
    """``ns`` as Go's ``Duration.String`` writes it: ``0s``, ``850ns``, ``1.5µs``, ``2.25ms``, ``1m3.5s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_frac_digits(ns, 3)}µs"
    if ns < NS_PER_SEC:
        return f"{sign}{_frac_digits(ns, 6)}ms"
    minutes, sec_ns = divmod(ns, 60 * NS_PER_SEC)
    hours, minutes = divmod(minutes, 60)
    text = f"{_frac_digits(sec_ns, 9)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


@dataclass(frozen=True)
class SecondPoint:
    """Requests started within one wall-clock second (``--sample``)."""

    unix_second: int
    min_ns: int
    avg_ns: int
    max_ns: int
    count: int


def time_series(samples: Iterable[tuple[int, int]]) -> list[SecondPoint]:
    """Per-second points from (start unix ns, latency ns) pairs; seconds without any are zeros."""
    acc: dict[int, list[int]] = {}  # second -> [min, max, total, count]
    for start_ns, lat in samples:
        second = start_ns // NS_PER_SEC
        point = acc.get(second)
        if point is None:
            acc[second] = [lat, lat, lat, 1]
            continue
        if lat != 0:  # as etcd: a zero latency never lowers the minimum
            point[0] = min(point[0], lat)
        point[1] = max(point[1], lat)
        point[2] += lat
        point[3] += 1
    if not acc:
        return []
    points = []
    for second in range(min(acc), max(acc) + 1):
        lo, hi, total, count = acc.get(second, [0, 0, 0, 0])
        points.append(SecondPoint(second, lo, total // count if count else 0, hi, count))
    return points


def format_time_series(points: Sequence[SecondPoint]) -> str:
    """The ``--sample`` block: a CSV table of per-second latencies and throughput."""
    rows = ["UNIX-SECOND,MIN-LATENCY-MS,AVG-LATENCY-MS,MAX-LATENCY-MS,AVG-THROUGHPUT"]
    rows += [
        f"{p.unix_second},{go_duration(p.min_ns)},{go_duration(p.avg_ns)},{go_duration(p.max_ns)},{p.count}"
        for p in points
    ]
    return "\nSample in one second (unix latency throughput):\n" + "".join(r + "\n" for r in rows)


@dataclass(frozen=True)
class Stats:
    """What a run measured: successful latencies (seconds, sorted), wall time, and errors by message."""

    total: float
    lats: list[float]
    fastest: float
    slowest: float
    average: float
    stddev: float
    rps: float
    errors: dict[str, int] = field(default_factory=dict)


def compute_stats(
    latencies_ns: Sequence[int], total_ns: int, errors: Mapping[str, int] | None = None
) -> Stats:
    """Summarise latencies (in the order they completed) over a run of ``total_ns`` wall time."""
    lats = [seconds(ns) for ns in latencies_ns]
    total = seconds(total_ns)
    n = len(lats)
    average = sum(lats) / n if n else math.nan
    stddev = math.sqrt(sum((x - average) ** 2 for x in lats) / n) if n else math.nan
    lats.sort()
    return Stats(
        total=total,
        lats=lats,
        fastest=lats[0] if n else 0.0,
        slowest=lats[-1] if n else 0.0,
        average=average,
        stddev=stddev,
        rps=n / total if total > 0 else (math.inf if n else math.nan),
        errors=dict(errors or {}),
    )


def percentiles(sorted_lats: Sequence[float]) -> list[float]:
    """The latency at each of ``PERCENTILES``, as etcd picks it; 0.0 where too few samples reach it.

    Each percentile takes the first sample whose rank (``i * 100 / n``) reaches it,
    and no two percentiles share a sample.
    """
    out = [0.0] * len(PERCENTILES)
    n = len(sorted_lats)
    j = 0
    i = 0
    while i < n and j < len(PERCENTILES):
        if i * 100.0 / n >= PERCENTILES[j]:
            out[j] = sorted_lats[i]
            j += 1
        i += 1
    return out


def histogram(stats: Stats) -> tuple[list[float], list[int]]:
    """Eleven bucket upper bounds from fastest to slowest, and how many latencies fall in each."""
    width = (stats.slowest - stats.fastest) / BUCKETS
    bounds = [stats.fastest + width * i for i in range(BUCKETS)] + [stats.slowest]
    counts = []
    below = 0
    for bound in bounds:
        upto = max(below, bisect_right(stats.lats, bound))
        counts.append(upto - below)
        below = upto
    return bounds, counts


def format_report(stats: Stats, precise: bool = False, series: Sequence[SecondPoint] | None = None) -> str:
    """The whole report as etcd prints it: Summary, histogram, latency distribution, then errors."""
    out: list[str] = []

    def secs(x: float) -> str:
        return format_number(x, precise) + " secs"

    if stats.lats:
        out.append("\nSummary:\n")
        out.append(f"  Total:\t{secs(stats.total)}.\n")
        out.append(f"  Slowest:\t{secs(stats.slowest)}.\n")
        out.append(f"  Fastest:\t{secs(stats.fastest)}.\n")
        out.append(f"  Average:\t{secs(stats.average)}.\n")
        out.append(f"  Stddev:\t{secs(stats.stddev)}.\n")
        out.append(f"  Requests/sec:\t{format_number(stats.rps, precise)}\n")

        out.append("\nResponse time histogram:\n")
        bounds, counts = histogram(stats)
        tallest = max(counts)
        for bound, count in zip(bounds, counts, strict=True):
            bar = BAR_CHAR * (count * BAR_WIDTH // tallest if tallest else 0)
            out.append(f"  {format_number(bound, precise)} [{count}]\t|{bar}\n")

        out.append("\nLatency distribution:\n")
        for pctl, lat in zip(PERCENTILES, percentiles(stats.lats), strict=True):
            if lat > 0:
                out.append(f"  {go_g(pctl)}% in {secs(lat)}.\n")
        if series is not None:
            out.append(format_time_series(series) + "\n")
    if stats.errors:
        out.append("\nError distribution:\n")
        for message, count in sorted(stats.errors.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(f"  [{count}]\t{message}\n")
    return "".join(out)
