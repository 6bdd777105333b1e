"""Applying requests to the mvcc store: etcd's ``applierV3backend``.

Everything here is deterministic: the same request on the same state gives the
same result on every member. Write requests come here from the log (after they
are durable); read-only ranges and transactions come here directly.

Requests and responses are the wire protobuf messages. Nested responses (inside
a ``TxnResponse``) carry only the revision in their header, as in etcd; the
services fill cluster, member and term into the top-level header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from synod import rpctypes
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.mvccpb.kv_pb2 import KeyValue
from synod.lease.lessor import Lessor
from synod.mvcc.store import KVStore, TxnRead, TxnWrite
from synod.rpctypes import RPCError

# RangeRequest.SortTarget -> the KeyValue attribute sorted by.
_SORT_ATTR = {
    pb.RangeRequest.KEY: "key",
    pb.RangeRequest.VERSION: "version",
    pb.RangeRequest.CREATE: "create_revision",
    pb.RangeRequest.MOD: "mod_revision",
    pb.RangeRequest.VALUE: "value",
}
# Compare.CompareTarget -> the KeyValue attribute compared, which is also the
# name of the Compare.target_union member that holds the expected value.
_COMPARE_ATTR = {
    pb.Compare.VERSION: "version",
    pb.Compare.CREATE: "create_revision",
    pb.Compare.MOD: "mod_revision",
    pb.Compare.VALUE: "value",
    pb.Compare.LEASE: "lease",
}


def gte_range(range_end: bytes) -> bytes | None:
    """etcd's range end: empty -> one key (None); ``b"\\0"`` -> every key >= key (``b""``)."""
    if not range_end:
        return None
    if range_end == b"\x00":
        return b""
    return range_end


def is_txn_readonly(r: pb.TxnRequest) -> bool:
    return all(op.WhichOneof("request") == "request_range" for op in (*r.success, *r.failure))


def is_txn_serializable(r: pb.TxnRequest) -> bool:
    return all(
        op.WhichOneof("request") == "request_range" and op.request_range.serializable
        for op in (*r.success, *r.failure)
    )


