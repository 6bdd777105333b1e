"""Lease expiry on a simulated clock (no waiting for TTLs), restart semantics, and checkpoints.

The member runs in-process with an injected monotonic clock; the test moves
the clock and asks the member to look for expired leases, as its lease loop
does every 500 ms.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.rpctypes import RPCError
from synod.server.config import ServerConfig
from synod.server.etcdserver import EtcdServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def until(predicate: Callable[[], Awaitable[bool]], what: str, turns: int = 10_000) -> None:
    """Let the event loop run until ``predicate`` holds (bounded; no real time involved)."""
    for _ in range(turns):
        if await predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def keys(etcd: EtcdServer) -> list[bytes]:
    resp = await etcd.range(pb.RangeRequest(key=b"\0", range_end=b"\0", keys_only=True))
    return [kv.key for kv in resp.kvs]


def test_lease_expires_on_the_simulated_clock_and_keepalive_defers_it(tmp_path):
    clock = FakeClock()

    async def scenario() -> None:
        etcd = EtcdServer(ServerConfig(data_dir=str(tmp_path)), clock=clock)
        await etcd.start()
        short = await etcd.lease_grant(pb.LeaseGrantRequest(TTL=5))
        kept = await etcd.lease_grant(pb.LeaseGrantRequest(TTL=5))
        await etcd.put(pb.PutRequest(key=b"a", value=b"1", lease=short.ID))
        await etcd.put(pb.PutRequest(key=b"b", value=b"2", lease=short.ID))
        await etcd.put(pb.PutRequest(key=b"c", value=b"3", lease=kept.ID))
        before = etcd.revision

        clock.now += 4
        assert etcd.lease_renew(kept.ID) == 5  # kept now expires at +9
        assert etcd.revoke_expired_leases() == 0
        ttl = etcd.lease_time_to_live(pb.LeaseTimeToLiveRequest(ID=short.ID, keys=True))
        assert (ttl.TTL, ttl.grantedTTL, list(ttl.keys)) == (1, 5, [b"a", b"b"])

        clock.now += 2  # +6: short is past its TTL, kept is not
        assert etcd.revoke_expired_leases() == 1

        async def short_gone() -> bool:
            return await keys(etcd) == [b"c"]

        await until(short_gone, "the expired lease's keys deleted")
        assert etcd.revision == before + 1  # both keys deleted in one revision
        with pytest.raises(RPCError, match="requested lease not found"):
            etcd.lease_renew(short.ID)

        clock.now += 4  # +10: kept expires too
        assert etcd.revoke_expired_leases() == 1

        async def all_gone() -> bool:
            return await keys(etcd) == []

        await until(all_gone, "the renewed lease expiring later")
        assert etcd.lease_leases().leases == []
        await etcd.stop()

    asyncio.run(scenario())


def test_minimum_ttl_and_limits(tmp_path):
    async def scenario() -> None:
        etcd = EtcdServer(ServerConfig(data_dir=str(tmp_path)), clock=FakeClock())
        await etcd.start()
        assert (
            await etcd.lease_grant(pb.LeaseGrantRequest(TTL=1))
        ).TTL == 2  # etcd's minimum with default timing
        chosen = await etcd.lease_grant(pb.LeaseGrantRequest(ID=42, TTL=30))
        assert chosen.ID == 42
        with pytest.raises(RPCError, match="lease already exists"):
            await etcd.lease_grant(pb.LeaseGrantRequest(ID=42, TTL=30))
        with pytest.raises(RPCError, match="too large lease TTL"):
            await etcd.lease_grant(pb.LeaseGrantRequest(TTL=9_000_000_001))
        with pytest.raises(RPCError, match="requested lease not found"):
            await etcd.put(pb.PutRequest(key=b"k", value=b"v", lease=43))
        await etcd.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("checkpoint", [False, True])
def test_restart_refreshes_ttl_unless_checkpointed(tmp_path, checkpoint):
    """etcd's semantics: after a restart a lease gets its full TTL again; with checkpoints
    (--experimental-enable-lease-checkpoint) it keeps the remaining TTL last checkpointed."""
    cfg = ServerConfig(data_dir=str(tmp_path), lease_checkpoint=checkpoint, lease_checkpoint_interval=60)
    clock = FakeClock()

    async def first_life() -> int:
        etcd = EtcdServer(cfg, clock=clock)
        await etcd.start()
        grant = await etcd.lease_grant(pb.LeaseGrantRequest(TTL=600))
        await etcd.put(pb.PutRequest(key=b"k", value=b"v", lease=grant.ID))
        clock.now += 100  # the checkpoint falls due at +60
        etcd.revoke_expired_leases()
        await until(lambda: _true_after(etcd), "proposals applied")
        await etcd.stop()
        return grant.ID

    async def second_life(lease_id: int) -> pb.LeaseTimeToLiveResponse:
        etcd = EtcdServer(cfg, clock=clock)
        await etcd.start()
        ttl = etcd.lease_time_to_live(pb.LeaseTimeToLiveRequest(ID=lease_id, keys=True))
        await etcd.stop()
        return ttl

    lease_id = asyncio.run(first_life())
    clock.now += 1000  # down time does not count
    ttl = asyncio.run(second_life(lease_id))
    assert list(ttl.keys) == [b"k"] and ttl.grantedTTL == 600
    assert (500 if checkpoint else 600) == ttl.TTL


async def _true_after(etcd: EtcdServer) -> bool:
    # Background proposals are done when nothing is waiting in the log any more.
    return etcd.node.committed_index == etcd.applied_index and not etcd._background
