"""WAL: records round-trip; a torn tail is cut off; damage anywhere else stops the member."""

from __future__ import annotations

import os
import random

import pytest

from synod.wal import wal as walmod
from synod.wal.wal import WAL, Entry, HardState, WALCorrupt

META = b"member-identity!"


def _entries(first: int, n: int, term: int = 1) -> list[Entry]:
    return [Entry(i, term, f"data-{i}".encode() * (i % 7 + 1)) for i in range(first, first + n)]


def _segment_paths(d) -> list[str]:
    return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".wal"))


def test_roundtrip_entries_and_hard_state(tmp_path):
    w = WAL.create(str(tmp_path), META)
    w.save_and_sync(HardState(2, 7, 0), _entries(1, 5))
    w.save_and_sync(None, _entries(6, 3))
    w.close()
    w, read = WAL.open(str(tmp_path))
    assert read.metadata == META
    assert read.hard_state == HardState(2, 7, 0)
    assert read.entries == _entries(1, 8)
    assert (w.last_index, read.repaired_bytes) == (8, 0)
    # Appending continues after what was read.
    w.save_and_sync(None, _entries(9, 1))
    w.close()
    assert WAL.open(str(tmp_path))[1].entries == _entries(1, 9)


def test_later_entry_overwrites_the_tail(tmp_path):
    """A new leader's entry at index i replaces entries >= i written before it."""
    w = WAL.create(str(tmp_path), META)
    w.save_and_sync(None, _entries(1, 5, term=1))
    w.save_and_sync(None, _entries(3, 2, term=2))
    w.close()
    read = WAL.open(str(tmp_path))[1]
    assert [(e.index, e.term) for e in read.entries] == [(1, 1), (2, 1), (3, 2), (4, 2)]


@pytest.mark.parametrize("cut", [1, 5, 9, 12, 30])
def test_truncated_tail_is_cut_and_member_starts(tmp_path, cut):
    """A record cut short at any byte (a torn write) is dropped; earlier records survive."""
    w = WAL.create(str(tmp_path), META)
    w.save_and_sync(None, _entries(1, 4))
    w.close()
    (path,) = _segment_paths(tmp_path)
    size_before_last = os.path.getsize(path) - len(walmod.encode_entry(_entries(4, 1)[0]))
    os.truncate(path, size_before_last + cut)
    w, read = WAL.open(str(tmp_path))
    assert read.entries == _entries(1, 3)
    assert read.repaired_bytes == cut
    assert os.path.getsize(path) == size_before_last
    w.save_and_sync(None, _entries(4, 2))  # the log goes on from the cut
    w.close()
    assert WAL.open(str(tmp_path))[1].entries == _entries(1, 5)


def test_garbage_or_zeros_at_the_tail_are_cut(tmp_path):
    w = WAL.create(str(tmp_path), META)
    w.save_and_sync(None, _entries(1, 3))
    w.close()
    (path,) = _segment_paths(tmp_path)
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b"\0" * 4096 + bytes(random.Random(7).randrange(256) for _ in range(100)))
    read = WAL.open(str(tmp_path))[1]
    assert read.entries == _entries(1, 3)
    assert os.path.getsize(path) == size


def test_corruption_in_the_middle_refuses_to_open(tmp_path):
    w = WAL.create(str(tmp_path), META)
    w.save_and_sync(None, _entries(1, 10))
    w.close()
    (path,) = _segment_paths(tmp_path)
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        middle = data.index(b"data-5")
        data[middle] ^= 0xFF
        f.seek(0)
        f.write(data)
    with pytest.raises(WALCorrupt, match="crc mismatch"):
        WAL.open(str(tmp_path))


def test_segments_roll_over_and_release(tmp_path, monkeypatch):
    monkeypatch.setattr(walmod, "SEGMENT_BYTES", 2048)
    w = WAL.create(str(tmp_path), META)
    for first in range(1, 200, 10):
        w.save_and_sync(None, _entries(first, 10))
    assert len(_segment_paths(tmp_path)) > 3
    w.close()
    w, read = WAL.open(str(tmp_path))
    assert read.entries == _entries(1, 200)
    removed = w.release_to(120)
    assert removed > 0
    w.close()
    w, read = WAL.open(str(tmp_path))
    # Whole segments at or below 120 are gone; everything after 120 is still there.
    assert read.entries[0].index == read.snapshot_index + 1 <= 121
    assert read.entries[-1].index == 200
    assert [e.index for e in read.entries] == list(range(read.entries[0].index, 201))


