"""A member answers KV requests over gRPC as a real etcd does, with etcd's IDs."""

from __future__ import annotations

import signal

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.servers import ServerProcess


def _put_get(server: ServerProcess):
    with grpc.insecure_channel(server.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        put = kv.Put(pb.PutRequest(key=b"k", value=b"v", prev_kv=True))
        get = kv.Range(pb.RangeRequest(key=b"k"))
    return put, get


def test_put_then_get_same_answer_as_etcd(synod, etcd):
    answers = []
    for server in (synod, etcd):
        put, get = _put_get(server)
        for resp in (put, get):
            resp.header.ClearField("cluster_id")
            resp.header.ClearField("member_id")
        answers.append((put, get))
    assert answers[0] == answers[1]
    put, get = answers[0]
    assert put.header.revision == 2
    assert get.kvs[0].value == b"v"


def test_member_and_cluster_ids_derive_as_etcds(tmp_path):
    """Same peer URL and cluster token -> the same member and cluster IDs as etcd."""
    etcd = ServerProcess("etcd", tmp_path / "etcd").start()
    try:
        etcd_header = _put_get(etcd)[0].header
    finally:
        etcd.stop()
    synod = ServerProcess("synod", tmp_path / "synod", peer_port=etcd.peer_port).start()
    try:
        synod_header = _put_get(synod)[0].header
    finally:
        synod.stop()
    assert (synod_header.member_id, synod_header.cluster_id) == (
        etcd_header.member_id,
        etcd_header.cluster_id,
    )
    assert synod_header.member_id != 0


def test_sigterm_and_sigint_stop_cleanly_and_keep_data(tmp_path):
    server = ServerProcess("synod", tmp_path / "data").start()
    put, _ = _put_get(server)
    assert server.stop() == 0  # SIGTERM
    assert "stopped" in server.log_text()
    server.start()
    with grpc.insecure_channel(server.endpoint) as ch:
        got = rpc_pb2_grpc.KVStub(ch).Range(pb.RangeRequest(key=b"k"))
    assert got.kvs[0].mod_revision == put.header.revision
    assert got.header.raft_term == put.header.raft_term + 1  # each start is a new term
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=15) == 0
    server.proc = None
