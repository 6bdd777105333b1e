"""Raft drivers over real WALs in one event loop, joined by an in-process transport that can cut links.

Checks the driver's duties: elections on its ticks, proposals from any member
(a follower's are forwarded), every member applying the same entries in
order, restarts from the WAL, a new leader after the old one is cut off, and
linearizable read indexes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

from synod.raft.driver import (
    BOOTSTRAP_INDEX,
    BOOTSTRAP_TERM,
    DriverConfig,
    NoLeaderError,
    RaftDriver,
    restore_storage,
)
from synod.raft.types import ConfState, Entry, Message
from synod.wal.wal import WAL

DEADLINE = 20.0
TICK = 0.01  # fast ticks: elections within ~0.2 s


class Network:
    def __init__(self) -> None:
        self.drivers: dict[int, RaftDriver] = {}
        self.cut: set[int] = set()  # members whose messages, both ways, are lost

    def transport(self, member: int) -> LocalTransport:
        return LocalTransport(self, member)

    def deliver(self, m: Message) -> None:
        if m.from_ in self.cut or m.to in self.cut:
            return
        target = self.drivers.get(m.to)
        if target is not None:
            target.step(m)


class LocalTransport:
    def __init__(self, network: Network, member: int) -> None:
        self.network = network
        self.member = member

    def send(self, messages: list[Message]) -> None:
        loop = asyncio.get_running_loop()
        for m in messages:
            loop.call_soon(self.network.deliver, m)


class Member:
    def __init__(self, member_id: int, voters: list[int], root: Path, network: Network, seed: int) -> None:
        self.id = member_id
        self.voters = voters
        self.dir = root / f"m{member_id}"
        self.network = network
        self.seed = seed
        self.applied: list[Entry] = []
        self.task: asyncio.Task[None] | None = None
        self.driver: RaftDriver | None = None

    def start(self) -> RaftDriver:
        cs = ConfState(voters=tuple(self.voters))
        if WAL.exists(str(self.dir)):
            wal, read = WAL.open(str(self.dir))
            storage = restore_storage(read, cs)
            applied = self.applied[-1].index if self.applied else BOOTSTRAP_INDEX
        else:
            wal = WAL.create(str(self.dir), b"m", BOOTSTRAP_INDEX, BOOTSTRAP_TERM)
            storage = restore_storage(None, cs)
            applied = BOOTSTRAP_INDEX
        cfg = DriverConfig(self.id, heartbeat_interval=TICK, election_ticks=10)
        driver = RaftDriver(
            cfg, storage, wal, self.network.transport(self.id), applied=applied, rng=random.Random(self.seed)
        )
        self.wal = wal
        self.driver = driver
        self.network.drivers[self.id] = driver
        self.task = asyncio.create_task(driver.run(self.applied.extend))
        return driver

    async def stop(self) -> None:
        assert self.driver is not None and self.task is not None
        del self.network.drivers[self.id]
        await self.driver.stop()
        await self.task
        self.wal.close()

    @property
    def is_leader(self) -> bool:
        return self.driver is not None and self.driver.is_leader

    @property
    def data(self) -> list[bytes]:
        return [e.data for e in self.applied if e.data]


async def until(predicate: Callable[[], bool], what: str) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(TICK)

    try:
        await asyncio.wait_for(poll(), DEADLINE)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def run(test: Callable[[list[Member], Network], Awaitable[None]], tmp_path: Path, size: int = 3) -> None:
    async def main() -> None:
        network = Network()
        voters = list(range(1, size + 1))
        members = [Member(i, voters, tmp_path, network, seed=i) for i in voters]
        for m in members:
            m.start()
        try:
            await test(members, network)
        finally:
            for m in members:
                if m.id in network.drivers:
                    await m.stop()

    asyncio.run(main())


def leader_of(members: list[Member]) -> Member | None:
    leaders = [
        m for m in members if m.driver is not None and m.driver.is_leader and m.id in m.network.drivers
    ]
    return leaders[0] if len(leaders) == 1 else None


async def propose(member: Member, data: bytes) -> None:
    assert member.driver is not None
    while True:
        try:
            member.driver.propose(data)
            return
        except NoLeaderError:
            await asyncio.wait_for(member.driver.wait_leader(), DEADLINE)


def test_a_cluster_elects_a_leader_and_every_member_applies_the_same_entries(tmp_path: Path) -> None:
    async def test(members: list[Member], network: Network) -> None:
        await until(lambda: leader_of(members) is not None, "a leader")
        follower = next(m for m in members if m is not leader_of(members))
        for i in range(50):
            await propose(follower if i % 2 else members[0], b"e%d" % i)
        await until(lambda: all(len(m.data) == 50 for m in members), "50 entries everywhere")
        assert members[0].data == members[1].data == members[2].data
        assert sorted(members[0].data) == sorted(b"e%d" % i for i in range(50))

    run(test, tmp_path)


def test_a_member_restarted_from_its_wal_keeps_its_log_and_catches_up(tmp_path: Path) -> None:
    async def test(members: list[Member], network: Network) -> None:
        await until(lambda: leader_of(members) is not None, "a leader")
        for i in range(10):
            await propose(members[0], b"a%d" % i)
        await until(lambda: all(len(m.data) == 10 for m in members), "10 entries everywhere")
        victim = next(m for m in members if m is not leader_of(members))
        await victim.stop()
        term_before = victim.driver.term if victim.driver else 0
        leader = leader_of(members)
        assert leader is not None
        for i in range(10):
            await propose(leader, b"b%d" % i)
        victim.applied = victim.applied[:5]  # it restarts having applied only part (the rest replays)
        driver = victim.start()
        assert driver.term >= term_before
        await until(lambda: len(victim.data) == 20, "the restarted member to catch up")
        assert victim.data == leader.data

    run(test, tmp_path)


def test_a_cut_off_leader_is_replaced_and_its_proposals_never_commit_alone(tmp_path: Path) -> None:
    async def test(members: list[Member], network: Network) -> None:
        await until(lambda: leader_of(members) is not None, "a leader")
        old = leader_of(members)
        assert old is not None and old.driver is not None
        await propose(old, b"before")
        await until(lambda: all(m.data == [b"before"] for m in members), "the first entry everywhere")
        network.cut.add(old.id)
        old.driver.propose(b"lost")
        rest = [m for m in members if m is not old]
        await until(
            lambda: any(m.driver is not None and m.driver.is_leader for m in rest),
            "a new leader among the rest",
        )
        new = next(m for m in rest if m.driver is not None and m.driver.is_leader)
        await propose(new, b"after")
        await until(lambda: all(m.data == [b"before", b"after"] for m in rest), "the new entry on the rest")
        # check-quorum: the old leader steps down by itself.
        await until(
            lambda: old.driver is not None and not old.driver.is_leader, "the old leader to step down"
        )
        network.cut.clear()
        await until(lambda: old.data == [b"before", b"after"], "the old leader to follow the new one")

    run(test, tmp_path)


def test_read_index_reflects_every_acknowledged_write(tmp_path: Path) -> None:
    async def test(members: list[Member], network: Network) -> None:
        await until(lambda: leader_of(members) is not None, "a leader")
        for i in range(5):
            await propose(members[1], b"r%d" % i)
        await until(lambda: all(len(m.data) == 5 for m in members), "5 entries everywhere")
        last_applied = max(e.index for e in members[0].applied)
        for m in members:
            assert m.driver is not None
            indexes = await asyncio.wait_for(
                asyncio.gather(*(m.driver.read_index() for _ in range(20))), DEADLINE
            )
            assert all(i >= last_applied for i in indexes), (m.id, indexes, last_applied)

    run(test, tmp_path)
