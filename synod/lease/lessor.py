"""Leases: TTLs that keys can be attached to (etcd's ``lessor``).

Two kinds of operation, kept apart:

* **Applied** (from the log, deterministic, the same on every member): grant,
  revoke (the caller deletes the keys), attach/detach of keys, checkpoint.
  Their effects are persisted in the backend's ``lease`` bucket.
* **Primary only** (the leader's clock, not logged): renew (keep-alive),
  expiry detection, checkpoint scheduling. Only the primary keeps expiry
  times; a lease's expiry is refreshed to a full TTL (or its checkpointed
  remaining TTL) when a member becomes primary, as etcd does on start and
  leader change. Expired leases are not deleted here: the server proposes
  their revocation through the log, so every member deletes the same keys at
  the same revision.

Time comes from the injected ``clock`` (seconds, monotonic), so tests can
expire leases without waiting.
"""

from __future__ import annotations

import heapq
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from synod import rpctypes
from synod.backend import backend as bk
from synod.rpctypes import RPCError

MAX_LEASE_TTL = 9_000_000_000  # seconds, as etcd
FOREVER = math.inf
REVOKE_RETRY_INTERVAL = 3.0  # seconds before an expired lease whose revocation is pending is offered again
DEFAULT_CHECKPOINT_INTERVAL = 300.0

_RECORD = struct.Struct(">qqq")  # ID, TTL, remaining TTL


class NotPrimaryError(Exception):
    """Only the primary lessor (the leader's) keeps expiry times."""


def lease_key(lease_id: int) -> bytes:
    return struct.pack(">q", lease_id)


@dataclass(slots=True)
class Lease:
    id: int
    ttl: int  # granted TTL in seconds (at least the minimum)
    remaining_ttl: int = 0  # checkpointed remaining TTL; 0 means unset (a full TTL)
    expiry: float = FOREVER  # clock time of expiry, on the primary only
    keys: set[bytes] = field(default_factory=set)

    def remaining(self, now: float) -> float:
        return self.expiry - now

    def refresh(self, now: float, extend: float = 0.0) -> None:
        self.expiry = now + extend + (self.remaining_ttl if self.remaining_ttl > 0 else self.ttl)


