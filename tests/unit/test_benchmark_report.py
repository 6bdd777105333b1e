"""synod-benchmark's report prints what etcd's benchmark tool (pkg/report, v3.4.23) prints.

The expected texts were produced by etcd's own pkg/report fed the same
latencies; only the Total and Requests/sec lines, which etcd measures itself,
were set to the run time these tests pass in.
"""

from __future__ import annotations

import pytest

from synod.benchmark.report import (
    compute_stats,
    format_report,
    go_duration,
    go_g,
    percentiles,
    time_series,
)

SEC = 1_000_000_000

# Latencies in ns, in the order they completed.
LATENCIES = [
    4_400_000, 310_000, 650_000, 1_020_000, 455_000, 9_870_000, 512_000, 742_000, 480_250, 2_100_000,
    530_000, 601_000, 815_500, 420_500, 3_050_000, 700_125, 1_250_000, 800_000, 903_000, 1_600_000,
]  # fmt: skip

B = "∎"

EXPECTED = f"""
Summary:
  Total:\t2.0000 secs.
  Slowest:\t0.0099 secs.
  Fastest:\t0.0003 secs.
  Average:\t0.0016 secs.
  Stddev:\t0.0021 secs.
  Requests/sec:\t10.0000

Response time histogram:
  0.0003 [1]\t|{B * 2}
  0.0013 [14]\t|{B * 40}
  0.0022 [2]\t|{B * 5}
  0.0032 [1]\t|{B * 2}
  0.0041 [0]\t|
  0.0051 [1]\t|{B * 2}
  0.0060 [0]\t|
  0.0070 [0]\t|
  0.0080 [0]\t|
  0.0089 [0]\t|
  0.0099 [1]\t|{B * 2}

Latency distribution:
  10% in 0.0005 secs.
  25% in 0.0005 secs.
  50% in 0.0008 secs.
  75% in 0.0016 secs.
  90% in 0.0044 secs.
  95% in 0.0099 secs.
"""

EXPECTED_PRECISE_SAMPLED = f"""
Summary:
  Total:\t2 secs.
  Slowest:\t0.00987 secs.
  Fastest:\t0.00031 secs.
  Average:\t0.0015604687500000002 secs.
  Stddev:\t0.0021465037174856435 secs.
  Requests/sec:\t10

Response time histogram:
  0.00031 [1]\t|{B * 2}
  0.001266 [14]\t|{B * 40}
  0.002222 [2]\t|{B * 5}
  0.003178 [1]\t|{B * 2}
  0.0041340000000000005 [0]\t|
  0.005090000000000001 [1]\t|{B * 2}
  0.006046 [0]\t|
  0.007002 [0]\t|
  0.007958 [0]\t|
  0.008914 [0]\t|
  0.00987 [1]\t|{B * 2}

Latency distribution:
  10% in 0.000455 secs.
  25% in 0.00053 secs.
  50% in 0.0008 secs.
  75% in 0.0016 secs.
  90% in 0.0044 secs.
  95% in 0.00987 secs.

Sample in one second (unix latency throughput):
UNIX-SECOND,MIN-LATENCY-MS,AVG-LATENCY-MS,MAX-LATENCY-MS,AVG-THROUGHPUT
1700000000,310µs,609.182µs,903µs,13
1700000001,1.02ms,1.29ms,1.6ms,3
1700000002,2.1ms,2.1ms,2.1ms,1
1700000003,3.05ms,3.05ms,3.05ms,1
1700000004,4.4ms,4.4ms,4.4ms,1
1700000005,0s,0s,0s,0
1700000006,0s,0s,0s,0
1700000007,0s,0s,0s,0
1700000008,0s,0s,0s,0
1700000009,9.87ms,9.87ms,9.87ms,1

"""


def test_report_layout_as_etcd():
    assert format_report(compute_stats(LATENCIES, 2 * SEC)) == EXPECTED


def test_precise_report_with_per_second_samples_as_etcd():
    # Each request started (its latency in ns) microseconds after a whole second.
    series = time_series((1_700_000_000 * SEC + lat * 1000, lat) for lat in LATENCIES)
    text = format_report(compute_stats(LATENCIES, 2 * SEC), precise=True, series=series)
    assert text == EXPECTED_PRECISE_SAMPLED


def test_equal_latencies_fill_the_first_bucket_and_few_percentiles():
    text = format_report(compute_stats([1000, 1000, 1000], SEC))
    lines = text.splitlines()
    histogram = lines[lines.index("Response time histogram:") + 1 :][:11]
    assert histogram[0] == f"  0.0000 [3]\t|{B * 40}"
    assert histogram[1:] == ["  0.0000 [0]\t|"] * 10
    # With 3 samples only the 10th and 25th percentiles get one (as etcd: no sample is shared).
    assert lines[-2:] == ["  10% in 0.0000 secs.", "  25% in 0.0000 secs."]


def test_percentiles_pick_samples_as_etcd():
    lats = [i / 1000 for i in range(1, 1001)]
    assert percentiles(lats) == [0.101, 0.251, 0.501, 0.751, 0.901, 0.951, 0.991, 1.0]
    assert percentiles([0.1] * 5) == [0.1, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0]
    text = format_report(compute_stats([(i + 1) * 1000 for i in range(1000)], SEC))
    assert "\n  99.9% in 0.0010 secs.\n" in text


def test_errors_only_print_the_error_distribution():
    text = format_report(compute_stats([], SEC, {"etcdserver: key is not provided": 3}))
    assert text == "\nError distribution:\n  [3]\tetcdserver: key is not provided\n"


def test_errors_follow_the_latencies():
    text = format_report(compute_stats([1000, 2000], SEC, {"rpc error: code = Unavailable desc = x": 1}))
    assert text.endswith("\nError distribution:\n  [1]\trpc error: code = Unavailable desc = x\n")
    assert text.startswith("\nSummary:\n")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e6, "1e+06"),
        (123456.7, "123456.7"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001234, "1.234e-05"),
        (99.9, "99.9"),
        (10.0, "10"),
        (1 / 3, "0.3333333333333333"),
        (2e-9, "2e-09"),
        (0.0, "0"),
    ],
)
def test_floats_as_go_g(value, text):
    assert go_g(value) == text


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (999, "999ns"),
        (1000, "1µs"),
        (238_704, "238.704µs"),
        (4_223_244, "4.223244ms"),
        (SEC, "1s"),
        (61 * SEC + 500_000_000, "1m1.5s"),
        (3 * 3600 * SEC + 5, "3h0m0.000000005s"),
        (90 * 60 * SEC, "1h30m0s"),
    ],
)
def test_durations_as_go(ns, text):
    assert go_duration(ns) == text
