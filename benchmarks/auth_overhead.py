"""What auth costs a put: throughput with auth off and on, synod and etcd 3.4, one run.

Starts four servers on 127.0.0.1 (fresh data directories, ``--bcrypt-cost 4``):
etcd and synod with auth off, etcd and synod with a root user and auth
enabled (simple tokens, the default). Runs etcd's Go ``benchmark put`` against
each in turn (with ``--user root:<pw>`` where auth is on: each client
authenticates once, then every put carries its token, is checked at apply
and writes under the user's name), for several rounds, the order turning every
round; prints the medians and the ratios.

    .venv/bin/python benchmarks/auth_overhead.py [--rounds 5]
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

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.compare import BENCHMARKS, put_rates, tool_command
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.servers import ServerProcess

PASSWORD = "bench"


def enable_auth(endpoint: str) -> None:
    with grpc.insecure_channel(endpoint) as ch:
        auth = rpc_pb2_grpc.AuthStub(ch)
        auth.UserAdd(pb.AuthUserAddRequest(name="root", password=PASSWORD))
        auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"))
        auth.AuthEnable(pb.AuthEnableRequest())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    tool = tool_command("etcd-benchmark")
    flags = BENCHMARKS["put"]
    fast = ["--bcrypt-cost", "4"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        servers = {
            "etcd, auth off": ServerProcess("etcd", root / "etcd-off", extra_args=fast),
            "etcd, auth on": ServerProcess("etcd", root / "etcd-on", extra_args=fast),
            "synod, auth off": ServerProcess(
                "synod", root / "off", extra_args=["--log-level", "warn", *fast]
            ),
            "synod, auth on": ServerProcess("synod", root / "on", extra_args=["--log-level", "warn", *fast]),
        }
        try:
            for name, s in servers.items():
                s.start()
                if name.endswith("auth on"):
                    enable_auth(s.endpoint)
            user = [f"--user=root:{PASSWORD}"]
            rates = put_rates(
                tool, flags, servers, args.rounds, {n: user for n in servers if n.endswith("auth on")}
            )
        finally:
            for s in servers.values():
                s.kill()
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} CPUs, "
        f"benchmark [--user=root:…] {' '.join(flags)}, {args.rounds} rounds (median)\n"
    )
    print("| server | puts/s (median) | single rounds |")
    print("|---|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):,.0f} | {', '.join(f'{v:,.0f}' for v in values)} |")
    med = {name: statistics.median(values) for name, values in rates.items()}
    print(f"\nsynod auth on / off: {med['synod, auth on'] / med['synod, auth off']:.3f}")
    print(f"etcd auth on / off: {med['etcd, auth on'] / med['etcd, auth off']:.3f}")
    print(f"synod / etcd, auth on: {med['synod, auth on'] / med['etcd, auth on']:.3f}")


if __name__ == "__main__":
    main()
