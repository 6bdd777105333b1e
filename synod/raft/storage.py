"""The stable log the Raft core reads: the ``Storage`` protocol and an in-memory implementation.

A port of the design of etcd-io/raft's ``storage.go``. The core only reads a
``Storage``; the application writes it (entries and hard state from each
``Ready``, snapshots, compactions) before telling the core they are stable.

Index arithmetic shared by every implementation: the log holds the entries
``[first_index(), last_index()]``; the entry at ``first_index() - 1`` has been
compacted into the latest snapshot but its term is still answered, so that a
follower can match the entry just before the ones a leader sends. An empty
log has ``first_index() == last_index() + 1``.

Sizes are in bytes as ``entry_size`` counts them: the entry's data plus
``ENTRY_OVERHEAD``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from synod.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata

NO_LIMIT: int = 2**63 - 1  # a max_size meaning "no size limit"

# Bytes counted per entry on top of its data: roughly the protobuf framing of
# its index, term, type and data length (etcd counts the encoded Entry size).
# It makes a limit meaningful for entries with little or no data.
ENTRY_OVERHEAD: int = 16


class StorageError(Exception):
    """A ``Storage`` cannot answer; the subclasses are the expected cases."""


class ErrCompacted(StorageError):
    """The requested index is older than the first available one: it is in a snapshot."""


class ErrUnavailable(StorageError):
    """The requested index is beyond the last one in the log."""


class ErrSnapOutOfDate(StorageError):
    """The snapshot is not newer than the one already held."""


class ErrSnapshotTemporarilyUnavailable(StorageError):
    """The snapshot is being prepared; ask again later."""


def entry_size(entry: Entry) -> int:
    """What ``entry`` counts towards a size limit."""
    return len(entry.data) + ENTRY_OVERHEAD


def entries_size(entries: Sequence[Entry]) -> int:
    """What ``entries`` count towards a size limit, together."""
    return sum(len(e.data) for e in entries) + ENTRY_OVERHEAD * len(entries)


def limit_size(entries: Sequence[Entry], max_size: int) -> list[Entry]:
    """The longest prefix of ``entries`` whose size is at most ``max_size``, but never empty if
    ``entries`` is not: the first entry is kept whatever its size, so progress is always possible."""
    n = len(entries)
    if n <= 1 or max_size >= NO_LIMIT:
        return list(entries)
    size = entry_size(entries[0])
    keep = 1
    while keep < n:
        size += entry_size(entries[keep])
        if size > max_size:
            break
        keep += 1
    return list(entries[:keep])


class Storage(Protocol):
    """Read access to the stable log, its hard state and its latest snapshot.

    Any exception other than those documented makes the core stop: the
    application must then recover its storage.
    """

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The saved hard state and the configuration of the latest snapshot."""
        ...

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """The entries ``[lo, hi)``, cut to ``max_size`` bytes but at least one if any, in a list the
        caller owns.

        Raises ``ErrCompacted`` if ``lo < first_index()``, ``ErrUnavailable`` if
        ``hi > last_index() + 1``.
        """
        ...

    def term(self, i: int) -> int:
        """The term of entry ``i``, for ``first_index() - 1 <= i <= last_index()``.

        Raises ``ErrCompacted`` below that range and ``ErrUnavailable`` above it.
        """
        ...

    def last_index(self) -> int:
        """The index of the last entry (the snapshot's index if there is none after it)."""
        ...

    def first_index(self) -> int:
        """The index of the first entry that ``entries`` may return (older ones are compacted)."""
        ...

    def snapshot(self) -> Snapshot:
        """The latest snapshot; raises ``ErrSnapshotTemporarilyUnavailable`` if it is not ready."""
        ...


