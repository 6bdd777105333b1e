"""Differential test: random KV request sequences, answered alike by synod and a real etcd 3.4.

One synod and one etcd serve the whole module and get the identical stream of
requests, so their revisions stay in lockstep. Each seed is one sequence: it
starts by deleting every key and compacting (so that it does not depend on the
sequences before it), runs 10 to 30 random requests (tests/differential/kvgen.py),
then reads the whole store at every revision it created. Every answer is
compared in full: header (but the IDs), kvs, counts, prev_kvs, nested txn
responses, and for errors the gRPC code and message.

A failure names its seed and the diverging request, and how to rerun just that
sequence (``pytest tests/differential/test_kv_differential.py -k seed-0042``).
"""

from __future__ import annotations

import difflib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.message import Message

from synod import rpctypes
from synod.api.etcdserverpb import rpc_pb2 as pb
from tests.differential.kvgen import UNKNOWN_LEASE, OpGen, Revs
from tests.support.kvpair import Answer, KVPair, show_request
from tests.support.servers import ServerProcess

THIS = "tests/differential/test_kv_differential.py"
SEEDS = range(300)
SLOW_SEEDS = range(1000, 6000)


@pytest.fixture(scope="module")
def kv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KVPair]:
    root: Path = tmp_path_factory.mktemp("differential")
    servers = [ServerProcess(kind, root / kind) for kind in ("synod", "etcd")]
    try:
        for s in servers:
            s.start()
        with KVPair(*servers) as pair:
            # A little history first, so that a sequence's start revision is never the store's first.
            for i in range(4):
                pair.call(pb.PutRequest(key=b"a", value=b"%d" % i))
            yield pair
    finally:
        for s in servers:
            s.kill()


class Sequence:
    """One seed's requests, sent to both servers and compared answer by answer."""

    def __init__(self, kv: KVPair, seed: int, rerun: str = "") -> None:
        self.kv = kv
        self.seed = seed
        self.rerun = rerun or f"pytest {THIS} -k seed-{seed:04d}"
        self.step = 0
        self.revs = Revs(0, 0, 0)

    def send(self, request: Message) -> Answer:
        synod, etcd = self.kv.call(request)
        if synod != etcd:
            diff = difflib.unified_diff(
                etcd.show().splitlines(), synod.show().splitlines(), "etcd", "synod", lineterm="", n=4
            )
            pytest.fail(
                f"seed {self.seed}, request #{self.step}: synod answers differently from etcd\n"
                f"request: {show_request(request)}\n" + "\n".join(diff) + "\n"
                f"rerun: {self.rerun}",
                pytrace=False,
            )
        self.step += 1
        if etcd.response is not None:
            self.revs.cur = etcd.response.header.revision  # type: ignore[attr-defined]
            if isinstance(request, pb.CompactionRequest):
                self.revs.compacted = request.revision
        return etcd

    def reset(self) -> None:
        """No key alive, everything so far compacted: the same start for every sequence."""
        self.send(pb.DeleteRangeRequest(key=b"\x00", range_end=b"\x00", prev_kv=True))
        # (Fails alike on both if the sequence before ended compacting at this revision.)
        self.send(pb.CompactionRequest(revision=self.revs.cur))
        self.revs = Revs(base=self.revs.cur, cur=self.revs.cur, compacted=self.revs.cur)

    def run(self) -> None:
        self.step = 0
        answer = self.send(pb.RangeRequest(key=b"\x00", range_end=b"\x00", count_only=True))
        self.revs = Revs(0, answer.response.header.revision, -1)  # type: ignore[union-attr]
        self.reset()
        rng = random.Random(self.seed)
        gen = OpGen(rng, self.revs)
        for put in gen.initial_puts():
            self.send(put)
        for _ in range(rng.randint(10, 30)):
            self.send(gen.request())
        self.read_history()

    def read_history(self) -> None:
        """The whole store at every revision of the sequence (and just before: compacted)."""
        for rev in range(self.revs.base - 1, self.revs.cur + 1):
            self.send(
                pb.RangeRequest(key=b"\x00", range_end=b"\x00", revision=rev, serializable=rev % 2 == 0)
            )


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed-{s:04d}")
def test_sequence(kv: KVPair, seed: int) -> None:
    Sequence(kv, seed).run()


