"""The Lock and Election services, differential: the same calls to synod and to a real etcd 3.4 over gRPC.

Each scenario runs against both; answers are compared whole after naming what differs by
nature (cluster and member IDs, lease IDs, which appear in keys in hex). A scenario waits
for an answer only on a condition with a deadline (a call that must block is checked to
be still pending after its rival's answer came).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.api.v3electionpb import v3election_pb2 as epb
from synod.api.v3electionpb import v3election_pb2_grpc
from synod.api.v3lockpb import v3lock_pb2 as lpb
from synod.api.v3lockpb import v3lock_pb2_grpc
from tests.support.servers import ServerProcess


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    root: Path = tmp_path_factory.mktemp("coordination")
    pair = (ServerProcess("synod", root / "synod"), ServerProcess("etcd", root / "etcd"))
    try:
        for s in pair:
            s.start()
        yield pair
    finally:
        for s in pair:
            s.kill()


class Calls:
    """Stubs to one server, and a record of its answers (errors as code and message)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.kv = rpc_pb2_grpc.KVStub(channel)
        self.lease = rpc_pb2_grpc.LeaseStub(channel)
        self.lock = v3lock_pb2_grpc.LockStub(channel)
        self.election = v3election_pb2_grpc.ElectionStub(channel)
        self.record: list[Any] = []
        self.ids: dict[int, str] = {}

    def name(self, value: int) -> str:
        if value not in self.ids:
            self.ids[value] = f"<id{len(self.ids)}>"
        return self.ids[value]

    async def grant(self, ttl: int = 30) -> int:
        lease = (await self.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=ttl))).ID
        self.name(lease)
        return int(lease)

    async def note(self, label: str, call: Awaitable[Any]) -> Any:
        try:
            resp = await call
        except grpc.aio.AioRpcError as e:
            self.record.append((label, e.code().name, e.details()))
            return None
        self.record.append((label, self._shown(resp)))
        return resp

    def _shown(self, resp: Any) -> Any:
        value = json_format.MessageToDict(resp, preserving_proto_field_name=True)
        return self._named(value)

    def _named(self, value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k in ("cluster_id", "member_id", "lease", "ID"):
                    out[k] = self.name(int(v))
                elif k in ("key", "name") and isinstance(v, str):
                    out[k] = self._named_key(v)
                else:
                    out[k] = self._named(v)
            return out
        if isinstance(value, list):
            return [self._named(v) for v in value]
        return value

    def _named_key(self, b64: str) -> str:
        import base64

        key = base64.b64decode(b64).decode()
        return re.sub(r"/([0-9a-f]+)$", lambda m: "/" + self.name(int(m[1], 16)), key)


Scenario = Callable[[Calls], Awaitable[None]]


def both(servers: tuple[ServerProcess, ServerProcess], scenario: Scenario) -> None:
    async def run(server: ServerProcess) -> list[Any]:
        async with grpc.aio.insecure_channel(server.endpoint) as ch:
            calls = Calls(ch)
            await asyncio.wait_for(scenario(calls), 60)
            return calls.record

    synod, etcd = (asyncio.run(run(s)) for s in servers)
    assert len(synod) == len(etcd)
    for got, want in zip(synod, etcd, strict=True):
        assert got == want, f"\n  etcd:  {want}\n  synod: {got}"


async def until_keys(c: Calls, prefix: bytes, count: int) -> None:
    """Wait (with a deadline) until ``count`` keys are under ``prefix``: a queued call has entered."""
    async with asyncio.timeout(10):
        while (
            await c.kv.Range(pb.RangeRequest(key=prefix, range_end=prefix[:-1] + b"0", count_only=True))
        ).count < count:
            await asyncio.sleep(0.01)


async def still_pending(task: asyncio.Task[Any], after: Awaitable[Any]) -> None:
    """``task`` has not finished once ``after`` (a call answered after it was sent) is answered."""
    await after
    await asyncio.sleep(0)
    assert not task.done(), "the call should still be waiting"


def test_lock_and_unlock(servers: tuple[ServerProcess, ServerProcess]) -> None:
    async def scenario(c: Calls) -> None:
        a, b = await c.grant(), await c.grant()
        first = await c.note("lock a", c.lock.Lock(lpb.LockRequest(name=b"job", lease=a)))
        second = asyncio.ensure_future(c.note("lock b", c.lock.Lock(lpb.LockRequest(name=b"job", lease=b))))
        await until_keys(c, b"job/", 2)
        await still_pending(second, c.kv.Range(pb.RangeRequest(key=b"job/", range_end=b"job0")))
        await c.note("unlock a", c.lock.Unlock(lpb.UnlockRequest(key=first.key)))
        held = await second
        await c.note("range", c.kv.Range(pb.RangeRequest(key=b"job/", range_end=b"job0", keys_only=True)))
        await c.note("unlock b", c.lock.Unlock(lpb.UnlockRequest(key=held.key)))
        await c.note("unlock again", c.lock.Unlock(lpb.UnlockRequest(key=held.key)))
        await c.note("same lease twice", c.lock.Lock(lpb.LockRequest(name=b"again", lease=a)))
        await c.note("same lease twice", c.lock.Lock(lpb.LockRequest(name=b"again", lease=a)))

    both(servers, scenario)


def test_lock_refusals(servers: tuple[ServerProcess, ServerProcess]) -> None:
    async def scenario(c: Calls) -> None:
        c.name(12345)
        await c.note("unknown lease", c.lock.Lock(lpb.LockRequest(name=b"nolease", lease=12345)))
        await c.note("empty name", c.lock.Lock(lpb.LockRequest(name=b"", lease=await c.grant())))
        await c.note("unlock nothing", c.lock.Unlock(lpb.UnlockRequest(key=b"")))

    both(servers, scenario)


def test_election(servers: tuple[ServerProcess, ServerProcess]) -> None:
    async def scenario(c: Calls) -> None:
        a, b = await c.grant(), await c.grant()
        await c.note("no leader", c.election.Leader(epb.LeaderRequest(name=b"db")))
        won = await c.note(
            "campaign a", c.election.Campaign(epb.CampaignRequest(name=b"db", lease=a, value=b"A"))
        )
        rival = asyncio.ensure_future(
            c.note("campaign b", c.election.Campaign(epb.CampaignRequest(name=b"db", lease=b, value=b"B")))
        )
        await until_keys(c, b"db/", 2)
        await still_pending(rival, c.note("leader", c.election.Leader(epb.LeaderRequest(name=b"db"))))
        await c.note("proclaim", c.election.Proclaim(epb.ProclaimRequest(leader=won.leader, value=b"A2")))
        await c.note("leader", c.election.Leader(epb.LeaderRequest(name=b"db")))
        await c.note("no leader key", c.election.Proclaim(epb.ProclaimRequest(value=b"x")))
        stale = epb.LeaderKey(name=b"db", key=won.leader.key, rev=won.leader.rev + 100, lease=a)
        await c.note("stale proclaim", c.election.Proclaim(epb.ProclaimRequest(leader=stale, value=b"x")))
        await c.note("resign", c.election.Resign(epb.ResignRequest(leader=won.leader)))
        await rival
        await c.note("leader", c.election.Leader(epb.LeaderRequest(name=b"db")))
        await c.note("no resign key", c.election.Resign(epb.ResignRequest()))

    both(servers, scenario)


def test_observe(servers: tuple[ServerProcess, ServerProcess]) -> None:
    async def scenario(c: Calls) -> None:
        a, b = await c.grant(), await c.grant()
        won = await c.election.Campaign(epb.CampaignRequest(name=b"obs", lease=a, value=b"A"))
        call = c.election.Observe(epb.LeaderRequest(name=b"obs"))
        c.record.append(("first", c._shown(await call.read())))
        await c.election.Proclaim(epb.ProclaimRequest(leader=won.leader, value=b"A2"))
        c.record.append(("proclaimed", c._shown(await call.read())["kv"]))
        rival = asyncio.ensure_future(
            c.election.Campaign(epb.CampaignRequest(name=b"obs", lease=b, value=b"B"))
        )
        await until_keys(c, b"obs/", 2)
        await c.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=a))  # the leader's lease ends: B leads
        c.record.append(("next", c._shown(await call.read())["kv"]))
        await rival
        call.cancel()

    both(servers, scenario)
