"""The write-ahead log: an append-only, CRC-checked, segmented file of records.

Every entry is written here and fsynced before it is applied or acknowledged.
Layout: ``<dir>/<seq:016x>-<first index:016x>.wal`` segments, each a sequence
of records::

    u32 length of payload (little endian) | u32 crc32(type byte + payload) | u8 type | payload

A segment opens with a METADATA record (the member's identity), the latest
HARD_STATE and a SNAPSHOT record naming the (index, term) the segment's entries
follow, then the latest RAFT_SNAPSHOT if there is one. Records of later
segments come after those of earlier ones.

A RAFT_SNAPSHOT record (index, term, configuration) says that the member's
state up to ``index`` is in its backend: entries up to it are no longer
needed, and reading returns only those after it (a member that installed a
snapshot from its leader continues its log right after the snapshot's index).

Reading repeats what raft did: an entry at index ``i`` replaces every entry at
``i`` or later that was read before it (a new leader overwrote them), and
entries must follow each other without a gap.

Crash handling. A segment is created under a temporary name and renamed once
its header is durable, so every segment starts whole. A write torn by a crash
can only damage the tail of the last segment (earlier segments were fsynced
before the next was started). So a bad
record in the last segment after which nothing valid follows is a torn tail:
it and everything after it are cut off, and the member starts. A bad record
anywhere else, or one followed by valid records, is corruption: opening fails
with ``WALCorrupt`` and the member does not start.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
import zlib
from dataclasses import dataclass, field

from synod.raft.codec import decode_conf_state, encode_conf_state
from synod.raft.types import ConfState, Entry, HardState

__all__ = ["WAL", "Entry", "HardState", "RaftSnapshotMark", "ReadResult", "WALCorrupt", "encode_entry"]

SEGMENT_BYTES = 64 << 20

METADATA = 1
ENTRY = 2
HARD_STATE = 3
SNAPSHOT = 4
RAFT_SNAPSHOT = 5
_TYPES = frozenset((METADATA, ENTRY, HARD_STATE, SNAPSHOT, RAFT_SNAPSHOT))


_HEADER = struct.Struct("<IIB")
_ENTRY = struct.Struct("<QQB")
_HARD_STATE = struct.Struct("<QQQ")
_SNAPSHOT = struct.Struct("<QQ")
_SEGMENT_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")
_MAX_RECORD = 1 << 30


class WALCorrupt(Exception):
    """The log is damaged somewhere other than a torn tail; the member must not start."""


@dataclass(slots=True)
class ReadResult:
    metadata: bytes = b""
    hard_state: HardState = field(default_factory=HardState)
    snapshot_index: int = 0
    snapshot_term: int = 0
    entries: list[Entry] = field(default_factory=list)
    repaired_bytes: int = 0  # size of the torn tail that was cut off
    raft_snapshot: RaftSnapshotMark | None = None  # the latest RAFT_SNAPSHOT record


@dataclass(frozen=True, slots=True)
class RaftSnapshotMark:
    index: int
    term: int
    conf_state: ConfState

    def encode(self) -> bytes:
        payload = _SNAPSHOT.pack(self.index, self.term) + encode_conf_state(self.conf_state)
        return _record(RAFT_SNAPSHOT, payload)

    @staticmethod
    def decode(payload: bytes) -> RaftSnapshotMark:
        index, term = _SNAPSHOT.unpack_from(payload)
        cs, _ = decode_conf_state(payload, _SNAPSHOT.size)
        return RaftSnapshotMark(index, term, cs)


def _record(rtype: int, payload: bytes) -> bytes:
    tb = bytes((rtype,))
    return _HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(tb)), rtype) + payload


def encode_entry(e: Entry) -> bytes:
    return _record(ENTRY, _ENTRY.pack(e.index, e.term, e.type) + e.data)


def _segment_name(seq: int, first_index: int) -> str:
    return f"{seq:016x}-{first_index:016x}.wal"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_records(data: bytes, *, last_segment: bool, name: str) -> tuple[list[tuple[int, bytes]], int]:
    """Records of one segment, and the length of its valid prefix."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    n = len(data)
    while pos < n:
        bad = _check_record(data, pos)
        if bad is None:
            length, _, rtype = _HEADER.unpack_from(data, pos)
            start = pos + _HEADER.size
            out.append((rtype, data[start : start + length]))
            pos = start + length
            continue
        if last_segment and not _valid_record_after(data, pos):
            return out, pos
        raise WALCorrupt(f"wal: corrupt record in segment {name} at offset {pos}: {bad}")
    return out, pos