@pytest.mark.slow
def test_many_sequences(kv: KVPair) -> None:
    """Seeds 1000-5999, or those of SYNOD_DIFF_SEEDS (e.g. "1234" or "1000-1099") to rerun some."""
    for seed in slow_seeds(os.environ.get("SYNOD_DIFF_SEEDS", "")):
        Sequence(kv, seed, rerun=f"SYNOD_DIFF_SEEDS={seed} pytest {THIS} --run-slow -k many").run()


def slow_seeds(spec: str) -> range:
    if not spec:
        return SLOW_SEEDS
    first, _, last = spec.partition("-")
    return range(int(first), int(last or first) + 1)


def _txn(n_success: int = 0, n_compare: int = 0, nested: pb.TxnRequest | None = None) -> pb.TxnRequest:
    t = pb.TxnRequest()
    t.compare.extend(pb.Compare(key=b"k%d" % i, target=pb.Compare.VERSION) for i in range(n_compare))
    t.success.extend(pb.RequestOp(request_range=pb.RangeRequest(key=b"k%d" % i)) for i in range(n_success))
    if nested is not None:
        t.success.append(pb.RequestOp(request_txn=nested))
    return t


def test_limits(start_server) -> None:
    """--max-txn-ops (nested txns get what their parent leaves) and --max-request-bytes."""
    limits = ("--max-txn-ops", "4", "--max-request-bytes", "1024")
    with KVPair(start_server("synod", *limits), start_server("etcd", *limits)) as pair:
        seq = Sequence(pair, seed=-1, rerun=f"pytest {THIS} -k test_limits")
        requests: list[Message] = [
            _txn(4),
            _txn(5),
            _txn(0, 5),
            pb.TxnRequest(
                failure=[pb.RequestOp(request_put=pb.PutRequest(key=b"k%d" % i)) for i in range(5)]
            ),
            _txn(1, 0, _txn(3)),  # the parent has 2 ops: 2 left for the nested txn
            _txn(1, 0, _txn(2)),
            _txn(0, 2, _txn(1, 2)),
            _txn(0, 0, _txn(0, 0, _txn(0, 0, _txn(1)))),
            _txn(0, 0, _txn(1, 0, _txn(1, 0, _txn(1)))),
            pb.TxnRequest(success=[pb.RequestOp()]),  # an empty op: etcdserver: key not found
            pb.TxnRequest(failure=[pb.RequestOp(request_txn=pb.TxnRequest(success=[pb.RequestOp()]))]),
        ]
        rng = random.Random(7)
        gen = OpGen(rng, seq.revs)
        requests += [gen.txn() for _ in range(150)]
        for r in requests:
            seq.send(r)
        # A put is too large when its log entry (request and request ID) is over the limit. Find
        # the largest value each member takes, with puts that fail anyway (no such lease) if not too
        # large. The request IDs of two members may differ in encoded length by a byte.
        largest, too_large = [0, 0], [1024, 1024]
        while any(t - o > 1 for o, t in zip(largest, too_large, strict=True)):
            mids = [(o + t) // 2 for o, t in zip(largest, too_large, strict=True)]
            for i, mid in enumerate(mids):
                answer = pair.call(pb.PutRequest(key=b"big", value=b"v" * mid, lease=UNKNOWN_LEASE))[i]
                assert answer.message in (
                    rpctypes.LEASE_NOT_FOUND.message,
                    rpctypes.REQUEST_TOO_LARGE.message,
                )
                if answer.message == rpctypes.LEASE_NOT_FOUND.message:
                    largest[i] = mid
                else:
                    too_large[i] = mid
        assert abs(largest[0] - largest[1]) <= 1, (
            f"largest value synod takes: {largest[0]}, etcd: {largest[1]}"
        )
        ok = min(largest)
        for n in (ok - 1, ok + 2, 2000):
            seq.send(pb.PutRequest(key=b"big", value=b"v" * n, prev_kv=True))
            seq.send(
                pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"big", value=b"t" * n))])
            )
        seq.send(pb.RangeRequest(key=b"\x00", range_end=b"\x00"))


def test_history_survives_restart(start_server) -> None:
    """After a restart both members still answer alike, for old revisions and new writes."""
    servers = [start_server("synod"), start_server("etcd")]
    rerun = f"pytest {THIS} -k restart"
    with KVPair(*servers) as pair:
        for seed in range(10):
            Sequence(pair, seed, rerun).run()
        last = Sequence(pair, 10, rerun)
        last.run()
        for s in servers:
            s.restart()
        last.read_history()
        for seed in range(11, 21):
            Sequence(pair, seed, rerun).run()
