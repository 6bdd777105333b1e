"""The transaction builder's messages (synod.client.txn) and the key ranges they use (keys.py)."""

from __future__ import annotations

import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.client import txn as t
from synod.client.keys import FROM_KEY, key_range, prefix_end, to_bytes


@pytest.mark.parametrize(
    ("key", "end"),
    [
        (b"a", b"b"),
        (b"abc", b"abd"),
        (b"a\xff", b"b"),
        (b"a\xff\xff", b"b"),
        (b"\x00", b"\x01"),
        (b"\xff", b"\x00"),  # nothing after: every key from the start on
        (b"\xff\xff", b"\x00"),
        (b"", b"\x00"),
    ],
)
def test_prefix_end(key: bytes, end: bytes) -> None:
    assert prefix_end(key) == end


def test_key_range() -> None:
    assert key_range("k") == (b"k", b"")
    assert key_range("k", prefix=True) == (b"k", b"l")
    assert key_range("", prefix=True) == (FROM_KEY, FROM_KEY)  # every key
    assert key_range("k", from_key=True) == (b"k", FROM_KEY)
    assert key_range("", from_key=True) == (FROM_KEY, FROM_KEY)
    assert key_range("a", range_end="c") == (b"a", b"c")
    assert key_range(b"\xff", prefix=True) == (b"\xff", FROM_KEY)
    assert to_bytes("é") == "é".encode() and to_bytes(b"\x80") == b"\x80"
    for conflicting in ({"prefix": True, "from_key": True}, {"prefix": True, "range_end": "z"},
                        {"from_key": True, "range_end": "z"}):  # fmt: skip
        with pytest.raises(ValueError):
            key_range("k", **conflicting)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("compare", "target", "result", "field", "operand"),
    [
        (t.value("k") == "v", pb.Compare.VALUE, pb.Compare.EQUAL, "value", b"v"),
        (t.value("k") != b"v", pb.Compare.VALUE, pb.Compare.NOT_EQUAL, "value", b"v"),
        (t.value("k") == "", pb.Compare.VALUE, pb.Compare.EQUAL, "value", b""),
        (t.version("k") == 0, pb.Compare.VERSION, pb.Compare.EQUAL, "version", 0),
        (t.version("k") > 2, pb.Compare.VERSION, pb.Compare.GREATER, "version", 2),
        (t.create_revision("k") < 7, pb.Compare.CREATE, pb.Compare.LESS, "create_revision", 7),
        (t.mod_revision("k") == 9, pb.Compare.MOD, pb.Compare.EQUAL, "mod_revision", 9),
        (t.lease("k") != 0x10, pb.Compare.LEASE, pb.Compare.NOT_EQUAL, "lease", 0x10),
    ],
)
def test_compares(compare: pb.Compare, target: int, result: int, field: str, operand: object) -> None:
    assert (compare.key, compare.range_end) == (b"k", b"")
    assert (compare.target, compare.result) == (target, result)
    # The operand is set in the oneof even when it is the zero value (etcd reads it from there).
    assert compare.WhichOneof("target_union") == field
    assert getattr(compare, field) == operand
    assert pb.Compare.FromString(compare.SerializeToString()) == compare


def test_compare_ranges_and_operand_types() -> None:
    assert (t.version("p/", prefix=True) > 0).range_end == b"p0"
    assert (t.version("", prefix=True) > 0).key == FROM_KEY
    assert (t.mod_revision("a", range_end="c") < 5).range_end == b"c"
    for bad in (lambda: t.value("k") == 1, lambda: t.version("k") == "1", lambda: t.version("k") == True,  # noqa: E712
                lambda: t.lease("k") == 1.5):  # fmt: skip
        with pytest.raises(TypeError):
            bad()
    with pytest.raises(TypeError):
        hash(t.value("k"))  # a target is not a value: == builds a message


def test_operations() -> None:
    put = t.put("k", "v", lease=5, prev_kv=True)
    assert put.WhichOneof("request") == "request_put"
    assert put.request_put == pb.PutRequest(key=b"k", value=b"v", lease=5, prev_kv=True)
    assert t.put("k", "", ignore_value=True, ignore_lease=True).request_put.ignore_lease

    get = t.get("p/", prefix=True, revision=3, keys_only=True, limit=2)
    want = pb.RangeRequest(key=b"p/", range_end=b"p0", revision=3, keys_only=True, limit=2)
    assert get.request_range == want
    assert t.get("k", count_only=True).request_range.count_only
    assert t.get("k", from_key=True).request_range.range_end == FROM_KEY
    desc = t.get("p/", prefix=True, sort_order=pb.RangeRequest.DESCEND, sort_target=pb.RangeRequest.MOD)
    assert (desc.request_range.sort_order, desc.request_range.sort_target) == (
        pb.RangeRequest.DESCEND, pb.RangeRequest.MOD)  # fmt: skip

    delete = t.delete("p/", prefix=True, prev_kv=True)
    assert delete.request_delete_range == pb.DeleteRangeRequest(key=b"p/", range_end=b"p0", prev_kv=True)
    assert t.delete("k", from_key=True).request_delete_range.range_end == FROM_KEY

    nested = t.txn([t.version("k") == 0], [put], [get])
    assert nested.WhichOneof("request") == "request_txn"
    inner = nested.request_txn
    assert (len(inner.compare), inner.success[0], inner.failure[0]) == (1, put, get)
    assert list(t.txn([]).request_txn.success) == []