class Lessor:
    def __init__(
        self,
        backend: bk.Backend,
        *,
        min_ttl: int,
        clock: Callable[[], float],
        checkpoint_interval: float | None = None,
    ) -> None:
        self._backend = backend
        self._min_ttl = min_ttl
        self._clock = clock
        self._checkpoint_interval = checkpoint_interval  # None: checkpointing off
        self._leases: dict[int, Lease] = {}
        self._key_lease: dict[bytes, int] = {}
        self._primary = False
        self._expiry_heap: list[tuple[float, int]] = []  # (expiry, id); stale entries are skipped
        self._checkpoint_heap: list[tuple[float, int]] = []
        self._recover()

    # -- applied operations ---------------------------------------------------

    def grant(self, lease_id: int, ttl: int) -> Lease:
        if lease_id == 0:
            raise RPCError(rpctypes.LEASE_NOT_FOUND)
        if ttl > MAX_LEASE_TTL:
            raise RPCError(rpctypes.LEASE_TTL_TOO_LARGE)
        if lease_id in self._leases:
            raise RPCError(rpctypes.LEASE_EXIST)
        lease = Lease(lease_id, max(ttl, self._min_ttl))
        self._leases[lease_id] = lease
        self._persist(lease)
        if self._primary:
            lease.refresh(self._clock())
            self._schedule_expiry(lease)
            self._schedule_checkpoint(lease)
        return lease

    def remove(self, lease_id: int) -> None:
        """The last step of a revocation: the caller has deleted the lease's keys."""
        lease = self._leases.pop(lease_id)
        for key in lease.keys:
            self._key_lease.pop(key, None)
        self._backend.delete(bk.LEASE, lease_key(lease_id))

    def attach(self, lease_id: int, key: bytes) -> None:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise AssertionError(f"attach of {key!r} to lease {lease_id:x}, which does not exist")
        lease.keys.add(key)
        self._key_lease[key] = lease_id

    def detach(self, key: bytes) -> None:
        lease_id = self._key_lease.pop(key, 0)
        if lease_id:
            self._leases[lease_id].keys.discard(key)

    def checkpoint(self, lease_id: int, remaining_ttl: int) -> None:
        lease = self._leases.get(lease_id)
        if lease is None:
            return
        lease.remaining_ttl = remaining_ttl
        # etcd 3.4 kept checkpoints in memory only, so a restart forgot them; synod persists them.
        self._persist(lease)
        if self._primary:
            self._schedule_checkpoint(lease)

    # -- reads --------------------------------------------------------------

    def lookup(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def exists(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def lease_of(self, key: bytes) -> int:
        return self._key_lease.get(key, 0)

    def leases(self) -> list[Lease]:
        """All leases, soonest expiry first (etcd's order)."""
        return sorted(self._leases.values(), key=lambda lease: lease.expiry)

    # -- primary only ---------------------------------------------------------

    def promote(self, extend: float = 0.0) -> None:
        """Become primary: every lease gets a fresh expiry (its TTL, or checkpointed remaining TTL)."""
        self._primary = True
        now = self._clock()
        self._expiry_heap = []
        self._checkpoint_heap = []
        for lease in self._leases.values():
            lease.refresh(now, extend)
            self._schedule_expiry(lease)
            self._schedule_checkpoint(lease)

    def demote(self) -> None:
        self._primary = False
        for lease in self._leases.values():
            lease.expiry = FOREVER
        self._expiry_heap = []
        self._checkpoint_heap = []

    @property
    def is_primary(self) -> bool:
        return self._primary

    def renew(self, lease_id: int) -> tuple[int, bool]:
        """Keep a lease alive; returns its TTL and whether a checkpoint must be cleared (logged).

        An unknown or expired lease raises LEASE_NOT_FOUND (an expired one is about to be revoked);
        a lessor that is not the primary raises NotPrimaryError (the leader's must renew).
        """
        if not self._primary:
            raise NotPrimaryError
        lease = self._leases.get(lease_id)
        now = self._clock()
        if lease is None or lease.remaining(now) <= 0:
            raise RPCError(rpctypes.LEASE_NOT_FOUND)
        clear_checkpoint = self._checkpoint_interval is not None and lease.remaining_ttl > 0
        lease.remaining_ttl = 0 if clear_checkpoint else lease.remaining_ttl
        lease.refresh(now)
        self._schedule_expiry(lease)
        return lease.ttl, clear_checkpoint

    def expired(self, limit: int) -> list[int]:
        """Up to ``limit`` expired leases to revoke; each is offered again only after a retry interval."""
        if not self._primary:
            return []
        now = self._clock()
        out: list[int] = []
        heap = self._expiry_heap
        while heap and len(out) < limit and heap[0][0] <= now:
            _, lease_id = heapq.heappop(heap)
            lease = self._leases.get(lease_id)
            if lease is None or lease.remaining(now) > 0 or lease_id in out:
                continue  # revoked, or renewed since (its newer entry is still in the heap)
            out.append(lease_id)
            heapq.heappush(heap, (now + REVOKE_RETRY_INTERVAL, lease_id))
        return out

    def due_checkpoints(self, limit: int) -> list[tuple[int, int]]:
        """(lease ID, remaining TTL) of leases due for a checkpoint."""
        if self._checkpoint_interval is None:
            return []
        now = self._clock()
        out: list[tuple[int, int]] = []
        heap = self._checkpoint_heap
        while heap and len(out) < limit and heap[0][0] <= now:
            _, lease_id = heapq.heappop(heap)
            lease = self._leases.get(lease_id)
            if lease is None or lease.remaining(now) <= 0:
                continue
            remaining = math.ceil(lease.remaining(now))
            if remaining >= lease.ttl:
                continue
            out.append((lease_id, remaining))
        return out

    def next_deadline(self) -> float:
        """The earliest clock time at which ``expired`` or ``due_checkpoints`` may have work."""
        times = [h[0][0] for h in (self._expiry_heap, self._checkpoint_heap) if h]
        return min(times, default=FOREVER)

    # -- internals ------------------------------------------------------------

    def _schedule_expiry(self, lease: Lease) -> None:
        heap = self._expiry_heap
        if len(heap) > 4 * len(self._leases) + 64:
            # Renewals leave stale entries behind; start over from the current expiries.
            heap[:] = [(x.expiry, x.id) for x in self._leases.values() if x.expiry != FOREVER]
            heapq.heapify(heap)
        heapq.heappush(heap, (lease.expiry, lease.id))

    def _schedule_checkpoint(self, lease: Lease) -> None:
        interval = self._checkpoint_interval
        ttl = lease.remaining_ttl if lease.remaining_ttl > 0 else lease.ttl
        if interval is not None and ttl > interval:
            heapq.heappush(self._checkpoint_heap, (self._clock() + interval, lease.id))

    def _persist(self, lease: Lease) -> None:
        self._backend.put(
            bk.LEASE, lease_key(lease.id), _RECORD.pack(lease.id, lease.ttl, lease.remaining_ttl)
        )

    def _recover(self) -> None:
        for _, value in self._backend.items(bk.LEASE):
            lease_id, ttl, remaining = _RECORD.unpack(value)
            self._leases[lease_id] = Lease(lease_id, max(ttl, self._min_ttl), remaining)
