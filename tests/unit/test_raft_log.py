"""RaftLog and Unstable: the cases of etcd-io/raft's log_test.go and log_unstable_test.go, rewritten,
and a property test against a plain list model."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from synod.raft.log import RaftLog, RaftLogError, Unstable
from synod.raft.storage import NO_LIMIT, ErrCompacted, MemoryStorage, entry_size, limit_size
from synod.raft.types import ConfState, Entry, Snapshot, SnapshotMetadata


def E(index: int, term: int, data: bytes = b"") -> Entry:
    return Entry(index, term, data)


def snap(index: int, term: int) -> Snapshot:
    return Snapshot(metadata=SnapshotMetadata(index=index, term=term))


def log_with(ents: list[Entry]) -> RaftLog:
    """A log over empty storage with ``ents`` appended (unstable)."""
    log = RaftLog(MemoryStorage())
    log.append(ents)
    return log


def storage_snapped(index: int, term: int) -> MemoryStorage:
    s = MemoryStorage()
    s.apply_snapshot(snap(index, term))
    return s


# -- Unstable -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "offset", "snapshot", "want"),
    [
        ([E(5, 1)], 5, None, None),
        ([], 0, None, None),
        ([E(5, 1)], 5, snap(4, 1), 5),
        ([], 5, snap(4, 1), 5),
    ],
)
def test_unstable_maybe_first_index(entries, offset, snapshot, want):
    assert Unstable(offset, entries, snapshot).maybe_first_index() == want


@pytest.mark.parametrize(
    ("entries", "offset", "snapshot", "want"),
    [
        ([E(5, 1)], 5, None, 5),
        ([E(5, 1)], 5, snap(4, 1), 5),
        ([], 5, snap(4, 1), 4),
        ([], 0, None, None),
    ],
)
def test_unstable_maybe_last_index(entries, offset, snapshot, want):
    assert Unstable(offset, entries, snapshot).maybe_last_index() == want


@pytest.mark.parametrize(
    ("entries", "offset", "snapshot", "index", "want"),
    [
        ([E(5, 1)], 5, None, 5, 1),
        ([E(5, 1)], 5, None, 6, None),
        ([E(5, 1)], 5, None, 4, None),
        ([E(5, 1)], 5, snap(4, 1), 5, 1),
        ([E(5, 1)], 5, snap(4, 1), 6, None),
        ([E(5, 1)], 5, snap(4, 1), 4, 1),  # from the snapshot
        ([E(5, 1)], 5, snap(4, 1), 3, None),
        ([], 5, snap(4, 1), 5, None),
        ([], 5, snap(4, 1), 4, 1),
        ([], 0, None, 5, None),
    ],
)
def test_unstable_maybe_term(entries, offset, snapshot, index, want):
    assert Unstable(offset, entries, snapshot).maybe_term(index) == want


def test_unstable_restore():
    u = Unstable(5, [E(5, 1)], snap(4, 1))
    s = snap(6, 2)
    u.restore(s)
    assert u.offset == 7
    assert u.entries == []
    assert u.snapshot == s


@pytest.mark.parametrize(
    ("entries", "offset", "snapshot", "index", "term", "want_offset", "want_len"),
    [
        ([], 0, None, 5, 1, 0, 0),
        ([E(5, 1)], 5, None, 5, 1, 6, 0),  # the first entry is stable
        ([E(5, 1), E(6, 1)], 5, None, 5, 1, 6, 1),
        ([E(6, 2)], 6, None, 6, 1, 6, 1),  # stale: the term does not match
        ([E(5, 1)], 5, None, 4, 1, 5, 1),  # an entry that was already stable
        ([E(5, 1)], 5, None, 4, 2, 5, 1),
        ([E(5, 1)], 5, snap(4, 1), 5, 1, 6, 0),
        ([E(5, 1), E(6, 1)], 5, snap(4, 1), 5, 1, 6, 1),
        ([E(6, 2)], 6, snap(5, 1), 6, 1, 6, 1),
        ([E(5, 1)], 5, snap(4, 1), 4, 1, 5, 1),  # the snapshot's index: only stable_snap_to drops it
        ([E(5, 2)], 5, snap(4, 2), 4, 1, 5, 1),
        ([E(5, 1)], 5, None, 7, 1, 5, 1),  # beyond the unstable entries
    ],
)
def test_unstable_stable_to(entries, offset, snapshot, index, term, want_offset, want_len):
    u = Unstable(offset, entries, snapshot)
    u.stable_to(index, term)
    assert (u.offset, len(u.entries)) == (want_offset, want_len)


def test_unstable_stable_snap_to():
    u = Unstable(5, [E(5, 1)], snap(4, 1))
    u.stable_snap_to(3)
    assert u.snapshot == snap(4, 1)
    u.stable_snap_to(4)
    assert u.snapshot is None
    u.stable_snap_to(4)
    assert u.snapshot is None


@pytest.mark.parametrize(
    ("entries", "offset", "new", "want_offset", "want"),
    [
        # straight after the last
        ([E(5, 1)], 5, [E(6, 1), E(7, 1)], 5, [E(5, 1), E(6, 1), E(7, 1)]),
        # replacing all the unstable entries
        ([E(5, 1)], 5, [E(5, 2), E(6, 2)], 5, [E(5, 2), E(6, 2)]),
        ([E(5, 1)], 5, [E(4, 2), E(5, 2), E(6, 2)], 4, [E(4, 2), E(5, 2), E(6, 2)]),
        # cutting the unstable entries, then appending
        ([E(5, 1), E(6, 1), E(7, 1)], 5, [E(6, 2)], 5, [E(5, 1), E(6, 2)]),
        ([E(5, 1), E(6, 1), E(7, 1)], 5, [E(7, 2), E(8, 2)], 5, [E(5, 1), E(6, 1), E(7, 2), E(8, 2)]),
        # nothing
        ([E(5, 1)], 5, [], 5, [E(5, 1)]),
    ],
)
def test_unstable_truncate_and_append(entries, offset, new, want_offset, want):
    u = Unstable(offset, entries)
    u.truncate_and_append(new)
    assert (u.offset, u.entries) == (want_offset, want)


def test_unstable_truncate_and_append_refuses_a_gap():
    u = Unstable(5, [E(5, 1)])
    with pytest.raises(RaftLogError):
        u.truncate_and_append([E(7, 1)])


def test_unstable_slice_bounds():
    u = Unstable(5, [E(5, 1), E(6, 1), E(7, 2)])
    assert u.slice(5, 8) == [E(5, 1), E(6, 1), E(7, 2)]
    assert u.slice(6, 7) == [E(6, 1)]
    assert u.slice(8, 8) == []
    for lo, hi in [(4, 6), (6, 9), (7, 6)]:
        with pytest.raises(RaftLogError):
            u.slice(lo, hi)


# -- RaftLog: appending --------------------------------------------------------------------------

PREV3 = [E(1, 1), E(2, 2), E(3, 3)]


@pytest.mark.parametrize(
    ("ents", "want"),
    [
        ([], 0),
        ([E(1, 1), E(2, 2), E(3, 3)], 0),
        ([E(2, 2), E(3, 3)], 0),
        ([E(3, 3)], 0),
        # nothing conflicts, but there are new entries
        ([E(1, 1), E(2, 2), E(3, 3), E(4, 4), E(5, 4)], 4),
        ([E(2, 2), E(3, 3), E(4, 4), E(5, 4)], 4),
        ([E(3, 3), E(4, 4), E(5, 4)], 4),
        ([E(4, 4), E(5, 4)], 4),
        # conflicts with existing entries
        ([E(1, 4), E(2, 4)], 1),
        ([E(2, 1), E(3, 4), E(4, 4)], 2),
        ([E(3, 1), E(4, 2), E(5, 4), E(6, 4)], 3),
    ],
)
def test_find_conflict(ents, want):
    assert log_with(PREV3).find_conflict(ents) == want


def _log_from(snapshot_index: int, terms: list[int]) -> RaftLog:
    """Snapshot at (snapshot_index, terms[0]) in storage, then entries with terms[1:] (unstable)."""
    storage = MemoryStorage()
    if snapshot_index or terms[0]:
        storage.apply_snapshot(snap(snapshot_index, terms[0]))
    log = RaftLog(storage)
    log.append([E(snapshot_index + k, t) for k, t in enumerate(terms) if k > 0])
    return log


@pytest.mark.parametrize(
    ("snapshot_index", "terms", "index", "term", "want"),
    [
        # a log from index 1
        (0, [0, 2, 2, 5, 5, 5], 100, 2, 100),  # beyond the last index: unknown term
        (0, [0, 2, 2, 5, 5, 5], 5, 6, 5),
        (0, [0, 2, 2, 5, 5, 5], 5, 5, 5),
        (0, [0, 2, 2, 5, 5, 5], 5, 4, 2),
        (0, [0, 2, 2, 5, 5, 5], 5, 2, 2),
        (0, [0, 2, 2, 5, 5, 5], 5, 1, 0),
        (0, [0, 2, 2, 5, 5, 5], 1, 2, 1),
        (0, [0, 2, 2, 5, 5, 5], 1, 1, 0),
        (0, [0, 2, 2, 5, 5, 5], 0, 0, 0),
        # a compacted log: snapshot (10, 3), then 11..15
        (10, [3, 3, 3, 4, 4, 4], 30, 3, 30),
        (10, [3, 3, 3, 4, 4, 4], 14, 9, 14),
        (10, [3, 3, 3, 4, 4, 4], 14, 4, 14),
        (10, [3, 3, 3, 4, 4, 4], 14, 3, 12),
        (10, [3, 3, 3, 4, 4, 4], 14, 2, 9),  # stops at the first unknown (compacted) term
        (10, [3, 3, 3, 4, 4, 4], 11, 5, 11),
        (10, [3, 3, 3, 4, 4, 4], 10, 5, 10),
        (10, [3, 3, 3, 4, 4, 4], 10, 3, 10),
        (10, [3, 3, 3, 4, 4, 4], 10, 2, 9),
        (10, [3, 3, 3, 4, 4, 4], 9, 2, 9),
        (10, [3, 3, 3, 4, 4, 4], 4, 2, 4),
        (10, [3, 3, 3, 4, 4, 4], 0, 0, 0),
    ],
)
def test_find_conflict_by_term(snapshot_index, terms, index, term, want):
    log = _log_from(snapshot_index, terms)
    got_index, got_term = log.find_conflict_by_term(index, term)
    assert got_index == want
    assert got_term == log.zero_term_on_err_compacted(got_index)


@pytest.mark.parametrize(
    ("last_index", "term", "want"),
    [
        # a greater term wins whatever the index
        (2, 4, True),
        (3, 4, True),
        (4, 4, True),
        # a smaller term loses whatever the index
        (2, 2, False),
        (3, 2, False),
        (4, 2, False),
        # the same term: an equal or longer log wins
        (2, 3, False),
        (3, 3, True),
        (4, 3, True),
    ],
)
def test_is_up_to_date(last_index, term, want):
    assert log_with(PREV3).is_up_to_date(last_index, term) is want


@pytest.mark.parametrize(
    ("ents", "want_last", "want", "want_offset"),
    [
        ([], 2, [E(1, 1), E(2, 2)], 3),
        ([E(3, 2)], 3, [E(1, 1), E(2, 2), E(3, 2)], 3),
        # conflicts with 1: everything from 1 is replaced
        ([E(1, 2)], 1, [E(1, 2)], 1),
        # conflicts with 2
        ([E(2, 3), E(3, 3)], 3, [E(1, 1), E(2, 3), E(3, 3)], 2),
    ],
)
def test_append(ents, want_last, want, want_offset):
    storage = MemoryStorage()
    storage.append([E(1, 1), E(2, 2)])
    log = RaftLog(storage)
    assert log.append(ents) == want_last
    assert log.entries(1) == want
    assert log.unstable.offset == want_offset


def test_append_refuses_to_replace_committed_entries():
    log = log_with(PREV3)
    log.commit_to(2)
    with pytest.raises(RaftLogError):
        log.append([E(2, 4)])
    assert log.append([E(3, 4)]) == 3


LAST_INDEX, LAST_TERM, COMMIT = 3, 3, 1


@pytest.mark.parametrize(
    ("log_term", "index", "committed", "ents", "want_last", "want_ok", "want_commit"),
    [
        # no match: the term differs
        (LAST_TERM - 1, LAST_INDEX, LAST_INDEX, [E(4, 4)], 0, False, COMMIT),
        # no match: beyond the last index
        (LAST_TERM, LAST_INDEX + 1, LAST_INDEX, [E(5, 4)], 0, False, COMMIT),
        # matches the last entry
        (LAST_TERM, LAST_INDEX, LAST_INDEX, [], LAST_INDEX, True, LAST_INDEX),
        (LAST_TERM, LAST_INDEX, LAST_INDEX + 1, [], LAST_INDEX, True, LAST_INDEX),  # not past the new last
        (LAST_TERM, LAST_INDEX, LAST_INDEX - 1, [], LAST_INDEX, True, LAST_INDEX - 1),  # the leader's commit
        (LAST_TERM, LAST_INDEX, 0, [], LAST_INDEX, True, COMMIT),  # commit never decreases
        (0, 0, LAST_INDEX, [], 0, True, COMMIT),
        (LAST_TERM, LAST_INDEX, LAST_INDEX, [E(4, 4)], 4, True, LAST_INDEX),
        (LAST_TERM, LAST_INDEX, LAST_INDEX + 1, [E(4, 4)], 4, True, 4),
        (LAST_TERM, LAST_INDEX, LAST_INDEX + 2, [E(4, 4)], 4, True, 4),
        (LAST_TERM, LAST_INDEX, LAST_INDEX + 2, [E(4, 4), E(5, 4)], 5, True, 5),
        # matches an entry in the middle
        (LAST_TERM - 1, LAST_INDEX - 1, LAST_INDEX, [E(3, 4)], 3, True, 3),
        (LAST_TERM - 2, LAST_INDEX - 2, LAST_INDEX, [E(2, 4)], 2, True, 2),
        (LAST_TERM - 2, LAST_INDEX - 2, LAST_INDEX, [E(2, 4), E(3, 4)], 3, True, 3),
    ],
)
def test_maybe_append(log_term, index, committed, ents, want_last, want_ok, want_commit):
    log = log_with(PREV3)
    log.committed = COMMIT
    assert log.maybe_append(index, log_term, committed, ents) == (want_last, want_ok)
    assert log.committed == want_commit
    if want_ok and ents:
        assert log.slice(log.last_index() - len(ents) + 1, log.last_index() + 1) == ents


def test_maybe_append_refuses_a_conflict_with_a_committed_entry():
    log = log_with(PREV3)
    log.committed = COMMIT
    with pytest.raises(RaftLogError):
        log.maybe_append(0, 0, LAST_INDEX, [E(1, 4)])


def test_maybe_append_keeps_matching_entries_and_what_follows():
    log = log_with([E(1, 1, b"a"), E(2, 1, b"b"), E(3, 2, b"c")])
    # A stale, shorter append that matches: nothing is truncated.
    assert log.maybe_append(0, 0, 0, [E(1, 1, b"x")]) == (1, True)
    assert log.all_entries() == [E(1, 1, b"a"), E(2, 1, b"b"), E(3, 2, b"c")]


def test_maybe_append_refuses_entries_not_following_index():
    log = log_with(PREV3)
    with pytest.raises(RaftLogError):
        log.maybe_append(1, 1, 0, [E(3, 3)])


# -- RaftLog: reading, committing, applying ------------------------------------------------------


def test_compaction_side_effects():
    # 1000 entries: 750 in storage, 250 unstable; term = index.
    storage = MemoryStorage()
    for i in range(1, 751):
        storage.append([E(i, i)])
    log = RaftLog(storage)
    for i in range(751, 1001):
        log.append([E(i, i)])
    assert log.maybe_commit(1000, 1000)
    log.applied_to(log.committed)

    storage.compact(500)
    assert log.last_index() == 1000
    for j in range(500, 1001):
        assert log.term(j) == j
        assert log.match_term(j, j)
    unstable = log.unstable_entries()
    assert len(unstable) == 250
    assert unstable[0].index == 751

    prev = log.last_index()
    log.append([E(prev + 1, prev + 1)])
    assert log.last_index() == prev + 1
    assert len(log.entries(log.last_index())) == 1


SNAP3 = snap(3, 1)
ENTS456 = [E(4, 1), E(5, 1), E(6, 1)]


def _log_456(applied: int, max_next_ents_size: int = NO_LIMIT) -> RaftLog:
    storage = MemoryStorage()
    storage.apply_snapshot(SNAP3)
    log = RaftLog(storage, max_next_ents_size)
    log.append(ENTS456)
    log.maybe_commit(5, 1)
    log.applied_to(applied)
    return log


@pytest.mark.parametrize(("applied", "want"), [(0, True), (3, True), (4, True), (5, False)])
def test_has_next_ents(applied, want):
    assert _log_456(applied).has_next_ents() is want


@pytest.mark.parametrize(
    ("applied", "want"), [(0, ENTS456[:2]), (3, ENTS456[:2]), (4, ENTS456[1:2]), (5, [])]
)
def test_next_ents(applied, want):
    assert _log_456(applied).next_ents() == want


def test_next_ents_size_limit_spans_storage_and_unstable():
    storage = MemoryStorage()
    storage.append([E(1, 1, b"aaaa"), E(2, 1, b"bbbb")])
    one = entry_size(E(1, 1, b"aaaa"))
    log = RaftLog(storage, max_next_ents_size=2 * one + 1)
    log.append([E(3, 1, b"cccc"), E(4, 1, b"dddd")])
    log.commit_to(4)
    assert log.next_ents() == [E(1, 1, b"aaaa"), E(2, 1, b"bbbb")]
    log.applied_to(1)
    assert log.next_ents() == [E(2, 1, b"bbbb"), E(3, 1, b"cccc")]
    log.applied_to(3)
    assert log.next_ents() == [E(4, 1, b"dddd")]
    log.applied_to(4)
    assert log.next_ents() == []
    assert not log.has_next_ents()
    # At least one entry, even a large one.
    log.append([E(5, 1, b"z" * 100)])
    log.commit_to(5)
    assert log.next_ents() == [E(5, 1, b"z" * 100)]


@pytest.mark.parametrize(("unstable_from", "want"), [(3, []), (1, [E(1, 1), E(2, 2)])])
def test_unstable_entries(unstable_from, want):
    prev = [E(1, 1), E(2, 2)]
    storage = MemoryStorage()
    storage.append(prev[: unstable_from - 1])
    log = RaftLog(storage)
    log.append(prev[unstable_from - 1 :])
    ents = log.unstable_entries()
    if ents:
        log.stable_to(ents[-1].index, ents[-1].term)
    assert ents == want
    assert log.unstable.offset == 3


def test_unstable_entries_is_a_copy():
    log = log_with([E(1, 1)])
    ents = log.unstable_entries()
    log.append([E(2, 1)])
    log.stable_to(1, 1)
    assert ents == [E(1, 1)]


@pytest.mark.parametrize(("commit", "want"), [(3, 3), (1, 2)])  # never decreases
def test_commit_to(commit, want):
    log = log_with(PREV3)
    log.committed = 2
    log.commit_to(commit)
    assert log.committed == want


def test_commit_to_beyond_the_last_index_is_an_error():
    log = log_with(PREV3)
    with pytest.raises(RaftLogError):
        log.commit_to(4)


@pytest.mark.parametrize(
    ("index", "term", "want", "want_commit"),
    [
        (3, 3, True, 3),
        (3, 2, False, 1),  # the entry is not of that term
        (2, 2, True, 2),
        (1, 1, False, 1),  # no progress
    ],
)
def test_maybe_commit(index, term, want, want_commit):
    log = log_with(PREV3)
    log.commit_to(1)
    assert log.maybe_commit(index, term) is want
    assert log.committed == want_commit


def test_applied_to():
    log = log_with(PREV3)
    log.commit_to(2)
    log.applied_to(0)  # ignored
    log.applied_to(1)
    log.applied_to(2)
    assert log.applied == 2
    with pytest.raises(RaftLogError):
        log.applied_to(3)  # beyond committed
    with pytest.raises(RaftLogError):
        log.applied_to(1)  # backwards


@pytest.mark.parametrize(("index", "term", "want_offset"), [(1, 1, 2), (2, 2, 3), (2, 1, 1), (3, 1, 1)])
def test_stable_to(index, term, want_offset):
    log = log_with([E(1, 1), E(2, 2)])
    log.stable_to(index, term)
    assert log.unstable.offset == want_offset


SNAPI, SNAPT = 5, 2


@pytest.mark.parametrize(
    ("index", "term", "new", "want_offset"),
    [
        (SNAPI + 1, SNAPT, [], SNAPI + 1),
        (SNAPI, SNAPT, [], SNAPI + 1),
        (SNAPI - 1, SNAPT, [], SNAPI + 1),
        (SNAPI + 1, SNAPT + 1, [], SNAPI + 1),
        (SNAPI, SNAPT + 1, [], SNAPI + 1),
        (SNAPI - 1, SNAPT + 1, [], SNAPI + 1),
        (SNAPI + 1, SNAPT, [E(SNAPI + 1, SNAPT)], SNAPI + 2),
        (SNAPI, SNAPT, [E(SNAPI + 1, SNAPT)], SNAPI + 1),
        (SNAPI - 1, SNAPT, [E(SNAPI + 1, SNAPT)], SNAPI + 1),
        (SNAPI + 1, SNAPT + 1, [E(SNAPI + 1, SNAPT)], SNAPI + 1),  # stale term
        (SNAPI, SNAPT + 1, [E(SNAPI + 1, SNAPT)], SNAPI + 1),
        (SNAPI - 1, SNAPT + 1, [E(SNAPI + 1, SNAPT)], SNAPI + 1),
    ],
)
def test_stable_to_with_snapshot(index, term, new, want_offset):
    log = RaftLog(storage_snapped(SNAPI, SNAPT))
    log.append(new)
    log.stable_to(index, term)
    assert log.unstable.offset == want_offset


def test_stable_to_after_a_truncation_is_stale():
    # Entries 1..3 at term 1 were handed out for persisting; then 2.. were replaced at term 2.
    log = log_with([E(1, 1), E(2, 1), E(3, 1)])
    log.append([E(2, 2)])
    log.stable_to(3, 1)  # no such entry any more
    assert log.unstable.offset == 1
    log.stable_to(2, 1)  # replaced
    assert log.unstable.offset == 1
    log.stable_to(1, 1)
    assert log.unstable.offset == 2
    assert log.unstable_entries() == [E(2, 2)]


@pytest.mark.parametrize(
    ("compacts", "want_left"),
    [
        ([300, 500, 800, 900], [700, 500, 200, 100]),
        ([300, 299], [700, None]),  # the second is already compacted
    ],
)
def test_compaction(compacts, want_left):
    storage = MemoryStorage()
    for i in range(1, 1001):
        storage.append([E(i, 0)])
    log = RaftLog(storage)
    log.maybe_commit(1000, 0)
    log.applied_to(log.committed)
    for c, left in zip(compacts, want_left, strict=True):
        if left is None:
            with pytest.raises(ErrCompacted):
                storage.compact(c)
        else:
            storage.compact(c)
            assert len(log.all_entries()) == left


def test_compaction_beyond_the_last_index_is_refused():
    storage = MemoryStorage()
    storage.append([E(i, 1) for i in range(1, 11)])
    with pytest.raises(ValueError):
        storage.compact(11)


def test_log_over_a_snapshotted_storage():
    log = RaftLog(storage_snapped(1000, 1000))
    assert log.all_entries() == []
    assert log.first_index() == 1001
    assert log.committed == 1000
    assert log.applied == 1000
    assert log.unstable.offset == 1001
    assert log.term(1000) == 1000
    assert log.last_term() == 1000


def test_restore():
    storage = MemoryStorage()
    storage.append([E(1, 1), E(2, 1)])
    log = RaftLog(storage)
    log.append([E(3, 2)])
    log.commit_to(2)
    s = Snapshot(b"state", SnapshotMetadata(ConfState(voters=(1,)), 10, 3))
    assert not log.has_pending_snapshot()
    log.restore(s)
    assert log.has_pending_snapshot()
    assert log.snapshot() == s
    assert (log.first_index(), log.last_index(), log.last_term()) == (11, 10, 3)
    assert log.committed == 10
    assert log.applied == 0  # the application catches up when it applies the snapshot
    assert log.unstable_entries() == []
    assert log.next_ents() == []
    assert not log.has_next_ents()
    # The snapshot is persisted.
    storage.apply_snapshot(s)
    log.stable_snap_to(10)
    assert not log.has_pending_snapshot()
    assert log.snapshot() == s
    assert (log.first_index(), log.last_index()) == (11, 10)


def test_empty_unstable_snapshot_is_not_pending():
    log = RaftLog(MemoryStorage())
    log.unstable.snapshot = Snapshot()
    assert not log.has_pending_snapshot()


def test_snapshot_comes_from_storage_without_an_unstable_one():
    storage = MemoryStorage()
    storage.append([E(1, 1), E(2, 1)])
    log = RaftLog(storage)
    assert log.snapshot().empty
    s = storage.create_snapshot(2, ConfState(voters=(1,)), b"x")
    assert log.snapshot() == s


OFFSET, NUM = 100, 100
FIRST = OFFSET + 1


def _log_100() -> RaftLog:
    log = RaftLog(storage_snapped(OFFSET, 0))
    for i in range(1, NUM + 1):
        log.append([E(OFFSET + i, 0)])
    return log


@pytest.mark.parametrize(
    ("lo", "hi", "error"),
    [
        (FIRST - 2, FIRST + 1, ErrCompacted),
        (FIRST - 1, FIRST + 1, ErrCompacted),
        (FIRST, FIRST, None),
        (FIRST + NUM // 2, FIRST + NUM // 2, None),
        (FIRST + NUM - 1, FIRST + NUM - 1, None),
        (FIRST + NUM, FIRST + NUM, None),
        (FIRST + NUM, FIRST + NUM + 1, RaftLogError),
        (FIRST + NUM + 1, FIRST + NUM + 1, RaftLogError),
        (FIRST + 2, FIRST + 1, RaftLogError),
    ],
)
def test_slice_bounds(lo, hi, error):
    log = _log_100()
    if error is None:
        assert log.slice(lo, hi) == []
    else:
        with pytest.raises(error):
            log.slice(lo, hi)


@pytest.mark.parametrize(
    ("index", "want"),
    [
        (OFFSET - 1, 0),
        (OFFSET, 1),
        (OFFSET + NUM // 2, NUM // 2),
        (OFFSET + NUM - 1, NUM - 1),
        (OFFSET + NUM, 0),
    ],
)
def test_term(index, want):
    log = RaftLog(storage_snapped(OFFSET, 1))
    for i in range(1, NUM):
        log.append([E(OFFSET + i, i)])
    assert log.term(index) == want


def test_term_and_match_term_outside_the_log():
    storage = MemoryStorage()
    log = RaftLog(storage)
    log.append(PREV3)
    assert log.term(4) == 0
    assert not log.match_term(4, 0)  # etcd 3.5 would say True: no entry 4 at all
    assert log.match_term(0, 0)
    storage.append(PREV3)
    log.stable_to(3, 3)
    log.commit_to(3)
    log.applied_to(3)
    storage.compact(2)
    assert log.term(1) == 0
    assert not log.match_term(1, 0)
    assert log.match_term(2, 2)
    assert log.zero_term_on_err_compacted(1) == 0


@pytest.mark.parametrize(
    ("index", "want"),
    [
        (100, 0),  # the storage's snapshot: superseded by the unstable one
        (101, 0),  # the gap between the two snapshots
        (104, 0),
        (105, 1),  # the unstable snapshot
    ],
)
def test_term_with_unstable_snapshot(index, want):
    log = RaftLog(storage_snapped(100, 1))
    log.restore(snap(105, 1))
    assert log.term(index) == want


HALF = OFFSET + NUM // 2
LAST = OFFSET + NUM
SZ = entry_size(E(HALF, HALF))


def _log_split() -> RaftLog:
    """Storage: snapshot at 100, entries 101..149; unstable: 150..199; term = index."""
    storage = storage_snapped(OFFSET, 0)
    for i in range(1, NUM // 2):
        storage.append([E(OFFSET + i, OFFSET + i)])
    log = RaftLog(storage)
    for i in range(NUM // 2, NUM):
        log.append([E(OFFSET + i, OFFSET + i)])
    return log


@pytest.mark.parametrize(
    ("lo", "hi", "limit", "want"),
    [
        (HALF - 1, HALF + 1, NO_LIMIT, [HALF - 1, HALF]),
        (HALF, HALF + 1, NO_LIMIT, [HALF]),
        (LAST - 1, LAST, NO_LIMIT, [LAST - 1]),
        (HALF - 1, HALF + 1, 0, [HALF - 1]),
        (HALF - 1, HALF + 1, SZ + 1, [HALF - 1]),
        (HALF - 2, HALF + 1, SZ + 1, [HALF - 2]),
        (HALF - 1, HALF + 1, SZ * 2, [HALF - 1, HALF]),
        (HALF - 1, HALF + 2, SZ * 3, [HALF - 1, HALF, HALF + 1]),
        (HALF - 3, HALF + 2, SZ * 4, [HALF - 3, HALF - 2, HALF - 1, HALF]),
        (HALF, HALF + 2, SZ, [HALF]),
        (HALF, HALF + 2, SZ * 2, [HALF, HALF + 1]),
        (OFFSET + 1, LAST, NO_LIMIT, list(range(OFFSET + 1, LAST))),
    ],
)
def test_slice(lo, hi, limit, want):
    assert _log_split().slice(lo, hi, limit) == [E(i, i) for i in want]


@pytest.mark.parametrize(("lo", "hi"), [(OFFSET - 1, OFFSET + 1), (OFFSET, OFFSET + 1)])
def test_slice_compacted(lo, hi):
    with pytest.raises(ErrCompacted):
        _log_split().slice(lo, hi)


def test_slice_beyond_last_is_an_error():
    with pytest.raises(RaftLogError):
        _log_split().slice(LAST, LAST + 1)


def test_slice_cut_in_storage_does_not_skip_to_unstable():
    # Storage stops before its big last entry; a small unstable entry must not fill the gap.
    storage = MemoryStorage()
    storage.append([E(1, 1, b"a" * 10), E(2, 1, b"b" * 30)])
    log = RaftLog(storage)
    log.append([E(3, 1, b"c")])
    limit = entry_size(E(1, 1, b"a" * 10)) + entry_size(E(3, 1, b"c")) + 1
    assert log.slice(1, 4, limit) == [E(1, 1, b"a" * 10)]
    assert log.slice(2, 4, limit) == [E(2, 1, b"b" * 30)]
    assert log.slice(1, 4, NO_LIMIT) == [E(1, 1, b"a" * 10), E(2, 1, b"b" * 30), E(3, 1, b"c")]


def test_slice_over_stale_storage_entries():
    # Storage has 1..4 at term 1; the unstable part replaced 3.. at term 2, not yet persisted.
    storage = MemoryStorage()
    storage.append([E(i, 1) for i in range(1, 5)])
    log = RaftLog(storage)
    log.append([E(3, 2)])
    assert log.last_index() == 3
    assert log.all_entries() == [E(1, 1), E(2, 1), E(3, 2)]
    assert log.term(4) == 0
    assert log.term(3) == 2


def test_entries():
    log = _log_split()
    assert log.entries(LAST) == []
    assert log.entries(LAST - 1) == [E(LAST - 1, LAST - 1)]
    assert log.entries(HALF - 1, SZ) == [E(HALF - 1, HALF - 1)]
    with pytest.raises(ErrCompacted):
        log.entries(OFFSET)


def test_str():
    log = _log_split()
    log.commit_to(120)
    log.applied_to(110)
    assert str(log) == "committed=120, applied=110, unstable.offset=150, len(unstable.Entries)=50"


def test_new_log_marks():
    storage = MemoryStorage()
    storage.apply_snapshot(snap(10, 2))
    storage.append([E(11, 2), E(12, 3)])
    log = RaftLog(storage)
    assert (log.committed, log.applied, log.unstable.offset) == (10, 10, 13)
    assert (log.first_index(), log.last_index(), log.last_term()) == (11, 12, 3)


# -- property: RaftLog over MemoryStorage against a list ----------------------------------------


class LogModel(RuleBasedStateMachine):
    """The log as a plain list after a dummy (base index, base term), next to the real thing.

    The application's side is played as etcd's synchronous Ready loop does it:
    persist the snapshot, then a prefix of the unstable entries, then report
    them stable; apply committed entries; compact storage up to what is applied.
    """

    @initialize(max_next=st.sampled_from([NO_LIMIT, 0, 40, 100]))
    def setup(self, max_next: int) -> None:
        self.storage = MemoryStorage()
        self.log = RaftLog(self.storage, max_next)
        self.max_next = max_next
        self.base, self.base_term = 0, 0
        self.ents: list[Entry] = []
        self.committed = self.applied = 0
        self.offset = 1  # first unstable index
        self.pending: Snapshot | None = None
        self.storage_snap_index = 0

    # model helpers

    @property
    def last(self) -> int:
        return self.base + len(self.ents)

    def mterm(self, i: int) -> int:
        if i == self.base:
            return self.base_term
        if self.base < i <= self.last:
            return self.ents[i - self.base - 1].term
        return 0

    def replace_from(self, new: list[Entry]) -> None:
        """Replace the model's entries from new[0].index on with ``new``."""
        if not new:
            return
        start = new[0].index
        self.ents = self.ents[: start - self.base - 1] + new
        self.offset = min(self.offset, start)

    def gen_entries(self, data: st.DataObject, start: int, copy_upto: int) -> list[Entry]:
        """Entries from ``start``: those up to ``copy_upto`` copied from the model, others random
        (but sometimes copied too, to exercise matching)."""
        n = data.draw(st.integers(0, 4), label="n")
        out = []
        for i in range(start, start + n):
            if i <= copy_upto or (i <= self.last and data.draw(st.booleans(), label="copy")):
                out.append(self.ents[i - self.base - 1])
            else:
                out.append(
                    Entry(
                        i,
                        data.draw(st.integers(1, 6), label="term"),
                        data.draw(st.binary(max_size=40), label="data"),
                    )
                )
        return out

    # rules: the core's side

    @rule(data=st.data())
    def append(self, data: st.DataObject) -> None:
        start = data.draw(st.integers(self.committed + 1, self.last + 1), label="start")
        new = self.gen_entries(data, start, copy_upto=0)
        assert self.log.append(new) == (new[-1].index if new else self.last)
        self.replace_from(new)

    @rule(data=st.data())
    def maybe_append(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.committed, self.last + 1), label="index")
        if data.draw(st.integers(0, 3), label="right term") != 0 and index <= self.last:
            log_term = self.mterm(index)
        else:
            log_term = data.draw(st.integers(0, 6), label="log_term")
        leader_commit = data.draw(st.integers(0, self.last + 6), label="leader commit")
        matched = self.base <= index <= self.last and self.mterm(index) == log_term
        new = self.gen_entries(data, index + 1, copy_upto=self.committed) if matched else []
        got = self.log.maybe_append(index, log_term, leader_commit, new)
        if not matched:
            assert got == (0, False)
            return
        assert got == (index + len(new), True)
        for k, e in enumerate(new):
            if e.index > self.last or self.mterm(e.index) != e.term:
                self.replace_from(new[k:])
                break
        self.committed = max(self.committed, min(leader_commit, index + len(new)))

    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(self.committed, self.last), label="commit")
        if data.draw(st.booleans(), label="via maybe_commit"):
            right = data.draw(st.booleans(), label="right term")
            term = self.mterm(i) if right else self.mterm(i) + 1
            assert self.log.maybe_commit(i, term) is (right and i > self.committed)
            if right:
                self.committed = i
        else:
            self.log.commit_to(i)
            self.committed = i

    @rule(data=st.data())
    def restore(self, data: st.DataObject) -> None:
        if data.draw(st.integers(0, 3), label="restore now") != 0:
            return  # rarely: a restore throws the whole log away
        index = data.draw(st.integers(self.committed + 1, self.last + 3), label="snap index")
        term = data.draw(st.integers(max(self.mterm(self.last), 1), 7), label="snap term")
        s = Snapshot(b"s", SnapshotMetadata(ConfState(voters=(1,)), index, term))
        self.log.restore(s)
        self.base, self.base_term, self.ents = index, term, []
        self.committed = index
        self.offset = index + 1
        self.pending = s

    # rules: the application's side

    @rule(data=st.data())
    def persist(self, data: st.DataObject) -> None:
        if self.pending is not None:
            assert self.log.has_pending_snapshot()
            assert self.log.snapshot() == self.pending
            self.storage.apply_snapshot(self.pending)
            self.log.stable_snap_to(self.pending.metadata.index)
            self.storage_snap_index = self.pending.metadata.index
            # Entries after the snapshot may already be applied (next_ents hands them out with it).
            if self.applied < self.pending.metadata.index:
                self.log.applied_to(self.pending.metadata.index)
                self.applied = self.pending.metadata.index
            self.pending = None
        unstable = self.log.unstable_entries()
        if not unstable:
            return
        k = data.draw(st.integers(1, len(unstable)), label="persist count")
        self.storage.append(unstable[:k])
        self.log.stable_to(unstable[k - 1].index, unstable[k - 1].term)
        self.offset = unstable[k - 1].index + 1

    @rule(data=st.data())
    def stale_stable_to(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(max(self.base - 1, 0), self.last + 2), label="index")
        self.log.stable_to(i, self.mterm(i) + data.draw(st.integers(1, 3), label="delta"))

    @rule(data=st.data())
    def apply(self, data: st.DataObject) -> None:
        lo = max(self.applied + 1, self.base + 1)
        want = limit_size(self.ents[lo - self.base - 1 : self.committed - self.base], self.max_next)
        assert self.log.next_ents() == want
        whole_batch: bool = data.draw(st.booleans(), label="apply what next_ents gave")
        if want and whole_batch:
            i = want[-1].index
        else:
            i = data.draw(st.integers(self.applied, self.committed), label="applied")
        self.log.applied_to(i)
        if i:
            self.applied = i

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        if self.pending is not None:
            return
        top = min(self.applied, self.storage.last_index(), self.offset - 1)
        if top < self.storage.first_index():
            return
        i = data.draw(st.integers(self.storage.first_index(), top), label="compact")
        self.storage.compact(i)
        self.base_term = self.mterm(i)
        self.ents = self.ents[i - self.base :]
        self.base = i

    @rule(data=st.data())
    def create_snapshot(self, data: st.DataObject) -> None:
        lo = max(self.storage_snap_index + 1, self.storage.first_index() - 1)
        top = min(self.applied, self.storage.last_index(), self.offset - 1)
        if self.pending is not None or top < lo:
            return
        i = data.draw(st.integers(lo, top), label="snapshot at")
        s = self.storage.create_snapshot(i, None, b"app")
        self.storage_snap_index = i
        assert s.metadata.term == self.mterm(i)
        assert self.log.snapshot() == s

    # checks

    @rule(data=st.data())
    def check_slice(self, data: st.DataObject) -> None:
        lo = data.draw(st.integers(self.base + 1, self.last + 1), label="lo")
        hi = data.draw(st.integers(lo, self.last + 1), label="hi")
        max_size = data.draw(st.sampled_from([NO_LIMIT, 0, 20, 50, 100, 150]), label="max size")
        want = limit_size(self.ents[lo - self.base - 1 : hi - self.base - 1], max_size)
        assert self.log.slice(lo, hi, max_size) == want

    @rule(data=st.data())
    def check_conflict_by_term(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, self.last + 2), label="index")
        term = data.draw(st.integers(0, 7), label="term")
        want = (0, 0)
        for i in range(index, 0, -1):
            if self.mterm(i) <= term:
                want = (i, self.mterm(i))
                break
        assert self.log.find_conflict_by_term(index, term) == want

    @rule(data=st.data())
    def check_up_to_date(self, data: st.DataObject) -> None:
        lasti = data.draw(st.integers(0, self.last + 2), label="lasti")
        term = data.draw(st.integers(0, 7), label="term")
        lt = self.mterm(self.last)
        assert self.log.is_up_to_date(lasti, term) is (term > lt or (term == lt and lasti >= self.last))

    @invariant()
    def agrees(self) -> None:
        log = self.log
        assert (log.first_index(), log.last_index()) == (self.base + 1, self.last)
        assert log.last_term() == self.mterm(self.last)
        assert (log.committed, log.applied) == (self.committed, self.applied)
        assert self.base <= self.applied <= self.committed <= self.last or self.pending is not None
        for i in range(max(self.base - 2, 0), self.last + 3):
            assert log.term(i) == self.mterm(i)
            in_log = self.base <= i <= self.last
            assert log.match_term(i, self.mterm(i)) is in_log
        assert log.all_entries() == self.ents
        assert log.unstable.offset == self.offset
        assert log.unstable_entries() == self.ents[self.offset - self.base - 1 :]
        assert log.has_pending_snapshot() is (self.pending is not None)
        lo = max(self.applied + 1, self.base + 1)
        assert log.has_next_ents() is (self.committed >= lo)


TestLogModel = LogModel.TestCase
TestLogModel.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
