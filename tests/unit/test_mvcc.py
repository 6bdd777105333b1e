"""mvcc: the key index walks through etcd's documented example; the store agrees with a naive model."""

from __future__ import annotations

import random

import pytest

from synod.backend.backend import Backend
from synod.mvcc.key_index import KeyIndex, RevisionNotFound
from synod.mvcc.store import ErrCompacted, ErrFutureRev, KVStore


def _example() -> KeyIndex:
    # put(1.0); put(2.0); tombstone(3.0); put(4.0); tombstone(5.0)
    ki = KeyIndex(b"foo")
    ki.put((1, 0))
    ki.put((2, 0))
    ki.tombstone((3, 0))
    ki.put((4, 0))
    ki.tombstone((5, 0))
    return ki


def _revs(ki: KeyIndex) -> list[list[tuple[int, int]]]:
    return [g.revs for g in ki.generations]


def test_key_index_get_sees_each_life():
    ki = _example()
    assert ki.get(1) == ((1, 0), (1, 0), 1)
    assert ki.get(2) == ((2, 0), (1, 0), 2)
    assert ki.get(4) == ((4, 0), (4, 0), 1)
    for dead in (0, 3, 5, 6):
        with pytest.raises(RevisionNotFound):
            ki.get(dead)


@pytest.mark.parametrize(
    ("at", "kept", "generations"),
    [
        (2, {(2, 0)}, [[(2, 0), (3, 0)], [(4, 0), (5, 0)], []]),
        (4, {(4, 0)}, [[(4, 0), (5, 0)], []]),
        (5, set(), [[]]),
        (6, set(), [[]]),
    ],
)
def test_key_index_compaction_follows_etcds_example(at, kept, generations):
    ki = _example()
    available: set[tuple[int, int]] = set()
    ki.compact(at, available)
    assert available == kept
    assert _revs(ki) == generations


def test_tombstone_of_missing_key_fails():
    ki = KeyIndex(b"k")
    with pytest.raises(RevisionNotFound):
        ki.tombstone((2, 0))


class Model:
    """The store's meaning, spelled out: every key's full history as a list."""

    def __init__(self) -> None:
        self.rev = 1
        self.history: dict[bytes, list[tuple[int, bytes | None]]] = {}

    def write(self, ops: list[tuple[str, bytes, bytes]]) -> None:
        changed = False
        for op, key, arg in ops:
            if op == "put":
                self.history.setdefault(key, []).append((self.rev + 1, arg))
                changed = True
            else:
                for k in self.live(key, arg, self.rev + 1 if changed else self.rev):
                    self.history[k].append((self.rev + 1, None))
                    changed = True
        if changed:
            self.rev += 1

    def live(self, key: bytes, end: bytes | None, at: int) -> list[bytes]:
        return [k for k, _ in self.view(key, end, at)]

    def view(self, key: bytes, end: bytes | None, at: int):
        """(key, (value, create, mod, version)) of every key alive at ``at``, in key order."""
        out = []
        for k in sorted(self.history):
            if (end is None and k != key) or (end == b"" and k < key) or (end and not key <= k < end):
                continue
            state = None
            for rev, value in self.history[k]:
                if rev > at:
                    break
                if value is None:
                    state = None
                elif state is None:
                    state = (value, rev, rev, 1)
                else:
                    state = (value, state[1], rev, state[3] + 1)
            if state is not None:
                out.append((k, state))
        return out


KEYS = [b"a", b"ab", b"b", b"b\x00", b"c", b"d"]


def _random_range(rng: random.Random) -> tuple[bytes, bytes | None]:
    key = rng.choice(KEYS)
    return key, rng.choice([None, b"", rng.choice(KEYS), key + b"\xff"])


@pytest.mark.parametrize("seed", range(40))
def test_store_matches_model_across_compaction_and_restart(tmp_path, seed):
    rng = random.Random(seed)
    backend = Backend(str(tmp_path / "db"))
    store, model = KVStore(backend), Model()
    compacted = 0
    for step in range(120):
        roll = rng.random()
        if roll < 0.08 and model.rev > compacted + 1:
            compacted = rng.randrange(compacted + 1, model.rev + 1)
            for _ in store.compact(compacted):
                pass
        elif roll < 0.12:
            backend.commit()
            backend.close()
            backend = Backend(str(tmp_path / "db"))
            store = KVStore(backend)
            assert store.current_rev == model.rev, f"seed {seed} step {step}"
        else:
            ops = []
            txn = store.write()
            for _ in range(rng.randint(1, 3)):
                if rng.random() < 0.7:
                    key = rng.choice(KEYS)
                    if any(o[1] == key for o in ops):
                        continue
                    value = rng.randbytes(3)
                    ops.append(("put", key, value))
                    txn.put(key, value, 0)
                else:
                    key, end = _random_range(rng)
                    ops.append(("del", key, end))
                    txn.delete_range(key, end)
            txn.end()
            model.write(ops)
        assert store.current_rev == model.rev, f"seed {seed} step {step}"
        for _ in range(3):
            key, end = _random_range(rng)
            at = rng.randrange(max(compacted, 1), model.rev + 1)
            got = store.read().range(key, end, rev=at)
            want = model.view(key, end, at)
            assert [
                (kv.key, (kv.value, kv.create_revision, kv.mod_revision, kv.version)) for kv in got.kvs
            ] == want, f"seed {seed} step {step}: range {key!r}..{end!r} at {at}"
            assert got.count == len(want)
    if compacted > 1:
        with pytest.raises(ErrCompacted):
            store.read().range(b"a", b"", rev=compacted - 1)
    with pytest.raises(ErrFutureRev):
        store.read().range(b"a", b"", rev=model.rev + 1)
    backend.close()
