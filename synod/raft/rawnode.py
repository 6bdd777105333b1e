"""RawNode: the Raft state machine's interface to its driver (etcd-io/raft's ``rawnode.go``).

Inputs: ``tick``, ``step``, ``propose``, ``propose_conf_change``,
``read_index``, ``transfer_leader``, ``report_*``. Output: a ``Ready`` with
what to persist (entries, hard state, snapshot) before its messages go out,
the committed entries to apply and the read states to serve; then
``advance(ready)``. The driver loop is::

    while True:
        ... feed inputs ...
        if node.has_ready():
            rd = node.ready()
            persist(rd.hard_state, rd.entries, rd.snapshot)  # before sending
            send(rd.messages)
            apply(rd.snapshot, rd.committed_entries)
            node.advance(rd)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synod.raft.raft import Config, ProposalDroppedError, Raft, RaftError, StateType, conf_change_entry
from synod.raft.read_only import ReadState
from synod.raft.tracker import Progress
from synod.raft.types import (
    LOCAL_MESSAGES,
    NONE,
    RESPONSE_MESSAGES,
    ConfChangeV2,
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    Snapshot,
)

__all__ = [
    "Config",
    "ProposalDroppedError",
    "RawNode",
    "Ready",
    "SoftState",
    "Status",
    "StepLocalMsgError",
    "StepPeerNotFoundError",
]


class StepLocalMsgError(RaftError):
    def __init__(self) -> None:
        super().__init__("raft: cannot step raft local message")


class StepPeerNotFoundError(RaftError):
    def __init__(self) -> None:
        super().__init__("raft: cannot step as peer not found")


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state, never persisted: who leads, and this node's role."""

    lead: int
    raft_state: StateType


@dataclass(slots=True)
class Ready:
    soft_state: SoftState | None = None  # None: unchanged
    hard_state: HardState | None = None  # None: unchanged; else persist before sending
    read_states: list[ReadState] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)  # persist before sending
    snapshot: Snapshot | None = None  # persist (and apply) before sending
    committed_entries: list[Entry] = field(default_factory=list)  # apply in order
    messages: list[Message] = field(default_factory=list)
    must_sync: bool = False  # the hard state or entries must be fsynced, not just written

    def contains_updates(self) -> bool:
        return bool(
            self.soft_state is not None
            or self.hard_state is not None
            or self.snapshot is not None
            or self.entries
            or self.committed_entries
            or self.messages
            or self.read_states
        )


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    hard_state: HardState
    soft_state: SoftState
    applied: int
    lead_transferee: int
    progress: dict[int, Progress]  # the leader's view of every member (empty on a follower)


class RawNode:
    def __init__(self, cfg: Config) -> None:
        self.raft = Raft(cfg)
        self._prev_soft = self._soft_state()
        self._prev_hard = self.raft.hard_state()

    def _soft_state(self) -> SoftState:
        return SoftState(self.raft.lead, self.raft.state)

    # -- inputs -----------------------------------------------------------------

    def tick(self) -> None:
        self.raft.tick()

    def tick_quiesced(self) -> None:
        """Advance the election clock without heartbeats or elections (use with care)."""
        self.raft.election_elapsed += 1

    def campaign(self) -> None:
        self.raft.step(Message(MessageType.HUP))

    def propose(self, data: bytes) -> None:
        """Propose an entry; raises ProposalDroppedError if it can't be (no leader, transfer under way...)."""
        self.raft.step(Message(MessageType.PROP, from_=self.raft.id, entries=(Entry(0, 0, data),)))

    def propose_conf_change(self, cc: ConfChangeV2) -> None:
        self.raft.step(Message(MessageType.PROP, from_=self.raft.id, entries=(conf_change_entry(cc),)))

    def apply_conf_change(self, cc: ConfChangeV2) -> ConfState:
        """Apply a committed configuration change (the driver calls this when it applies the entry)."""
        return self.raft.apply_conf_change(cc)

    def step(self, m: Message) -> None:
        """A message from a peer."""
        if m.type in LOCAL_MESSAGES:
            raise StepLocalMsgError
        if m.type in RESPONSE_MESSAGES and m.from_ not in self.raft.prs.progress:
            raise StepPeerNotFoundError
        self.raft.step(m)

    def read_index(self, ctx: bytes) -> None:
        """Ask for a read index; the answer arrives as a ReadState carrying ``ctx``."""
        self.raft.step(Message(MessageType.READ_INDEX, entries=(Entry(0, 0, ctx),)))

    def transfer_leader(self, transferee: int) -> None:
        self.raft.step(Message(MessageType.TRANSFER_LEADER, from_=transferee))

    def report_unreachable(self, node: int) -> None:
        self.raft.step(Message(MessageType.UNREACHABLE, from_=node))

    def report_snapshot(self, node: int, failed: bool) -> None:
        self.raft.step(Message(MessageType.SNAP_STATUS, from_=node, reject=failed))

    # -- output -----------------------------------------------------------------

    def has_ready(self) -> bool:
        r = self.raft
        if self._soft_state() != self._prev_soft:
            return True
        hs = r.hard_state()
        if hs != HardState() and hs != self._prev_hard:
            return True
        if r.raft_log.has_pending_snapshot():
            return True
        return bool(r.msgs or r.raft_log.unstable_entries() or r.raft_log.has_next_ents() or r.read_states)

    def ready(self) -> Ready:
        """What happened since the last Ready; the caller must ``advance`` it once handled."""
        r = self.raft
        rd = Ready(
            entries=r.raft_log.unstable_entries(),
            committed_entries=r.raft_log.next_ents(),
            messages=r.msgs,
        )
        soft = self._soft_state()
        if soft != self._prev_soft:
            rd.soft_state = soft
            self._prev_soft = soft
        hs = r.hard_state()
        if hs != self._prev_hard:
            rd.hard_state = hs
        if r.raft_log.unstable.snapshot is not None:
            rd.snapshot = r.raft_log.unstable.snapshot
        if r.read_states:
            rd.read_states = r.read_states
            r.read_states = []
        prev = self._prev_hard
        rd.must_sync = bool(rd.entries) or hs.vote != prev.vote or hs.term != prev.term
        r.msgs = []
        return rd

    def advance(self, rd: Ready) -> None:
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        self.raft.advance(rd.entries, rd.committed_entries, rd.snapshot)

    def status(self) -> Status:
        r = self.raft
        progress = {n: p for n, p in r.prs.progress.items()} if r.state == StateType.LEADER else {}
        return Status(
            r.id, r.hard_state(), self._soft_state(), r.raft_log.applied, r.lead_transferee, progress
        )

    @property
    def is_leader(self) -> bool:
        return self.raft.state == StateType.LEADER

    @property
    def lead(self) -> int:
        return self.raft.lead

    def __repr__(self) -> str:
        return f"RawNode(id={self.raft.id:x}, state={self.raft.state}, lead={self.raft.lead or NONE:x})"
