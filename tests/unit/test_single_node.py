"""The single-member log: durable order, group commit, and the commit window's trigger."""

from __future__ import annotations

import asyncio

from synod.raft.single import SingleNode
from synod.wal.wal import WAL, HardState


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_proposals_commit_in_order_in_shared_batches(tmp_path):
    async def scenario() -> list[list[int]]:
        wal = WAL.create(str(tmp_path), b"meta")
        node = SingleNode(wal, HardState(term=1), member_id=7, window=0)
        batches: list[list[int]] = []
        task = asyncio.create_task(node.run(lambda es: batches.append([e.index for e in es])))
        for i in range(50):
            node.propose(b"p%d" % i)
        while node.committed_index < 51:
            await asyncio.sleep(0)
        await node.stop()
        await task
        wal.close()
        return batches

    batches = asyncio.run(scenario())
    flat = [i for b in batches for i in b]
    assert flat == list(range(1, 52))  # the term's empty entry, then the 50 proposals
    assert len(batches) < 51  # proposals made while a write was under way shared the next one
    _, read = WAL.open(str(tmp_path))
    assert [e.data for e in read.entries[1:]] == [b"p%d" % i for i in range(50)]
    assert read.hard_state.term == 2


def test_commit_window_only_when_busy(tmp_path):
    async def scenario() -> None:
        clock = FakeClock()
        node = SingleNode(WAL.create(str(tmp_path), b"m"), HardState(), 1, busy_rate=2000.0, clock=clock)
        node._pending.clear()
        node._last_batch_at = clock.now
        node.propose(b"a")
        clock.now += 0.0001
        assert not node._busy()  # a lone writer never waits, however fast it is
        node.propose(b"b")
        assert node._busy()  # 2 proposals in 0.1 ms: 20,000/s
        clock.now += 1.0
        assert not node._busy()  # 2 in a second: quiet

    asyncio.run(scenario())
