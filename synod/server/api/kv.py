"""The KV service: checks requests as etcd's v3rpc does, then calls EtcdServer."""

from __future__ import annotations

from collections.abc import Iterable

from synod import rpctypes
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.rpctypes import RPCError
from synod.server.api.header import Header
from synod.server.api.methods import UnaryHandler
from synod.server.etcdserver import EtcdServer


def check_range(r: pb.RangeRequest) -> None:
    if not r.key:
        raise RPCError(rpctypes.EMPTY_KEY)


def check_put(r: pb.PutRequest) -> None:
    if not r.key:
        raise RPCError(rpctypes.EMPTY_KEY)
    if r.ignore_value and r.value:
        raise RPCError(rpctypes.VALUE_PROVIDED)
    if r.ignore_lease and r.lease:
        raise RPCError(rpctypes.LEASE_PROVIDED)


def check_delete(r: pb.DeleteRangeRequest) -> None:
    if not r.key:
        raise RPCError(rpctypes.EMPTY_KEY)


def check_txn(r: pb.TxnRequest, max_txn_ops: int) -> None:
    """Size and shape of a txn and of its nested txns, then the no-key-written-twice rule."""
    _check_txn_ops(r, max_txn_ops)
    _check_intervals(r.success)
    _check_intervals(r.failure)


def _check_txn_ops(r: pb.TxnRequest, max_txn_ops: int) -> None:
    ops = max(len(r.compare), len(r.success), len(r.failure))
    if ops > max_txn_ops:
        raise RPCError(rpctypes.TOO_MANY_OPS)
    for c in r.compare:
        if not c.key:
            raise RPCError(rpctypes.EMPTY_KEY)
    for op in (*r.success, *r.failure):
        which = op.WhichOneof("request")
        if which == "request_range":
            check_range(op.request_range)
        elif which == "request_put":
            check_put(op.request_put)
        elif which == "request_delete_range":
            check_delete(op.request_delete_range)
        elif which == "request_txn":
            _check_txn_ops(op.request_txn, max_txn_ops - ops)  # a nested txn gets what is left
        else:
            raise RPCError(rpctypes.KEY_NOT_FOUND)


# A deleted interval [begin, end). As in etcd, ``end`` is compared as a plain string,
# so a from-key delete (end "\0") covers no key for this check.
_Interval = tuple[bytes, bytes]


def _covers(dels: list[_Interval], key: bytes) -> bool:
    return any(begin <= key < end for begin, end in dels)


def _check_intervals(ops: Iterable[pb.RequestOp]) -> tuple[set[bytes], list[_Interval]]:
    """Puts and deletes of ``ops`` (recursively); raises if a key would be written twice.

    The two branches of a nested txn exclude each other, so they may both write
    the same key; anything else writing a key twice is a duplicate.
    """
    dels: list[_Interval] = []
    for op in ops:
        if op.WhichOneof("request") == "request_delete_range":
            d = op.request_delete_range
            dels.append((d.key, d.range_end) if d.range_end else (d.key, d.key + b"\x00"))
    puts: set[bytes] = set()
    for op in ops:
        if op.WhichOneof("request") != "request_txn":
            continue
        puts_then, dels_then = _check_intervals(op.request_txn.success)
        puts_else, dels_else = _check_intervals(op.request_txn.failure)
        for k in puts_then:
            if k in puts or _covers(dels, k):
                raise RPCError(rpctypes.DUPLICATE_KEY)
            puts.add(k)
        for k in puts_else:
            if (k in puts and k not in puts_then) or _covers(dels, k):
                raise RPCError(rpctypes.DUPLICATE_KEY)
            puts.add(k)
        dels.extend(dels_then)
        dels.extend(dels_else)
    for op in ops:
        if op.WhichOneof("request") != "request_put":
            continue
        k = op.request_put.key
        if k in puts or _covers(dels, k):
            raise RPCError(rpctypes.DUPLICATE_KEY)
        puts.add(k)
    return puts, dels


class KVService:
    def __init__(self, server: EtcdServer, header: Header) -> None:
        self._server = server
        self._header = header

    def handlers(self) -> dict[str, UnaryHandler]:
        return {
            "/etcdserverpb.KV/Range": self.range,
            "/etcdserverpb.KV/Put": self.put,
            "/etcdserverpb.KV/DeleteRange": self.delete_range,
            "/etcdserverpb.KV/Txn": self.txn,
            "/etcdserverpb.KV/Compact": self.compact,
        }

    async def range(self, request: pb.RangeRequest) -> pb.RangeResponse:
        check_range(request)
        resp = await self._server.range(request)
        self._header.fill(resp.header)
        return resp

    async def put(self, request: pb.PutRequest) -> pb.PutResponse:
        check_put(request)
        resp = await self._server.put(request)
        self._header.fill(resp.header)
        return resp

    async def delete_range(self, request: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        check_delete(request)
        resp = await self._server.delete_range(request)
        self._header.fill(resp.header)
        return resp

    async def txn(self, request: pb.TxnRequest) -> pb.TxnResponse:
        check_txn(request, self._server.cfg.max_txn_ops)
        resp = await self._server.txn(request)
        self._header.fill(resp.header)
        return resp

    async def compact(self, request: pb.CompactionRequest) -> pb.CompactionResponse:
        resp = await self._server.compact(request)
        self._header.fill(resp.header)
        return resp
