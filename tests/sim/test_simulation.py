"""Seeded random schedules of a Raft cluster with faults; Raft's safety properties checked after every step.

Each schedule drives an in-memory cluster (tests/raft/cluster.py) through a
random mix of ticks, Ready handling, proposals, message delivery out of order,
drops, duplicates, partitions and crash-restarts. After every step:

* election safety: at most one leader per term, ever;
* state machine safety: every node applies the same entry at each index, and
  what a node applied never changes;
* leader completeness: a leader's log holds every entry applied anywhere.

At the end the network heals and the cluster must converge: a leader, and
every node applying the same entries. A failure names its seed; rerun one with
``SYNOD_SIM_SEED=123 pytest tests/sim``.
"""

from __future__ import annotations

import os
import random

import pytest

from synod.raft.raft import StateType
from synod.raft.storage import ErrCompacted
from synod.raft.types import Entry
from tests.raft.cluster import Cluster

CI_SEEDS = 500
SLOW_SEEDS = 10_000
STEPS = 600
ACTIONS = ["tick", "ready", "deliver", "propose", "partition", "restart", "round"]
CALM = [15, 25, 35, 15, 4, 2, 4]
CHURN = [25, 20, 30, 10, 8, 4, 3]


class Checker:
    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster
        self.leaders: dict[int, int] = {}  # term -> leader
        self.applied: dict[int, Entry] = {}  # index -> the entry applied there (by anyone)
        self.seen: dict[int, int] = {}  # node -> how many of its applied entries were checked

    def check(self) -> None:
        for node in self.c.nodes.values():
            if node.state == StateType.LEADER:
                prev = self.leaders.setdefault(node.term, node.id)
                assert prev == node.id, f"two leaders in term {node.term}: {prev} and {node.id}"
            start = self.seen.get(node.id, 0)
            assert start <= len(node.applied), f"node {node.id} un-applied entries"
            for e in node.applied[start:]:
                known = self.applied.setdefault(e.index, e)
                assert known == e, f"node {node.id} applied {e} at {e.index}, another applied {known}"
            self.seen[node.id] = len(node.applied)
            if node.state == StateType.LEADER:
                log = node.raw.raft.raft_log
                for index, e in self.applied.items():
                    if index > log.last_index():
                        raise AssertionError(f"leader {node.id} lacks applied entry {index}")
                    try:
                        term = log.term(index)
                    except ErrCompacted:
                        continue
                    if index >= log.first_index():
                        assert term == e.term, f"leader {node.id} has term {term} at {index}, applied: {e}"


def run_schedule(seed: int, steps: int = STEPS) -> None:
    rng = random.Random(seed)
    size = rng.choice([3, 5])
    cluster = Cluster(
        range(1, size + 1), seed=seed, pre_vote=rng.random() < 0.5, check_quorum=rng.random() < 0.5
    )
    checker = Checker(cluster)
    ids = sorted(cluster.nodes)
    # Half the schedules are calm, half churn leaders hard (partitions, restarts, many ticks).
    weights = CALM if rng.random() < 0.5 else CHURN
    proposals = 0
    trace: list[str] = []
    try:
        for step in range(steps):
            action = rng.choices(ACTIONS, weights)[0]
            node = rng.choice(ids)
            if action == "tick":
                cluster.tick_all()
                trace.append(f"{step} tick all")
            elif action == "ready":
                cluster.process_ready(node)
                trace.append(f"{step} ready {node}")
            elif action == "deliver":
                if cluster.network:
                    m = cluster.network.pop(rng.randrange(len(cluster.network)))  # any order
                    fate = rng.random()
                    if fate < 0.05:
                        trace.append(f"{step} drop {m.type.name} {m.from_}->{m.to}")
                    else:
                        if fate < 0.08:
                            cluster.network.append(m)  # delivered twice
                        cluster.deliver(m)
                        trace.append(f"{step} deliver {m.type.name} {m.from_}->{m.to} t{m.term}")
            elif action == "propose":
                proposals += 1
                cluster.propose(node, b"p%d" % proposals)
                trace.append(f"{step} propose {node}")
            elif action == "partition":
                if cluster.isolated:
                    cluster.heal()
                    trace.append(f"{step} heal")
                else:
                    cluster.isolate(node)
                    trace.append(f"{step} isolate {node}")
            elif action == "restart":
                cluster.restart(node)
                trace.append(f"{step} restart {node}")
            else:
                for n in ids:
                    cluster.process_ready(n)
                cluster.deliver_all()
                trace.append(f"{step} round")
            checker.check()
        # Heal and converge.
        cluster.heal()
        for _ in range(200):
            cluster.tick_all()
            cluster.stabilize()
            checker.check()
            leaders = cluster.leaders()
            if len(leaders) == 1:
                committed = leaders[0].raw.raft.raft_log.committed
                if all(n.raw.raft.raft_log.applied == committed for n in cluster.nodes.values()):
                    break
        leaders = cluster.leaders()
        states = [n.state for n in cluster.nodes.values()]
        assert len(leaders) == 1, f"no single leader after healing: {states}"
        # One more proposal commits everywhere.
        assert cluster.propose(leaders[0].id, b"final")
        cluster.stabilize()
        cluster.tick(leaders[0].id)
        cluster.stabilize()
        checker.check()
        datas = {n.id: n.data for n in cluster.nodes.values()}
        assert all(d == datas[leaders[0].id] for d in datas.values()), datas
        assert datas[leaders[0].id][-1] == b"final"
    except AssertionError as e:
        tail = "\n".join(trace[-40:])
        raise AssertionError(f"seed {seed}: {e}\nlast steps:\n{tail}") from e


def _seeds() -> list[int]:
    fixed = os.environ.get("SYNOD_SIM_SEED")
    return [int(fixed)] if fixed else list(range(CI_SEEDS))


@pytest.mark.parametrize("block", range(5))
def test_random_schedules_keep_raft_safe(block: int) -> None:
    seeds = _seeds()
    for seed in seeds[block::5]:
        run_schedule(seed)


@pytest.mark.slow
def test_many_random_schedules_keep_raft_safe() -> None:
    for seed in range(CI_SEEDS, CI_SEEDS + SLOW_SEEDS):
        run_schedule(seed, steps=800)
