"""Watchers over the mvcc store (etcd's ``watchableStore``).

A watcher is in exactly one place:

* **synced**: it has been sent every event up to the store's current
  revision; each commit is offered to it at once (``_notify``).
* **unsynced**: it starts in the past (or fell behind); ``sync_watchers``
  reads history from the backend in rounds of at most ``MAX_WATCHERS_PER_SYNC``
  watchers and ``WATCH_BATCH_MAX_REVS`` revisions, so a watcher catching up
  never holds writers for long, and moves it to synced when it is current.
* **victim**: its sink refused a response (the client is not reading). The
  refused batch is kept and ``move_victims`` retries it; meanwhile the watcher
  gets nothing new, so a slow client costs one pending batch of memory and
  never slows writers or other watchers.

Invariant: for every watcher, the events of revisions ``< min_rev`` have been
handed to its sink (or it was cancelled), and none of ``>= min_rev`` have.

The store is driven from outside: commits call ``_notify`` synchronously,
and the server calls ``sync_watchers`` and ``move_victims`` from a loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from synod.api.mvccpb.kv_pb2 import KeyValue
from synod.backend import backend as bk
from synod.mvcc.revision import bytes_to_rev, is_tombstone, rev_to_bytes
from synod.mvcc.store import DELETE, PUT, Change, KVStore

MAX_WATCHERS_PER_SYNC = 512
WATCH_BATCH_MAX_REVS = 1000  # revisions of events in one response of a catching-up watcher


@dataclass(slots=True)
class WatchResponse:
    watch_id: int
    changes: list[Change]
    revision: int  # the header revision: the response holds every event of the watcher up to it
    compact_revision: int = 0  # non-zero: the watcher's start was compacted; it is cancelled


class WatchSink(Protocol):
    def try_send(self, response: WatchResponse) -> bool:
        """Queue the response for the client; False (and nothing queued) if its buffer is full."""


class Watcher:
    __slots__ = ("compacted", "end", "id", "key", "min_rev", "no_delete", "no_put", "sink", "victim")

    def __init__(
        self,
        watch_id: int,
        key: bytes,
        end: bytes | None,
        min_rev: int,
        sink: WatchSink,
        no_put: bool,
        no_delete: bool,
    ) -> None:
        self.id = watch_id
        self.key = key
        self.end = end  # None: the key alone; b"": every key >= key; else [key, end)
        self.min_rev = min_rev
        self.sink = sink
        self.no_put = no_put
        self.no_delete = no_delete
        self.victim = False
        self.compacted = False

    def matches(self, key: bytes) -> bool:
        if self.end is None:
            return key == self.key
        return self.key <= key and (self.end == b"" or key < self.end)

    def send(self, response: WatchResponse) -> bool:
        """Offer a response after the filters; one left empty by them counts as delivered."""
        progress = not response.changes
        if self.no_put or self.no_delete:
            response.changes = [
                c
                for c in response.changes
                if not ((c.type == PUT and self.no_put) or (c.type == DELETE and self.no_delete))
            ]
            if not progress and not response.changes:
                return True
        return self.sink.try_send(response)


class WatcherGroup:
    """Watchers indexed by key: single-key watchers by their key, ranges in a list."""

    def __init__(self) -> None:
        self._by_key: dict[bytes, set[Watcher]] = {}
        self._ranges: set[Watcher] = set()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, w: Watcher) -> bool:
        if w.end is None:
            return w in self._by_key.get(w.key, ())
        return w in self._ranges

    def __iter__(self) -> Iterator[Watcher]:
        for watchers in self._by_key.values():
            yield from watchers
        yield from self._ranges

    def add(self, w: Watcher) -> None:
        if w.end is None:
            self._by_key.setdefault(w.key, set()).add(w)
        else:
            self._ranges.add(w)
        self._size += 1

    def remove(self, w: Watcher) -> bool:
        if w.end is None:
            watchers = self._by_key.get(w.key)
            if watchers is None or w not in watchers:
                return False
            watchers.discard(w)
            if not watchers:
                del self._by_key[w.key]
        else:
            if w not in self._ranges:
                return False
            self._ranges.discard(w)
        self._size -= 1
        return True

    def watching(self, key: bytes) -> Iterator[Watcher]:
        yield from self._by_key.get(key, ())
        for w in self._ranges:
            if w.matches(key):
                yield w


@dataclass(slots=True)
class EventBatch:
    """A watcher's events from one notification or sync round."""

    changes: list[Change] = field(default_factory=list)
    revs: int = 0  # distinct revisions in changes
    more_rev: int = 0  # non-zero: the first revision left out by the size limit

    def add(self, change: Change) -> None:
        if self.more_rev:
            return
        rev = change.kv.mod_revision
        if not self.changes or rev > self.changes[-1].kv.mod_revision:
            if self.revs == WATCH_BATCH_MAX_REVS:
                self.more_rev = rev
                return
            self.revs += 1
        self.changes.append(change)


