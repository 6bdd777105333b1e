"""synodctl's KV calls over gRPC (connections, failover and error wording are rpc.py's)."""

from __future__ import annotations

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.ctl.rpc import CallError, Client

KVError = CallError


def _is_read_only(req: pb.TxnRequest) -> bool:
    for op in [*req.success, *req.failure]:
        kind = op.WhichOneof("request")
        if kind == "request_txn":
            if not _is_read_only(op.request_txn):
                return False
        elif kind != "request_range":
            return False
    return True


class KVClient(Client):
    """KV RPCs against the first endpoint that answers."""

    def range(self, req: pb.RangeRequest, timeout: float | None) -> pb.RangeResponse:
        return self.call(rpc_pb2_grpc.KVStub, "Range", req, pb.RangeResponse, timeout, retry_unavailable=True)

    def put(self, req: pb.PutRequest, timeout: float | None) -> pb.PutResponse:
        return self.call(rpc_pb2_grpc.KVStub, "Put", req, pb.PutResponse, timeout, retry_unavailable=False)

    def delete_range(self, req: pb.DeleteRangeRequest, timeout: float | None) -> pb.DeleteRangeResponse:
        return self.call(
            rpc_pb2_grpc.KVStub, "DeleteRange", req, pb.DeleteRangeResponse, timeout, retry_unavailable=False
        )

    def txn(self, req: pb.TxnRequest, timeout: float | None) -> pb.TxnResponse:
        return self.call(
            rpc_pb2_grpc.KVStub, "Txn", req, pb.TxnResponse, timeout, retry_unavailable=_is_read_only(req)
        )

    def compact(self, req: pb.CompactionRequest, timeout: float | None) -> pb.CompactionResponse:
        return self.call(
            rpc_pb2_grpc.KVStub, "Compact", req, pb.CompactionResponse, timeout, retry_unavailable=False
        )