def _check_record(data: bytes, pos: int) -> str | None:
    """None if a whole, valid record starts at ``pos``; else what is wrong."""
    if pos + _HEADER.size > len(data):
        return "truncated header"
    length, crc, rtype = _HEADER.unpack_from(data, pos)
    start = pos + _HEADER.size
    if rtype not in _TYPES or length > _MAX_RECORD:
        return f"bad record header (type {rtype}, length {length})"
    if start + length > len(data):
        return "truncated record"
    if zlib.crc32(data[start : start + length], zlib.crc32(bytes((rtype,)))) != crc:
        return "crc mismatch"
    return None


def _valid_record_after(data: bytes, pos: int) -> bool:
    """Whether a valid record starts anywhere after a bad one at ``pos``.

    A torn write leaves garbage or zeros at the end; if some later position
    holds a valid record with a known type, the damage is in the middle.
    """
    for p in range(pos + 1, len(data) - _HEADER.size):
        length, _, rtype = _HEADER.unpack_from(data, p)
        if rtype in _TYPES and length > 0 and _check_record(data, p) is None:
            return True
    return False


class WAL:
    def __init__(
        self, dirpath: str, metadata: bytes, hard_state: HardState, last_index: int, last_term: int
    ) -> None:
        self.dir = dirpath
        self.last_index = last_index
        self.last_term = last_term
        self._metadata = metadata
        self._hard_state = hard_state
        self._seq = 0
        self._fd = -1
        self._size = 0
        self._raft_snapshot: RaftSnapshotMark | None = None

    # -- creation and opening -----------------------------------------------

    @staticmethod
    def exists(dirpath: str) -> bool:
        return os.path.isdir(dirpath) and any(_SEGMENT_NAME.match(n) for n in os.listdir(dirpath))

    @classmethod
    def create(cls, dirpath: str, metadata: bytes, snapshot_index: int = 0, snapshot_term: int = 0) -> WAL:
        os.makedirs(dirpath, exist_ok=True)
        wal = cls(dirpath, metadata, HardState(), snapshot_index, snapshot_term)
        wal._start_segment(1)
        return wal

    @classmethod
    def open(cls, dirpath: str) -> tuple[WAL, ReadResult]:
        """Read the whole log, cutting off a torn tail; raises WALCorrupt on other damage."""
        for name in os.listdir(dirpath):
            if name.endswith(".wal.tmp"):  # a segment whose start was cut short by a crash
                os.unlink(os.path.join(dirpath, name))
        segments = cls._segments(dirpath)
        if not segments:
            raise WALCorrupt(f"wal: no segments in {dirpath}")
        result = ReadResult()
        entries: list[Entry] = []
        first = 0  # index of entries[0]
        for i, (_, _, name) in enumerate(segments):
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                data = f.read()
            last_segment = i == len(segments) - 1
            records, valid = _parse_records(data, last_segment=last_segment, name=name)
            if valid < len(data):
                os.truncate(path, valid)
                fd = os.open(path, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
                result.repaired_bytes = len(data) - valid
            for rtype, payload in records:
                if rtype == ENTRY:
                    index, term, etype = _ENTRY.unpack_from(payload)
                    if not entries:
                        first = index
                    pos = index - first
                    if pos < 0 or pos > len(entries):
                        raise WALCorrupt(
                            f"wal: entry {index} in {name} does not follow entry {first + len(entries) - 1}"
                        )
                    del entries[pos:]
                    entries.append(Entry(index, term, payload[_ENTRY.size :], etype))
                elif rtype == HARD_STATE:
                    result.hard_state = HardState(*_HARD_STATE.unpack(payload))
                elif rtype == SNAPSHOT:
                    snap_index, snap_term = _SNAPSHOT.unpack(payload)
                    if i == 0:
                        result.snapshot_index, result.snapshot_term = snap_index, snap_term
                        if entries and entries[0].index <= snap_index:
                            entries = [e for e in entries if e.index > snap_index]
                    if not entries:
                        first = snap_index + 1
                elif rtype == RAFT_SNAPSHOT:
                    found = RaftSnapshotMark.decode(payload)
                    if result.raft_snapshot is None or found.index >= result.raft_snapshot.index:
                        result.raft_snapshot = found
                        # Everything up to the mark is in the backend; the log goes on after it.
                        entries = [e for e in entries if e.index > found.index]
                        first = found.index + 1
                elif rtype == METADATA:
                    if result.metadata and payload != result.metadata:
                        raise WALCorrupt(f"wal: segment {name} belongs to another member")
                    result.metadata = payload
        start = result.raft_snapshot.index if result.raft_snapshot else result.snapshot_index
        if entries and entries[0].index != start + 1:
            raise WALCorrupt(
                f"wal: entries start at {entries[0].index}, after snapshot {result.snapshot_index}"
            )
        if not result.metadata:
            raise WALCorrupt(f"wal: {dirpath} has no metadata record")
        result.entries = entries
        seq, _, name = segments[-1]
        mark = result.raft_snapshot
        last_index = entries[-1].index if entries else mark.index if mark else result.snapshot_index
        last_term = entries[-1].term if entries else mark.term if mark else result.snapshot_term
        wal = cls(dirpath, result.metadata, result.hard_state, last_index, last_term)
        wal._raft_snapshot = mark
        wal._seq = seq
        wal._fd = os.open(os.path.join(dirpath, name), os.O_WRONLY | os.O_APPEND)
        wal._size = os.fstat(wal._fd).st_size
        return wal, result

    @staticmethod
    def _segments(dirpath: str) -> list[tuple[int, int, str]]:
        found = []
        for name in os.listdir(dirpath):
            m = _SEGMENT_NAME.match(name)
            if m:
                found.append((int(m.group(1), 16), int(m.group(2), 16), name))
        found.sort()
        for (a, _, name_a), (b, _, name_b) in itertools.pairwise(found):
            if b != a + 1:
                raise WALCorrupt(f"wal: segments {name_a} and {name_b} are not consecutive")
        return found

    # -- writing ------------------------------------------------------------

    def _start_segment(self, seq: int) -> None:
        """Make segment ``seq``, for the entries after ``last_index``, the one appended to.

        Its header is written and synced under a temporary name first, so a
        segment file always begins with a whole header.
        """
        hs = self._hard_state
        header = (
            _record(METADATA, self._metadata)
            + _record(HARD_STATE, _HARD_STATE.pack(hs.term, hs.vote, hs.commit))
            + _record(SNAPSHOT, _SNAPSHOT.pack(self.last_index, self.last_term))
        )
        if self._raft_snapshot is not None:
            header += self._raft_snapshot.encode()
        path = os.path.join(self.dir, _segment_name(seq, self.last_index + 1))
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        self._fd, self._seq, self._size = fd, seq, 0
        self._write(header)
        os.fdatasync(fd)
        os.rename(path + ".tmp", path)
        _fsync_dir(self.dir)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)

    def save(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        """Append a hard state and entries (not yet durable: call ``sync``)."""
        parts = [encode_entry(e) for e in entries]
        if hard_state is not None and hard_state != self._hard_state:
            parts.append(
                _record(HARD_STATE, _HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit))
            )
            self._hard_state = hard_state
        if parts:
            self._write(b"".join(parts))
        if entries:
            self.last_index = entries[-1].index
            self.last_term = entries[-1].term

    def save_snapshot(self, mark: RaftSnapshotMark) -> None:
        """Record (durably) that the state up to ``mark.index`` is in the backend.

        If the log ends before the mark (a snapshot installed from the leader), it continues
        right after it.
        """
        self._write(mark.encode())
        self._raft_snapshot = mark
        if mark.index > self.last_index:
            self.last_index, self.last_term = mark.index, mark.term
        self.sync()

    def sync(self) -> None:
        os.fdatasync(self._fd)
        if self._size >= SEGMENT_BYTES:
            self._cut()

    def save_and_sync(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        self.save(hard_state, entries)
        self.sync()

    def _cut(self) -> None:
        """Start the next segment (the current one is durable)."""
        os.close(self._fd)
        self._start_segment(self._seq + 1)

    def release_to(self, index: int) -> int:
        """Delete whole segments whose entries all have index <= ``index``; returns how many."""
        segments = self._segments(self.dir)
        removed = 0
        for (_, _, name), (_, next_first, _) in itertools.pairwise(segments):
            if next_first - 1 > index:
                break
            os.unlink(os.path.join(self.dir, name))
            removed += 1
        if removed:
            _fsync_dir(self.dir)
        return removed

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
