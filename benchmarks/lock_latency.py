"""The etcd 3.2 release's lock-latency experiment, at this machine's scale: client-side recipe vs RPC lock.

One synod (default flags) on 127.0.0.1; between it and the clients, a proxy
(``delay_proxy.py``, its own process) that delays every byte by 0, 1, 5 or
10 ms in each direction (a round trip pays twice that). For 1 to 64 contending
clients (each its own connection and lease, all in one client process on
uvloop), every client takes and releases the same lock in a loop; a lock's
latency is the time from asking to holding it (waiting for the others
included). Two ways to lock:

- ``recipe``: synod.client.concurrency's mutex, run in the client (etcdctl's
  way): a txn to queue, a watch on the predecessor, a read to check the key;
- ``rpc``: the server's Lock service, one call that answers once held.

Prints a Markdown table of the average latency and writes a PNG plot.

    .venv/bin/python benchmarks/lock_latency.py [--locks 64] [--out docs/lock-latency.png]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synod import AsyncClient
from synod.client.concurrency import AsyncMutex, AsyncSession
from tests.support.servers import ServerProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
DELAYS_MS = (0, 1, 5, 10)
CLIENTS = (1, 2, 4, 8, 16, 32, 64)
MODES = ("recipe", "rpc")


async def _measure(endpoint: str, clients: int, locks: int, mode: str, name: str) -> list[float]:
    """Latencies of ``locks`` acquisitions shared by ``clients`` contending lockers."""
    conns = [AsyncClient(endpoint, timeout=30) for _ in range(clients)]
    latencies: list[float] = []
    left = locks
    try:
        sessions = [await AsyncSession(c, ttl=30) for c in conns]

        async def locker(c: AsyncClient, session: AsyncSession) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                t0 = time.perf_counter()
                if mode == "rpc":
                    held = await c.lock(name, session.lease_id)
                    latencies.append(time.perf_counter() - t0)
                    await c.unlock(held.key)
                else:
                    mutex = AsyncMutex(session, name)
                    await mutex.lock()
                    latencies.append(time.perf_counter() - t0)
                    await mutex.unlock()

        await asyncio.gather(*(locker(c, s) for c, s in zip(conns, sessions, strict=True)))
        for s in sessions:
            await s.close()
    finally:
        for c in conns:
            await c.close()
    return latencies


def _progress(delay: int, clients: int, mode: str, lat: list[float]) -> None:
    avg, p50 = statistics.mean(lat) * 1e3, statistics.median(lat) * 1e3
    line = f"+{delay:2d} ms  {clients:3d} clients  {mode:6s}  avg {avg:8.2f} ms  p50 {p50:8.2f} ms"
    print(line, file=sys.stderr, flush=True)


def _proxy(target: str, delay_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "delay_proxy.py"), "--listen", f"127.0.0.1:{port}",
         "--target", target, "--delay-ms", str(delay_ms)],
    )  # fmt: skip
    address = f"127.0.0.1:{port}"

    def up() -> bool:
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until(up, 10, "the delay proxy")
    return proc, address


def _plot(
    results: dict[tuple[str, int, int], float], out: Path, delays: list[int], client_counts: list[int]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(delays), figsize=(4 * len(delays), 3.6), sharey=False, squeeze=False)
    for ax, delay in zip(axes[0], delays, strict=True):
        for mode, style in zip(MODES, ("o-", "s--"), strict=True):
            ys = [results[(mode, delay, n)] * 1e3 for n in client_counts]
            ax.plot(client_counts, ys, style, label="client-side recipe" if mode == "recipe" else "RPC lock")
        ax.set_xscale("log", base=2)
        ax.set_xticks(client_counts, [str(n) for n in client_counts])
        ax.set_title(f"+{delay} ms each way")
        ax.set_xlabel("contending clients")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("average lock latency (ms)")
    axes[0][0].legend()
    fig.suptitle("synod: lock latency, client-side recipe vs Lock RPC")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--locks", type=int, default=64, help="acquisitions per measurement")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "lock-latency.png")
    p.add_argument("--delays", default=",".join(map(str, DELAYS_MS)), help="ms, comma-separated")
    p.add_argument("--clients", default=",".join(map(str, CLIENTS)), help="comma-separated")
    args = p.parse_args()
    delays = [int(d) for d in args.delays.split(",")]
    client_counts = [int(n) for n in args.clients.split(",")]
    results: dict[tuple[str, int, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess("synod", Path(tmp) / "synod", extra_args=["--log-level", "warn"]).start()
        try:
            for delay in delays:
                proxy, address = _proxy(server.endpoint, delay)
                try:
                    for clients in client_counts:
                        for mode in MODES:
                            name = f"bench-{mode}-{delay}-{clients}"
                            locks = max(args.locks, clients * 2)
                            lat = uvloop.run(_measure(address, clients, locks, mode, name))
                            results[(mode, delay, clients)] = statistics.mean(lat)
                            _progress(delay, clients, mode, lat)
                finally:
                    proxy.kill()
                    proxy.wait()
        finally:
            server.kill()
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} CPUs, {args.locks} locks each\n"
    )
    print("| added delay (each way) | clients | recipe avg ms | RPC avg ms | recipe / RPC |")
    print("|---|---|---|---|---|")
    for delay in delays:
        for clients in client_counts:
            r, q = results[("recipe", delay, clients)], results[("rpc", delay, clients)]
            print(f"| {delay} ms | {clients} | {r * 1e3:.1f} | {q * 1e3:.1f} | {r / q:.2f} |")
    _plot(results, args.out, delays, client_counts)
    print(f"\nplot: {args.out}")


if __name__ == "__main__":
    main()
