"""The byte-assembled watch responses equal what the protobuf library writes."""

from __future__ import annotations

import random

import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.mvccpb import kv_pb2
from synod.mvcc.store import DELETE, PUT, Change
from synod.server.api.watch_codec import encode_event, encode_watch_response, varint


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**31, 2**63 - 1, -1, -(2**63)])
def test_varint_matches_protobuf(n):
    assert pb.WatchResponse(watch_id=n).SerializeToString() == (b"\x10" + varint(n) if n else b"")


def _kv(rng: random.Random) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(
        key=rng.randbytes(rng.randint(1, 40)),
        value=rng.randbytes(rng.choice([0, 1, 200, 3000])),
        create_revision=rng.randint(1, 10**9),
        mod_revision=rng.randint(1, 10**12),
        version=rng.randint(1, 1000),
        lease=rng.choice([0, rng.randint(1, 2**63 - 1)]),
    )


@pytest.mark.parametrize("seed", range(20))
def test_watch_response_bytes_equal_protobufs(seed):
    rng = random.Random(seed)
    header = pb.ResponseHeader(
        cluster_id=rng.getrandbits(64),
        member_id=rng.getrandbits(64),
        revision=rng.randint(0, 10**9),
        raft_term=rng.randint(0, 50),
    )
    events, encoded = [], []
    for _ in range(rng.randint(0, 5)):
        kind = rng.choice([PUT, DELETE])
        kv = _kv(rng)
        prev = _kv(rng) if rng.random() < 0.5 else None
        events.append(kv_pb2.Event(type=kind, kv=kv, prev_kv=prev))
        encoded.append(
            encode_event(Change(kind, kv, kv.SerializeToString()), prev and prev.SerializeToString())
        )
    flags = {
        "created": rng.random() < 0.3,
        "canceled": rng.random() < 0.3,
        "compact_revision": rng.choice([0, rng.randint(1, 10**6)]),
        "cancel_reason": rng.choice(["", "mvcc: watcher range is empty"]),
        "fragment": rng.random() < 0.3,
    }
    watch_id = rng.choice([0, -1, rng.randint(1, 2**40)])
    want = pb.WatchResponse(header=header, watch_id=watch_id, events=events, **flags).SerializeToString()
    got = encode_watch_response(header.SerializeToString(), watch_id, encoded, **flags)
    assert got == want
