"""The peer transport: Raft drivers replicating over real TCP connections on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

from synod.peer.transport import PeerTransport
from synod.raft.driver import BOOTSTRAP_INDEX, BOOTSTRAP_TERM, DriverConfig, RaftDriver, restore_storage
from synod.raft.types import ConfState, Entry, Message, MessageType
from synod.wal.wal import WAL
from tests.support.servers import free_port

DEADLINE = 20.0
TICK = 0.01
CLUSTER = 0xC1


async def until(predicate: Callable[[], object], what: str) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(TICK)

    try:
        await asyncio.wait_for(poll(), DEADLINE)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Member:
    def __init__(self, member_id: int, urls: dict[int, str], root: Path) -> None:
        self.id = member_id
        self.urls = urls
        self.dir = root / f"m{member_id}"
        self.applied: list[Entry] = []

    async def start(self) -> None:
        cs = ConfState(voters=tuple(sorted(self.urls)))
        if WAL.exists(str(self.dir)):
            self.wal, read = WAL.open(str(self.dir))
            storage = restore_storage(read, cs)
        else:
            self.wal = WAL.create(str(self.dir), b"m", BOOTSTRAP_INDEX, BOOTSTRAP_TERM)
            storage = restore_storage(None, cs)
        applied = self.applied[-1].index if self.applied else BOOTSTRAP_INDEX
        self.transport = PeerTransport(self.id, CLUSTER, lambda m: self.driver.step(m))
        cfg = DriverConfig(self.id, heartbeat_interval=TICK)
        rng = random.Random(self.id)
        self.driver = RaftDriver(cfg, storage, self.wal, self.transport, applied=applied, rng=rng)
        self.transport.report_unreachable = self.driver.node.report_unreachable
        await self.transport.listen([self.urls[self.id]])
        for peer, url in self.urls.items():
            self.transport.add_peer(peer, [url])
        self.task = asyncio.create_task(self.driver.run(self.applied.extend))

    async def stop(self) -> None:
        await self.driver.stop()
        await self.task
        await self.transport.stop()
        self.wal.close()

    @property
    def data(self) -> list[bytes]:
        return [e.data for e in self.applied if e.data]


def test_members_replicate_over_tcp_and_a_restarted_member_reconnects(tmp_path: Path) -> None:
    async def main() -> None:
        urls = {i: f"http://127.0.0.1:{free_port()}" for i in (1, 2, 3)}
        members = [Member(i, urls, tmp_path) for i in urls]
        for m in members:
            await m.start()
        try:
            await until(lambda: sum(m.driver.is_leader for m in members) == 1, "a leader")
            await until(lambda: all(m.driver.leader_id for m in members), "every member to know it")
            for i in range(100):
                members[i % 3].driver.propose(b"x%d" % i)  # two thirds are forwarded to the leader
            await until(lambda: all(len(m.data) == 100 for m in members), "replication")
            assert members[0].data == members[1].data == members[2].data
            count = 100
            follower = next(m for m in members if not m.driver.is_leader)
            await follower.stop()
            leader = next(m for m in members if m.driver.is_leader)
            for i in range(20):
                leader.driver.propose(b"y%d" % i)
            await until(lambda: len(leader.data) == count + 20, "the two others to commit")
            follower.applied = follower.applied[:3]
            await follower.start()
            await until(lambda: follower.data == leader.data, "the restarted member to catch up")
        finally:
            for m in members:
                await m.stop()

    asyncio.run(main())


def test_a_connection_from_another_cluster_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        got: list[Message] = []
        url = f"http://127.0.0.1:{free_port()}"
        receiver = PeerTransport(2, CLUSTER, got.append)
        await receiver.listen([url])
        stranger = PeerTransport(1, CLUSTER + 1, lambda m: None)
        friend = PeerTransport(1, CLUSTER, lambda m: None)
        try:
            stranger.add_peer(2, [url])
            friend.add_peer(2, [url])
            hello = Message(MessageType.HEARTBEAT, to=2, from_=1, term=1)
            await until(lambda: friend._peers[2].connected, "the friend to connect")
            friend.send([hello])
            await until(lambda: len(got) == 1, "the friend's message")
            # The stranger's connection is closed by the receiver after the hello: nothing arrives.
            for _ in range(20):
                stranger.send([Message(MessageType.HEARTBEAT, to=2, from_=1, term=9)])
                await asyncio.sleep(TICK)
            assert got == [hello]
        finally:
            for t in (receiver, stranger, friend):
                await t.stop()

    asyncio.run(main())
