"""synod.client.namespace's key rewriting, without a server: ranges, txns, responses, watch events, leases."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.mvccpb import kv_pb2
from synod.api.v3electionpb import v3election_pb2 as epb
from synod.api.v3lockpb import v3lock_pb2 as lpb
from synod.client import txn as t
from synod.client.aio import AsyncClient
from synod.client.errors import EmptyKeyError
from synod.client.keys import key_range
from synod.client.namespace import Namespace, NamespacedAsyncClient, NamespacedWatch
from synod.client.watch import Watch

# Small alphabets, so that keys share prefixes, hit 0x00 and 0xff, and ranges are often non-empty.
byte_strings = st.binary(max_size=4).map(lambda b: bytes(x % 4 if x < 128 else 0xFF for x in b))
prefixes = st.one_of(st.just(b""), st.just(b"\xff"), st.just(b"a\xff"), byte_strings)


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    """Whether ``key`` is in the request range (start, end) as etcd reads it."""
    if not end:
        return key == start
    if end == b"\0":
        return key >= start
    return start <= key < end


@st.composite
def range_options(draw: st.DrawFn) -> dict[str, Any]:
    """The client's range arguments: one key, an explicit range end, prefix or from_key."""
    key = draw(byte_strings)
    kind = draw(st.sampled_from(["key", "range_end", "prefix", "from_key"]))
    if kind == "key":
        key = key or b"k"
        return {"key": key}
    if kind == "range_end":
        return {"key": key or b"k", "range_end": draw(st.one_of(st.just(b"\0"), byte_strings.filter(bool)))}
    return {"key": key, kind: True}


@given(prefixes, range_options(), byte_strings, st.booleans())
def test_a_namespaced_range_holds_the_prefixed_keys_of_the_range_and_nothing_else(
    prefix: bytes, options: dict[str, Any], key: bytes, inside: bool
) -> None:
    ns = Namespace(prefix)
    raw = prefix + key if inside else key  # a key of the namespace, or any key of the keyspace
    start, end = key_range(**options)
    ns_start, ns_end = ns.range(**options)
    expected = raw.startswith(prefix) and in_range(raw[len(prefix) :], start, end)
    assert in_range(raw, ns_start, ns_end) == expected


@given(range_options())
def test_the_empty_namespace_changes_nothing(options: dict[str, Any]) -> None:
    assert Namespace(b"").range(**options) == key_range(**options)


def test_the_edges() -> None:
    ns = Namespace("app/")
    assert ns.range("", prefix=True) == (b"app/\0", b"app0")  # the whole namespace
    assert ns.range("", from_key=True) == (b"app/\0", b"app0")
    assert ns.range("m", from_key=True) == (b"app/m", b"app0")
    assert ns.range("a", range_end="\0") == (b"app/a", b"app0")
    assert ns.range("a", range_end="c") == (b"app/a", b"app/c")
    assert ns.range("dir/", prefix=True) == (b"app/dir/", b"app/dir0")
    assert ns.range("\xff".encode("latin-1"), prefix=True) == (b"app/\xff", b"app0")  # no end of its own
    assert ns.range("k") == (b"app/k", b"")
    # A namespace with no prefix end (all 0xff) runs to the end of the keyspace.
    assert Namespace(b"\xff\xff").range("", prefix=True) == (b"\xff\xff\0", b"\0")
    # Unlike Go's prefixInterval (which carries into "b\x00"), the end of "a\xff" is "b": key "b" is out.
    assert Namespace(b"a\xff").range("", prefix=True) == (b"a\xff\0", b"b")


def test_an_empty_key_alone_is_refused_as_etcd_refuses_it() -> None:
    ns = Namespace("app/")
    with pytest.raises(EmptyKeyError):
        ns.range("")
    with pytest.raises(EmptyKeyError):
        ns.op(t.put("", "v"))
    with pytest.raises(EmptyKeyError):
        ns.range("", range_end="z")  # etcd refuses it; prefixed, it would take in the key "app/"
    with pytest.raises(EmptyKeyError):
        ns.op(t.get(""))
    with pytest.raises(EmptyKeyError):
        ns.op(t.get("", range_end="z"))
    with pytest.raises(EmptyKeyError):
        ns.op(t.delete(""))
    with pytest.raises(EmptyKeyError):
        ns.op(t.txn([], [t.put("", "v")]))


