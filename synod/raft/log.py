"""The Raft log: stable entries in a ``Storage`` followed by entries not yet persisted.

A port of the design of etcd-io/raft's ``log.go`` and ``log_unstable.go``
(the synchronous-storage form of etcd 3.5). The core appends to the
``Unstable`` part; the application persists what ``RaftLog.unstable_entries``
(and ``RaftLog.snapshot`` when ``has_pending_snapshot``) hands it, writes it to
the ``Storage``, and then calls ``stable_to`` / ``stable_snap_to``.

Invariants of a ``RaftLog``:
``first_index() - 1 <= applied <= committed <= last_index()`` (``applied`` may
lag behind a freshly restored snapshot until the application catches up);
an entry at or below ``committed`` is never replaced.

Lists returned by the methods here are fresh: the caller may keep them.
"""

from __future__ import annotations

from collections.abc import Sequence

from synod.raft.storage import NO_LIMIT, ErrCompacted, ErrUnavailable, Storage, StorageError, limit_size
from synod.raft.types import Entry, Snapshot


class RaftLogError(Exception):
    """A broken invariant of the log: a bug in the caller or corrupt storage, never an expected case."""


class Unstable:
    """Entries (and possibly an incoming snapshot) not yet written to storage.

    ``entries[k]`` has index ``offset + k``. ``offset`` may be at or below the
    storage's last index: the next write must then replace the storage's
    entries from ``offset`` on. When ``snapshot`` is set, ``offset`` is at most
    ``snapshot.metadata.index + 1`` and everything before it is superseded by
    the snapshot.
    """

    __slots__ = ("entries", "offset", "snapshot")

    def __init__(
        self, offset: int = 0, entries: Sequence[Entry] = (), snapshot: Snapshot | None = None
    ) -> None:
        self.snapshot: Snapshot | None = snapshot
        self.entries: list[Entry] = list(entries)
        self.offset: int = offset

    def maybe_first_index(self) -> int | None:
        """The first index of the log if a snapshot defines it, else ``None`` (storage decides)."""
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        """The last index of the log if there are unstable entries or a snapshot, else ``None``."""
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        """The term of entry ``i`` if it is unstable or is the snapshot's last entry, else ``None``."""
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return None
        k = i - self.offset
        if k >= len(self.entries):
            return None
        return self.entries[k].term

    def stable_to(self, i: int, t: int) -> None:
        """Entries up to ``i`` (whose term was ``t``) are persisted: drop them.

        Ignored unless entry ``i`` is still unstable with term ``t``: a stale
        notice (the entry was replaced meanwhile) must not drop newer entries.
        """
        if i < self.offset:
            return
        if self.maybe_term(i) != t:
            return
        del self.entries[: i + 1 - self.offset]
        self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        """The snapshot at index ``i`` is persisted: drop it (a stale index is ignored)."""
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    def restore(self, s: Snapshot) -> None:
        """Replace everything with the snapshot ``s``: no unstable entries, the next index after it."""
        self.offset = s.metadata.index + 1
        self.entries = []
        self.snapshot = s

    def truncate_and_append(self, ents: Sequence[Entry]) -> None:
        """Append ``ents`` (consecutive), first dropping any unstable entry at or after ``ents[0].index``.

        If ``ents`` starts at or before ``offset``, ``offset`` moves back to it:
        the stable entries from there on are superseded.
        """
        if not ents:
            return
        after = ents[0].index
        end = self.offset + len(self.entries)
        if after == end:
            self.entries.extend(ents)
        elif after <= self.offset:
            self.offset = after
            self.entries = list(ents)
        elif after < end:
            del self.entries[after - self.offset :]
            self.entries.extend(ents)
        else:
            raise RaftLogError(f"unstable append at {after} leaves a gap after {end - 1}")

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """The unstable entries ``[lo, hi)``; requires ``offset <= lo <= hi <= offset + len(entries)``."""
        if lo > hi:
            raise RaftLogError(f"invalid unstable slice [{lo}, {hi})")
        upper = self.offset + len(self.entries)
        if lo < self.offset or hi > upper:
            raise RaftLogError(f"unstable slice [{lo}, {hi}) out of bounds [{self.offset}, {upper})")
        return self.entries[lo - self.offset : hi - self.offset]