class Applier:
    def __init__(self, store: KVStore, lessor: Lessor) -> None:
        self.store = store
        self.lessor = lessor
        self._lease_exists = lessor.exists

    # -- single requests ------------------------------------------------------

    def range(self, r: pb.RangeRequest, txn: TxnRead | None = None) -> pb.RangeResponse:
        if txn is None:
            txn = self.store.read()
        limit = r.limit
        if (
            r.sort_order != pb.RangeRequest.NONE
            or r.min_mod_revision
            or r.max_mod_revision
            or r.min_create_revision
            or r.max_create_revision
        ):
            limit = 0  # fetch everything; filter, sort and truncate afterwards
        if limit > 0:
            limit += 1  # one more than asked, to know whether there is more
        rr = txn.range(r.key, gte_range(r.range_end), rev=r.revision, limit=limit, count_only=r.count_only)
        kvs = rr.kvs
        if r.max_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision <= r.max_mod_revision]
        if r.min_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision >= r.min_mod_revision]
        if r.max_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision <= r.max_create_revision]
        if r.min_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision >= r.min_create_revision]
        order = r.sort_order
        if r.sort_target != pb.RangeRequest.KEY and order == pb.RangeRequest.NONE:
            order = pb.RangeRequest.ASCEND  # results are in key order already
        if order in (pb.RangeRequest.ASCEND, pb.RangeRequest.DESCEND):  # etcd ignores unknown orders
            attr = _SORT_ATTR.get(r.sort_target, "key")
            # Stable, like the insertion sort Go uses for the small slices etcd sorts;
            # reverse=True keeps equal elements in their (key) order, as Go's sort.Reverse does there.
            kvs.sort(key=lambda kv: getattr(kv, attr), reverse=order == pb.RangeRequest.DESCEND)
        resp = pb.RangeResponse(count=rr.count)
        if r.limit > 0 and len(kvs) > r.limit:
            del kvs[r.limit :]
            resp.more = True
        if r.keys_only:
            for kv in kvs:
                kv.ClearField("value")
        resp.kvs.extend(kvs)
        resp.header.revision = rr.rev
        return resp

    def put(self, p: pb.PutRequest, txn: TxnWrite | None = None) -> pb.PutResponse:
        own_txn = txn is None
        if txn is None:
            if p.lease and not self._lease_exists(p.lease):
                raise RPCError(rpctypes.LEASE_NOT_FOUND)
            txn = self.store.write()
        try:
            value, lease = p.value, p.lease
            resp = pb.PutResponse()
            prev: KeyValue | None = None
            if p.ignore_value or p.ignore_lease or p.prev_kv:
                rr = txn.range(p.key, None)
                prev = rr.kvs[0] if rr.kvs else None
            if p.ignore_value or p.ignore_lease:
                if prev is None:
                    raise RPCError(rpctypes.KEY_NOT_FOUND)
                if p.ignore_value:
                    value = prev.value
                if p.ignore_lease:
                    lease = prev.lease
            if p.prev_kv and prev is not None:
                resp.prev_kv.CopyFrom(prev)
            resp.header.revision = txn.put(p.key, value, lease)
            return resp
        finally:
            if own_txn:
                txn.end()

    def delete_range(self, dr: pb.DeleteRangeRequest, txn: TxnWrite | None = None) -> pb.DeleteRangeResponse:
        own_txn = txn is None
        if txn is None:
            txn = self.store.write()
        try:
            end = gte_range(dr.range_end)
            resp = pb.DeleteRangeResponse()
            if dr.prev_kv:
                resp.prev_kvs.extend(txn.range(dr.key, end).kvs)
            resp.deleted, resp.header.revision = txn.delete_range(dr.key, end)
            return resp
        finally:
            if own_txn:
                txn.end()

    # -- transactions ---------------------------------------------------------

    def txn(self, rt: pb.TxnRequest) -> pb.TxnResponse:
        """Evaluate the compares, check the chosen branch, then run it atomically."""
        read = self.store.read()
        path = self._compare_to_path(read, rt)
        is_write = not is_txn_readonly(rt)
        if is_write:
            from_key_deletes: list[bytes] = []
            self._check_requests(
                read, rt, iter(path), partial(self._check_put, from_key_deletes=from_key_deletes)
            )
        self._check_requests(read, rt, iter(path), self._check_range)
        if not is_write:
            resp = pb.TxnResponse()
            self._apply_txn(read, rt, iter(path), resp)
            resp.header.revision = read.rev
            return resp
        txn = self.store.write()
        resp = pb.TxnResponse()
        try:
            self._apply_txn(txn, rt, iter(path), resp)
        except RPCError as e:
            # The checks above must catch every error: a txn failing halfway would leave half its writes.
            raise AssertionError(f"txn failed after it began writing: {e.message}") from e
        resp.header.revision = txn.end()
        return resp

    def _compare_to_path(self, rv: TxnRead, rt: pb.TxnRequest) -> list[bool]:
        """The outcome of this txn's compares, then of each nested txn on the chosen branch."""
        ok = all(self._apply_compare(rv, c) for c in rt.compare)
        path = [ok]
        for op in rt.success if ok else rt.failure:
            if op.WhichOneof("request") == "request_txn":
                path.extend(self._compare_to_path(rv, op.request_txn))
        return path

    @staticmethod
    def _apply_compare(rv: TxnRead, c: pb.Compare) -> bool:
        rr = rv.range(c.key, gte_range(c.range_end))
        if not rr.kvs:
            if c.target == pb.Compare.VALUE:
                # A missing key has no value to compare; etcd always fails this compare.
                return False
            return _compare_kv(c, KeyValue())
        return all(_compare_kv(c, kv) for kv in rr.kvs)

    def _check_requests(
        self,
        rv: TxnRead,
        rt: pb.TxnRequest,
        path: Iterator[bool],
        check: Callable[[TxnRead, pb.RequestOp], None],
    ) -> None:
        for op in rt.success if next(path) else rt.failure:
            if op.WhichOneof("request") == "request_txn":
                self._check_requests(rv, op.request_txn, path, check)
            else:
                check(rv, op)

    def _check_put(self, rv: TxnRead, op: pb.RequestOp, from_key_deletes: list[bytes]) -> None:
        """Puts must find what they need; ``from_key_deletes`` collects the from-key deletes met so far."""
        which = op.WhichOneof("request")
        if which == "request_delete_range" and op.request_delete_range.range_end == b"\x00":
            from_key_deletes.append(op.request_delete_range.key)
        if which != "request_put":
            return
        p = op.request_put
        if p.ignore_value or p.ignore_lease:
            # etcd's duplicate-key check misses from-key deletes, so an earlier one in this txn may
            # have deleted the key (etcd then crashes mid-txn; synod refuses the txn up front).
            gone = any(p.key >= start for start in from_key_deletes)
            if gone or not rv.range(p.key, None).kvs:
                raise RPCError(rpctypes.KEY_NOT_FOUND)
        if p.lease and not self._lease_exists(p.lease):
            raise RPCError(rpctypes.LEASE_NOT_FOUND)

    @staticmethod
    def _check_range(rv: TxnRead, op: pb.RequestOp) -> None:
        if op.WhichOneof("request") != "request_range":
            return
        rev = op.request_range.revision
        if rev == 0:
            return
        if rev > rv.rev:
            raise RPCError(rpctypes.FUTURE_REV)
        if rev < rv.first_rev:
            raise RPCError(rpctypes.COMPACTED)

    def _apply_txn(self, txn: Any, rt: pb.TxnRequest, path: Iterator[bool], resp: pb.TxnResponse) -> None:
        # Every txn response has a header, a nested one too (empty: only the top one gets a revision).
        resp.header.SetInParent()
        resp.succeeded = next(path)
        for op in rt.success if resp.succeeded else rt.failure:
            which = op.WhichOneof("request")
            out = resp.responses.add()
            if which == "request_range":
                out.response_range.CopyFrom(self.range(op.request_range, txn))
            elif which == "request_put":
                out.response_put.CopyFrom(self.put(op.request_put, txn))
            elif which == "request_delete_range":
                out.response_delete_range.CopyFrom(self.delete_range(op.request_delete_range, txn))
            elif which == "request_txn":
                self._apply_txn(txn, op.request_txn, path, out.response_txn)


