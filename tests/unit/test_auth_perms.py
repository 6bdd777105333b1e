"""Merged key-range permissions against a model: a key is permitted when some permission holds it,
a range when every key in it is held (checked on every key that can start a gap: the range's first
key and every permission's end), in etcd's order where an empty key is the end of the keyspace."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from synod.api.authpb.auth_pb2 import Permission
from synod.auth.perms import Intervals, RangePermissions, endpoint, key_interval

keys = st.binary(min_size=0, max_size=3).map(lambda b: bytes(x % 3 + ord("a") for x in b))
kinds = st.sampled_from([Permission.READ, Permission.WRITE, Permission.READWRITE])
perms = st.lists(st.tuples(kinds, keys, st.one_of(st.just(b""), st.just(b"\x00"), keys)), max_size=5).map(
    lambda items: [Permission(permType=t, key=k, range_end=e) for t, k, e in items]
)


def _held(points: list[Permission], key: bytes, write: bool) -> bool:
    p = endpoint(key)
    for perm in points:
        if perm.permType != Permission.READWRITE and (perm.permType == Permission.WRITE) != write:
            continue
        begin, end = key_interval(perm.key, perm.range_end)
        if begin <= p < end:
            return True
    return False


@settings(max_examples=400, deadline=None)
@given(perms, keys, st.one_of(st.just(b""), st.just(b"\x00"), keys), st.booleans())
def test_permits_matches_the_model(granted: list[Permission], key: bytes, end: bytes, write: bool) -> None:
    got = RangePermissions(granted).permits(key, end, write=write)
    if not end:
        want = bool(key) and _held(granted, key, write)
    else:
        begin, stop = key_interval(key, end)
        assume(begin < stop)  # an empty range reads nothing; etcd's answer for it is incidental
        witnesses = {key} | {
            e for p in granted for e in (p.range_end or p.key + b"\x00",) if e not in (b"", b"\x00")
        }
        inside = [w for w in witnesses if w and begin <= endpoint(w) < stop]
        want = bool(key) and all(_held(granted, w, write) for w in inside)
    assert got == want, (granted, key, end, write)


def test_etcd_34_examples() -> None:
    prefix = RangePermissions([Permission(permType=Permission.READ, key=b"foo", range_end=b"fop")])
    assert prefix.permits(b"foo/bar", b"", write=False)
    assert prefix.permits(b"foo", b"fop", write=False)
    assert not prefix.permits(b"foo", b"foq", write=False)
    assert not prefix.permits(b"foo", b"", write=True)
    # Adjacent permissions cover a range together; a gap between them does not.
    two = RangePermissions(
        [
            Permission(permType=Permission.WRITE, key=b"a", range_end=b"b"),
            Permission(permType=Permission.WRITE, key=b"b", range_end=b"c"),
            Permission(permType=Permission.WRITE, key=b"d"),
        ]
    )
    assert two.permits(b"a", b"c", write=True)
    assert not two.permits(b"a", b"e", write=True)
    assert two.permits(b"d", b"", write=True)
    # From a key to the end of the keyspace, as "\0" says.
    tail = RangePermissions([Permission(permType=Permission.READWRITE, key=b"m", range_end=b"\x00")])
    assert tail.permits(b"n", b"\x00", write=True) and tail.permits(b"zzz", b"", write=False)
    assert not tail.permits(b"a", b"\x00", write=False)
    # etcd 3.4: an empty key with "\0" (what `--prefix ""` sends) grants nothing.
    empty = RangePermissions([Permission(permType=Permission.READ, key=b"", range_end=b"\x00")])
    assert not empty.permits(b"a", b"", write=False)
    assert not Intervals()
