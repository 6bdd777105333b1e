"""The client's cluster and maintenance calls, and its reconnection: a member restarted under a
watch or a keep-alive, and the failover to another member when the pinned one is killed.
Against synod and a real etcd 3.4."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from synod.api.mvccpb import kv_pb2
from synod.client import AsyncClient, Client, errors
from synod.server import ids
from tests.support.clients import KINDS, Api, Events, open_client, run, wait_for
from tests.support.servers import CLUSTER_TOKEN, ClusterProcesses, ServerProcess, wait_until

# Slow tests run each client against one server kind, the two crossed over a pair of tests.
CROSSED = pytest.mark.parametrize(("server_kind", "kind"), [("synod", "sync"), ("etcd", "async")])
SWAPPED = pytest.mark.parametrize(("server_kind", "kind"), [("synod", "async"), ("etcd", "sync")])


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_member_list_status_hash_kv(any_server: ServerProcess, kind: str) -> None:
    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            members = (await c.member_list()).members
            assert [(m.name, list(m.clientURLs), list(m.peerURLs)) for m in members] == [
                ("m1", [any_server.client_url], [any_server.peer_url])
            ]
            assert ids.member_id([any_server.peer_url], CLUSTER_TOKEN) == members[0].ID
            assert not members[0].isLearner
            assert [m.ID for m in (await c.member_list(linearizable=True)).members] == [members[0].ID]

            rev = (await c.put("k", "v")).header.revision
            status = await c.status()
            assert status.header.member_id == members[0].ID
            assert status.leader == members[0].ID
            assert status.version.startswith("3.4")
            assert status.dbSize > 0 and status.raftIndex > 0 and status.raftTerm > 0
            assert (await c.status(0)).leader == members[0].ID  # asked of endpoint 0 alone

            first = await c.hash_kv(rev)
            again = await c.hash_kv(rev, endpoint=0)
            assert first.hash == again.hash and first.hash != 0
            assert first.header.revision == rev
            await c.put("k", "changed")
            assert (await c.hash_kv()).hash != first.hash  # the latest revision hashes differently
            assert (await c.hash_kv(rev)).hash == first.hash  # and the old one the same

            assert list((await c.alarms()).alarms) == []

    run(body())


def test_hash_kv_is_etcds(start_server: Callable[..., ServerProcess]) -> None:
    """The same writes give synod and etcd the same HashKV (their stores are the same bytes)."""
    servers = [start_server("synod"), start_server("etcd")]

    async def body() -> list[tuple[int, int]]:
        hashes = []
        for server in servers:
            async with open_client("async", server.endpoint) as c:
                await c.put("a", "1")
                await c.put("b", "2")
                await c.delete("a")
                rev = (await c.put("a", "3")).header.revision
                h = await c.hash_kv(rev)
                hashes.append((h.hash, h.compact_revision))
        return hashes

    synod_hash, etcd_hash = run(body())
    assert synod_hash == etcd_hash


async def write_and_receive(c: Api, w: Events, keys: list[str]) -> list[kv_pb2.Event]:
    for k in keys:
        await c.put(k, f"value of {k}")
    return await w.events(len(keys), timeout=20)


def assert_exactly(events: list[kv_pb2.Event], keys: list[str]) -> None:
    """Each key's put once, in order, at consecutive revisions: no gap, no duplicate."""
    assert [e.kv.key.decode() for e in events] == keys
    revs = [e.kv.mod_revision for e in events]
    assert revs == list(range(revs[0], revs[0] + len(revs))), revs


@CROSSED
def test_watch_resumes_across_a_restart(
    start_server: Callable[..., ServerProcess], server_kind: str, kind: str
) -> None:
    any_server = start_server(server_kind)

    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            w = await c.watch("r/", prefix=True)
            keys = [f"r/{i}" for i in range(12)]
            events = await write_and_receive(c, w, keys[:4])
            any_server.kill()  # the crash case: the data dir stays
            any_server.start()
            # Written at once through another client, likely before the watch reconnected.
            async with open_client("async", any_server.endpoint) as other:
                for k in keys[4:8]:
                    await other.put(k, f"value of {k}")
            events += await w.events(4, timeout=20)
            any_server.restart()  # and a clean stop
            events += await write_and_receive(c, w, keys[8:])
            assert_exactly(events, keys)
            assert w.next_revision == events[-1].kv.mod_revision + 1
            await w.cancel()

    run(body())


