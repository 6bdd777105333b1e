"""MemoryStorage: terms, entries under size limits, compaction, snapshots, appends that truncate.

The cases follow etcd-io/raft's storage_test.go, rewritten: a storage holding
the dummy entry (3, 3) then entries 4 and 5 (term = index).
"""

from __future__ import annotations

import pytest

from synod.raft.storage import (
    ENTRY_OVERHEAD,
    NO_LIMIT,
    ErrCompacted,
    ErrSnapOutOfDate,
    ErrUnavailable,
    MemoryStorage,
    Storage,
    StorageError,
    entries_size,
    entry_size,
    limit_size,
)
from synod.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata


def E(index: int, term: int, data: bytes = b"") -> Entry:
    return Entry(index, term, data)


def storage_from(ents: list[Entry]) -> MemoryStorage:
    """A storage whose dummy entry is ``ents[0]`` (from a snapshot) followed by ``ents[1:]``."""
    s = MemoryStorage()
    if ents[0].index > 0:
        s.apply_snapshot(Snapshot(metadata=SnapshotMetadata(index=ents[0].index, term=ents[0].term)))
    s.append(ents[1:])
    return s


def contents(s: MemoryStorage) -> list[tuple[int, int]]:
    """(index, term) of the dummy entry and every entry after it."""
    dummy = s.first_index() - 1
    return [(dummy, s.term(dummy))] + [
        (e.index, e.term) for e in s.entries(s.first_index(), s.last_index() + 1)
    ]


THREE = [E(3, 3), E(4, 4), E(5, 5)]


def test_memory_storage_is_a_storage():
    s: Storage = MemoryStorage()
    assert s.first_index() == 1
    assert s.last_index() == 0
    assert s.term(0) == 0
    assert s.snapshot().empty
    assert s.initial_state() == (HardState(), ConfState())


def test_errors_are_storage_errors():
    for cls in (ErrCompacted, ErrUnavailable, ErrSnapOutOfDate):
        assert issubclass(cls, StorageError)


@pytest.mark.parametrize(
    ("i", "error", "term"),
    [(2, ErrCompacted, 0), (3, None, 3), (4, None, 4), (5, None, 5), (6, ErrUnavailable, 0)],
)
def test_term(i, error, term):
    s = storage_from(THREE)
    if error is None:
        assert s.term(i) == term
    else:
        with pytest.raises(error):
            s.term(i)


FOUR = [E(3, 3), E(4, 4), E(5, 5), E(6, 6)]
SZ = entry_size(E(4, 4))  # every entry here has the same size


