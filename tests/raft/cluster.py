"""A deterministic in-memory Raft cluster for tests: RawNodes, MemoryStorage, and a network queue.

Each node's Ready is handled the way a driver must: entries, hard state and
snapshot go to its storage before its messages enter the network; committed
entries are applied in order (configuration changes through
``apply_conf_change``). The network holds messages until a test delivers
them, so a test (or the simulator) decides every interleaving.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from synod.raft.codec import decode_conf_change
from synod.raft.raft import Config, ProposalDroppedError, StateType
from synod.raft.rawnode import RawNode, Ready, StepPeerNotFoundError
from synod.raft.storage import MemoryStorage
from synod.raft.types import (
    ENTRY_CONF_CHANGE_V2,
    ConfChangeSingle,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    Message,
    Snapshot,
    SnapshotMetadata,
)


@dataclass
class Node:
    id: int
    storage: MemoryStorage
    raw: RawNode
    applied: list[Entry] = field(default_factory=list)  # every committed entry applied, in order
    conf_state: ConfState = field(default_factory=ConfState)

    @property
    def state(self) -> StateType:
        return self.raw.raft.state

    @property
    def term(self) -> int:
        return self.raw.raft.term

    @property
    def data(self) -> list[bytes]:
        """The application's view: the data of every applied normal entry."""
        return [e.data for e in self.applied if e.type != ENTRY_CONF_CHANGE_V2 and e.data]


def bootstrap_storage(voters: Iterable[int], learners: Iterable[int] = ()) -> MemoryStorage:
    """A storage holding a snapshot at index 1 with the initial configuration (as etcd's bootstrap)."""
    storage = MemoryStorage()
    cs = ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))
    storage.apply_snapshot(Snapshot(b"", SnapshotMetadata(cs, index=1, term=1)))
    return storage


class Cluster:
    def __init__(
        self,
        voters: Iterable[int],
        *,
        learners: Iterable[int] = (),
        seed: int = 0,
        pre_vote: bool = False,
        check_quorum: bool = False,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        max_inflight: int = 256,
        max_size_per_msg: int = 1 << 20,
        configure: Callable[[Config], None] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.options = dict(
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            election_tick=election_tick,
            heartbeat_tick=heartbeat_tick,
            max_inflight_msgs=max_inflight,
            max_size_per_msg=max_size_per_msg,
        )
        self.configure = configure
        self.voters = sorted(voters)
        self.learners = sorted(learners)
        self.nodes: dict[int, Node] = {}
        self.network: list[Message] = []
        self.cut: set[tuple[int, int]] = set()  # (from, to) pairs whose messages are dropped
        self.isolated: set[int] = set()
        for node_id in [*self.voters, *self.learners]:
            self.nodes[node_id] = self._new_node(node_id, bootstrap_storage(self.voters, self.learners))

    def _new_node(self, node_id: int, storage: MemoryStorage, applied: int = 0) -> Node:
        cfg = Config(
            id=node_id,
            storage=storage,
            rng=random.Random(self.rng.randrange(1 << 30)),
            applied=applied,
            **self.options,  # type: ignore[arg-type]
        )
        if self.configure is not None:
            self.configure(cfg)
        return Node(node_id, storage, RawNode(cfg), conf_state=storage.initial_state()[1])

    def add_node(self, node_id: int) -> Node:
        """A new, empty member (to be added by a configuration change): the leader sends it everything."""
        node = self._new_node(node_id, MemoryStorage())
        self.nodes[node_id] = node
        return node

    def restart(self, node_id: int) -> Node:
        """Crash and restart: everything persisted survives, volatile state and undelivered messages don't."""
        old = self.nodes[node_id]
        self.network = [m for m in self.network if m.to != node_id and m.from_ != node_id]
        node = self._new_node(node_id, old.storage, applied=old.applied[-1].index if old.applied else 0)
        node.applied = old.applied
        self.nodes[node_id] = node
        return node

    # -- driving --------------------------------------------------------------

    def process_ready(self, node_id: int) -> Ready | None:
        node = self.nodes[node_id]
        if not node.raw.has_ready():
            return None
        rd = node.raw.ready()
        if rd.snapshot is not None and not rd.snapshot.empty:
            node.storage.apply_snapshot(rd.snapshot)
            node.conf_state = rd.snapshot.metadata.conf_state
        if rd.entries:
            node.storage.append(rd.entries)
        if rd.hard_state is not None:
            node.storage.set_hard_state(rd.hard_state)
        for m in rd.messages:
            self.send(m)
        for e in rd.committed_entries:
            node.applied.append(e)
            if e.type == ENTRY_CONF_CHANGE_V2:
                node.conf_state = node.raw.apply_conf_change(decode_conf_change(e.data))
        node.raw.advance(rd)
        return rd

    def send(self, m: Message) -> None:
        if (m.from_, m.to) in self.cut or m.from_ in self.isolated or m.to in self.isolated:
            return
        self.network.append(m)

    def deliver(self, m: Message) -> None:
        node = self.nodes.get(m.to)
        if node is None:
            return
        try:
            node.raw.step(m)
        except (ProposalDroppedError, StepPeerNotFoundError):
            pass

    def deliver_all(self, to: int | None = None) -> int:
        """Deliver the queued messages (only those to ``to`` if given); returns how many."""
        if to is None:
            pending, self.network = self.network, []
        else:
            pending = [m for m in self.network if m.to == to]
            self.network = [m for m in self.network if m.to != to]
        for m in pending:
            self.deliver(m)
        return len(pending)

    def stabilize(self, limit: int = 10_000) -> None:
        """Handle Readies and deliver messages until nothing happens."""
        for _ in range(limit):
            busy = False
            for node_id in sorted(self.nodes):
                if self.process_ready(node_id) is not None:
                    busy = True
            if self.deliver_all():
                busy = True
            if not busy:
                return
        raise AssertionError("cluster did not stabilize")

    def tick(self, node_id: int, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[node_id].raw.tick()

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for node in self.nodes.values():
                node.raw.tick()

    # -- conveniences ---------------------------------------------------------

    def campaign(self, node_id: int) -> None:
        self.nodes[node_id].raw.campaign()
        self.stabilize()

    def elect(self, node_id: int) -> Node:
        self.campaign(node_id)
        leader = self.nodes[node_id]
        assert leader.state == StateType.LEADER, f"{node_id} did not win: {leader.state}"
        return leader

    def propose(self, node_id: int, data: bytes) -> bool:
        try:
            self.nodes[node_id].raw.propose(data)
        except ProposalDroppedError:
            return False
        return True

    def change(self, node_id: int, *changes: tuple[ConfChangeType, int], **kw: object) -> None:
        cc = ConfChangeV2(changes=tuple(ConfChangeSingle(t, n) for t, n in changes), **kw)  # type: ignore[arg-type]
        self.nodes[node_id].raw.propose_conf_change(cc)

    def leaders(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.state == StateType.LEADER]

    def isolate(self, node_id: int) -> None:
        self.isolated.add(node_id)

    def heal(self) -> None:
        self.isolated.clear()
        self.cut.clear()
