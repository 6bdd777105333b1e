"""How much CPU the member spends per request, without gRPC: requests go straight into the
dispatcher (as relayed requests do), from many concurrent tasks.

    .venv/bin/python benchmarks/member_path.py [--total N] [--concurrency C] [--profile out.html]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import uvloop

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.server.api.grpc_server import build_dispatcher
from synod.server.api.methods import BY_PATH
from synod.server.config import ServerConfig
from synod.server.etcdserver import EtcdServer


async def run(total: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        etcd = EtcdServer(ServerConfig(data_dir=d))
        await etcd.start()
        dispatcher = build_dispatcher(etcd)
        put = BY_PATH["/etcdserverpb.KV/Put"]
        rng = BY_PATH["/etcdserverpb.KV/Range"]
        value = b"x" * 256
        for name, method, make in (
            ("put", put, lambda i: pb.PutRequest(key=b"%08d" % i, value=value).SerializeToString()),
            (
                "range s",
                rng,
                lambda i: pb.RangeRequest(key=b"%08d" % i, serializable=True).SerializeToString(),
            ),
            ("range l", rng, lambda i: pb.RangeRequest(key=b"%08d" % i).SerializeToString()),
        ):
            requests = [make(i) for i in range(total)]

            async def worker(start: int, method=method, requests=requests) -> None:
                for i in range(start, total, concurrency):
                    await dispatcher.call_bytes(method, requests[i])

            t0, c0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker(w) for w in range(concurrency)))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"{name:8s} {total / wall:9.0f} req/s   {cpu / total * 1e6:6.1f} us CPU/req")
        await etcd.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--total", type=int, default=20000)
    p.add_argument("--concurrency", type=int, default=1000)
    args = p.parse_args()
    uvloop.run(run(args.total, args.concurrency))


if __name__ == "__main__":
    main()