@pytest.mark.parametrize(
    ("lo", "hi", "max_size", "error", "want"),
    [
        (2, 6, NO_LIMIT, ErrCompacted, None),
        (3, 4, NO_LIMIT, ErrCompacted, None),  # the dummy is not an entry
        (4, 5, NO_LIMIT, None, [4]),
        (4, 6, NO_LIMIT, None, [4, 5]),
        (4, 7, NO_LIMIT, None, [4, 5, 6]),
        (4, 7, 0, None, [4]),  # at least one entry, whatever the limit
        (4, 7, 2 * SZ, None, [4, 5]),
        (4, 7, 2 * SZ + SZ // 2, None, [4, 5]),
        (4, 7, 3 * SZ - 1, None, [4, 5]),
        (4, 7, 3 * SZ, None, [4, 5, 6]),
        (4, 8, NO_LIMIT, ErrUnavailable, None),
        (5, 5, NO_LIMIT, None, []),
    ],
)
def test_entries(lo, hi, max_size, error, want):
    s = storage_from(FOUR)
    if error is not None:
        with pytest.raises(error):
            s.entries(lo, hi, max_size)
        return
    assert s.entries(lo, hi, max_size) == [E(i, i) for i in want]


def test_entries_rejects_reversed_range():
    with pytest.raises(ValueError):
        storage_from(FOUR).entries(5, 4)


def test_entries_returns_a_list_the_caller_owns():
    s = storage_from(FOUR)
    got = s.entries(4, 7)
    got.clear()
    assert len(s.entries(4, 7)) == 3


def test_size_counts_data_and_overhead():
    ents = [E(1, 1, b"abc"), E(2, 1, b""), E(3, 1, b"x" * 10)]
    assert entry_size(ents[0]) == 3 + ENTRY_OVERHEAD
    assert entries_size(ents) == 13 + 3 * ENTRY_OVERHEAD
    assert entries_size([]) == 0


@pytest.mark.parametrize(
    ("max_size", "want"),
    [
        (0, 1),
        (entry_size(E(1, 1, b"aaaa")), 1),
        (entry_size(E(1, 1, b"aaaa")) * 2 - 1, 1),
        (entry_size(E(1, 1, b"aaaa")) * 2, 2),
        (entry_size(E(1, 1, b"aaaa")) * 3, 3),
        (NO_LIMIT, 3),
    ],
)
def test_limit_size(max_size, want):
    ents = [E(i, 1, b"aaaa") for i in (1, 2, 3)]
    got = limit_size(ents, max_size)
    assert got == ents[:want]
    assert got is not ents
    assert limit_size([], 0) == []


def test_first_and_last_index():
    s = storage_from(THREE)
    assert (s.first_index(), s.last_index()) == (4, 5)
    s.append([E(6, 5)])
    assert s.last_index() == 6
    s.compact(4)
    assert (s.first_index(), s.last_index()) == (5, 6)


@pytest.mark.parametrize(
    ("i", "error", "dummy", "length"),
    [(2, ErrCompacted, (3, 3), 3), (3, ErrCompacted, (3, 3), 3), (4, None, (4, 4), 2), (5, None, (5, 5), 1)],
)
def test_compact(i, error, dummy, length):
    s = storage_from(THREE)
    if error is not None:
        with pytest.raises(error):
            s.compact(i)
    else:
        s.compact(i)
    got = contents(s)
    assert got[0] == dummy
    assert len(got) == length


def test_compact_beyond_last_index_is_refused():
    s = storage_from(THREE)
    with pytest.raises(ValueError):
        s.compact(6)
    assert contents(s) == [(3, 3), (4, 4), (5, 5)]


def test_compact_drops_the_dummy_data():
    s = MemoryStorage()
    s.append([E(1, 1, b"one"), E(2, 1, b"two")])
    s.compact(1)
    assert s.entries(2, 3) == [E(2, 1, b"two")]
    assert s.term(1) == 1


@pytest.mark.parametrize("i", [4, 5])
def test_create_snapshot(i):
    cs = ConfState(voters=(1, 2, 3))
    s = storage_from(THREE)
    snap = s.create_snapshot(i, cs, b"data")
    assert snap == Snapshot(b"data", SnapshotMetadata(cs, i, i))
    assert s.snapshot() == snap
    assert s.initial_state()[1] == cs
    assert s.conf_state == cs
    # Creating a snapshot does not compact.
    assert contents(s) == [(3, 3), (4, 4), (5, 5)]


def test_create_snapshot_keeps_the_configuration_when_none_is_given():
    cs = ConfState(voters=(1, 2))
    s = storage_from([E(0, 0), E(1, 1), E(2, 1), E(3, 2)])
    s.create_snapshot(1, cs, b"a")
    assert s.create_snapshot(3, None, b"b") == Snapshot(b"b", SnapshotMetadata(cs, 3, 2))


def test_create_snapshot_refusals():
    s = storage_from(THREE)
    s.create_snapshot(4, None, b"")
    with pytest.raises(ErrSnapOutOfDate):
        s.create_snapshot(4, None, b"")
    with pytest.raises(ErrSnapOutOfDate):
        s.create_snapshot(3, None, b"")
    with pytest.raises(ValueError):
        s.create_snapshot(6, None, b"")
    # Compaction may run ahead of snapshots; an index whose term is gone can't be snapshotted.
    s.append([E(6, 6), E(7, 7)])
    s.compact(6)
    with pytest.raises(ErrCompacted):
        s.create_snapshot(5, None, b"")
    assert s.create_snapshot(6, None, b"").metadata.term == 6


@pytest.mark.parametrize(
    ("new", "want"),
    [
        # entirely compacted already: nothing changes
        ([E(1, 1), E(2, 2)], [(3, 3), (4, 4), (5, 5)]),
        # the same entries again
        ([E(3, 3), E(4, 4), E(5, 5)], [(3, 3), (4, 4), (5, 5)]),
        # a conflict from 4 on
        ([E(3, 3), E(4, 6), E(5, 6)], [(3, 3), (4, 6), (5, 6)]),
        # the same entries and one more
        ([E(3, 3), E(4, 4), E(5, 5), E(6, 5)], [(3, 3), (4, 4), (5, 5), (6, 5)]),
        # compacted entries skipped, then the existing ones from 4 replaced
        ([E(2, 3), E(3, 3), E(4, 5)], [(3, 3), (4, 5)]),
        # the existing entries from 4 replaced
        ([E(4, 5)], [(3, 3), (4, 5)]),
        # straight after the last
        ([E(6, 5)], [(3, 3), (4, 4), (5, 5), (6, 5)]),
        # nothing to append
        ([], [(3, 3), (4, 4), (5, 5)]),
    ],
)
def test_append(new, want):
    s = storage_from(THREE)
    s.append(new)
    assert contents(s) == want


def test_append_refuses_a_gap():
    s = storage_from(THREE)
    with pytest.raises(ValueError):
        s.append([E(7, 5)])
    with pytest.raises(ValueError):
        s.append([E(6, 5), E(8, 5)])
    assert contents(s) == [(3, 3), (4, 4), (5, 5)]


def test_append_keeps_data():
    s = MemoryStorage()
    s.append([E(1, 1, b"a"), E(2, 1, b"b")])
    s.append([E(2, 2, b"c"), E(3, 2, b"d")])
    assert s.entries(1, 4) == [E(1, 1, b"a"), E(2, 2, b"c"), E(3, 2, b"d")]


def test_apply_snapshot():
    cs = ConfState(voters=(1, 2, 3))
    s = MemoryStorage()
    s.append([E(1, 1), E(2, 1)])
    snap = Snapshot(b"data", SnapshotMetadata(cs, 4, 4))
    s.apply_snapshot(snap)
    assert s.snapshot() == snap
    assert (s.first_index(), s.last_index(), s.term(4)) == (5, 4, 4)
    assert s.initial_state() == (HardState(), cs)
    with pytest.raises(ErrSnapOutOfDate):
        s.apply_snapshot(Snapshot(b"data", SnapshotMetadata(cs, 3, 3)))
    with pytest.raises(ErrSnapOutOfDate):
        s.apply_snapshot(snap)
    assert s.snapshot() == snap


def test_apply_snapshot_refuses_index_zero():
    with pytest.raises(ErrSnapOutOfDate):
        MemoryStorage().apply_snapshot(Snapshot())


def test_hard_state():
    s = MemoryStorage()
    hs = HardState(term=3, vote=2, commit=1)
    s.set_hard_state(hs)
    assert s.hard_state == hs
    assert s.initial_state() == (hs, ConfState())
