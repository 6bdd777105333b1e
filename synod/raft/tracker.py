"""The leader's bookkeeping: the tracked configuration, each peer's progress and the votes.

``Progress`` is the leader's view of one peer's log (flow control states
probe / replicate / snapshot, with a bounded window of in-flight appends);
``ProgressTracker`` holds the active ``Config`` with one ``Progress`` per voter
or learner in it, computes the committed index and counts election votes.
Everything here is plain data mutated by the raft state machine; nothing
performs I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from synod.raft.quorum import JointConfig, VoteResult
from synod.raft.types import ConfState


class ProgressState(IntEnum):
    PROBE = 0  # at most one append in flight until the peer answers; find where the logs match
    REPLICATE = 1  # stream appends optimistically, bounded by the inflights window
    SNAPSHOT = 2  # a snapshot is being sent; no appends until it is applied or reported

    def __str__(self) -> str:
        return _STATE_NAMES[self]


_STATE_NAMES = {
    ProgressState.PROBE: "StateProbe",
    ProgressState.REPLICATE: "StateReplicate",
    ProgressState.SNAPSHOT: "StateSnapshot",
}


class Inflights:
    """A ring buffer of the last indexes of the appends sent but not yet acknowledged.

    Invariants: indexes are non-decreasing from oldest to newest; ``count() <= size``;
    a new append is refused only while ``full()``, so the byte total may exceed
    ``max_bytes`` by the last append's size. ``max_bytes == 0`` means no byte limit.
    The buffer grows on demand up to ``size`` slots (``size == 0``: always full).
    """

    __slots__ = ("_buffer", "_bytes", "_count", "_size", "_start", "_total_bytes", "max_bytes")

    def __init__(self, size: int, max_bytes: int = 0) -> None:
        if size < 0:
            raise ValueError(f"inflights size must not be negative, got {size}")
        if max_bytes < 0:
            raise ValueError(f"inflights max_bytes must not be negative, got {max_bytes}")
        self._size = size
        self.max_bytes = max_bytes
        self._buffer: list[int] = []  # slot -> index
        self._bytes: list[int] = []  # slot -> size of that append
        self._start = 0  # slot of the oldest in-flight append
        self._count = 0
        self._total_bytes = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def total_bytes(self) -> int:
        """Total size of the appends in flight."""
        return self._total_bytes

    def __repr__(self) -> str:
        return f"Inflights(size={self._size}, max_bytes={self.max_bytes}, in_flight={self.indexes()!r})"

    def indexes(self) -> list[int]:
        """The in-flight indexes, oldest first."""
        capacity = len(self._buffer)
        return [self._buffer[(self._start + k) % capacity] for k in range(self._count)]

    def add(self, index: int, nbytes: int = 0) -> None:
        """Record an append whose last entry is ``index``; raises if full or out of order."""
        if self.full():
            raise RuntimeError("cannot add into a full Inflights")
        capacity = len(self._buffer)
        if self._count:
            newest = self._buffer[(self._start + self._count - 1) % capacity]
            if index < newest:
                raise ValueError(f"inflight index {index} is below the newest one in flight, {newest}")
        if self._count == capacity:
            self._grow()
            capacity = len(self._buffer)
        slot = (self._start + self._count) % capacity
        self._buffer[slot] = index
        self._bytes[slot] = nbytes
        self._count += 1
        self._total_bytes += nbytes

    def _grow(self) -> None:
        # Called only when every slot is used: unroll the ring into a larger list starting at slot 0.
        capacity = len(self._buffer)
        new_capacity = min(self._size, max(1, capacity * 2))
        order = [(self._start + k) % capacity for k in range(self._count)]
        padding = [0] * (new_capacity - self._count)
        self._buffer = [self._buffer[s] for s in order] + padding
        self._bytes = [self._bytes[s] for s in order] + padding
        self._start = 0

    def free_le(self, index: int) -> None:
        """Forget every in-flight append whose index is ``<= index``."""
        capacity = len(self._buffer)
        freed = 0
        freed_bytes = 0
        slot = self._start
        while freed < self._count and self._buffer[slot] <= index:
            freed_bytes += self._bytes[slot]
            freed += 1
            slot = (slot + 1) % capacity
        self._drop(freed, freed_bytes, slot)

    def free_first_one(self) -> None:
        """Forget the oldest in-flight append (nothing if none)."""
        if self._count:
            self._drop(1, self._bytes[self._start], (self._start + 1) % len(self._buffer))

    def _drop(self, freed: int, freed_bytes: int, new_start: int) -> None:
        self._count -= freed
        self._total_bytes -= freed_bytes
        self._start = new_start if self._count else 0

    def full(self) -> bool:
        return self._count == self._size or (self.max_bytes > 0 and self._total_bytes >= self.max_bytes)

    def count(self) -> int:
        return self._count

    def reset(self) -> None:
        """Forget everything in flight (the limits stay)."""
        self._start = 0
        self._count = 0
        self._total_bytes = 0

    def clone(self) -> Inflights:
        twin = Inflights(self._size, self.max_bytes)
        twin._buffer = list(self._buffer)
        twin._bytes = list(self._bytes)
        twin._start = self._start
        twin._count = self._count
        twin._total_bytes = self._total_bytes
        return twin


class Progress:
    """The leader's view of one peer's log.

    Invariant: ``0 <= match < next`` (entries in ``(match, next)`` are in flight).
    ``probe_sent`` pauses a probing peer until it answers; ``pending_snapshot`` is
    the index of the snapshot being sent in SNAPSHOT state (0 otherwise).
    """

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "state",
    )

    def __init__(self, next: int, inflights: Inflights, *, match: int = 0, is_learner: bool = False) -> None:
        self.match = match
        self.next = next
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.recent_active = False
        self.probe_sent = False
        self.inflights = inflights
        self.is_learner = is_learner

    def clone(self) -> Progress:
        """A deep copy (the inflights are copied too)."""
        twin = Progress(self.next, self.inflights.clone(), match=self.match, is_learner=self.is_learner)
        twin.state = self.state
        twin.pending_snapshot = self.pending_snapshot
        twin.recent_active = self.recent_active
        twin.probe_sent = self.probe_sent
        return twin

    def reset_state(self, state: ProgressState) -> None:
        """Enter ``state`` with nothing in flight, no probe outstanding and no pending snapshot."""
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Probe from ``match + 1``, or from after the snapshot just sent if that is further."""
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self.reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self.reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self.reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self.reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """The peer acknowledged its log up to ``n``; False if that tells nothing new (stale).

        A new match also acknowledges the probe (``probe_sent`` is cleared).
        """
        updated = n > self.match
        if updated:
            self.match = n
            self.probe_acked()
        self.next = max(self.next, n + 1)
        return updated

    def optimistic_update(self, n: int) -> None:
        """Entries up to ``n`` were sent (REPLICATE): the next append starts after them."""
        self.next = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The peer rejected the append at index ``rejected``, hinting its log matches up to ``match_hint``.

        Returns False (and changes nothing) for a stale rejection: in REPLICATE one
        at or below ``match``; otherwise one that is not for the probe at
        ``next - 1``. Else lowers ``next`` (REPLICATE: to ``match + 1``; otherwise
        to ``min(rejected, match_hint + 1)``, never to ``match`` or below) and, when
        probing, clears ``probe_sent`` so that the next probe can go out.
        """
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """Whether appends to this peer must wait (probe outstanding, window full, or snapshot)."""
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def probe_acked(self) -> None:
        self.probe_sent = False

    def __str__(self) -> str:
        parts = [f"{self.state} match={self.match} next={self.next}"]
        if self.is_learner:
            parts.append("learner")
        if self.is_paused():
            parts.append("paused")
        if self.pending_snapshot > 0:
            parts.append(f"pendingSnap={self.pending_snapshot}")
        if not self.recent_active:
            parts.append("inactive")
        in_flight = self.inflights.count()
        if in_flight > 0:
            parts.append(f"inflight={in_flight}" + ("[full]" if self.inflights.full() else ""))
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"<Progress {self}>"


def _group(ids: frozenset[int]) -> str:
    return "(" + " ".join(str(i) for i in sorted(ids)) + ")"


@dataclass(frozen=True, slots=True)
class Config:
    """The tracked configuration.

    Invariants (kept by ``confchange``): learners are in neither half of
    ``voters``; ``learners_next`` (outgoing voters that become learners on
    leaving the joint config) is a subset of ``voters.outgoing``; outside a
    joint config ``learners_next`` is empty and ``auto_leave`` is False.
    """

    voters: JointConfig = field(default_factory=JointConfig)
    learners: frozenset[int] = frozenset()
    learners_next: frozenset[int] = frozenset()
    auto_leave: bool = False

    def __str__(self) -> str:
        text = f"voters={self.voters}"
        if self.learners:
            text += f" learners={_group(self.learners)}"
        if self.learners_next:
            text += f" learners_next={_group(self.learners_next)}"
        if self.auto_leave:
            text += " autoleave"
        return text


class ProgressTracker:
    """The active configuration, a ``Progress`` for each of its voters and learners, and the votes.

    Invariant (kept by ``confchange``): ``progress`` has an entry for every ID of
    ``config`` (voters of both halves, learners, learners_next) and no other.
    """

    __slots__ = ("config", "max_inflight", "max_inflight_bytes", "progress", "votes")

    def __init__(self, max_inflight: int, max_inflight_bytes: int = 0) -> None:
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes
        self.config = Config()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}

    def conf_state(self) -> ConfState:
        cfg = self.config
        return ConfState(
            voters=cfg.voters.incoming.sorted_ids(),
            learners=tuple(sorted(cfg.learners)),
            voters_outgoing=cfg.voters.outgoing.sorted_ids(),
            learners_next=tuple(sorted(cfg.learners_next)),
            auto_leave=cfg.auto_leave,
        )

    def is_singleton(self) -> bool:
        """Exactly one voter and no joint configuration."""
        voters = self.config.voters
        return len(voters.incoming) == 1 and not voters.is_joint

    def _match_of(self, node_id: int) -> int | None:
        pr = self.progress.get(node_id)
        return None if pr is None else pr.match

    def committed(self) -> int:
        """The largest index acknowledged by a quorum (``INFINITE_INDEX`` with no voters)."""
        return self.config.voters.committed_index(self._match_of)

    def visit(self, fn: Callable[[int, Progress], None]) -> None:
        """Call ``fn(id, progress)`` for every tracked peer in increasing ID order."""
        for node_id in sorted(self.progress):
            pr = self.progress.get(node_id)
            if pr is not None:
                fn(node_id, pr)

    def quorum_active(self) -> bool:
        """Whether the voters marked ``recent_active`` form a quorum (the caller marks itself)."""
        active = {i: pr.recent_active for i, pr in self.progress.items() if not pr.is_learner}
        return self.config.voters.vote_result(active) == VoteResult.WON

    def voter_nodes(self) -> list[int]:
        return sorted(self.config.voters.ids())

    def learner_nodes(self) -> list[int]:
        return sorted(self.config.learners)

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, id: int, granted: bool) -> None:
        """Record a node's vote; only its first vote of the election counts."""
        self.votes.setdefault(id, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        """(granted, rejected, result), counting only the votes of current voters."""
        granted = rejected = 0
        for node_id in self.config.voters.ids():
            vote = self.votes.get(node_id)
            if vote is True:
                granted += 1
            elif vote is False:
                rejected += 1
        return granted, rejected, self.config.voters.vote_result(self.votes)

    def new_inflights(self) -> Inflights:
        return Inflights(self.max_inflight, self.max_inflight_bytes)
