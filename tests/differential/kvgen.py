"""Seeded random KV requests over a small key space, for the differential test.

A sequence is generated one request at a time from a ``random.Random(seed)``
and the revisions the servers reported so far (``Revs``). Revisions in the
requests are always chosen relative to the sequence's own start, so one seed
gives the same sequence whether it runs alone or after other sequences.

Few keys (at most 12 can be alive), so that etcd's Go sort of a range's results
is insertion sort (Go 1.19 sorts slices of up to 12 elements that way), which
is stable, as the stable sort synod uses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from synod.api.etcdserverpb import rpc_pb2 as pb

KEYS = [b"\x00", b"a", b"ab", b"abc", b"b", b"b\x00", b"ba", b"c", b"d\xff", b"z"]
VALUES = [b"", b"0", b"1", b"x", b"xy", b"\xff\x00"]
UNKNOWN_LEASE = 0x1234ABCD  # synod has no lease service yet, so every lease is unknown
UNKNOWN_ENUM: Any = 9  # a value no enum of the API defines (proto3 enums are open)

SORT_TARGETS = [pb.RangeRequest.KEY, pb.RangeRequest.VERSION, pb.RangeRequest.CREATE]
SORT_TARGETS += [pb.RangeRequest.MOD, pb.RangeRequest.VALUE]
COMPARE_TARGETS = [pb.Compare.VERSION, pb.Compare.CREATE, pb.Compare.MOD, pb.Compare.VALUE, pb.Compare.LEASE]
COMPARE_RESULTS = [pb.Compare.EQUAL, pb.Compare.GREATER, pb.Compare.LESS, pb.Compare.NOT_EQUAL]
# Compare.CompareTarget -> its member of Compare.target_union.
UNION_MEMBER = {
    pb.Compare.VERSION: "version",
    pb.Compare.CREATE: "create_revision",
    pb.Compare.MOD: "mod_revision",
    pb.Compare.VALUE: "value",
    pb.Compare.LEASE: "lease",
}


@dataclass
class Revs:
    base: int  # the sequence started at this revision (everything before it is compacted)
    cur: int  # the servers' current revision, as last reported
    compacted: int  # the last revision compacted


def prefix_end(key: bytes) -> bytes:
    """clientv3's range end for a prefix: the key with its last byte below 0xff incremented."""
    k = bytearray(key)
    while k:
        if k[-1] < 0xFF:
            k[-1] += 1
            return bytes(k)
        k.pop()
    return b"\x00"  # every key


def has_from_key_delete(t: pb.TxnRequest) -> bool:
    for op in (*t.success, *t.failure):
        which = op.WhichOneof("request")
        if which == "request_delete_range" and op.request_delete_range.range_end == b"\x00":
            return True
        if which == "request_txn" and has_from_key_delete(op.request_txn):
            return True
    return False


def clear_ignore_flags(t: pb.TxnRequest) -> None:
    for op in (*t.success, *t.failure):
        which = op.WhichOneof("request")
        if which == "request_put":
            op.request_put.ignore_value = op.request_put.ignore_lease = False
        elif which == "request_txn":
            clear_ignore_flags(op.request_txn)