class RaftLog:
    """The log a Raft node reads and appends to: ``storage`` then ``unstable``.

    ``committed`` is the highest index known to be stored on a quorum;
    ``applied`` the highest the application was told to apply. Both start at
    the storage's compaction point (its snapshot), where the log is known to
    be committed and applied.
    """

    __slots__ = ("applied", "committed", "max_next_ents_size", "storage", "unstable")

    def __init__(self, storage: Storage, max_next_ents_size: int = NO_LIMIT) -> None:
        self.storage: Storage = storage
        self.max_next_ents_size: int = max_next_ents_size
        first = storage.first_index()
        self.unstable: Unstable = Unstable(offset=storage.last_index() + 1)
        self.committed: int = first - 1
        self.applied: int = first - 1

    def __str__(self) -> str:
        return (
            f"committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, len(unstable.Entries)={len(self.unstable.entries)}"
        )

    # -- appending ------------------------------------------------------------------------------

    def maybe_append(
        self, index: int, log_term: int, committed: int, ents: Sequence[Entry]
    ) -> tuple[int, bool]:
        """Append a leader's ``ents``, which follow its entry ``(index, log_term)``.

        Returns ``(0, False)`` if this log has no entry ``index`` with term
        ``log_term``. Otherwise entries that already match are kept, the first
        conflicting one and everything after it are replaced, the commit index
        advances to ``min(committed, index + len(ents))``, and the result is
        ``(index + len(ents), True)``. Raises ``RaftLogError`` if a committed
        entry would be replaced.
        """
        if not self.match_term(index, log_term):
            return 0, False
        if ents and ents[0].index != index + 1:
            raise RaftLogError(f"entries start at {ents[0].index}, after {index}")
        last_new = index + len(ents)
        conflict = self.find_conflict(ents)
        if conflict:
            if conflict <= self.committed:
                raise RaftLogError(
                    f"entry {conflict} conflicts with a committed entry (committed={self.committed})"
                )
            k = conflict - (index + 1)
            if k > len(ents):
                raise RaftLogError(f"conflict at {conflict} is outside the entries after {index}")
            self.append(ents[k:])
        self.commit_to(min(committed, last_new))
        return last_new, True

    def append(self, ents: Sequence[Entry]) -> int:
        """Append ``ents`` (consecutive), replacing any entries from ``ents[0].index`` on; returns the
        last index. Raises ``RaftLogError`` if a committed entry would be replaced."""
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise RaftLogError(
                f"appending after {after} would replace committed entries (committed={self.committed})"
            )
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: Sequence[Entry]) -> int:
        """The index of the first entry of ``ents`` (consecutive) that this log does not hold: either
        its index holds another term or it is beyond the last index. 0 if the log holds them all."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """A guess at where this log last agrees with another log that has term ``term`` at ``index``.

        Returns the largest ``i <= index`` whose term is ``<= term`` or is not
        known here (compacted or beyond the last index), and that term (0 if
        not known). ``(0, 0)`` if there is none. Used for fast rejection hints.
        """
        i = index
        while i > 0:
            try:
                ours = self.term(i)
            except StorageError:
                return i, 0
            if ours <= term:
                return i, ours
            i -= 1
        return 0, 0

    # -- reading --------------------------------------------------------------------------------

    def unstable_entries(self) -> list[Entry]:
        """The entries to persist next (a copy)."""
        return list(self.unstable.entries)

    def next_ents(self) -> list[Entry]:
        """The committed entries not yet applied (after the first index), at most
        ``max_next_ents_size`` bytes of them but at least one if any."""
        lo = max(self.applied + 1, self.first_index())
        if self.committed + 1 <= lo:
            return []
        try:
            return self.slice(lo, self.committed + 1, self.max_next_ents_size)
        except StorageError as e:
            raise RaftLogError(f"committed entries [{lo}, {self.committed + 1}) unreadable: {e!r}") from e

    def has_next_ents(self) -> bool:
        """Whether ``next_ents`` would return anything, without reading entries."""
        return self.committed + 1 > max(self.applied + 1, self.first_index())

    def has_pending_snapshot(self) -> bool:
        """Whether a received snapshot awaits persisting."""
        return self.unstable.snapshot is not None and not self.unstable.snapshot.empty

    def snapshot(self) -> Snapshot:
        """The unstable snapshot if there is one, else the storage's."""
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def first_index(self) -> int:
        first = self.unstable.maybe_first_index()
        return first if first is not None else self.storage.first_index()

    def last_index(self) -> int:
        last = self.unstable.maybe_last_index()
        return last if last is not None else self.storage.last_index()

    def last_term(self) -> int:
        try:
            return self.term(self.last_index())
        except StorageError as e:
            raise RaftLogError(f"term of the last entry unreadable: {e!r}") from e

    def term(self, i: int) -> int:
        """The term of entry ``i``.

        As in etcd 3.5: 0 (not an error) for ``i`` outside
        ``[first_index() - 1, last_index()]``; inside it the unstable part
        answers first, then the storage, whose ``ErrCompacted`` /
        ``ErrUnavailable`` propagate.
        """
        if i < self.first_index() - 1 or i > self.last_index():
            return 0
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        return self.storage.term(i)

    def zero_term_on_err_compacted(self, i: int) -> int:
        """``term(i)``, with 0 for a compacted entry; any other storage error is a ``RaftLogError``."""
        try:
            return self.term(i)
        except ErrCompacted:
            return 0
        except StorageError as e:
            raise RaftLogError(f"term({i}) unreadable: {e!r}") from e

    def match_term(self, i: int, term: int) -> bool:
        """Whether this log has entry ``i`` with term ``term``.

        False for ``i`` outside ``[first_index() - 1, last_index()]`` whatever
        ``term`` is (etcd 3.5 answered True there for ``term == 0``).
        """
        if i < self.first_index() - 1 or i > self.last_index():
            return False
        try:
            return self.term(i) == term
        except StorageError:
            return False

    def entries(self, i: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """The entries from ``i`` to the last, cut to ``max_size`` bytes (at least one if any).

        Raises ``ErrCompacted`` if ``i < first_index()``.
        """
        last = self.last_index()
        if i > last:
            return []
        return self.slice(i, last + 1, max_size)

    def all_entries(self) -> list[Entry]:
        return self.entries(self.first_index())

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """Whether a log ending with ``(lasti, term)`` is at least as up to date as this one
        (Raft's election restriction): a later last term wins, an equal one needs ``lasti`` as long."""
        last_term = self.last_term()
        return term > last_term or (term == last_term and lasti >= self.last_index())

    # -- moving the marks -----------------------------------------------------------------------

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to ``max_index`` if that is progress and entry ``max_index`` has term ``term``
        (a leader commits only entries of its own term by counting replicas)."""
        if max_index > self.committed and self.zero_term_on_err_compacted(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def commit_to(self, tocommit: int) -> None:
        """Raise the commit index to ``tocommit`` (never lowers it).

        Raises ``RaftLogError`` if ``tocommit`` is beyond the last index: the log
        was corrupted, truncated or lost.
        """
        if tocommit <= self.committed:
            return
        last = self.last_index()
        if tocommit > last:
            raise RaftLogError(f"commit to {tocommit} is beyond the last index {last}")
        self.committed = tocommit

    def applied_to(self, i: int) -> None:
        """Record that entries up to ``i`` are applied; ``applied <= i <= committed`` (0 is ignored)."""
        if i == 0:
            return
        if i > self.committed or i < self.applied:
            raise RaftLogError(f"applied {i} is outside [{self.applied}, committed {self.committed}]")
        self.applied = i

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    def restore(self, s: Snapshot) -> None:
        """Replace the log with the snapshot ``s``, committed up to its index."""
        self.committed = s.metadata.index
        self.unstable.restore(s)

    def slice(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """The entries ``[lo, hi)`` from storage and the unstable part, cut to ``max_size`` bytes
        (at least one if any).

        Raises ``ErrCompacted`` if ``lo < first_index()``, ``RaftLogError`` if
        ``lo > hi`` or ``hi > last_index() + 1``.
        """
        self._check_bounds(lo, hi)
        if lo == hi:
            return []
        offset = self.unstable.offset
        ents: list[Entry] = []
        if lo < offset:
            stable_hi = min(hi, offset)
            try:
                ents = self.storage.entries(lo, stable_hi, max_size)
            except ErrUnavailable as e:
                raise RaftLogError(f"entries [{lo}, {stable_hi}) missing from storage") from e
            if len(ents) < stable_hi - lo:
                return ents  # the size limit was reached in storage
        if hi > offset:
            unstable = self.unstable.slice(max(lo, offset), hi)
            ents = ents + unstable if ents else unstable  # a new list: storage's may be its own
        return ents if max_size >= NO_LIMIT else limit_size(ents, max_size)

    def _check_bounds(self, lo: int, hi: int) -> None:
        """``first_index() <= lo <= hi <= last_index() + 1``, with ``ErrCompacted`` for a low ``lo``."""
        if lo > hi:
            raise RaftLogError(f"invalid slice [{lo}, {hi})")
        first = self.first_index()
        if lo < first:
            raise ErrCompacted(f"slice [{lo}, {hi}): first index is {first}")
        last = self.last_index()
        if hi > last + 1:
            raise RaftLogError(f"slice [{lo}, {hi}) out of bounds [{first}, {last}]")