def _compare_kv(c: pb.Compare, kv: KeyValue) -> bool:
    attr = _COMPARE_ATTR.get(c.target)
    actual: Any = 0
    expected: Any = 0  # an unknown target compares as equal, as in etcd
    if attr is not None:
        actual = getattr(kv, attr)
        # A target_union not holding the target's member compares against the zero value, as in etcd.
        expected = getattr(c, attr) if c.WhichOneof("target_union") == attr else b"" if attr == "value" else 0
    if c.result == pb.Compare.EQUAL:
        return bool(actual == expected)
    if c.result == pb.Compare.NOT_EQUAL:
        return bool(actual != expected)
    if c.result == pb.Compare.GREATER:
        return bool(actual > expected)
    if c.result == pb.Compare.LESS:
        return bool(actual < expected)
    return True


class LeaseApplier:
    """Applying lease requests: grant, revoke (deleting the keys in one revision), checkpoint."""

    def __init__(self, store: KVStore, lessor: Lessor) -> None:
        self.store = store
        self.lessor = lessor

    def grant(self, r: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        lease = self.lessor.grant(r.ID, r.TTL)
        return pb.LeaseGrantResponse(ID=lease.id, TTL=lease.ttl)

    def revoke(self, r: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        lease = self.lessor.lookup(r.ID)
        if lease is None:
            raise RPCError(rpctypes.LEASE_NOT_FOUND)
        txn = self.store.write()
        for key in sorted(lease.keys):
            txn.delete_range(key, None)
        self.lessor.remove(r.ID)
        resp = pb.LeaseRevokeResponse()
        resp.header.revision = txn.end()
        return resp

    def checkpoint(self, r: pb.LeaseCheckpointRequest) -> pb.LeaseCheckpointResponse:
        for cp in r.checkpoints:
            self.lessor.checkpoint(cp.ID, cp.remaining_TTL)
        return pb.LeaseCheckpointResponse()
