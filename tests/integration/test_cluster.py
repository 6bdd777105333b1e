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


def test_snapshots_compact_the_log_and_a_member_far_behind_gets_the_backend(tmp_path: Path) -> None:
    flags = ["--snapshot-count", "50", "--experimental-snapshot-catchup-entries", "10"]
    cluster = ClusterProcesses("synod", tmp_path, extra_args=flags).start()
    try:
        for i in range(100):
            put_eventually(cluster.endpoints, b"s/%03d" % i, b"a")
        lagging = cluster.members[2]
        lagging.kill()
        live = [m.endpoint for m in cluster.members[:2]]
        for i in range(100, 400):
            put_eventually(live, b"s/%03d" % i, b"b")
        # Its log is long gone from the others' memory: it catches up from a snapshot of the backend.
        lagging.start()
        want = [(b"s/%03d" % i, b"a" if i < 100 else b"b") for i in range(400)]

        def caught_up() -> bool:
            got = kv(lagging.endpoint).Range(
                pb.RangeRequest(key=b"s/", range_end=b"s0", serializable=True), timeout=10
            )
            return [(x.key, x.value) for x in got.kvs] == want

        wait_until(caught_up, 60, "the lagging member to install a snapshot and catch up")
        assert "installed a snapshot" in lagging.log_text()
        # A member restarted after its own snapshots starts from its snapshot mark.
        first = cluster.members[0]
        first.stop()
        first.start()
        put_eventually(cluster.endpoints, b"s/zzz", b"c")
        revs = []
        for e in cluster.endpoints:
            resp = kv(e).Range(pb.RangeRequest(key=b"s/", range_end=b"s0"), timeout=10)
            assert len(resp.kvs) == 401
            revs.append(resp.header.revision)
        hashes = {
            rpc_pb2_grpc.MaintenanceStub(grpc.insecure_channel(e))
            .HashKV(pb.HashKVRequest(revision=min(revs)), timeout=10)
            .hash
            for e in cluster.endpoints
        }
        assert len(hashes) == 1
    finally:
        cluster.kill()


def test_a_restarted_member_forgets_a_replaced_peer(tmp_path: Path) -> None:
    """After a restart a member dials the recorded members, not --initial-cluster's.

    m1 is replaced by a new member on the same addresses; m2 restarts, its flags still
    naming the old m1. Were it to dial the old m1's ID, the new m1 would refuse the
    connection, m2 would never count as connected to it, and the next change (replacing
    m3) would be refused as "unhealthy cluster" forever.
    """
    cluster = ClusterProcesses("synod", tmp_path).start()
    try:
        cluster.replace(cluster.members[0])
        m2 = cluster.members[1]
        m2.kill()
        m2.start()
        cluster.replace(cluster.members[2], timeout=30)
        kvs = [rpc_pb2_grpc.KVStub(grpc.insecure_channel(e)) for e in cluster.endpoints]
        wait_until(lambda: _put_ok(kvs[0]), 30, "a write after the replacements")
        revision = kvs[0].Range(pb.RangeRequest(key=b"k")).header.revision

        def same_everywhere() -> bool:
            hashes = set()
            for m in cluster.members:
                with grpc.insecure_channel(m.endpoint) as ch:
                    stub = rpc_pb2_grpc.MaintenanceStub(ch)
                    try:
                        hashes.add(stub.HashKV(pb.HashKVRequest(revision=revision), timeout=5).hash)
                    except grpc.RpcError:
                        return False
            return len(hashes) == 1

        wait_until(same_everywhere, 30, "every member, replacements included, to hold the same data")
    finally:
        cluster.kill()


def _put_ok(kv: rpc_pb2_grpc.KVStub) -> bool:
    try:
        kv.Put(pb.PutRequest(key=b"k", value=b"v"), timeout=2)
        return True
    except grpc.RpcError:
        return False
