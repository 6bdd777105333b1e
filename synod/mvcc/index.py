"""The in-memory key index: every key's history, sorted by key.

Rebuilt from the backend at start; the backend holds the values, keyed by
revision. Ranges follow etcd's convention for ``end``: ``None`` means the single
key ``key``, ``b""`` means every key ``>= key``, anything else is ``[key, end)``.
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedDict

from synod.mvcc.key_index import KeyIndex, RevisionNotFound
from synod.mvcc.revision import Revision

# (key, modified revision, created revision, version) of a key at a point in history.
KeyAt = tuple[bytes, Revision, Revision, int]


class TreeIndex:
    def __init__(self) -> None:
        self._tree: SortedDict = SortedDict()

    def __len__(self) -> int:
        return len(self._tree)

    def get(self, key: bytes, at_rev: int) -> tuple[Revision, Revision, int]:
        ki: KeyIndex | None = self._tree.get(key)
        if ki is None:
            raise RevisionNotFound(key)
        return ki.get(at_rev)

    def _visit(self, key: bytes, end: bytes | None) -> Iterator[KeyIndex]:
        if end is None:
            ki = self._tree.get(key)
            if ki is not None:
                yield ki
            return
        tree = self._tree
        keys = tree.irange(key, None) if end == b"" else tree.irange(key, end, inclusive=(True, False))
        for k in keys:
            yield tree[k]

    def range(self, key: bytes, end: bytes | None, at_rev: int) -> list[KeyAt]:
        """The keys alive at ``at_rev`` in the range, in key order."""
        out: list[KeyAt] = []
        for ki in self._visit(key, end):
            try:
                mod, created, ver = ki.get(at_rev)
            except RevisionNotFound:
                continue
            out.append((ki.key, mod, created, ver))
        return out

    def count(self, key: bytes, end: bytes | None, at_rev: int) -> int:
        n = 0
        for ki in self._visit(key, end):
            try:
                ki.get(at_rev)
            except RevisionNotFound:
                continue
            n += 1
        return n

    def put(self, key: bytes, rev: Revision) -> None:
        ki: KeyIndex | None = self._tree.get(key)
        if ki is None:
            ki = KeyIndex(key)
            self._tree[key] = ki
        ki.put(rev)

    def restore(self, key: bytes, created: Revision, modified: Revision, ver: int) -> None:
        ki: KeyIndex | None = self._tree.get(key)
        if ki is None:
            ki = KeyIndex(key)
            ki.restore(created, modified, ver)
            self._tree[key] = ki
        else:
            ki.put(modified)

    def tombstone(self, key: bytes, rev: Revision) -> None:
        ki: KeyIndex | None = self._tree.get(key)
        if ki is None:
            raise RevisionNotFound(key)
        ki.tombstone(rev)

    def restore_tombstone(self, key: bytes, rev: Revision) -> None:
        """A tombstone read back from the backend; one for a compacted-away key is skipped."""
        ki: KeyIndex | None = self._tree.get(key)
        if ki is not None:
            ki.tombstone(rev)

    def compact(self, rev: int) -> set[Revision]:
        """Compact every key at ``rev``; returns the revisions the backend must keep."""
        available: set[Revision] = set()
        empty: list[bytes] = []
        for key, ki in self._tree.items():
            ki.compact(rev, available)
            if ki.is_empty():
                empty.append(key)
        for key in empty:
            del self._tree[key]
        return available

    def keep(self, rev: int) -> set[Revision]:
        available: set[Revision] = set()
        for ki in self._tree.values():
            ki.keep(rev, available)
        return available