def test_txn_compares_and_ops_nested_too_are_copied_into_the_namespace() -> None:
    ns = Namespace("n/")
    compare = [t.version("k") == 0, t.mod_revision("r", prefix=True) > 3, t.value("a", range_end="\0") == "x"]
    inner = t.txn([t.create_revision("deep") > 0], [t.get("", prefix=True)], [t.delete("d", from_key=True)])
    success = [t.put("k", "v", prev_kv=True, lease=7), t.get("a", range_end="c", limit=2), inner]
    failure = [t.delete("x", prefix=True, prev_kv=True)]
    originals = [m.SerializeToString() for m in [*compare, *success, *failure]]
    cs, ok, ko = ns.txn(compare, success, failure)
    # The caller's messages are untouched (they may be reused, with another namespace too).
    assert [m.SerializeToString() for m in [*compare, *success, *failure]] == originals
    assert [(c.key, c.range_end) for c in cs] == [(b"n/k", b""), (b"n/r", b"n/s"), (b"n/a", b"n0")]
    assert [c.target for c in cs] == [pb.Compare.VERSION, pb.Compare.MOD, pb.Compare.VALUE]
    assert (cs[1].mod_revision, cs[2].value, cs[1].result) == (3, b"x", pb.Compare.GREATER)
    assert ok[0].request_put == pb.PutRequest(key=b"n/k", value=b"v", prev_kv=True, lease=7)
    assert ok[1].request_range == pb.RangeRequest(key=b"n/a", range_end=b"n/c", limit=2)
    nested = ok[2].request_txn
    assert (nested.compare[0].key, nested.compare[0].create_revision) == (b"n/deep", 0)
    got, deleted = nested.success[0].request_range, nested.failure[0].request_delete_range
    assert (got.key, got.range_end, deleted.key, deleted.range_end) == (b"n/\0", b"n0", b"n/d", b"n0")
    assert ko[0].request_delete_range == pb.DeleteRangeRequest(key=b"n/x", range_end=b"n/y", prev_kv=True)


def kv(key: bytes, value: bytes = b"v") -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(key=key, value=value, mod_revision=5)


def test_responses_nested_txns_too_come_back_stripped() -> None:
    ns = Namespace(b"n/")
    assert [k.key for k in ns.strip_range(pb.RangeResponse(kvs=[kv(b"n/a"), kv(b"n/b")])).kvs] == [b"a", b"b"]
    assert ns.strip_put(pb.PutResponse(prev_kv=kv(b"n/a"))).prev_kv.key == b"a"
    assert not ns.strip_put(pb.PutResponse()).HasField("prev_kv")  # none is not made up
    assert [k.key for k in ns.strip_delete(pb.DeleteRangeResponse(prev_kvs=[kv(b"n/x")])).prev_kvs] == [b"x"]
    deep = pb.TxnResponse(responses=[pb.ResponseOp(response_range=pb.RangeResponse(kvs=[kv(b"n/deep")]))])
    resp = pb.TxnResponse(
        succeeded=True,
        responses=[
            pb.ResponseOp(response_range=pb.RangeResponse(kvs=[kv(b"n/a")], count=1)),
            pb.ResponseOp(response_put=pb.PutResponse(prev_kv=kv(b"n/p"))),
            pb.ResponseOp(response_delete_range=pb.DeleteRangeResponse(prev_kvs=[kv(b"n/d")], deleted=1)),
            pb.ResponseOp(response_txn=pb.TxnResponse(responses=[pb.ResponseOp(response_txn=deep)])),
        ],
    )
    r = ns.strip_txn(resp).responses
    assert r[0].response_range.kvs[0].key == b"a"
    assert r[0].response_range.count == 1
    assert r[1].response_put.prev_kv.key == b"p"
    assert r[2].response_delete_range.prev_kvs[0].key == b"d"
    assert r[3].response_txn.responses[0].response_txn.responses[0].response_range.kvs[0].key == b"deep"


