"""The client's KV API, transactions, compaction and typed errors: against synod and a real etcd 3.4.

Each test runs four ways: {synod, etcd} x {Client, AsyncClient} (tests/support/clients.py
gives both clients one coroutine-shaped face).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.client import Client, errors
from synod.client import txn as t
from tests.support.clients import KINDS, Api, open_client, run
from tests.support.servers import ServerProcess


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def keys(resp: pb.RangeResponse) -> list[bytes]:
    return [kv.key for kv in resp.kvs]


async def seed(c: Api) -> dict[bytes, int]:
    """Five keys, each written once; their mod revisions."""
    revs = {}
    for k, v in [("a", "1"), ("b/1", "x"), ("b/2", "yy"), ("b/3", "z"), ("c", "0")]:
        revs[k.encode()] = (await c.put(k, v)).header.revision
    return revs


@pytest.mark.parametrize(("server_kind", "kind"), [("synod", "sync"), ("etcd", "async")])
def test_put_get_delete(start_server: Callable[..., ServerProcess], server_kind: str, kind: str) -> None:
    any_server = start_server(server_kind)

    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            first = await c.put("k", "v1")
            assert not first.HasField("prev_kv")
            second = await c.put(b"k", b"v2", prev_kv=True)
            assert second.prev_kv.value == b"v1"
            assert second.header.revision == first.header.revision + 1
            got = await c.get("k")
            assert got.count == 1
            kv = got.kvs[0]
            assert (kv.key, kv.value, kv.version) == (b"k", b"v2", 2)
            assert (kv.create_revision, kv.mod_revision) == (first.header.revision, second.header.revision)
            assert (await c.get("missing")).count == 0
            gone = await c.delete("k", prev_kv=True)
            assert gone.deleted == 1
            assert [p.value for p in gone.prev_kvs] == [b"v2"]
            assert (await c.delete("k")).deleted == 0
            assert (await c.get("k")).kvs == []

    run(body())


def test_ranges(any_server: ServerProcess, kind: str) -> None:
    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            revs = await seed(c)
            assert keys(await c.get("b/", prefix=True)) == [b"b/1", b"b/2", b"b/3"]
            assert keys(await c.get_prefix("b/")) == [b"b/1", b"b/2", b"b/3"]
            every = [b"a", b"b/1", b"b/2", b"b/3", b"c"]
            assert keys(await c.get("", prefix=True)) == every  # the empty prefix: every key
            assert keys(await c.get("b/2", from_key=True)) == [b"b/2", b"b/3", b"c"]
            assert keys(await c.get("", from_key=True)) == every
            assert keys(await c.get("a", range_end="b/3")) == [b"a", b"b/1", b"b/2"]
            assert keys(await c.get_range("b/1", "c")) == [b"b/1", b"b/2", b"b/3"]

            # Reads at a revision see the store as it was.
            await c.put("a", "2")
            old = await c.get("a", revision=revs[b"a"])
            assert old.kvs[0].value == b"1"
            assert (await c.get("a")).kvs[0].value == b"2"
            assert keys(await c.get("", prefix=True, revision=revs[b"b/2"])) == [b"a", b"b/1", b"b/2"]

            # Sort, limit, count_only, keys_only.
            desc = await c.get("", prefix=True, sort_order=pb.RangeRequest.DESCEND)
            assert keys(desc) == every[::-1]
            by_value = await c.get(
                "b/", prefix=True, sort_target=pb.RangeRequest.VALUE, sort_order=pb.RangeRequest.DESCEND
            )
            assert [kv.value for kv in by_value.kvs] == [b"z", b"yy", b"x"]
            by_mod = await c.get(
                "", prefix=True, sort_target=pb.RangeRequest.MOD, sort_order=pb.RangeRequest.ASCEND
            )
            assert keys(by_mod) == [b"b/1", b"b/2", b"b/3", b"c", b"a"]  # "a" was written last
            limited = await c.get("", prefix=True, limit=2)
            assert (keys(limited), limited.more, limited.count) == ([b"a", b"b/1"], True, 5)
            last_two = await c.get("", prefix=True, limit=2, sort_order=pb.RangeRequest.DESCEND)
            assert (keys(last_two), last_two.more) == ([b"c", b"b/3"], True)  # sorted, then limited
            # A target other than the key with no order: ascending (etcd's default then).
            by_version = await c.get("", prefix=True, sort_target=pb.RangeRequest.VALUE)
            assert [kv.value for kv in by_version.kvs] == [b"0", b"2", b"x", b"yy", b"z"]
            # The revision filters.
            newer = await c.get("", prefix=True, min_mod_revision=revs[b"b/3"])
            assert keys(newer) == [b"a", b"b/3", b"c"]
            older = await c.get("", prefix=True, max_create_revision=revs[b"b/1"])
            assert keys(older) == [b"a", b"b/1"]
            counted = await c.get("b/", prefix=True, count_only=True)
            assert (counted.count, list(counted.kvs)) == (3, [])
            only_keys = await c.get("b/", prefix=True, keys_only=True)
            assert keys(only_keys) == [b"b/1", b"b/2", b"b/3"]
            assert all(kv.value == b"" for kv in only_keys.kvs)
            serial = await c.get("c", serializable=True)
            assert serial.kvs[0].value == b"0"

            # Deletes of a prefix, from a key, and of everything.
            d = await c.delete("b/", prefix=True, prev_kv=True)
            assert (d.deleted, [p.key for p in d.prev_kvs]) == (3, [b"b/1", b"b/2", b"b/3"])
            await seed(c)
            assert (await c.delete("b/3", from_key=True)).deleted == 2  # b/3, c
            assert (await c.delete_prefix("")).deleted == 3  # every key left: a, b/1, b/2
            assert (await c.get("", prefix=True)).count == 0

    run(body())


def test_txn(any_server: ServerProcess, kind: str) -> None:
    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            created = (await c.put("k", "v")).header.revision
            lease = (await c.lease_grant(60)).ID
            await c.put("leased", "x", lease=lease)

            holds = [
                t.value("k") == "v",
                t.value("k") != "w",
                t.value("k") > "u",
                t.value("k") < b"w",
                t.version("k") == 1,
                t.create_revision("k") == created,
                t.mod_revision("k") < created + 1,
                t.lease("leased") == lease,
                t.lease("k") == 0,
                t.version("absent") == 0,
                t.version("", prefix=True) > 0,
            ]
            for cmp in holds:
                resp = await c.txn([cmp], [t.get("k")], [t.put("failed", "yes")])
                assert resp.succeeded, cmp
                assert resp.responses[0].response_range.kvs[0].value == b"v"
            fails = [
                t.value("k") == "w",
                t.version("k") > 1,
                t.mod_revision("k") != created,
                t.lease("k") > 0,
            ]
            for cmp in fails:
                resp = await c.txn([cmp], [t.put("won", "yes")], [t.get("k", keys_only=True)])
                assert not resp.succeeded, cmp
                assert resp.responses[0].response_range.kvs[0].key == b"k"
            assert (await c.get("won")).count == 0
            assert (await c.get("failed")).count == 0

            # Every operation kind, and their answers in order.
            resp = await c.txn(
                [t.version("k") == 1, t.value("k") == "v"],
                [
                    t.put("k", "v2", prev_kv=True),
                    t.put("n", "1"),
                    t.get("", prefix=True, count_only=True),
                    t.delete("leased", prev_kv=True),
                ],
            )
            assert resp.succeeded
            r = resp.responses
            assert r[0].response_put.prev_kv.value == b"v"
            assert r[1].WhichOneof("response") == "response_put"
            assert r[2].response_range.count == 3  # k, leased, n: the txn sees its own writes
            assert r[3].response_delete_range.deleted == 1
            assert r[3].response_delete_range.prev_kvs[0].lease == lease
            assert resp.header.revision == created + 2  # one revision for the whole txn

            # A nested txn runs its own branch.
            resp = await c.txn(
                [t.value("k") == "v2"],
                [t.txn([t.value("n") == "2"], [t.put("inner", "yes")], [t.put("inner", "no")])],
            )
            inner = resp.responses[0].response_txn
            assert resp.succeeded and not inner.succeeded
            assert (await c.get("inner")).kvs[0].value == b"no"

            # An empty txn succeeds and changes nothing.
            before = (await c.get("k")).header.revision
            resp = await c.txn()
            assert resp.succeeded and resp.header.revision == before

    run(body())


@pytest.mark.parametrize(("server_kind", "kind"), [("synod", "async"), ("etcd", "sync")])
def test_compact_and_errors(start_server: Callable[..., ServerProcess], server_kind: str, kind: str) -> None:
    any_server = start_server(server_kind)

    async def body() -> None:
        async with open_client(kind, any_server.endpoint) as c:
            first = (await c.put("k", "1")).header.revision
            second = (await c.put("k", "2")).header.revision
            await c.put("k", "3")
            assert (await c.get("k", revision=first)).kvs[0].value == b"1"
            await c.compact(second, physical=True)
            with pytest.raises(errors.CompactedError) as e:
                await c.get("k", revision=first)
            assert "compacted" in e.value.message
            assert (await c.get("k", revision=second)).kvs[0].value == b"2"
            with pytest.raises(errors.CompactedError):
                await c.compact(second)  # at or below the compacted revision
            with pytest.raises(errors.FutureRevisionError):
                await c.get("k", revision=second + 100)
            with pytest.raises(errors.FutureRevisionError):
                await c.compact(second + 100)

            with pytest.raises(errors.EmptyKeyError):
                await c.put("", "v")
            with pytest.raises(errors.EmptyKeyError):
                await c.get("")
            with pytest.raises(errors.LeaseNotFoundError):
                await c.put("k", "v", lease=0x1234)
            with pytest.raises(errors.LeaseNotFoundError):
                await c.lease_revoke(0x1234)
            with pytest.raises(errors.DuplicateKeyError):
                await c.txn([], [t.put("d", "1"), t.put("d", "2")])
            with pytest.raises(errors.KeyNotFoundError):
                await c.put("never-written", "", ignore_value=True)
            with pytest.raises(errors.ValueProvidedError):
                await c.put("k", "v", ignore_value=True)
            lease = (await c.lease_grant(60)).ID
            with pytest.raises(errors.LeaseExistError):
                await c.lease_grant(60, lease_id=lease)
            with pytest.raises(errors.TooManyOpsError):
                await c.txn([], [t.put(f"m{i}", "v") for i in range(129)])  # the default --max-txn-ops: 128
            # An error leaves the client usable.
            assert (await c.get("k")).kvs[0].value == b"3"

    run(body())


def test_errors_keep_status_and_message(any_server: ServerProcess) -> None:
    async def body() -> None:
        async with open_client("async", any_server.endpoint) as c:
            with pytest.raises(errors.LeaseNotFoundError) as e:
                await c.lease_revoke(0x99)
            assert e.value.code.name == "NOT_FOUND"
            assert e.value.message == "etcdserver: requested lease not found"
            assert isinstance(e.value, errors.EtcdError)

    run(body())


def test_one_client_shared_by_threads(any_server: ServerProcess) -> None:
    """A blocking Client is shared by threads: every call answers its own caller."""
    with Client(any_server.endpoint) as client:

        def work(n: int) -> list[bytes]:
            got = []
            for i in range(10):
                client.put(f"t/{n}/{i}", f"{n}:{i}")
                got.append(client.get(f"t/{n}/{i}").kvs[0].value)
            return got

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(8)))
        assert results == [[f"{n}:{i}".encode() for i in range(10)] for n in range(8)]
        assert client.get("t/", prefix=True, count_only=True).count == 80