def batches(watchers: Iterable[Watcher] | WatcherGroup, changes: list[Change]) -> dict[Watcher, EventBatch]:
    """Each watcher's events among ``changes`` (in order, from its ``min_rev`` on)."""
    out: dict[Watcher, EventBatch] = {}
    if isinstance(watchers, WatcherGroup):
        group = watchers
    else:
        group = WatcherGroup()
        for w in watchers:
            group.add(w)
    for change in changes:
        rev = change.kv.mod_revision
        for w in group.watching(change.kv.key):
            if rev >= w.min_rev:
                eb = out.get(w)
                if eb is None:
                    eb = out[w] = EventBatch()
                eb.add(change)
    return out


class WatchableStore:
    def __init__(self, store: KVStore) -> None:
        self.store = store
        store.on_commit = self._notify
        self.synced = WatcherGroup()
        self.unsynced = WatcherGroup()
        self.victims: dict[Watcher, EventBatch] = {}

    def restore(self, store: KVStore) -> None:
        """The store was replaced (a snapshot installed): every watcher catches up from the new one."""
        self.store = store
        store.on_commit = self._notify
        for w in list(self.synced):
            self.synced.remove(w)
            self.unsynced.add(w)

    # -- watchers -------------------------------------------------------------

    def watch(
        self,
        watch_id: int,
        key: bytes,
        end: bytes | None,
        start_rev: int,
        sink: WatchSink,
        *,
        no_put: bool = False,
        no_delete: bool = False,
    ) -> Watcher:
        """Watch from ``start_rev`` (0: from the next revision)."""
        current = self.store.current_rev
        synced = start_rev == 0 or start_rev > current
        w = Watcher(
            watch_id, key, end, max(current + 1, start_rev) if synced else start_rev, sink, no_put, no_delete
        )
        (self.synced if synced else self.unsynced).add(w)
        return w

    def cancel(self, w: Watcher) -> None:
        if not (self.synced.remove(w) or self.unsynced.remove(w)):
            self.victims.pop(w, None)

    @property
    def watcher_count(self) -> int:
        """Watchers not cancelled (etcd's etcd_debugging_mvcc_watcher_total)."""
        return len(self.synced) + len(self.unsynced) + len(self.victims)

    def is_synced(self, w: Watcher) -> bool:
        return w in self.synced

    def progress(self, w: Watcher) -> None:
        """A progress notification (no events, the current revision) for a synced watcher."""
        if w in self.synced:
            w.send(WatchResponse(w.id, [], self.store.current_rev))

    # -- delivery -------------------------------------------------------------

    def _notify(self, rev: int, changes: list[Change]) -> None:
        for w, eb in batches(self.synced, changes).items():
            if not w.send(WatchResponse(w.id, eb.changes, rev)):
                w.min_rev = rev + 1
                w.victim = True
                self.synced.remove(w)
                self.victims[w] = eb

    def sync_watchers(self) -> bool:
        """One round of catching up unsynced watchers; returns whether it got any of them further."""
        current = self.store.current_rev
        compacted = self.store.compact_main_rev
        chosen: list[Watcher] = []
        progressed = False
        for w in list(self.unsynced):
            if w.min_rev < compacted:
                # Its start is gone: say so (as etcd does, unfiltered) and drop it.
                if w.sink.try_send(WatchResponse(w.id, [], 0, compact_revision=compacted)):
                    w.compacted = True
                    self.unsynced.remove(w)
                    progressed = True
                continue
            chosen.append(w)
            if len(chosen) == MAX_WATCHERS_PER_SYNC:
                break
        if not chosen:
            return progressed
        low = min(w.min_rev for w in chosen)
        high = min(current, low + WATCH_BATCH_MAX_REVS - 1)
        found = batches(chosen, list(self._history(low, high)))
        for w in chosen:
            eb = found.get(w)
            before = w.min_rev
            w.min_rev = eb.more_rev if eb is not None and eb.more_rev else max(w.min_rev, high + 1)
            if eb is not None and not w.send(WatchResponse(w.id, eb.changes, high)):
                w.victim = True
                self.unsynced.remove(w)
                self.victims[w] = eb
                continue
            progressed = progressed or w.min_rev > before
            if w.min_rev > current:
                self.unsynced.remove(w)
                self.synced.add(w)
        return progressed

    def move_victims(self) -> int:
        """Retry the responses clients refused; returns how many went out."""
        moved = 0
        current = self.store.current_rev
        for w, eb in list(self.victims.items()):
            if not w.send(WatchResponse(w.id, eb.changes, w.min_rev - 1)):
                continue
            moved += 1
            del self.victims[w]
            w.victim = False
            if eb.more_rev:
                w.min_rev = eb.more_rev
            (self.unsynced if w.min_rev <= current else self.synced).add(w)
        return moved

    def _history(self, low: int, high: int) -> Iterator[Change]:
        """The changes of revisions low..high, read back from the backend."""
        for raw_rev, value in self.store.backend.items(bk.KEY, rev_to_bytes(low), rev_to_bytes(high + 1)):
            kv = KeyValue.FromString(value)
            if is_tombstone(raw_rev):
                kv.mod_revision = bytes_to_rev(raw_rev)[0]
                yield Change(DELETE, kv, kv.SerializeToString())
            else:
                yield Change(PUT, kv, value)
