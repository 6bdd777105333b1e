"""One KV request to a synod and to a real etcd over raw gRPC, and their answers side by side.

Both requests are sent at once (their answers are awaited together). An answer
is the response message with the cluster and member IDs of its top-level header
cleared (two members with different peer URLs have different IDs; everything
else must be the same), or the gRPC status code and message of the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import text_format
from google.protobuf.message import Message

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.servers import ServerProcess

RPC_TIMEOUT = 10.0

# Request type -> KV method name.
METHODS: dict[type[Message], str] = {
    pb.RangeRequest: "Range",
    pb.PutRequest: "Put",
    pb.DeleteRangeRequest: "DeleteRange",
    pb.TxnRequest: "Txn",
    pb.CompactionRequest: "Compact",
}


@dataclass(frozen=True)
class Answer:
    response: Message | None = None
    code: grpc.StatusCode | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.response is not None

    def show(self) -> str:
        if self.response is None:
            return f"error {self.code}: {self.message!r}"
        text = text_format.MessageToString(self.response, as_utf8=False).strip()
        return f"{type(self.response).__name__} {{\n{text}\n}}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Answer):
            return NotImplemented
        if (self.response is None) != (other.response is None):
            return False
        if self.response is None or other.response is None:
            return (self.code, self.message) == (other.code, other.message)
        # Equal as messages (field presence included) and on the wire.
        return bool(self.response == other.response) and self.response.SerializeToString(
            deterministic=True
        ) == other.response.SerializeToString(deterministic=True)

    __hash__ = None  # type: ignore[assignment]


def _answer(future: Any) -> Answer:
    try:
        resp = future.result()
    except grpc.RpcError as e:
        return Answer(code=e.code(), message=e.details() or "")
    resp.header.ClearField("cluster_id")
    resp.header.ClearField("member_id")
    return Answer(response=resp)


class KVPair:
    def __init__(self, synod: ServerProcess, etcd: ServerProcess) -> None:
        self._channels = [grpc.insecure_channel(s.endpoint) for s in (synod, etcd)]
        self._stubs = [rpc_pb2_grpc.KVStub(ch) for ch in self._channels]
        self.calls = 0

    def close(self) -> None:
        for ch in self._channels:
            ch.close()

    def __enter__(self) -> KVPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, request: Message) -> tuple[Answer, Answer]:
        """(synod's answer, etcd's answer) to ``request``."""
        method = METHODS[type(request)]
        futures = [getattr(stub, method).future(request, timeout=RPC_TIMEOUT) for stub in self._stubs]
        self.calls += 1
        synod, etcd = (_answer(f) for f in futures)
        return synod, etcd


def show_request(request: Message) -> str:
    text = text_format.MessageToString(request, as_utf8=False).strip()
    return f"{type(request).__name__} {{\n{text}\n}}"
