"""The client's watches and leases (KeepAlive manager included): against synod and a real etcd 3.4."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from synod.api.mvccpb import kv_pb2
from synod.client import errors
from tests.support.clients import KINDS, open_client, run, wait_for
from tests.support.servers import ServerProcess

PUT, DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE


# Slow tests run each client against one server kind, the two crossed over a pair of tests.
CROSSED = pytest.mark.parametrize(("server_kind", "kind"), [("synod", "sync"), ("etcd", "async")])
SWAPPED = pytest.mark.parametrize(("server_kind", "kind"), [("synod", "async"), ("etcd", "sync")])


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def summary(events: list[kv_pb2.Event]) -> list[tuple[int, bytes, bytes]]:
    return [(e.type, e.kv.key, e.kv.value) for e in events]


def test_watch_events_in_order(any_server: ServerProcess, kind: str) -> None:
    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            start = (await c.put("w/a", "1")).header.revision
            await c.put("w/a", "2")
            await c.put("other", "x")
            await c.put("w/b", "3")
            await c.delete("w/a")
            # History from start_revision, with prev_kv, on a prefix.
            w = await c.watch("w/", prefix=True, start_revision=start, prev_kv=True)
            events = await w.events(4)
            assert summary(events) == [(PUT, b"w/a", b"1"), (PUT, b"w/a", b"2"), (PUT, b"w/b", b"3"),
                                       (DELETE, b"w/a", b"")]  # fmt: skip
            assert [e.kv.mod_revision for e in events] == [start, start + 1, start + 3, start + 4]
            assert not events[0].HasField("prev_kv")
            assert events[1].prev_kv.value == b"1"
            assert events[3].prev_kv.value == b"2"
            assert w.next_revision == start + 5
            # Then live events.
            await c.put("w/c", "4")
            await c.put("x", "not watched")
            await c.put("w/c", "5")
            live = await w.events(2)
            assert summary(live) == [(PUT, b"w/c", b"4"), (PUT, b"w/c", b"5")]
            assert live[1].kv.version == 2
            await w.cancel()
            with pytest.raises(StopAsyncIteration):
                await w.next(5)

    run(body())


def test_watch_single_key_from_now_and_filters(any_server: ServerProcess, kind: str) -> None:
    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            await c.put("k", "old")
            w = await c.watch("k")  # from now on: "old" is not an event
            no_put = await c.watch("k", no_put=True)
            # Created: bound to the revision they were created at, before the changes below.
            now = (await c.get("k")).header.revision
            assert w.next_revision == no_put.next_revision == now + 1
            await c.put("kk", "not this key")
            await c.put("k", "new")
            await c.delete("k")
            assert summary(await w.events(2)) == [(PUT, b"k", b"new"), (DELETE, b"k", b"")]
            assert summary(await no_put.events(1)) == [(DELETE, b"k", b"")]
            await w.cancel()
            await no_put.cancel()

    run(body())


def test_watch_request_progress(any_server: ServerProcess, kind: str) -> None:
    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            rev = (await c.put("p", "1")).header.revision
            w = await c.watch("p", start_revision=rev)
            assert len(await w.events(1)) == 1
            await c.put("unrelated", "x")
            await w.request_progress()
            resp = await w.next(5)
            assert list(resp.events) == []
            assert resp.header.revision == rev + 1
            assert w.next_revision == rev + 2  # nothing at or before rev + 1 is still to come
            await w.cancel()

    run(body())


@pytest.mark.parametrize("server_kind", ["synod", "etcd"])
def test_watch_progress_notify(start_server: Callable[..., ServerProcess], server_kind: str) -> None:
    server = start_server(server_kind, "--experimental-watch-progress-notify-interval", "200ms")

    async def body() -> None:
        async with open_client("async", server.endpoint) as c:
            w = await c.watch("quiet", progress_notify=True)
            rev = (await c.put("elsewhere", "x")).header.revision
            # Notifications until one covers the write to another key.
            resp = await w.next(5)
            while resp.header.revision < rev:
                assert list(resp.events) == []
                resp = await w.next(5)
            assert list(resp.events) == []
            assert w.next_revision == resp.header.revision + 1
            await w.cancel()

    run(body())


def test_watch_compacted_start(any_server: ServerProcess, kind: str) -> None:
    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            first = (await c.put("k", "1")).header.revision
            second = (await c.put("k", "2")).header.revision
            await c.compact(second)
            w = await c.watch("k", start_revision=first)
            with pytest.raises(errors.CompactedError) as e:
                await w.next(5)
            assert e.value.compact_revision == second
            # At the compacted revision itself the history is still there.
            w2 = await c.watch("k", start_revision=second)
            assert summary(await w2.events(1)) == [(PUT, b"k", b"2")]
            await w2.cancel()

    run(body())


def test_watch_cancel_ends_a_blocked_iteration(any_server: ServerProcess, kind: str) -> None:
    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            w = await c.watch("nothing-happens")
            waiting = asyncio.ensure_future(w.next(10))
            assert w.next_revision > 0  # created
            await c.put("unrelated", "x")
            await w.cancel()
            with pytest.raises(StopAsyncIteration):
                await waiting
            assert w.responses == []

    run(body())


def test_async_watch_lazy_iteration(any_server: ServerProcess) -> None:
    """``async for`` over a watch that was not created first: the stream opens on iteration."""

    async def body() -> None:
        async with open_client("async", any_server.endpoint) as c:
            rev = (await c.put("lazy", "1")).header.revision
            seen = []
            async with c.aio.watch("lazy", start_revision=rev) as w:
                await c.put("lazy", "2")
                async for resp in w:
                    seen.extend(e.kv.value for e in resp.events)
                    if len(seen) >= 2:
                        break
            assert seen == [b"1", b"2"]

    run(body())


@pytest.mark.parametrize(("server_kind", "kind"), [("synod", "async"), ("etcd", "sync")])
def test_leases(start_server: Callable[..., ServerProcess], server_kind: str, kind: str) -> None:
    any_server = start_server(server_kind)

    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            granted = await c.lease_grant(30)
            assert granted.ID > 0 and granted.TTL == 30
            lid = granted.ID
            await c.put("l/1", "a", lease=lid)
            await c.put("l/2", "b", lease=lid)
            ttl = await c.lease_time_to_live(lid, keys=True)
            assert lid == ttl.ID and ttl.grantedTTL == 30 and 0 < ttl.TTL <= 30
            assert sorted(ttl.keys) == [b"l/1", b"l/2"]
            assert list((await c.lease_time_to_live(lid)).keys) == []
            chosen = await c.lease_grant(30, lease_id=0x5EED)
            assert chosen.ID == 0x5EED
            assert {lid, 0x5EED} <= {lease.ID for lease in (await c.leases()).leases}
            once = await c.lease_keep_alive_once(lid)
            assert lid == once.ID and once.TTL == 30

            await c.lease_revoke(lid)
            assert (await c.get("l/", prefix=True)).count == 0  # its keys went with it
            assert (await c.lease_time_to_live(lid)).TTL == -1
            assert lid not in {lease.ID for lease in (await c.leases()).leases}
            with pytest.raises(errors.LeaseNotFoundError):
                await c.lease_keep_alive_once(lid)
            with pytest.raises(errors.LeaseNotFoundError):
                await c.lease_revoke(lid)

    run(body())


@SWAPPED
def test_keep_alive_outlives_the_ttl_and_reports_a_revoke(
    start_server: Callable[..., ServerProcess], server_kind: str, kind: str
) -> None:
    any_server = start_server(server_kind)

    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            ttl = 2  # etcd's minimum with its default election timeout
            lid = (await c.lease_grant(ttl)).ID
            await c.put("held", "v", lease=lid)
            lost: list[errors.EtcdError] = []
            started = time.monotonic()
            ka = await c.keep_alive(lid, ttl, on_lost=lost.append)
            # Renewed for well past the TTL: the lease and its key are still there.
            await wait_for(
                lambda: time.monotonic() - started > ttl + 0.5 and ka.renewals >= 3, 10, "renewals"
            )
            assert not ka.is_lost()
            assert (await c.lease_time_to_live(lid)).TTL > 0
            assert (await c.get("held")).count == 1
            # Revoked behind its back: reported lost, once.
            await c.lease_revoke(lid)
            error = await ka.wait_lost(5)
            assert isinstance(error, errors.LeaseExpiredError)
            await wait_for(lambda: lost, 2, "on_lost")
            assert lost == [error]
            await ka.close()

    run(body())


@CROSSED
def test_keep_alive_close_stops_renewing(
    start_server: Callable[..., ServerProcess], server_kind: str, kind: str
) -> None:
    any_server = start_server(server_kind)

    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            lid = (await c.lease_grant(2)).ID
            lost: list[errors.EtcdError] = []
            ka = await c.keep_alive(lid, 2, on_lost=lost.append)
            await wait_for(lambda: ka.renewals >= 1, 5, "a renewal")
            await ka.close()
            # Unrenewed, the server expires it (etcd checks expiry every 500 ms).
            await wait_for(_expired(c, lid), 8, "the lease to expire")
            assert lost == []  # closing is not losing

    run(body())


def _expired(c, lid):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return bool((await c.lease_time_to_live(lid)).TTL == -1)

    return check