class MemoryStorage:
    """A ``Storage`` held in a list, as etcd's ``MemoryStorage``.

    Invariants: ``_ents`` is never empty; ``_ents[0]`` is a dummy entry (no data)
    at the compaction point, holding the index and term of the last compacted
    entry (``(0, 0)`` at the start); ``_ents[k].index == _ents[0].index + k``.
    The snapshot's index is at most ``_ents[0].index`` (compaction may go past
    the latest snapshot, never the reverse).
    """

    __slots__ = ("_ents", "_hard_state", "_snapshot")

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = Snapshot()
        self._ents: list[Entry] = [Entry(0, 0, b"")]

    # -- the Storage protocol -------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.metadata.conf_state

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        if lo > hi:
            raise ValueError(f"invalid range [{lo}, {hi})")
        offset = self._ents[0].index
        if lo <= offset:
            raise ErrCompacted(f"entries [{lo}, {hi}): first index is {offset + 1}")
        last = self._last_index()
        if hi > last + 1:
            raise ErrUnavailable(f"entries [{lo}, {hi}): last index is {last}")
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def term(self, i: int) -> int:
        offset = self._ents[0].index
        if i < offset:
            raise ErrCompacted(f"term({i}): compacted up to {offset}")
        if i - offset >= len(self._ents):
            raise ErrUnavailable(f"term({i}): last index is {self._last_index()}")
        return self._ents[i - offset].term

    def last_index(self) -> int:
        return self._last_index()

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- writes by the application --------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    @property
    def conf_state(self) -> ConfState:
        """The configuration of the latest snapshot."""
        return self._snapshot.metadata.conf_state

    def set_hard_state(self, hs: HardState) -> None:
        self._hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole contents with ``snap``: the log becomes empty after its index.

        Raises ``ErrSnapOutOfDate`` unless ``snap`` is newer than the current snapshot.
        """
        if snap.metadata.index <= self._snapshot.metadata.index:
            raise ErrSnapOutOfDate(
                f"snapshot at {snap.metadata.index} is not newer than {self._snapshot.metadata.index}"
            )
        self._snapshot = snap
        self._ents = [Entry(snap.metadata.index, snap.metadata.term, b"")]

    def create_snapshot(self, i: int, cs: ConfState | None, data: bytes) -> Snapshot:
        """Record a snapshot of the state after applying entry ``i`` and return it.

        ``cs`` is the configuration at ``i`` (``None`` keeps the current one) and
        ``data`` the application's state. The log itself is not compacted.
        Raises ``ErrSnapOutOfDate`` if ``i`` is not after the current snapshot,
        ``ErrCompacted`` if its term is no longer known, ``ValueError`` if
        ``i > last_index()``.
        """
        if i <= self._snapshot.metadata.index:
            raise ErrSnapOutOfDate(f"snapshot at {i} is not newer than {self._snapshot.metadata.index}")
        last = self._last_index()
        if i > last:
            raise ValueError(f"snapshot at {i} is beyond the last index {last}")
        offset = self._ents[0].index
        if i < offset:
            raise ErrCompacted(f"snapshot at {i}: compacted up to {offset}")
        conf_state = cs if cs is not None else self._snapshot.metadata.conf_state
        self._snapshot = Snapshot(data, SnapshotMetadata(conf_state, i, self._ents[i - offset].term))
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Discard the entries up to ``compact_index``, keeping its index and term as the dummy entry:
        ``first_index()`` becomes ``compact_index + 1``.

        The application must not compact beyond what it has applied. Raises
        ``ErrCompacted`` if ``compact_index`` is already compacted (or is the
        dummy), ``ValueError`` if it is beyond the last index.
        """
        offset = self._ents[0].index
        if compact_index <= offset:
            raise ErrCompacted(f"compact({compact_index}): compacted up to {offset}")
        last = self._last_index()
        if compact_index > last:
            raise ValueError(f"compact({compact_index}) is beyond the last index {last}")
        k = compact_index - offset
        kept = self._ents[k]
        self._ents = [Entry(kept.index, kept.term, b""), *self._ents[k + 1 :]]

    def append(self, entries: Sequence[Entry]) -> None:
        """Write ``entries`` (consecutive indexes): an existing entry at or after ``entries[0].index``
        is replaced along with everything after it; entries already compacted are skipped.

        Raises ``ValueError`` if the indexes are not consecutive or would leave a
        gap after the last index.
        """
        if not entries:
            return
        first_new = entries[0].index
        last_new = entries[-1].index
        if last_new - first_new + 1 != len(entries):
            raise ValueError(
                f"entries [{first_new}..{last_new}] are not consecutive ({len(entries)} of them)"
            )
        first = self._ents[0].index + 1
        if last_new < first:
            return  # all compacted already
        if first_new < first:
            entries = entries[first - first_new :]
            first_new = first
        k = first_new - self._ents[0].index
        if k > len(self._ents):
            raise ValueError(f"missing entries: last index is {self._last_index()}, appending at {first_new}")
        del self._ents[k:]
        self._ents.extend(entries)

    def _last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1
