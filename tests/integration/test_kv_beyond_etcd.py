"""Where etcd 3.4 misbehaves, synod answers cleanly (see docs/compatibility.md)."""

from __future__ import annotations

import grpc
import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc


def test_txn_whose_ignore_value_put_follows_a_from_key_delete_is_refused_whole(synod):
    """etcd's duplicate-key check misses from-key deletes; etcd then crashes halfway through
    such a txn. synod refuses it before writing anything."""
    with grpc.insecure_channel(synod.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        kv.Put(pb.PutRequest(key=b"b", value=b"old"))
        before = kv.Range(pb.RangeRequest(key=b"\0", range_end=b"\0"))
        txn = pb.TxnRequest(
            success=[
                pb.RequestOp(request_put=pb.PutRequest(key=b"a", value=b"x")),
                pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"a", range_end=b"\0")),
                pb.RequestOp(request_put=pb.PutRequest(key=b"b", ignore_value=True)),
            ]
        )
        with pytest.raises(grpc.RpcError) as err:
            kv.Txn(txn)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "etcdserver: key not found"
        after = kv.Range(pb.RangeRequest(key=b"\0", range_end=b"\0"))
        assert after == before  # nothing written, revision unchanged
        # The same ops without the flag are valid, as in etcd: the put after the delete wins.
        txn.success[2].request_put.ignore_value = False
        txn.success[2].request_put.value = b"new"
        resp = kv.Txn(txn)
        assert resp.succeeded
        got = kv.Range(pb.RangeRequest(key=b"\0", range_end=b"\0"))
        assert [(k.key, k.value) for k in got.kvs] == [(b"b", b"new")]
