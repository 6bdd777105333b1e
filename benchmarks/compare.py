"""synod against a real etcd, measured with the same load generator in one run.

Starts a fresh etcd 3.4 and a fresh synod on 127.0.0.1 (temporary data
directories), runs each benchmark against both, alternating, for several
rounds, and prints the median requests/s of each and the ratio synod/etcd as
a Markdown table. The default load generator is etcd's own Go tool
(../shared/tools/etcd-benchmark); ``--tool synod-benchmark`` uses ours.

    .venv/bin/python benchmarks/compare.py [--rounds 3] [--frontend-procs -1] [--only put,range-s]
    .venv/bin/python benchmarks/compare.py --only watch   # every watch-latency run, and lease-keepalive

For watch-latency, "req/s" is events delivered per second (the tool reports one
result per event per watcher) and the latency is from the put's acknowledgement
to each watcher's event.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.servers import ClusterProcesses, ServerProcess

ROOT = Path(__file__).resolve().parent.parent
ETCD_BENCHMARK = ROOT.parent / "shared" / "tools" / "etcd-benchmark"
COMMON = ["--conns=100", "--clients=1000"]


def _watch_latency(conns: int, watchers: int, total: int) -> list[str]:
    flags = [f"--conns={conns}", f"--clients={watchers}"]
    return [*flags, "watch-latency", "--put-rate=100", f"--total={total}"]


# name -> the tool's arguments (global flags first)
BENCHMARKS: dict[str, list[str]] = {
    "put": [*COMMON, "put", "--key-size=8", "--sequential-keys", "--total=100000", "--val-size=256"],
    "range-s": [*COMMON, "range", "foo", "--consistency=s", "--total=100000"],
    "range-l": [*COMMON, "range", "foo", "--consistency=l", "--total=100000"],
    # watch-latency: W watchers (--clients) over C connections; the Go client puts all the
    # watchers of one connection on one stream.
    "watch-1": _watch_latency(1, 1, 1000),
    "watch-100": _watch_latency(100, 100, 1000),
    "watch-100-1conn": _watch_latency(1, 100, 1000),
    "watch-1000": _watch_latency(100, 1000, 500),
    "watch-1000-1conn": _watch_latency(1, 1000, 200),
    "lease-keepalive": [*COMMON, "lease-keepalive", "--total=100000"],
}
TABLE_HEAD = (
    "| benchmark | etcd req/s | synod req/s | synod/etcd "
    "| p99 ms, etcd / synod | server CPU s, etcd / synod |"
)
GROUPS = {
    "kv": ["put", "range-s", "range-l"],
    "watch": ["watch-1", "watch-100", "watch-100-1conn", "watch-1000", "watch-1000-1conn", "lease-keepalive"],
}


def tool_command(tool: str) -> list[str]:
    if tool == "etcd-benchmark":
        return [str(ETCD_BENCHMARK)]
    return [str(ROOT / ".venv" / "bin" / "synod-benchmark")]


def run_benchmark(tool: list[str], endpoint: str, args: list[str]) -> tuple[float, float, str]:
    """Requests (or events) per second and the 99th percentile latency in seconds."""
    out = subprocess.run(
        [*tool, f"--endpoints={endpoint}", *args], capture_output=True, text=True, check=True
    ).stdout
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    p99 = re.search(r"\s99% in ([0-9.]+) secs", out)
    if rate is None or p99 is None:
        raise RuntimeError(f"no Requests/sec or 99% latency in the output:\n{out}")
    return float(rate.group(1)), float(p99.group(1)), out


def rotating_rounds(names: list[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, name) for every name in every round; the order turns each round, so that no
    server always runs right after the same one (the machine's state drifts)."""
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            yield r, name


