"""``synod-benchmark watch``, ``watch-latency`` and ``lease-keepalive`` against a real etcd.

Each runs with small totals (2 worker processes, 2 connections, 4 or 10 clients)
and must print etcd's report layout with one latency per watch created, per
event received and per keepalive; the server must have seen exactly the load.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.integration.test_benchmark_cli import check_report, count_keys, run_benchmark

CREATED = "Watch creation summary:\n"
RECEIVED = "Watch events received summary:\n"


def assert_requests_per_second(report: str, requests: int) -> None:
    """Requests/sec is ``requests`` over Total, both rounded to 4 decimals."""
    total = float(re.search(r"  Total:\t(\d+\.\d+) secs\.", report).group(1))
    rps = float(re.search(r"  Requests/sec:\t(\d+\.\d+)", report).group(1))
    assert rps * (total - 5e-5) - 1e-3 <= requests <= rps * (total + 5e-5) + 1e-3


def test_watch_reports_creations_then_events(etcd):
    # 4 streams x 25 watches over 2 keys (50 watches each); 10 puts alternate the keys: 5 x 50 x 2 events.
    args = ["watch", "--streams", "4", "--watch-per-stream", "25", "--watched-key-total", "2"]
    args += ["--key-space-size", "2", "--sequential-keys", "--key-size", "8", "--put-total", "10"]
    out = run_benchmark(etcd.endpoint, *args)
    assert out.startswith(CREATED + "\nSummary:\n")
    created, received = out[len(CREATED) :].split(RECEIVED)
    check_report(created, 100)
    check_report(received, 500)
    assert_requests_per_second(received, 500)
    assert count_keys(etcd.endpoint) == (2, 11)  # the two watched keys, put 10 times in all


def test_watch_latency_counts_every_watcher_of_every_put(etcd):
    args = ["watch-latency", "--total", "20", "--put-rate", "1000", "--key-size", "8", "--val-size", "16"]
    out = run_benchmark(etcd.endpoint, "--clients", "10", *args)  # 10 watchers over 2 connections
    assert out.startswith("\nSummary:\n")
    check_report(out, 200)
    assert_requests_per_second(out, 200)  # Requests/sec: events per second
    assert count_keys(etcd.endpoint) == (1, 21)


def test_lease_keepalive_grants_one_lease_per_client(etcd):
    out = run_benchmark(etcd.endpoint, "lease-keepalive", "--total", "300")
    assert out.startswith("\nSummary:\n")
    check_report(out, 300)
    with grpc.insecure_channel(etcd.endpoint) as ch:
        lease = rpc_pb2_grpc.LeaseStub(ch)
        ids = [status.ID for status in lease.LeaseLeases(pb.LeaseLeasesRequest()).leases]
        ttls = [lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=i)).grantedTTL for i in ids]
    assert ttls == [100] * 4  # --clients 4


def test_unreachable_endpoint_fails_cleanly():
    script = Path(sys.executable).with_name("synod-benchmark")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "synod.benchmark.main"]
    args = ["--endpoints", "127.0.0.1:1", "--dial-timeout", "200ms", "--procs", "2", "--clients", "2"]
    done = subprocess.run([*cmd, *args, "watch-latency"], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "dial error: no connection to 127.0.0.1:1\n"
