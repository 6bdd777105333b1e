"""Go durations (shared by synodctl and the server flags): parsed and printed as Go does."""

from __future__ import annotations

import pytest

from synod.duration import (
    HOUR,
    MILLISECOND,
    MINUTE,
    SECOND,
    DurationError,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("2s", 2 * SECOND),
        ("500ms", 500 * MILLISECOND),
        ("1m", MINUTE),
        ("1h2m3.5s", HOUR + 2 * MINUTE + 3 * SECOND + 500 * MILLISECOND),
        ("1.5s", 1500 * MILLISECOND),
        (".5s", 500 * MILLISECOND),
        ("5.s", 5 * SECOND),
        ("-1s", -SECOND),
        ("+3ms", 3 * MILLISECOND),
        ("10us", 10_000),
        ("10\u00b5s", 10_000),
        ("10\u03bcs", 10_000),
        ("7ns", 7),
        ("1s500ms", 1500 * MILLISECOND),
        ("0.000000001s", 1),
        ("2562047h47m16.854775807s", (1 << 63) - 1),
    ],
)
def test_parse(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("abc", 'time: invalid duration "abc"'),
        ("1", 'time: missing unit in duration "1"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("1e3s", 'time: unknown unit "e" in duration "1e3s"'),
        (".s", 'time: invalid duration ".s"'),
        ("-", 'time: invalid duration "-"'),
        ("99999999999h", 'time: invalid duration "99999999999h"'),
        ("1s\u00e9", 'time: unknown unit "s\\xc3\\xa9" in duration "1s\\xc3\\xa9"'),
    ],
)
def test_parse_errors_are_gos(text: str, message: str) -> None:
    with pytest.raises(DurationError) as e:
        parse_duration(text)
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (2 * SECOND, "2s"),
        (6 * SECOND, "6s"),
        (500 * MILLISECOND, "500ms"),
        (1500 * MILLISECOND, "1.5s"),
        (90 * SECOND, "1m30s"),
        (HOUR, "1h0m0s"),
        (1500, "1.5\u00b5s"),
        (7, "7ns"),
        (-SECOND, "-1s"),
    ],
)
def test_format(ns: int, text: str) -> None:
    assert format_duration(ns) == text
