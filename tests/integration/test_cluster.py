"""Three-member clusters of real synod processes, started with etcd's flags, compared with real etcd."""

from __future__ import annotations

from pathlib import Path

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.servers import ClusterProcesses, wait_until


def kv(endpoint: str) -> rpc_pb2_grpc.KVStub:
    return rpc_pb2_grpc.KVStub(grpc.insecure_channel(endpoint))


def put_eventually(endpoints: list[str], key: bytes, value: bytes, timeout: float = 30.0) -> pb.PutResponse:
    """Put through any member that answers (members may be electing)."""

    def attempt() -> pb.PutResponse | None:
        for e in endpoints:
            try:
                return kv(e).Put(pb.PutRequest(key=key, value=value), timeout=5)
            except grpc.RpcError:
                continue
        return None

    resp: pb.PutResponse = wait_until(attempt, timeout, f"a put of {key!r} to succeed", interval=0.1)
    return resp


def headers(cluster: ClusterProcesses) -> list[pb.ResponseHeader]:
    put_eventually(cluster.endpoints, b"probe", b"1")
    return [kv(e).Range(pb.RangeRequest(key=b"probe"), timeout=10).header for e in cluster.endpoints]


def test_member_and_cluster_ids_and_the_first_term_equal_etcds(tmp_path: Path) -> None:
    etcd = ClusterProcesses("etcd", tmp_path).start()
    try:
        want = [(h.cluster_id, h.member_id, h.raft_term) for h in headers(etcd)]
    finally:
        etcd.kill()
    synod = ClusterProcesses("synod", tmp_path)
    for s, e in zip(synod.members, etcd.members, strict=True):
        s.peer_port = e.peer_port  # IDs derive from the peer URLs
        s.initial_cluster = e.initial_cluster
    synod.start()
    try:
        got = [(h.cluster_id, h.member_id, h.raft_term) for h in headers(synod)]
    finally:
        synod.kill()
    assert [(c, m) for c, m, _ in got] == [(c, m) for c, m, _ in want]
    assert len({m for _, m, _ in got}) == 3
    # The first leader's term is 2 on both, unless a split vote needed a second round (on either).
    assert all(t >= 2 for _, _, t in got + want) and {t for *_, t in got} == {got[0][2]}


def test_writes_replicate_and_survive_the_loss_of_any_one_member(tmp_path: Path) -> None:
    cluster = ClusterProcesses("synod", tmp_path).start()
    try:
        put_eventually(cluster.endpoints, b"k0", b"v0")
        for i, member in enumerate(cluster.members):
            member.kill()
            others = [m.endpoint for m in cluster.members if m is not member]
            resp = put_eventually(others, b"k%d" % (i + 1), b"v%d" % (i + 1))
            for e in others:  # linearizable reads on every live member see the write
                got = kv(e).Range(pb.RangeRequest(key=b"k%d" % (i + 1)), timeout=10)
                assert got.kvs[0].value == b"v%d" % (i + 1)
                assert got.header.revision >= resp.header.revision
            member.start()
        # Every member, restarted in turn, holds every write.
        for e in cluster.endpoints:
            got = kv(e).Range(pb.RangeRequest(key=b"k", range_end=b"l"), timeout=10)
            assert [(x.key, x.value) for x in got.kvs] == [(b"k%d" % i, b"v%d" % i) for i in range(4)]
    finally:
        cluster.kill()
