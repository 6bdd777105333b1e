"""What serving the JSON gateway on the gRPC port costs gRPC: put throughput with and without it.

Starts three servers on 127.0.0.1 (fresh data directories): a real etcd 3.4 (the
reference, gateway on as etcd's default), synod as it starts by default (gateway
on the client URLs) and synod with ``--enable-grpc-gateway false``; runs etcd's
Go ``benchmark put`` against each in turn, for several rounds, and prints the
median puts/s of each and the ratio of synod with the gateway to synod without.

    .venv/bin/python benchmarks/gateway_overhead.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.compare import BENCHMARKS, put_rates, tool_command
from tests.support.servers import ServerProcess


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    tool = tool_command("etcd-benchmark")
    flags = BENCHMARKS["put"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        servers = {
            "etcd": ServerProcess("etcd", root / "etcd"),
            "synod, gateway on": ServerProcess("synod", root / "on", extra_args=["--log-level", "warn"]),
            "synod, gateway off": ServerProcess(
                "synod", root / "off", extra_args=["--log-level", "warn", "--enable-grpc-gateway", "false"]
            ),
        }
        try:
            for s in servers.values():
                s.start()
            rates = put_rates(tool, flags, servers, args.rounds, {})
        finally:
            for s in servers.values():
                s.kill()
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} CPUs, "
        f"benchmark {' '.join(flags)}, {args.rounds} rounds (median)\n"
    )
    print("| server | puts/s (median) | single rounds |")
    print("|---|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):,.0f} | {', '.join(f'{v:,.0f}' for v in values)} |")
    on, off = statistics.median(rates["synod, gateway on"]), statistics.median(rates["synod, gateway off"])
    print(f"\nsynod with the gateway / without: {on / off:.3f}")


if __name__ == "__main__":
    main()
