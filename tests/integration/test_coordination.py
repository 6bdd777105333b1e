"""The Lock and Election services under contention, through AsyncClient's RPC calls.

Lockers queue in the order they asked and hold the lock one at a time; a lock
request whose lease expires while it waits fails rather than answer with a lock
(etcd-io/etcd#11456); election leaders follow one another in campaign order,
observers see every change in order, and resigning, a revoked lease or an
expired one hands leadership on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest

from synod import AsyncClient
from synod.api.v3electionpb import v3election_pb2 as epb
from synod.api.v3electionpb import v3election_pb2_grpc
from synod.client.errors import EtcdError
from tests.support.servers import ServerProcess


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.01)


async def queued(c: AsyncClient, prefix: bytes, count: int) -> None:
    async def enough() -> bool:
        return (await c.get_prefix(prefix, count_only=True)).count >= count

    await until(enough, f"{count} keys under {prefix!r}")


def test_lockers_acquire_in_the_order_they_asked_one_at_a_time(synod: ServerProcess) -> None:
    async def scenario() -> None:
        async with AsyncClient(synod.endpoint, timeout=10) as c:
            leases = [(await c.lease_grant(60)).ID for _ in range(8)]
            order: list[int] = []
            holding = 0

            async def locker(i: int) -> None:
                nonlocal holding
                resp = await c.lock("fair", leases[i])
                holding += 1
                assert holding == 1, "two lockers hold the lock"
                order.append(i)
                await asyncio.sleep(0)
                holding -= 1
                await c.unlock(resp.key)

            first = await c.lock("fair", (await c.lease_grant(60)).ID)  # held while the others queue
            tasks = []
            for i in range(8):  # each asks only once the one before it is queued
                tasks.append(asyncio.ensure_future(locker(i)))
                await queued(c, b"fair/", i + 2)
            assert order == []
            await c.unlock(first.key)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            assert order == list(range(8))

    asyncio.run(scenario())


def test_a_lock_request_whose_lease_expires_while_waiting_fails(synod: ServerProcess) -> None:
    async def scenario() -> None:
        async with AsyncClient(synod.endpoint, timeout=10) as c:
            holder = await c.lock("expiring", (await c.lease_grant(60)).ID)
            short = (await c.lease_grant(2)).ID
            waiting = asyncio.ensure_future(c.lock("expiring", short))
            await queued(c, b"expiring/", 2)
            with pytest.raises(EtcdError) as raised:
                await asyncio.wait_for(waiting, 20)  # the short lease expires meanwhile
            assert (raised.value.code, raised.value.message) == (
                grpc.StatusCode.UNKNOWN,
                "mutex: session is expired",
            )
            # The holder still holds it; the next locker gets it once it unlocks.
            assert (await c.get_prefix("expiring/", keys_only=True)).kvs[0].key == holder.key
            after = asyncio.ensure_future(c.lock("expiring", (await c.lease_grant(60)).ID))
            await queued(c, b"expiring/", 2)
            await c.unlock(holder.key)
            assert (await asyncio.wait_for(after, 10)).key.startswith(b"expiring/")

    asyncio.run(scenario())


def test_a_lock_without_a_lease_lapses_with_the_servers_lease(synod: ServerProcess) -> None:
    async def scenario() -> None:
        async with AsyncClient(synod.endpoint, timeout=10) as c:
            resp = await c.lock("nolease")
            kv = (await c.get(resp.key)).kvs[0]
            ttl = await c.lease_time_to_live(kv.lease)
            assert ttl.grantedTTL == 60 and 0 < ttl.TTL <= 60  # granted for it, renewed by nobody

    asyncio.run(scenario())


def test_leaders_follow_campaign_order_and_observers_see_every_change(synod: ServerProcess) -> None:
    """Six campaigners queue; leadership passes by resigning, by revoked leases, and by an expired
    one (node-4's 2 s lease, which nobody renews); an observer sees every leader and proclamation."""

    async def scenario() -> None:
        async with (
            AsyncClient(synod.endpoint, timeout=10) as c,
            grpc.aio.insecure_channel(synod.endpoint) as ch,
        ):
            observe = v3election_pb2_grpc.ElectionStub(ch).Observe(epb.LeaderRequest(name=b"svc"))
            ttls = [60, 60, 60, 60, 2, 60]
            leases = [(await c.lease_grant(ttl)).ID for ttl in ttls]
            leading: list[int] = []
            won: dict[int, epb.LeaderKey] = {}

            async def campaigner(i: int) -> None:
                resp = await c.campaign("svc", f"node-{i}", leases[i])
                assert not won, f"node-{i} leads while {sorted(won)} still does"
                leading.append(i)
                won[i] = resp.leader
                assert (await c.election_leader("svc")).kv.key == resp.leader.key

            async def leads(i: int) -> None:
                async def now() -> bool:
                    return i in won

                await until(now, f"node-{i} to lead")

            tasks = []
            for i in range(len(ttls)):
                tasks.append(asyncio.ensure_future(campaigner(i)))
                await queued(c, b"svc/", i + 1)
            seen = [(await observe.read()).kv.value]
            await leads(0)
            await c.proclaim(won[0], "node-0-again")
            seen.append((await observe.read()).kv.value)
            await c.resign(won.pop(0))  # resigning hands it on
            seen.append((await observe.read()).kv.value)
            for i in (1, 2, 3):
                await leads(i)
                won.pop(i)
                await c.lease_revoke(leases[i])  # the leader's session ends
                seen.append((await observe.read()).kv.value)
            await leads(4)
            won.pop(4)  # node-4's lease is not renewed: it expires within its 2 s
            seen.append((await asyncio.wait_for(observe.read(), 20)).kv.value)
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
            observe.cancel()
            assert seen == [b"node-0", b"node-0-again", b"node-1", b"node-2", b"node-3", b"node-4", b"node-5"]
            assert leading == [0, 1, 2, 3, 4, 5]

    asyncio.run(scenario())
