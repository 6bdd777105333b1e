"""``synod-benchmark put`` and ``range`` against a real etcd: etcd's report layout, the load really sent."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc

TOTAL = 200
SUMMARY_LINES = [
    r"  Total:\t\d+\.\d{4} secs\.",
    r"  Slowest:\t\d+\.\d{4} secs\.",
    r"  Fastest:\t\d+\.\d{4} secs\.",
    r"  Average:\t\d+\.\d{4} secs\.",
    r"  Stddev:\t\d+\.\d{4} secs\.",
    r"  Requests/sec:\t\d+\.\d{4}",
]
BUCKET_LINE = re.compile(r"  (\d+\.\d{4}) \[(\d+)\]\t\|(∎*)")
PERCENTILE_LINE = re.compile(r"  (10|25|50|75|90|95|99|99\.9)% in \d+\.\d{4} secs\.")


def run_benchmark(endpoint: str, *args: str) -> str:
    script = Path(sys.executable).with_name("synod-benchmark")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "synod.benchmark.main"]
    common = ["--endpoints", endpoint, "--conns", "2", "--clients", "4", "--procs", "2"]
    done = subprocess.run([*cmd, *common, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def check_report(text: str, total: int) -> None:
    """The report block as etcd prints it: summary, 11 histogram buckets with bars, percentiles."""
    lines = text.split("\n")
    start = lines.index("Summary:")
    assert lines[start - 1] == ""
    for pattern, line in zip(SUMMARY_LINES, lines[start + 1 : start + 7], strict=True):
        assert re.fullmatch(pattern, line), line
    assert lines[start + 7 : start + 9] == ["", "Response time histogram:"]
    buckets = [BUCKET_LINE.fullmatch(line) for line in lines[start + 9 : start + 20]]
    assert all(buckets), lines[start + 9 : start + 20]
    counts = [int(m.group(2)) for m in buckets if m]
    bounds = [float(m.group(1)) for m in buckets if m]
    assert sum(counts) == total
    assert bounds == sorted(bounds)
    assert max(len(m.group(3)) for m in buckets if m) == 40
    assert lines[start + 20 : start + 22] == ["", "Latency distribution:"]
    pctls = [PERCENTILE_LINE.fullmatch(line) for line in lines[start + 22 : start + 29]]
    assert all(pctls), lines[start + 22 :]
    assert [m.group(1) for m in pctls if m] == ["10", "25", "50", "75", "90", "95", "99"]
    assert "Error distribution:" not in text


def count_keys(endpoint: str) -> tuple[int, int]:
    """(number of keys, current revision) via a count-only Range over the whole key space."""
    with grpc.insecure_channel(endpoint) as ch:
        resp = rpc_pb2_grpc.KVStub(ch).Range(pb.RangeRequest(key=b"\0", range_end=b"\0", count_only=True))
    return resp.count, resp.header.revision


def test_put_writes_the_keys_etcds_tool_writes(etcd):
    args = ["put", "--total", str(TOTAL), "--key-space-size", "100", "--sequential-keys", "--val-size", "16"]
    out = run_benchmark(etcd.endpoint, *args)
    assert out.endswith("\n\n")  # etcd's tool Println()s the report, which ends with a newline
    check_report(out, TOTAL)
    count, revision = count_keys(etcd.endpoint)
    assert revision == 1 + TOTAL  # every put was applied once
    # Keys 100..199 wrap to 0..99 in etcd's reused key buffer; those whose varint is one byte long keep
    # the second byte of key 99: 64 new keys. etcd's own tool writes the same 164 keys.
    assert count == 164


def test_range_serializable(etcd):
    with grpc.insecure_channel(etcd.endpoint) as ch:
        rpc_pb2_grpc.KVStub(ch).Put(pb.PutRequest(key=b"foo", value=b"bar"))
    out = run_benchmark(etcd.endpoint, "range", "foo", "--consistency", "s", "--total", str(TOTAL))
    assert out.startswith("bench with serializable range\n\nSummary:\n")
    check_report(out, TOTAL)
    assert count_keys(etcd.endpoint) == (1, 2)  # reads only


def test_range_errors_are_counted_as_etcd_reports_them(etcd):
    out = run_benchmark(etcd.endpoint, "range", "", "--total", "20")
    errors = "\nError distribution:\n  [20]\tetcdserver: key is not provided\n"
    assert out == "bench with linearizable range\n" + errors
