"""Maintenance.HashKV on synod equals a real etcd 3.4's after the same history (its hash covers the raw
backend records, so this also checks that synod stores them byte for byte as etcd does)."""

from __future__ import annotations

import random

import grpc
import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.servers import ServerProcess


def history(endpoint: str, seed: int) -> None:
    rng = random.Random(seed)
    ch = grpc.insecure_channel(endpoint)
    kv = rpc_pb2_grpc.KVStub(ch)
    keys = [b"k%d" % i for i in range(8)]
    for n in range(120):
        op = rng.random()
        key = rng.choice(keys)
        if op < 0.6:
            kv.Put(pb.PutRequest(key=key, value=b"v%d" % n), timeout=10)
        elif op < 0.8:
            kv.DeleteRange(pb.DeleteRangeRequest(key=key), timeout=10)
        else:
            kv.Txn(
                pb.TxnRequest(
                    compare=[
                        pb.Compare(key=key, target=pb.Compare.VERSION, result=pb.Compare.GREATER, version=0)
                    ],
                    success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=b"t%d" % n))],
                    failure=[pb.RequestOp(request_put=pb.PutRequest(key=rng.choice(keys), value=b"f"))],
                ),
                timeout=10,
            )
        if n == 60:
            kv.Compact(pb.CompactionRequest(revision=30, physical=True), timeout=10)
    ch.close()


def hashes(endpoint: str) -> list[tuple[str, int, int, int]]:
    out = []
    with grpc.insecure_channel(endpoint) as ch:
        m = rpc_pb2_grpc.MaintenanceStub(ch)
        for rev in (0, 31, 50, 100, 10_000, 10, 30):
            try:
                r = m.HashKV(pb.HashKVRequest(revision=rev), timeout=10)
                out.append(("ok", r.hash, r.compact_revision, r.header.revision))
            except grpc.RpcError as e:
                out.append((f"{e.code().name}: {e.details()}", 0, 0, 0))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hashkv_equals_etcds(start_server, seed: int) -> None:  # type: ignore[no-untyped-def]
    etcd: ServerProcess = start_server("etcd")
    synod: ServerProcess = start_server("synod")
    history(etcd.endpoint, seed)
    history(synod.endpoint, seed)
    got, want = hashes(synod.endpoint), hashes(etcd.endpoint)
    assert got == want
    assert any(h[0] == "ok" and h[1] for h in got)