@CROSSED
def test_keep_alive_survives_a_restart(
    start_server: Callable[..., ServerProcess], server_kind: str, kind: str
) -> None:
    any_server = start_server(server_kind)

    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            ttl = 3
            lid = (await c.lease_grant(ttl)).ID
            await c.put("held", "v", lease=lid)
            ka = await c.keep_alive(lid, ttl)
            await wait_for(lambda: ka.renewals >= 1, 5, "a first renewal")
            any_server.kill()
            any_server.start()
            before = ka.renewals
            # Renewed again after the restart (the server answered it a TTL: the lease is there).
            await wait_for(lambda: ka.renewals > before, 10, "a renewal after the restart")
            assert not ka.is_lost() and ka.ttl == ttl
            left = await c.lease_time_to_live(lid)
            assert left.grantedTTL == ttl and ttl - 1 <= left.TTL  # refreshed
            assert (await c.get("held")).count == 1
            await ka.close()

    run(body())


def cluster(kind: str, root: Path) -> ClusterProcesses:
    return ClusterProcesses(kind, root).start()


async def new_leader(members: ClusterProcesses, dead: int) -> int:
    """Wait until the members but ``dead`` agree on a leader among them (a write made while they
    still follow the dead one times out, on etcd as on synod: "etcdserver: request timed out")."""
    alive = [i for i in range(len(members.members)) if i != dead]
    ids_alive = {members.member_id(members.members[i]) for i in alive}

    async with open_client("async", members.endpoints) as probe:  # its endpoint i is member i

        async def agreed() -> int:
            leaders = set()
            for i in alive:
                try:
                    leaders.add((await probe.aio.status(i)).leader)
                except errors.EtcdError:
                    return 0
            return leaders.pop() if len(leaders) == 1 and leaders <= ids_alive else 0

        return int(await wait_for(agreed, 15, "a leader among the members alive", interval=0.1))


async def leader_first(members: ClusterProcesses) -> list[str]:
    """The endpoints, the leader's first: a client pinned to it sees the hardest failover."""
    leader = await new_leader(members, dead=-1)
    i = [members.member_id(m) for m in members.members].index(leader)
    return members.endpoints[i:] + members.endpoints[:i]


@pytest.mark.parametrize("server_kind", ["synod", "etcd"])
def test_watch_fails_over_when_its_member_dies(tmp_path: Path, server_kind: str) -> None:
    members = cluster(server_kind, tmp_path)

    async def body() -> None:
        endpoints = await leader_first(members)
        async with (
            open_client("async", endpoints) as c,
            open_client("sync", endpoints[1:]) as writer,
        ):
            w = await c.watch("f/", prefix=True)
            keys = [f"f/{i}" for i in range(15)]
            events = await write_and_receive(writer, w, keys[:5])
            assert c.aio.conn.pinned == 0
            victim = members.members[members.endpoints.index(endpoints[0])]
            victim.kill()
            await new_leader(members, dead=members.members.index(victim))
            # Writes go on through the others; the watch must move to one of them.
            events += await write_and_receive(writer, w, keys[5:10])
            assert c.aio.conn.pinned != 0
            # The client's own writes fail over too.
            events += await write_and_receive(c, w, keys[10:])
            assert_exactly(events, keys)
            await w.cancel()

    try:
        run(body())
    finally:
        members.kill()


@pytest.mark.parametrize("server_kind", ["synod", "etcd"])
def test_keep_alive_survives_the_kill_of_its_member(tmp_path: Path, server_kind: str) -> None:
    members = cluster(server_kind, tmp_path)

    async def body() -> None:
        endpoints = await leader_first(members)
        async with open_client("sync", endpoints) as c:
            # Long enough for an election and a reconnection: the manager counts a lease lost
            # when no renewal is answered within its TTL of being sent.
            ttl = 5
            lid = (await c.lease_grant(ttl)).ID
            ka = await c.keep_alive(lid, ttl)
            await wait_for(lambda: ka.renewals >= 1, 5, "a first renewal")
            assert c.aio.conn.pinned == 0
            members.members[members.endpoints.index(endpoints[0])].kill()  # the leader, holding the lease
            before = ka.renewals
            await wait_for(lambda: ka.renewals > before or ka.is_lost(), 15, "a renewal through another")
            assert not ka.is_lost() and ka.ttl == ttl  # answered by a live member: the lease is there
            assert c.aio.conn.pinned != 0
            left = await c.lease_time_to_live(lid)
            assert ttl - 2 <= left.TTL
            # Lost when it is revoked, whichever member answers.
            await c.lease_revoke(lid)
            assert isinstance(await ka.wait_lost(5), errors.LeaseExpiredError)

    try:
        run(body())
    finally:
        members.kill()