def test_corrupt_earlier_segment_refuses_to_open(tmp_path, monkeypatch):
    monkeypatch.setattr(walmod, "SEGMENT_BYTES", 1024)
    w = WAL.create(str(tmp_path), META)
    for first in range(1, 100, 10):
        w.save_and_sync(None, _entries(first, 10))
    w.close()
    first_segment = _segment_paths(tmp_path)[0]
    os.truncate(first_segment, os.path.getsize(first_segment) - 3)
    with pytest.raises(WALCorrupt):
        WAL.open(str(tmp_path))


def test_segment_cut_short_while_starting_is_discarded(tmp_path, monkeypatch):
    """A crash while a new segment's header is written leaves only a temporary file."""
    monkeypatch.setattr(walmod, "SEGMENT_BYTES", 1024)
    w = WAL.create(str(tmp_path), META)
    w.save_and_sync(None, _entries(1, 30))
    w.close()
    segments = _segment_paths(tmp_path)
    with open(os.path.join(tmp_path, "0000000000000099-0000000000000031.wal.tmp"), "wb") as f:
        f.write(b"\x05\x00")  # the first bytes of a header, then the crash
    w, read = WAL.open(str(tmp_path))
    assert read.entries == _entries(1, 30)
    assert _segment_paths(tmp_path) == segments
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    w.close()


def test_a_raft_snapshot_mark_drops_the_entries_it_covers(tmp_path):
    from synod.raft.types import ConfState
    from synod.wal.wal import RaftSnapshotMark

    mark = RaftSnapshotMark(5, 2, ConfState(voters=(1, 2, 3), learners=(4,)))
    w = WAL.create(str(tmp_path), META, 1, 1)
    w.save_and_sync(HardState(2, 1, 8), _entries(2, 7, term=2))
    w.save_snapshot(mark)
    w.save_and_sync(None, _entries(9, 2, term=2))
    w.close()
    _, read = WAL.open(str(tmp_path))
    assert read.raft_snapshot == mark
    assert [e.index for e in read.entries] == [6, 7, 8, 9, 10]


def test_a_snapshot_beyond_the_log_continues_the_log_after_it(tmp_path):
    from synod.raft.types import ConfState
    from synod.wal.wal import RaftSnapshotMark

    w = WAL.create(str(tmp_path), META, 1, 1)
    w.save_and_sync(None, _entries(2, 3))
    w.save_snapshot(RaftSnapshotMark(100, 7, ConfState(voters=(1,))))  # installed from a leader
    assert (w.last_index, w.last_term) == (100, 7)
    w.save_and_sync(None, _entries(101, 2, term=7))
    w.close()
    w, read = WAL.open(str(tmp_path))
    assert read.raft_snapshot is not None and read.raft_snapshot.index == 100
    assert [e.index for e in read.entries] == [101, 102]
    assert w.last_index == 102


def test_the_mark_survives_in_later_segment_headers_when_old_segments_are_released(tmp_path, monkeypatch):
    from synod.raft.types import ConfState
    from synod.wal.wal import RaftSnapshotMark

    monkeypatch.setattr(walmod, "SEGMENT_BYTES", 200)
    w = WAL.create(str(tmp_path), META, 1, 1)
    w.save_and_sync(None, _entries(2, 10))
    mark = RaftSnapshotMark(11, 1, ConfState(voters=(1, 2, 3)))
    w.save_snapshot(mark)
    for i in range(12, 40):
        w.save_and_sync(None, _entries(i, 1))
    assert len(_segment_paths(tmp_path)) > 3
    assert w.release_to(11) >= 1  # segments holding only entries the mark covers
    w.close()
    _, read = WAL.open(str(tmp_path))
    assert read.raft_snapshot == mark
    assert [e.index for e in read.entries] == list(range(12, 40))
