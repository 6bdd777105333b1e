"""Failover time: from SIGKILL of the leader to the first write that succeeds, synod and etcd.

Starts a 3-member cluster of each (default flags: heartbeat 100 ms, election
timeout 1 s), then repeatedly finds the leader, kills it with SIGKILL and times
how long a client that keeps putting (through the surviving members, 200 ms
per attempt) takes to get its first success; the killed member is restarted
before the next round. Prints the median and maximum per server as Markdown.

    .venv/bin/python benchmarks/failover.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.servers import ClusterProcesses, ServerProcess, wait_until


def leader(cluster: ClusterProcesses) -> ServerProcess:
    def find() -> ServerProcess | None:
        by_id = {}
        leaders = set()
        for m in cluster.members:
            try:
                with grpc.insecure_channel(m.endpoint) as ch:
                    st = rpc_pb2_grpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=1)
            except grpc.RpcError:
                return None
            by_id[st.header.member_id] = m
            leaders.add(st.leader)
        if len(leaders) == 1 and (lead := leaders.pop()) in by_id:
            return by_id[lead]
        return None

    found: ServerProcess = wait_until(find, 30, "a leader every member agrees on", interval=0.05)
    return found


def first_write_after(endpoints: list[str], started: float) -> float:
    stubs = [rpc_pb2_grpc.KVStub(grpc.insecure_channel(e)) for e in endpoints]
    i = 0
    while True:
        try:
            stubs[i % len(stubs)].Put(pb.PutRequest(key=b"failover", value=b"x"), timeout=0.2)
            return time.monotonic() - started
        except grpc.RpcError:
            i += 1


def measure(kind: str, root: Path, rounds: int) -> list[float]:
    cluster = ClusterProcesses(kind, root, extra_args=["--frontend-procs", "0"] if kind == "synod" else [])
    cluster.start()
    times = []
    try:
        for _ in range(rounds):
            victim = leader(cluster)
            others = [m.endpoint for m in cluster.members if m is not victim]
            first_write_after(others, time.monotonic())  # the cluster writes before the kill
            started = time.monotonic()
            victim.kill()
            times.append(first_write_after(others, started))
            victim.start()
            leader(cluster)
    finally:
        cluster.kill()
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("etcd", "synod"):
            times = measure(kind, Path(tmp) / kind, args.rounds)
            print(f"{kind}: {[round(t, 3) for t in times]}", file=sys.stderr)
            rows.append((kind, statistics.median(times), max(times)))
    print(f"\n{time.strftime('%Y-%m-%d')}, {args.rounds} leader kills each, election timeout 1 s\n")
    print("| server | median, leader SIGKILL to first write | max |")
    print("|---|---|---|")
    for kind, med, worst in rows:
        print(f"| {kind} | {med:.2f} s | {worst:.2f} s |")


if __name__ == "__main__":
    main()