def test_watch_events_and_lease_keys_come_back_stripped() -> None:
    ns = Namespace(b"n/")
    put = kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv(b"n/a", b"2"), prev_kv=kv(b"n/a", b"1"))
    delete = kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv(b"n/b"))
    events = ns.strip_watch(pb.WatchResponse(events=[put, delete])).events
    assert [(e.kv.key, e.kv.value) for e in events] == [(b"a", b"2"), (b"b", b"v")]
    assert events[0].prev_kv.key == b"a"
    assert not events[1].HasField("prev_kv")
    # A lease's keys: the namespace's, stripped; the others (another namespace's, "n" itself) left out.
    resp = pb.LeaseTimeToLiveResponse(ID=1, TTL=5, keys=[b"n/a", b"m/b", b"n", b"n/", b"n/c"])
    assert list(ns.strip_lease_keys(resp).keys) == [b"a", b"", b"c"]


@given(prefixes, st.lists(byte_strings, max_size=5))
def test_stripping_undoes_prefixing(prefix: bytes, keys: list[bytes]) -> None:
    ns = Namespace(prefix)
    resp = pb.RangeResponse(kvs=[kv(ns.key(k)) for k in keys])
    assert [k.key for k in ns.strip_range(resp).kvs] == keys


class Recorder:
    """An AsyncClient stand-in: records the calls the view makes, answers with prefixed keys."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.conn = self  # the keyless calls the view inherits run on the client's connection

    async def call(self, method: str, request: Any, response_type: Any, **kwargs: Any) -> Any:
        self.calls.append((method, (request,), {}))
        return response_type(ID=9, TTL=request.TTL)

    async def get(self, *args: Any, **kwargs: Any) -> pb.RangeResponse:
        self.calls.append(("get", args, kwargs))
        return pb.RangeResponse(kvs=[kv(b"p/x")])

    async def put(self, *args: Any, **kwargs: Any) -> pb.PutResponse:
        self.calls.append(("put", args, kwargs))
        return pb.PutResponse(prev_kv=kv(b"p/" + args[0][2:]))

    async def delete(self, *args: Any, **kwargs: Any) -> pb.DeleteRangeResponse:
        self.calls.append(("delete", args, kwargs))
        return pb.DeleteRangeResponse(prev_kvs=[kv(b"p/y")])


def test_the_view_passes_the_other_options_through_and_uses_the_client_for_keyless_calls() -> None:
    async def body() -> None:
        rec = Recorder()
        view = NamespacedAsyncClient(rec, "p/")  # type: ignore[arg-type]
        assert (await view.get_prefix("", limit=3, revision=4)).kvs[0].key == b"x"
        assert (await view.put("k", "v", prev_kv=True, lease=2)).prev_kv.key == b"k"
        assert (await view.delete_prefix("d", prev_kv=True)).prev_kvs[0].key == b"y"
        await view.get_range("a", "b", keys_only=True)
        assert (await view.lease_grant(5)).ID == 9  # not namespaced: the client's own
        assert rec.calls == [
            ("get", (b"p/\0",), {"range_end": b"p0", "limit": 3, "revision": 4}),
            ("put", (b"p/k", "v"), {"prev_kv": True, "lease": 2}),
            ("delete", (b"p/d",), {"range_end": b"p/e", "prev_kv": True}),
            ("get", (b"p/a",), {"range_end": b"p/b", "keys_only": True}),
            ("/etcdserverpb.Lease/LeaseGrant", (pb.LeaseGrantRequest(TTL=5),), {}),
        ]
        with pytest.raises(EmptyKeyError):
            await view.put("", "v")
        with pytest.raises(EmptyKeyError):
            await view.get("")
        await view.close()  # the view does not own its client
        assert len(rec.calls) == 5

    asyncio.run(body())


# The public calls of AsyncClient that take no key, so that the view may leave them to the client.
KEYLESS = {
    "close", "compact", "lease_grant", "lease_revoke", "leases", "lease_keep_alive_once", "keep_alive",
    "member_list", "member_add", "member_remove", "member_update", "member_promote",
    "status", "hash_kv", "move_leader", "alarms", "authenticate",
    # Auth is not namespaced (as clientv3/namespace): users, roles and permissions are the
    # cluster's, and a permission names the keys as the server stores them.
    "auth_enable", "auth_disable", "user_add", "user_delete", "user_change_password",
    "user_grant_role", "user_revoke_role", "user_get", "user_list",
    "role_add", "role_delete", "role_get", "role_list", "role_grant_permission", "role_revoke_permission",
}  # fmt: skip


def public(cls: type) -> set[str]:
    members = vars(cls).items()
    return {n for n, v in members if not n.startswith("_") and (callable(v) or isinstance(v, property))}


def test_every_call_with_keys_is_namespaced() -> None:
    """A call added to AsyncClient (or Watch) must be namespaced here, or listed as keyless: no leak."""
    inherited = public(AsyncClient) - set(vars(NamespacedAsyncClient))
    assert inherited <= KEYLESS, f"not namespaced: {inherited - KEYLESS}"
    for name in public(AsyncClient) - KEYLESS:
        ours = inspect.signature(getattr(NamespacedAsyncClient, name))
        theirs = inspect.signature(getattr(AsyncClient, name))
        assert list(ours.parameters)[:2] == list(theirs.parameters)[:2], name
    # Every part of a Watch the wrapper does not forward would run on a Watch with no state.
    assert public(Watch) | {"next_revision", "watch_id"} <= set(vars(NamespacedWatch))


def test_lock_and_election_names_are_namespaced() -> None:
    """The services' names are key prefixes: a view's locks and elections live under its prefix."""
    calls: list[tuple[str, tuple[object, ...]]] = []

    class Recorder:
        async def lock(self, name: bytes, lease: int) -> lpb.LockResponse:
            calls.append(("lock", (name, lease)))
            return lpb.LockResponse(key=name + b"/1f")

        async def unlock(self, key: bytes) -> lpb.UnlockResponse:
            calls.append(("unlock", (key,)))
            return lpb.UnlockResponse()

        async def campaign(self, name: bytes, value: object, lease: int) -> epb.CampaignResponse:
            calls.append(("campaign", (name, value, lease)))
            return epb.CampaignResponse(
                leader=epb.LeaderKey(name=name, key=name + b"/2a", rev=5, lease=lease)
            )

        async def proclaim(self, leader: epb.LeaderKey, value: object) -> epb.ProclaimResponse:
            calls.append(("proclaim", (leader.name, leader.key)))
            return epb.ProclaimResponse()

        async def resign(self, leader: epb.LeaderKey) -> epb.ResignResponse:
            calls.append(("resign", (leader.name, leader.key)))
            return epb.ResignResponse()

        async def election_leader(self, name: bytes) -> epb.LeaderResponse:
            calls.append(("leader", (name,)))
            return epb.LeaderResponse(kv=kv_pb2.KeyValue(key=name + b"/2a"))

    async def scenario() -> None:
        view = NamespacedAsyncClient(Recorder(), "app/")  # type: ignore[arg-type]
        held = await view.lock("job", 31)
        assert held.key == b"job/1f"
        await view.unlock(held.key)
        won = await view.campaign("db", "v", 42)
        assert (won.leader.name, won.leader.key) == (b"db", b"db/2a")
        await view.proclaim(won.leader, "w")
        await view.resign(won.leader)
        assert (await view.election_leader("db")).kv.key == b"db/2a"

    asyncio.run(scenario())
    assert calls == [
        ("lock", (b"app/job", 31)),
        ("unlock", (b"app/job/1f",)),
        ("campaign", (b"app/db", "v", 42)),
        ("proclaim", (b"app/db", b"app/db/2a")),
        ("resign", (b"app/db", b"app/db/2a")),
        ("leader", (b"app/db",)),
    ]
