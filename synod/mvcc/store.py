"""The multi-version key-value store (etcd's mvcc ``store``).

Every write transaction that changes something creates one new main revision;
the changes inside it are numbered by sub revision. The backend's ``key``
bucket maps revision bytes to the ``mvccpb.KeyValue`` written at that revision
(for a deletion, a tombstone holding only the key); the in-memory
``TreeIndex`` maps each key to its revisions. A read at revision ``r`` finds,
for each key, its last revision ``<= r`` in the index and the value in the
backend.

``current_rev`` is the revision of the last committed write transaction; an
empty store is at revision 1, so the first write creates revision 2 (as etcd).
Revisions below ``compact_main_rev`` have been compacted and can't be read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import crc32c

from synod.api.mvccpb.kv_pb2 import KeyValue
from synod.backend import backend as bk
from synod.backend import meta
from synod.mvcc.index import KeyAt, TreeIndex
from synod.mvcc.key_index import RevisionNotFound
from synod.mvcc.revision import Revision, bytes_to_rev, is_tombstone, rev_to_bytes

PUT = 0
DELETE = 1

COMPACTION_BATCH = 10_000  # backend records deleted per compaction step


class ErrCompacted(Exception):
    """The requested revision has been compacted."""


class ErrFutureRev(Exception):
    """The requested revision is later than the store's current revision."""


@dataclass(slots=True)
class RangeResult:
    kvs: list[KeyValue]
    count: int
    rev: int


class Change:
    """One change of a write transaction: a watch event to be.

    ``kv_bytes`` is the serialized ``kv`` (for a put, the very bytes stored in
    the backend), and the watch service caches the encoded event on the change,
    so an event is serialized once however many watchers receive it.
    """

    __slots__ = ("event_bytes", "kv", "kv_bytes", "prev_event_bytes", "type")

    def __init__(self, type: int, kv: KeyValue, kv_bytes: bytes) -> None:
        self.type = type  # PUT or DELETE
        self.kv = kv
        self.kv_bytes = kv_bytes
        self.event_bytes: bytes | None = None  # the encoded mvccpb.Event, without prev_kv
        self.prev_event_bytes: bytes | None = None  # ... and with prev_kv, once a watcher needed it

    def __repr__(self) -> str:
        return f"Change({'PUT' if self.type == PUT else 'DELETE'}, {self.kv.key!r}@{self.kv.mod_revision})"


class LeaseAttacher(Protocol):
    """What the store needs of the lessor: which lease a key is attached to, and changing that."""

    def exists(self, lease_id: int) -> bool: ...

    def lease_of(self, key: bytes) -> int: ...

    def attach(self, lease_id: int, key: bytes) -> None: ...

    def detach(self, key: bytes) -> None: ...


class KVStore:
    def __init__(self, backend: bk.Backend, lessor: LeaseAttacher | None = None) -> None:
        self.backend = backend
        self.lessor = lessor
        # Called with (revision, changes) when a write transaction that changed something ends.
        self.on_commit: Callable[[int, list[Change]], None] | None = None
        self.index = TreeIndex()
        self.current_rev = 1
        self.compact_main_rev = -1
        self._pending_compaction: int | None = self._restore()

    # -- views ---------------------------------------------------------------

    def read(self) -> TxnRead:
        return TxnRead(self, self.current_rev)

    def write(self) -> TxnWrite:
        return TxnWrite(self, self.current_rev)

    # -- compaction -----------------------------------------------------------

    def compact(self, rev: int) -> Iterator[None]:
        """Compact history at ``rev`` (raises if ``rev`` was compacted or is in the future).

        The index is compacted at once; the returned iterator deletes the
        obsolete backend records one batch per step (the caller drives it so
        that writers are not held up).
        """
        if rev <= self.compact_main_rev:
            raise ErrCompacted(rev)
        if rev > self.current_rev:
            raise ErrFutureRev(rev)
        self.compact_main_rev = rev
        meta.put_int(self.backend, meta.SCHEDULED_COMPACT_REV, rev)
        return self._compact_backend(rev, self.index.compact(rev))

    def _compact_backend(self, rev: int, keep: set[Revision]) -> Iterator[None]:
        end = rev_to_bytes(rev + 1, 0)
        start = b""
        while True:
            keys = self.backend.keys(bk.KEY, start, end, limit=COMPACTION_BATCH)
            for key in keys:
                if bytes_to_rev(key) not in keep:
                    self.backend.delete(bk.KEY, key)
            if len(keys) < COMPACTION_BATCH:
                break
            start = keys[-1] + b"\x00"
            yield
        meta.put_int(self.backend, meta.FINISHED_COMPACT_REV, rev)

    def take_pending_compaction(self) -> Iterator[None] | None:
        """A compaction accepted before a restart but not finished, to be resumed."""
        rev, self._pending_compaction = self._pending_compaction, None
        if rev is None:
            return None
        return self._compact_backend(rev, self.index.keep(rev))

    # -- hashing --------------------------------------------------------------

    def hash_by_rev(self, rev: int) -> tuple[int, int, int]:
        """etcd's HashKV: (CRC-32C of the key bucket up to ``rev``, current revision, compact revision).

        The hash covers the bucket's name, then every record at or below ``rev``
        (its revision bytes and value) in backend order, leaving out records below
        the compaction that a finished compaction would have deleted, so members
        with the same history hash alike whatever their compaction progress.
        Raises ErrCompacted / ErrFutureRev for a revision outside the history.
        """
        compact_rev, current = self.compact_main_rev, self.current_rev
        if 0 < rev <= compact_rev:
            raise ErrCompacted(rev)
        if rev > current:
            raise ErrFutureRev(rev)
        rev = rev or current
        keep = self.index.keep(rev)
        h = crc32c.crc32c(bk.KEY)
        for key, value in self.backend.items(bk.KEY, b"", rev_to_bytes(rev + 1, 0)):
            if keep and bytes_to_rev(key)[0] <= compact_rev and bytes_to_rev(key) not in keep:
                continue  # scheduled for deletion by the compaction
            h = crc32c.crc32c(value, crc32c.crc32c(key, h))
        return h, current, compact_rev

    # -- restore --------------------------------------------------------------

    def _restore(self) -> int | None:
        """Rebuild the index from the backend; returns a compaction left unfinished."""
        current = 1
        leases: dict[bytes, int] = {}  # the lease of each live key's last put
        for key, value in self.backend.items(bk.KEY):
            rev = bytes_to_rev(key)
            kv = KeyValue.FromString(value)
            if is_tombstone(key):
                self.index.restore_tombstone(kv.key, rev)
                leases.pop(kv.key, None)
            else:
                self.index.restore(kv.key, (kv.create_revision, 0), rev, kv.version)
                leases[kv.key] = kv.lease
            current = rev[0]
        if self.lessor is not None:
            for key, lease_id in leases.items():
                if lease_id and self.lessor.exists(lease_id):
                    self.lessor.attach(lease_id, key)
        scheduled = meta.get_int(self.backend, meta.SCHEDULED_COMPACT_REV)
        finished = meta.get_int(self.backend, meta.FINISHED_COMPACT_REV)
        if scheduled is not None:
            self.compact_main_rev = scheduled
            self.index.compact(scheduled)
        # The last revisions may all have been compacted away (a deleted key).
        self.current_rev = max(current, self.compact_main_rev)
        if scheduled is not None and (finished is None or finished < scheduled):
            return scheduled
        return None