def test_unreachable_endpoints_time_out(tmp_path: Path) -> None:
    """With no member up, a call fails within its deadline with RequestTimeoutError."""
    from tests.support.servers import free_port

    async def body() -> None:
        endpoints = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
        async with open_client("async", endpoints, timeout=0.5) as c:
            started = time.monotonic()
            with pytest.raises(errors.RequestTimeoutError):
                await c.get("k")
            with pytest.raises((errors.RequestTimeoutError, errors.ConnectionFailedError)):
                await c.put("k", "v")
            assert time.monotonic() - started < 3

    run(body())


@SWAPPED
def test_watch_resumes_into_a_compaction(
    start_server: Callable[..., ServerProcess], server_kind: str, kind: str
) -> None:
    """Compacted past the watch's next revision while it was disconnected: CompactedError, not a gap."""
    any_server = start_server(server_kind)

    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            w = await c.watch("z/", prefix=True)
            await write_and_receive(c, w, ["z/0", "z/1"])
            any_server.kill()
            any_server.start()
            # The watch is not read meanwhile: its resumption comes with the next read.
            async with open_client("async", any_server.endpoint) as other:
                await other.put("z/2", "lost")
                rev = (await other.put("z/3", "lost")).header.revision
                await other.compact(rev)
            with pytest.raises(errors.CompactedError) as e:
                await w.next(20)
            assert e.value.compact_revision == rev

    run(body())


@pytest.mark.parametrize(("server_kind", "kind"), [("synod", "async"), ("etcd", "sync")])
def test_keep_alive_is_lost_when_no_member_answers(
    start_server: Callable[..., ServerProcess], server_kind: str, kind: str
) -> None:
    server = start_server(server_kind)

    async def body() -> None:
        async with open_client(kind, server.endpoint) as c:
            ttl = 2
            lid = (await c.lease_grant(ttl)).ID
            lost: list[errors.EtcdError] = []
            ka = await c.keep_alive(lid, ttl, on_lost=lost.append)
            await wait_for(lambda: ka.renewals >= 1, 5, "a first renewal")
            server.kill()
            killed = time.monotonic()
            error = await ka.wait_lost(ttl + 3)
            # Declared lost at the lease's deadline (the last renewal + its TTL), not before.
            assert isinstance(error, errors.LeaseExpiredError) and "not renewed" in error.message
            assert ka.inner.deadline <= time.monotonic() < killed + ttl + 1
            await wait_for(lambda: lost == [error], 2, "on_lost")
            await ka.close()

    run(body())


def test_closing_the_client_ends_its_watch(any_server: ServerProcess) -> None:
    async def body() -> None:
        c = AsyncClient(any_server.endpoint)
        w = c.watch("k")
        await w.created()
        waiting = asyncio.ensure_future(anext(aiter(w)))
        await asyncio.sleep(0)  # let it start reading
        await c.close()
        with pytest.raises(errors.ClientClosedError):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(errors.ClientClosedError):
            await c.get("k")

    async def keepalive() -> None:
        c = AsyncClient(any_server.endpoint)
        lid = (await c.lease_grant(30)).ID
        ka = c.keep_alive(lid, 30)
        await wait_for(lambda: ka.renewals >= 1, 5, "a renewal")
        await c.close()
        assert isinstance(await asyncio.wait_for(ka.wait_lost(), 5), errors.ClientClosedError)
        await ka.close()

    run(body())
    run(keepalive())
    with Client(any_server.endpoint) as client:
        client.put("k", "v")
    with pytest.raises(errors.ClientClosedError):
        client.get("k")
    with Client(any_server.endpoint) as client:
        lid = client.lease_grant(30).ID
        ka = client.keep_alive(lid, 30)
        wait_until(lambda: ka.keepalive.renewals >= 1, 5, "a renewal")
    assert isinstance(ka.wait_lost(5), errors.ClientClosedError)
