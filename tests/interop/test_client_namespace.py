"""Namespaced views (synod.client.namespace) against synod and a real etcd 3.4, through both clients.

Two namespaces, "a/" and "b/", each over a client of its own, and the raw keyspace
with keys just outside them ("a", "a/" itself, "a0": the end of "a/"): no view sees
another's keys, through KV, txn, watch and lease, and the raw view holds the
prefixed keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.mvccpb import kv_pb2
from synod.client import txn as t
from synod.client.namespace import NamespacedAsyncClient, NamespacedClient
from tests.support.clients import KINDS, Api, open_client, run, wait_for
from tests.support.servers import ServerProcess

PUT, DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE
OUTSIDE = [b"a", b"a/", b"a0", b"b", b"k1", b"zz"]  # raw keys next to the namespaces, in none of them


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def views(kind: str, endpoint: str) -> AsyncIterator[tuple[Api, Api, Api]]:
    """(raw, a, b): the raw client, and the namespaces "a/" (over it) and "b/" (over another client)."""
    view = NamespacedAsyncClient if kind == "async" else NamespacedClient
    async with open_client(kind, endpoint) as raw, open_client(kind, endpoint) as other:
        a = Api(kind, view(raw.client, "a/"))  # type: ignore[arg-type]
        b = Api(kind, view(other.client, b"b/"))  # type: ignore[arg-type]
        for key in OUTSIDE:
            await raw.put(key, "outside")
        yield raw, a, b


def keys(resp: pb.RangeResponse | pb.DeleteRangeResponse) -> list[bytes]:
    kvs = resp.kvs if isinstance(resp, pb.RangeResponse) else resp.prev_kvs
    return [kv.key for kv in kvs]


def test_kv_each_namespace_sees_its_own_keys_only(any_server: ServerProcess, kind: str) -> None:
    async def body() -> None:
        async with views(kind, any_server.endpoint) as (raw, a, b):
            for key, value in [("k1", "a1"), ("k2", "a2"), ("z", "az")]:
                await a.put(key, value)
            await b.put("k1", "b1")
            await b.put("k3", "b3")
            # The whole namespace: an empty key with prefix, or from key.
            everything = await a.get_prefix("")
            assert [(kv.key, kv.value) for kv in everything.kvs] == [
                (b"k1", b"a1"),
                (b"k2", b"a2"),
                (b"z", b"az"),
            ]
            assert everything.count == 3
            assert keys(await a.get("", from_key=True)) == [b"k1", b"k2", b"z"]
            assert keys(await b.get_prefix("")) == [b"k1", b"k3"]
            assert (await a.get("", prefix=True, count_only=True)).count == 3
            # One key, a prefix, from a key on, explicit range ends ("\0" is the namespace's end).
            assert [kv.value for kv in (await a.get("k1")).kvs] == [b"a1"]
            assert (await a.get("k3")).kvs == []
            assert keys(await a.get("k", prefix=True)) == [b"k1", b"k2"]
            assert keys(await a.get("k2", from_key=True)) == [b"k2", b"z"]
            assert keys(await b.get_range("k2", "\0")) == [b"k3"]
            assert keys(await a.get_range("k1", "k3")) == [b"k1", b"k2"]
            assert keys(await a.get("", from_key=True, sort_order=pb.RangeRequest.DESCEND, limit=1)) == [b"z"]
            # prev_kv comes back stripped.
            put = await a.put("k1", "a1'", prev_kv=True)
            assert (put.prev_kv.key, put.prev_kv.value) == (b"k1", b"a1")
            # The raw keyspace holds the prefixed keys, next to the outside ones.
            assert keys(await raw.get_prefix("a/")) == [b"a/", b"a/k1", b"a/k2", b"a/z"]
            assert keys(await raw.get_prefix("b/")) == [b"b/k1", b"b/k3"]
            # Deleting the whole namespace deletes nothing outside it.
            deleted = await a.delete_prefix("", prev_kv=True)
            assert (deleted.deleted, keys(deleted)) == (3, [b"k1", b"k2", b"z"])
            assert (await a.get_prefix("")).kvs == []
            assert keys(await b.get_prefix("")) == [b"k1", b"k3"]
            gone = await b.delete("k2", from_key=True, prev_kv=True)
            assert (gone.deleted, keys(gone)) == (1, [b"k3"])
            assert keys(await raw.get("", from_key=True)) == [*OUTSIDE[:4], b"b/k1", *OUTSIDE[4:]]

    run(body())


def test_txn_compares_and_ops_stay_in_the_namespace(any_server: ServerProcess, kind: str) -> None:
    async def body() -> None:
        async with views(kind, any_server.endpoint) as (raw, a, b):
            await a.put("k1", "a1")
            await a.put("m", "am")
            await a.put("n", "an")
            # A compare on a range: b has no key at all (the raw "k1", a's keys: not its own).
            assert not (await b.txn([t.create_revision("", prefix=True) > 0])).succeeded
            assert (await b.txn([t.version("k", prefix=True) == 0])).succeeded
            assert (await a.txn([t.create_revision("", prefix=True) > 0])).succeeded
            assert not (await a.txn([t.version("k", prefix=True) == 0])).succeeded
            # A compare on "from a key on" ("\0" range end): every key of a from "k" on is "a?" valued.
            assert not (await a.txn([t.value("k", range_end="\0") == "a1"])).succeeded  # "m" is "am"
            assert (await a.txn([t.version("k", range_end="\0") == 1])).succeeded
            # Ops: reads of the whole namespace, from a key, a put, a from-key delete, a nested txn.
            resp = await a.txn(
                [t.value("k1") == "a1"],
                [
                    t.get("", prefix=True),
                    t.put("c", "ac", prev_kv=True),
                    t.put("k1", "a1'", prev_kv=True),
                    t.txn([t.version("m") == 1], [t.get("k", from_key=True, keys_only=True)]),
                    t.delete("m", from_key=True, prev_kv=True),
                ],
                [t.put("wrong", "branch")],
            )
            assert resp.succeeded
            r = resp.responses
            assert keys(r[0].response_range) == [b"k1", b"m", b"n"]
            assert not r[1].response_put.HasField("prev_kv")
            assert r[2].response_put.prev_kv.key == b"k1"
            nested = r[3].response_txn
            assert nested.succeeded
            assert keys(nested.responses[0].response_range) == [b"k1", b"m", b"n"]
            assert (r[4].response_delete_range.deleted, keys(r[4].response_delete_range)) == (2, [b"m", b"n"])
            # The same ops in b saw and touched only b's keys.
            await b.put("k1", "b1")
            resp = await b.txn([], [t.delete("", prefix=True, prev_kv=True), t.get("k1")])
            assert keys(resp.responses[0].response_delete_range) == [b"k1"]
            assert resp.responses[1].response_range.kvs == []
            assert [(kv.key, kv.value) for kv in (await raw.get_prefix("a/")).kvs] == [
                (b"a/", b"outside"),
                (b"a/c", b"ac"),
                (b"a/k1", b"a1'"),
            ]
            assert (await raw.get("k1")).kvs[0].value == b"outside"
            assert (await raw.get_prefix("b/")).kvs == []
            assert (await raw.get("wrong")).kvs == [] and (await raw.get("a/wrong")).kvs == []

    run(body())


def summary(events: list[kv_pb2.Event]) -> list[tuple[int, bytes, bytes, bytes]]:
    return [(e.type, e.kv.key, e.kv.value, e.prev_kv.key) for e in events]


def test_a_watch_of_the_whole_namespace_sees_its_events_only(any_server: ServerProcess, kind: str) -> None:
    async def body() -> None:
        async with views(kind, any_server.endpoint) as (raw, a, b):
            start = (await raw.get("a")).header.revision + 1
            aw = await a.watch("", prefix=True, prev_kv=True)
            bw = await b.watch("", prefix=True)
            from_m = await a.watch("m", from_key=True)
            await b.put("k", "b")
            await raw.put("a0", "x")  # the end of "a/": outside
            await raw.put("a", "x")
            await a.put("k", "1")
            await a.put("k", "2")
            await a.delete("k")
            await a.put("n", "3")
            await b.delete("k")
            await raw.put("zz", "x")
            await a.put("zz", "end")  # the last: nothing else may come before it
            await b.put("zz", "end")
            assert summary(await aw.events(5)) == [
                (PUT, b"k", b"1", b""),
                (PUT, b"k", b"2", b"k"),
                (DELETE, b"k", b"", b"k"),
                (PUT, b"n", b"3", b""),
                (PUT, b"zz", b"end", b""),
            ]
            assert aw.responses[1].events[0].prev_kv.value == b"1"
            assert summary(await bw.events(3)) == [
                (PUT, b"k", b"b", b""),
                (DELETE, b"k", b"", b""),
                (PUT, b"zz", b"end", b""),
            ]
            assert summary(await from_m.events(2)) == [(PUT, b"n", b"3", b""), (PUT, b"zz", b"end", b"")]
            # A watch from a past revision replays the namespace's history only.
            replay = await b.watch("", from_key=True, start_revision=start)
            assert [e.kv.key for e in await replay.events(3)] == [b"k", b"k", b"zz"]
            assert replay.next_revision > start
            for w in (aw, bw, from_m, replay):
                await w.cancel()

    run(body())


def test_leases_across_namespaces(any_server: ServerProcess, kind: str) -> None:
    async def body() -> None:
        async with views(kind, any_server.endpoint) as (raw, a, b):
            lease = (await a.lease_grant(30)).ID
            await a.put("l1", "v", lease=lease)
            await a.put("l2", "v", lease=lease)
            await b.put("l1", "v", lease=lease)
            await raw.put("l3", "v", lease=lease)
            # Each view lists the lease's keys in its namespace, stripped; the raw one all of them.
            assert sorted((await a.lease_time_to_live(lease, keys=True)).keys) == [b"l1", b"l2"]
            assert list((await b.lease_time_to_live(lease, keys=True)).keys) == [b"l1"]
            assert sorted((await raw.lease_time_to_live(lease, keys=True)).keys) == [
                b"a/l1",
                b"a/l2",
                b"b/l1",
                b"l3",
            ]
            ttl = await b.lease_time_to_live(lease)
            assert list(ttl.keys) == [] and 0 < ttl.TTL <= 30
            assert lease in [lease_status.ID for lease_status in (await b.leases()).leases]
            # Keep-alives work through a view (the client's own).
            keepalive = await a.keep_alive(lease, 30)
            await wait_for(lambda: keepalive.renewals >= 1, 10, "a renewal through the namespaced view")
            await keepalive.close()
            # Lease IDs are global: b revokes a's lease, and every key on it goes.
            await b.lease_revoke(lease)
            assert (await a.get_prefix("l")).kvs == [] and (await b.get("l1")).kvs == []
            assert (await raw.get("l3")).kvs == []
            assert (await a.lease_time_to_live(lease)).TTL == -1

    run(body())