class TxnRead:
    """A read view of the store at revision ``rev``."""

    __slots__ = ("rev", "store")

    def __init__(self, store: KVStore, rev: int) -> None:
        self.store = store
        self.rev = rev

    @property
    def first_rev(self) -> int:
        return self.store.compact_main_rev

    def _read_rev(self) -> int:
        return self.rev

    def range(
        self, key: bytes, end: bytes | None, *, rev: int = 0, limit: int = 0, count_only: bool = False
    ) -> RangeResult:
        cur = self._read_rev()
        if rev > cur:
            raise ErrFutureRev(rev)
        if rev <= 0:
            rev = cur
        if rev < self.store.compact_main_rev:
            raise ErrCompacted(rev)
        index = self.store.index
        if count_only:
            return RangeResult([], index.count(key, end, rev), cur)
        found = index.range(key, end, rev)
        if limit > 0:
            return RangeResult(self._values(found[:limit]), len(found), cur)
        return RangeResult(self._values(found), len(found), cur)

    def _values(self, found: list[KeyAt]) -> list[KeyValue]:
        get = self.store.backend.get
        parse = KeyValue.FromString
        out = []
        for _, mod, _, _ in found:
            raw = get(bk.KEY, rev_to_bytes(*mod))
            if raw is None:
                raise AssertionError(f"index names revision {mod} that the backend does not have")
            out.append(parse(raw))
        return out


class TxnWrite(TxnRead):
    """A write transaction: every change gets main revision ``rev + 1``."""

    __slots__ = ("changes",)

    def __init__(self, store: KVStore, rev: int) -> None:
        super().__init__(store, rev)
        self.changes: list[Change] = []

    def _read_rev(self) -> int:
        # Reads inside the transaction see its own earlier changes.
        return self.rev + 1 if self.changes else self.rev

    def put(self, key: bytes, value: bytes, lease: int) -> int:
        rev = self.rev + 1
        created, ver, existed = rev, 0, True
        try:
            _, created_rev, ver = self.store.index.get(key, rev)
            created = created_rev[0]
        except RevisionNotFound:
            existed = False
        idx_rev = (rev, len(self.changes))
        kv = KeyValue(
            key=key, value=value, create_revision=created, mod_revision=rev, version=ver + 1, lease=lease
        )
        raw = kv.SerializeToString()
        self.store.backend.put(bk.KEY, rev_to_bytes(*idx_rev), raw)
        self.store.index.put(key, idx_rev)
        self.changes.append(Change(PUT, kv, raw))
        lessor = self.store.lessor
        if lessor is not None:
            if existed:
                lessor.detach(key)
            if lease:
                lessor.attach(lease, key)
        return rev

    def delete_range(self, key: bytes, end: bytes | None) -> tuple[int, int]:
        """Delete the live keys in the range; returns (number deleted, revision)."""
        found = self.store.index.range(key, end, self._read_rev())
        for k, *_ in found:
            self._delete(k)
        if found or self.changes:
            return len(found), self.rev + 1
        return 0, self.rev

    def _delete(self, key: bytes) -> None:
        idx_rev = (self.rev + 1, len(self.changes))
        kv = KeyValue(key=key)
        self.store.backend.put(bk.KEY, rev_to_bytes(*idx_rev) + b"t", kv.SerializeToString())
        self.store.index.tombstone(key, idx_rev)
        kv.mod_revision = idx_rev[0]
        self.changes.append(Change(DELETE, kv, kv.SerializeToString()))
        if self.store.lessor is not None:
            self.store.lessor.detach(key)

    def end(self) -> int:
        """Finish the transaction; returns the store's revision after it."""
        if self.changes:
            self.store.current_rev = self.rev + 1
            if self.store.on_commit is not None:
                self.store.on_commit(self.store.current_rev, self.changes)
        return self.store.current_rev