def put_rates(
    tool: list[str], flags: list[str], servers: dict[str, Any], rounds: int, extra: dict[str, list[str]]
) -> dict[str, list[float]]:
    """Puts/s of each (started) server in every round; ``extra``: flags for some servers only."""
    rates: dict[str, list[float]] = {name: [] for name in servers}
    for r, name in rotating_rounds(list(servers), rounds):
        rate, p99, _ = run_benchmark(tool, servers[name].endpoint, [*extra.get(name, []), *flags])
        rates[name].append(rate)
        print(f"round {r + 1} {name:20s} {rate:10.1f} puts/s  p99 {p99 * 1e3:7.2f} ms", file=sys.stderr)
    return rates


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children that have been reaped, plus live children."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class Servers:
    """The members benchmarked together: every endpoint goes to the tool, CPU is summed."""

    def __init__(self, members: list[ServerProcess]) -> None:
        self.members = members

    @property
    def endpoint(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(m.proc.pid) for m in self.members if m.proc is not None)

    def kill(self) -> None:
        for m in self.members:
            m.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--frontend-procs", default="-1")
    choices = ", ".join([*GROUPS, *BENCHMARKS])
    p.add_argument("--only", default="kv", help=f"benchmarks or groups, comma-separated: {choices}")
    p.add_argument("--tool", default="etcd-benchmark", choices=["etcd-benchmark", "synod-benchmark"])
    p.add_argument(
        "--members", type=int, default=1, help="cluster size (the tool gets every member's endpoint)"
    )
    args = p.parse_args()
    names = [n for item in args.only.split(",") for n in GROUPS.get(item, [item])]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmarks: {unknown}")
    tool = tool_command(args.tool)
    with tempfile.TemporaryDirectory() as tmp:
        synod_args = ["--frontend-procs", args.frontend_procs, "--log-level", "warn"]
        etcd: Servers
        synod: Servers
        if args.members == 1:
            etcd = Servers([ServerProcess("etcd", Path(tmp) / "etcd").start()])
            synod = Servers([ServerProcess("synod", Path(tmp) / "synod", extra_args=synod_args).start()])
        else:
            etcd = Servers(ClusterProcesses("etcd", Path(tmp), size=args.members).start().members)
            synod = Servers(
                ClusterProcesses("synod", Path(tmp), size=args.members, extra_args=synod_args).start().members
            )
        results: dict[str, dict[str, list[float]]] = {n: {"etcd": [], "synod": []} for n in names}
        p99s: dict[str, dict[str, list[float]]] = {n: {"etcd": [], "synod": []} for n in names}
        cpu: dict[str, dict[str, list[float]]] = {n: {"etcd": [], "synod": []} for n in names}
        try:
            for r in range(args.rounds):
                for name in names:
                    for label, server in (("etcd", etcd), ("synod", synod)):
                        c0 = server.cpu_seconds()
                        rate, p99, _ = run_benchmark(tool, server.endpoint, BENCHMARKS[name])
                        used = server.cpu_seconds() - c0
                        results[name][label].append(rate)
                        p99s[name][label].append(p99)
                        cpu[name][label].append(used)
                        print(
                            f"round {r + 1} {name:16s} {label:6s} {rate:10.1f} req/s  p99 {p99 * 1e3:7.2f} ms"
                            f"  server CPU {used:.1f} s",
                            file=sys.stderr,
                        )
        finally:
            etcd.kill()
            synod.kill()
    load = os.getloadavg()[0]
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} CPUs, "
        f"tool {args.tool}, {args.rounds} rounds (median), {args.members} member(s), "
        f"synod --frontend-procs {args.frontend_procs}, "
        f"load average at the end {load:.1f}\n"
    )
    print(TABLE_HEAD)
    print("|---|---|---|---|---|---|")
    for name in names:
        e = statistics.median(results[name]["etcd"])
        s = statistics.median(results[name]["synod"])
        pe = statistics.median(p99s[name]["etcd"]) * 1e3
        ps = statistics.median(p99s[name]["synod"]) * 1e3
        ce = statistics.median(cpu[name]["etcd"])
        cs = statistics.median(cpu[name]["synod"])
        print(f"| {name} | {e:,.0f} | {s:,.0f} | {s / e:.2f} | {pe:.1f} / {ps:.1f} | {ce:.1f} / {cs:.1f} |")


if __name__ == "__main__":
    if shutil.which("etcd") is None:
        sys.exit("etcd is not installed (./dev test installs it)")
    main()
