"""The Python client's own cost: CPU per put and per received watch event, and puts/s of one process.

Against a real etcd 3.4 started here (so the server is the same Go binary for
every client, and fast), one client process at a time:

- ``grpc.aio``: bare generated stubs, the floor any asyncio Python client pays;
- ``AsyncClient``: synod's asyncio client, the same calls;
- ``Client``: synod's blocking client from threads (each call crosses to the
  client's event-loop thread and back).

For puts: ``--workers`` concurrent callers put ``--total`` 256-byte values; the
process's CPU time per put and the puts/s are reported. For watch events: a
watcher receives ``--events`` events written by a separate process (etcd's
etcdctl-free writer below, a bare grpc client in a subprocess), and its CPU
time per event is reported. ``--profile`` writes pyinstrument profiles of the
AsyncClient runs (``--profile-out``: ``<out>-put.txt`` and ``<out>-watch.txt``).

    .venv/bin/python benchmarks/client_overhead.py [--total 20000] [--workers 100]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import synod
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.servers import ServerProcess

VALUE = b"v" * 256


def _report(name: str, what: str, n: int, cpu: float, wall: float) -> dict[str, object]:
    row = {"client": name, "what": what, "n": n, "cpu_us": cpu / n * 1e6, "per_s": n / wall}
    print(f"{name:12} {what:6} n={n:6}  CPU {row['cpu_us']:7.1f} µs/op   {row['per_s']:8.0f} /s", flush=True)
    return row


async def _puts_async(put, total: int, workers: int) -> None:  # type: ignore[no-untyped-def]
    left = iter(range(total))

    async def worker() -> None:
        for i in left:
            await put(b"k%d" % (i % 1000))

    await asyncio.gather(*(worker() for _ in range(workers)))


def bench_grpc_aio(endpoint: str, total: int, workers: int) -> dict[str, object]:
    async def run() -> tuple[float, float]:
        async with grpc.aio.insecure_channel(endpoint) as ch:
            stub = rpc_pb2_grpc.KVStub(ch)

            async def put(key: bytes) -> None:
                await stub.Put(pb.PutRequest(key=key, value=VALUE), timeout=10)

            await _puts_async(put, 500, workers)
            c0, t0 = time.process_time(), time.perf_counter()
            await _puts_async(put, total, workers)
            return time.process_time() - c0, time.perf_counter() - t0

    cpu, wall = _run(run())
    return _report("grpc.aio", "put", total, cpu, wall)


def bench_async_client(endpoint: str, total: int, workers: int, profile: Path | None) -> dict[str, object]:
    async def run() -> tuple[float, float]:
        async with synod.AsyncClient(endpoint, timeout=10) as client:

            async def put(key: bytes) -> None:
                await client.put(key, VALUE)

            await _puts_async(put, 500, workers)
            c0, t0 = time.process_time(), time.perf_counter()
            await _puts_async(put, total, workers)
            return time.process_time() - c0, time.perf_counter() - t0

    cpu, wall = _profiled(run, profile)
    return _report("AsyncClient", "put", total, cpu, wall)


def bench_sync_client(endpoint: str, total: int, workers: int) -> dict[str, object]:
    with synod.Client(endpoint, timeout=10) as client:
        left = iter(range(total))
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    i = next(left, None)
                if i is None:
                    return
                client.put(b"k%d" % (i % 1000), VALUE)

        for _ in range(200):
            client.put(b"warm", VALUE)
        c0, t0 = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(worker) for _ in range(workers)]:
                f.result()
        return _report("Client", "put", total, time.process_time() - c0, time.perf_counter() - t0)


_WRITER = """
import sys, grpc
from synod.api.etcdserverpb import rpc_pb2 as pb, rpc_pb2_grpc
ch = grpc.insecure_channel(sys.argv[1]); kv = rpc_pb2_grpc.KVStub(ch)
n = int(sys.argv[2])
futures = [kv.Put.future(pb.PutRequest(key=b"w/%d" % (i % 100), value=b"x" * 64)) for i in range(n)]
for f in futures: f.result()
"""


def bench_watch(endpoint: str, events: int, which: str, profile: Path | None = None) -> dict[str, object]:
    """CPU per event received by one watcher of the prefix ``w/``."""

    async def run() -> tuple[float, float]:
        got = 0
        if which == "grpc.aio":
            async with grpc.aio.insecure_channel(endpoint) as ch:
                call = rpc_pb2_grpc.WatchStub(ch).Watch()
                await call.write(
                    pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w/", range_end=b"w0"))
                )
                await call.read()
                c0, t0 = time.process_time(), time.perf_counter()
                writer = _start_writer(endpoint, events)
                while got < events:
                    resp = await call.read()
                    got += len(resp.events)
                call.cancel()
        else:
            async with synod.AsyncClient(endpoint) as client:
                watch = client.watch_prefix("w/")
                it = aiter(watch)
                await watch.created()
                c0, t0 = time.process_time(), time.perf_counter()
                writer = _start_writer(endpoint, events)
                while got < events:
                    resp = await anext(it)
                    got += len(resp.events)
                await watch.cancel()
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        writer.wait()
        return cpu, wall

    cpu, wall = _profiled(run, profile)
    return _report(which, "event", events, cpu, wall)


def _start_writer(endpoint: str, events: int) -> subprocess.Popen[bytes]:
    root = str(Path(__file__).resolve().parent.parent)
    return subprocess.Popen([sys.executable, "-c", _WRITER, endpoint, str(events)], cwd=root)


def _profiled(run, profile: Path | None) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    if profile is None:
        return _run(run())  # type: ignore[no-any-return]
    from pyinstrument import Profiler

    with Profiler(async_mode="enabled") as p:
        result = _run(run())
    profile.write_text(p.output_text(unicode=True, color=False, show_all=False))
    return result  # type: ignore[no-any-return]


def _run(coro):  # type: ignore[no-untyped-def]
    import uvloop

    return uvloop.run(coro)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--total", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=100)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--profile-out", type=Path, default=Path("client-profile"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        etcd = ServerProcess("etcd", Path(tmp) / "etcd").start()
        try:
            ep = etcd.endpoint
            bench_grpc_aio(ep, args.total, args.workers)
            out = args.profile_out if args.profile else None
            bench_async_client(ep, args.total, args.workers, out and out.with_name(out.name + "-put.txt"))
            bench_sync_client(ep, args.total // 2, min(args.workers, 32))
            bench_watch(ep, args.events, "grpc.aio")
            bench_watch(ep, args.events, "AsyncClient", out and out.with_name(out.name + "-watch.txt"))
        finally:
            etcd.kill()


if __name__ == "__main__":
    main()