class OpGen:
    def __init__(self, rng: random.Random, revs: Revs) -> None:
        self.rng = rng
        self.revs = revs

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, weighted: dict[str, int]) -> str:
        return self.rng.choices(list(weighted), weights=list(weighted.values()))[0]

    # -- building blocks -------------------------------------------------------

    def key(self, empty: float = 0.01) -> bytes:
        return b"" if self.chance(empty) else self.rng.choice(KEYS)

    def range_end(self, key: bytes, single: int = 4) -> bytes:
        kind = self.pick({"single": single, "from": 2, "prefix": 2, "key": 2, "just": 1, "ff": 1})
        if kind == "single":
            return b""
        if kind == "from":
            return b"\x00"
        if kind == "prefix":
            return prefix_end(key)
        if kind == "key":
            return self.rng.choice(KEYS)  # may be before ``key``: an empty range
        if kind == "just":
            return key + b"\x00"
        return b"\xff"

    def read_revision(self) -> int:
        r = self.revs
        kind = self.pick(
            {"now": 8, "window": 5, "cur": 1, "compacted": 1, "at-compact": 1, "future": 1, "neg": 1}
        )
        if kind == "now":
            return 0
        if kind == "window":
            return self.rng.randint(r.compacted, r.cur)
        if kind == "cur":
            return r.cur
        if kind == "compacted":
            return r.compacted - self.rng.randint(1, 3)
        if kind == "at-compact":
            return r.compacted
        if kind == "future":
            return r.cur + self.rng.randint(1, 3)
        return -self.rng.randint(1, 2)

    def revision_value(self) -> int:
        """A revision to compare or filter with."""
        r = self.revs
        kind = self.pick({"zero": 2, "window": 6, "cur": 2, "next": 1})
        if kind == "zero":
            return 0
        if kind == "window":
            return self.rng.randint(r.base, r.cur + 1)
        if kind == "cur":
            return r.cur
        return r.cur + 1

    # -- requests --------------------------------------------------------------

    def range(self) -> pb.RangeRequest:
        k = self.key()
        r = pb.RangeRequest(key=k, range_end=self.range_end(k))
        r.limit = self.rng.choice([0, 0, 0, 0, 0, 1, 2, 3, 100, -1])
        r.revision = self.read_revision()
        r.sort_order = self.rng.choice(
            [pb.RangeRequest.NONE] * 3 + [pb.RangeRequest.ASCEND, pb.RangeRequest.DESCEND]
        )
        if self.chance(0.02):
            r.sort_order = UNKNOWN_ENUM  # etcd then does not sort
        r.sort_target = self.rng.choice(SORT_TARGETS)
        r.serializable = self.chance(0.3)
        r.keys_only = self.chance(0.2)
        r.count_only = self.chance(0.1)
        for field in ("min_mod_revision", "max_mod_revision", "min_create_revision", "max_create_revision"):
            if self.chance(0.1):
                setattr(r, field, self.revision_value())
        return r

    def put(self, key: bytes | None = None) -> pb.PutRequest:
        p = pb.PutRequest(key=self.key() if key is None else key, value=self.rng.choice(VALUES))
        p.prev_kv = self.chance(0.4)
        if self.chance(0.15):
            p.ignore_value = True
            if self.chance(0.9):
                p.value = b""  # else: etcdserver: value is provided
        if self.chance(0.15):
            p.ignore_lease = True
            if self.chance(0.1):
                p.lease = UNKNOWN_LEASE  # etcdserver: lease is provided
        elif self.chance(0.05):
            p.lease = UNKNOWN_LEASE
        return p

    def delete(self, key: bytes | None = None, range_end: bytes | None = None) -> pb.DeleteRangeRequest:
        k = self.key() if key is None else key
        end = self.range_end(k, single=6) if range_end is None else range_end
        return pb.DeleteRangeRequest(key=k, range_end=end, prev_kv=self.chance(0.5))

    def compare(self) -> pb.Compare:
        k = self.key(empty=0.003)
        c = pb.Compare(key=k, range_end=self.range_end(k, single=12))
        c.target = self.rng.choice(COMPARE_TARGETS)
        c.result = self.rng.choice(COMPARE_RESULTS)
        member = UNION_MEMBER[c.target]
        if self.chance(0.1):  # the union holding another member, or none
            member = self.rng.choice([*UNION_MEMBER.values(), "none"])
        if self.chance(0.02):
            c.target = UNKNOWN_ENUM
        if self.chance(0.02):
            c.result = UNKNOWN_ENUM
        if member == "value":
            c.value = self.rng.choice(VALUES)
        elif member == "version":
            c.version = self.rng.randint(0, 4)
        elif member == "lease":
            c.lease = self.rng.choice([0, 0, UNKNOWN_LEASE])
        elif member != "none":
            setattr(c, member, self.revision_value())
        return c

    def txn(self) -> pb.TxnRequest:
        # Mostly transactions that pass etcd's duplicate-key check (each key written
        # once), sometimes anything: duplicates across ops and nested txns.
        free = self.chance(0.25)
        pool = self.rng.sample(KEYS, len(KEYS))
        t = self._txn(depth=0, free=free, pool=pool)
        if has_from_key_delete(t):
            # etcd 3.4 checks ignore_value/ignore_lease before the txn runs, so a
            # from-key delete earlier in the txn (not a duplicate for its check)
            # would make the put fail mid-txn, which etcd answers by panicking.
            clear_ignore_flags(t)
        return t

    def _txn(self, depth: int, free: bool, pool: list[bytes]) -> pb.TxnRequest:
        t = pb.TxnRequest()
        t.compare.extend(self.compare() for _ in range(self.rng.choice([0, 1, 1, 2, 2, 3, 4])))
        for branch in (t.success, t.failure):
            for _ in range(self.rng.choice([0, 1, 1, 2, 2, 3, 4])):
                branch.append(self._request_op(depth, free, pool))
        return t

    def _request_op(self, depth: int, free: bool, pool: list[bytes]) -> pb.RequestOp:
        weights = {"range": 4, "put": 4, "delete": 2, "txn": 2 if depth < 2 else 0}
        kind = self.pick(weights)
        if kind == "range":
            r = self.range()
            if self.chance(0.8):
                r.revision = 0  # mostly current: a bad revision fails the whole txn
            return pb.RequestOp(request_range=r)
        if kind == "txn":
            return pb.RequestOp(request_txn=self._txn(depth + 1, free, pool))
        if free:
            key = None
        elif pool:
            key = pool.pop()
        else:
            return pb.RequestOp(request_range=self.range())
        if kind == "put":
            return pb.RequestOp(request_put=self.put(key))
        # A delete of its own key only, or from it on (which etcd's check lets overlap puts).
        end = None if free else self.rng.choice([b"", b"", key + b"\x00" if key else b"", b"\x00"])
        return pb.RequestOp(request_delete_range=self.delete(key, end))

    def compaction(self) -> pb.CompactionRequest:
        r = self.revs
        kind = self.pick({"cur": 2, "window": 4, "again": 1, "older": 1, "future": 1, "zero": 1})
        if kind == "cur":
            rev = r.cur
        elif kind == "window":
            rev = self.rng.randint(r.compacted, r.cur)
        elif kind == "again":
            rev = r.compacted
        elif kind == "older":
            rev = r.compacted - self.rng.randint(1, 3)
        elif kind == "future":
            rev = r.cur + self.rng.randint(1, 2)
        else:
            rev = self.rng.choice([0, -1])
        return pb.CompactionRequest(revision=rev, physical=self.chance(0.5))

    def initial_puts(self) -> list[pb.PutRequest]:
        """Some keys to start with."""
        keys = self.rng.sample(KEYS, self.rng.randint(2, 8))
        return [pb.PutRequest(key=k, value=self.rng.choice(VALUES)) for k in keys]

    def request(self) -> Message:
        kind = self.pick({"range": 30, "put": 25, "delete": 12, "txn": 25, "compact": 4})
        if kind == "range":
            return self.range()
        if kind == "put":
            return self.put()
        if kind == "delete":
            return self.delete()
        if kind == "txn":
            return self.txn()
        return self.compaction()
