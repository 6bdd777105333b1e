"""Output formats of the KV commands, byte for byte as etcdctl 3.4 prints them.

``simple``: keys and values as raw lines (``--hex``: ``\\x66\\x6f\\x6f``);
``json``: Go's encoding/json of the response struct (etcd's field names,
numbers as numbers, bytes in base64, empty fields left out); ``fields``:
``"Name" : value`` lines; ``protobuf``: the response's wire bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import BinaryIO

from google.protobuf.message import Message

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.mvccpb import kv_pb2
from synod.ctl.errors import EXIT_BAD_FEATURE, CtlExit
from synod.ctl.gostrconv import quote

FORMATS = ("simple", "json", "fields", "protobuf", "table")
Response = pb.RangeResponse | pb.PutResponse | pb.DeleteRangeResponse | pb.TxnResponse
JSONValue = dict[str, "JSONValue"] | list["JSONValue"] | str | int | bool | None


class Printer:
    """Writes responses to ``out`` in one of etcdctl's formats."""

    def __init__(self, out: BinaryIO, fmt: str, hex_keys: bool = False) -> None:
        if fmt not in FORMATS:
            raise CtlExit(EXIT_BAD_FEATURE, "unsupported output format")
        self.out = out
        self.format = fmt
        self.hex = hex_keys
        self.value_only = False

    def _line(self, data: bytes | str = b"") -> None:
        self.out.write((data.encode() if isinstance(data, str) else data) + b"\n")

    def _emit(self, resp: Response, simple: Callable[[], None], fields: Callable[[], None]) -> None:
        if self.format == "simple":
            simple()
        elif self.format == "fields":
            fields()
        elif self.format == "json":
            self._line(json.dumps(to_json(resp), separators=(",", ":")))
        elif self.format == "protobuf":
            self.out.write(resp.SerializeToString())
        else:
            raise CtlExit(EXIT_BAD_FEATURE, f"{self.format} not supported as output format")

    def get(self, resp: pb.RangeResponse) -> None:
        self._emit(resp, lambda: self._simple_get(resp), lambda: self._fields_get(resp))

    def put(self, resp: pb.PutResponse) -> None:
        self._emit(resp, lambda: self._simple_put(resp), lambda: self._fields_put(resp))

    def delete(self, resp: pb.DeleteRangeResponse) -> None:
        self._emit(resp, lambda: self._simple_del(resp), lambda: self._fields_del(resp))

    def txn(self, resp: pb.TxnResponse) -> None:
        self._emit(resp, lambda: self._simple_txn(resp), lambda: self._fields_txn(resp))

    # -- simple -------------------------------------------------------------

    def _kv(self, kv: kv_pb2.KeyValue) -> None:
        key, value = kv.key, kv.value
        if self.hex:
            key, value = hex_escape(key), hex_escape(value)
        if not self.value_only:
            self._line(key)
        self._line(value)

    def _simple_get(self, resp: pb.RangeResponse) -> None:
        for kv in resp.kvs:
            self._kv(kv)

    def _simple_put(self, resp: pb.PutResponse) -> None:
        self._line("OK")
        if resp.HasField("prev_kv"):
            self._kv(resp.prev_kv)

    def _simple_del(self, resp: pb.DeleteRangeResponse) -> None:
        self._line(str(resp.deleted))
        for kv in resp.prev_kvs:
            self._kv(kv)

    def _simple_txn(self, resp: pb.TxnResponse) -> None:
        self._line("SUCCESS" if resp.succeeded else "FAILURE")
        for op in resp.responses:
            self._line()
            kind = op.WhichOneof("response")
            if kind == "response_delete_range":
                self._simple_del(op.response_delete_range)
            elif kind == "response_put":
                self._simple_put(op.response_put)
            elif kind == "response_range":
                self._simple_get(op.response_range)
            else:
                self._line(f"unexpected response {op}")

    # -- fields -------------------------------------------------------------

    def _fields_kv(self, prefix: str, kv: kv_pb2.KeyValue) -> None:
        self._line(f'"{prefix}Key" : {quote(kv.key)}')
        self._line(f'"{prefix}CreateRevision" : {kv.create_revision}')
        self._line(f'"{prefix}ModRevision" : {kv.mod_revision}')
        self._line(f'"{prefix}Version" : {kv.version}')
        self._line(f'"{prefix}Value" : {quote(kv.value)}')
        self._line(f'"{prefix}Lease" : {kv.lease}')

    def _fields_header(self, h: pb.ResponseHeader) -> None:
        self._line(f'"ClusterID" : {h.cluster_id}')
        self._line(f'"MemberID" : {h.member_id}')
        self._line(f'"Revision" : {h.revision}')
        self._line(f'"RaftTerm" : {h.raft_term}')

    def _fields_get(self, resp: pb.RangeResponse) -> None:
        self._fields_header(resp.header)
        for kv in resp.kvs:
            self._fields_kv("", kv)
        self._line(f'"More" : {go_bool(resp.more)}')
        self._line(f'"Count" : {resp.count}')

    def _fields_put(self, resp: pb.PutResponse) -> None:
        self._fields_header(resp.header)
        if resp.HasField("prev_kv"):
            self._fields_kv("Prev", resp.prev_kv)

    def _fields_del(self, resp: pb.DeleteRangeResponse) -> None:
        self._fields_header(resp.header)
        self._line(f'"Deleted" : {resp.deleted}')
        for kv in resp.prev_kvs:
            self._fields_kv("Prev", kv)

    def _fields_txn(self, resp: pb.TxnResponse) -> None:
        self._fields_header(resp.header)
        self._line(f'"Succeeded" : {go_bool(resp.succeeded)}')
        for op in resp.responses:
            kind = op.WhichOneof("response")
            if kind == "response_delete_range":
                self._fields_del(op.response_delete_range)
            elif kind == "response_put":
                self._fields_put(op.response_put)
            elif kind == "response_range":
                self._fields_get(op.response_range)
            else:
                self._line(f'"Unknown" : {quote(str(op))}')


def go_bool(value: bool) -> str:
    return "true" if value else "false"


def hex_escape(data: bytes) -> bytes:
    """``--hex``: every byte as ``\\xNN``."""
    return "".join(f"\\x{b:02x}" for b in data).encode()


# Go struct field names of etcd's gogoproto messages, in declaration order. A
# oneof is a Go interface field named after the oneof, holding a wrapper struct
# whose one field is named after the case (in Go's CamelCase, without a json tag).
_ONEOF_GO_NAMES = {
    "response": "Response",
    "response_range": "ResponseRange",
    "response_put": "ResponsePut",
    "response_delete_range": "ResponseDeleteRange",
    "response_txn": "ResponseTxn",
}


def to_json(msg: Message) -> JSONValue:
    """A response as Go's encoding/json renders etcd's generated struct (``omitempty`` everywhere)."""
    out: dict[str, JSONValue] = {}
    done_oneofs: set[str] = set()
    for fd in msg.DESCRIPTOR.fields:
        oneof = fd.containing_oneof
        if oneof is not None:
            if oneof.name in done_oneofs:
                continue
            done_oneofs.add(oneof.name)
            case = msg.WhichOneof(oneof.name)
            inner: JSONValue = None
            if case is not None:
                inner = {_ONEOF_GO_NAMES[case]: to_json(getattr(msg, case))}
            out[_ONEOF_GO_NAMES[oneof.name]] = inner
            continue
        value = getattr(msg, fd.name)
        if fd.message_type is not None:
            if fd.is_repeated:
                if len(value):
                    out[fd.name] = [to_json(v) for v in value]
            elif msg.HasField(fd.name):
                out[fd.name] = to_json(value)
        elif fd.is_repeated:
            if len(value):
                out[fd.name] = [_scalar(v) for v in value]
        elif value:
            out[fd.name] = _scalar(value)
    return out


def _scalar(value: object) -> JSONValue:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, bool | int | str):
        return value
    raise TypeError(f"unexpected field value {value!r}")
