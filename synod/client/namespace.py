"""Namespaced views of a client: every key lives under a prefix, as etcd's ``clientv3/namespace``.

    client = AsyncClient(endpoints)
    app = NamespacedAsyncClient(client, "app/")
    await app.put("k", "v")            # writes "app/k"
    (await app.get("k")).kvs[0].key    # b"k"
    await app.get_prefix("")           # the whole namespace, not the whole keyspace

(``NamespacedClient(Client(...), "app/")`` is the same for the blocking client.)

Keys are prefixed on the way in (the keys and range ends of gets, puts, deletes,
watches, and of the compares and operations of transactions, nested ones too) and
the prefix is stripped on the way out (``kvs``, ``prev_kv``/``prev_kvs``, the
responses of transactions, nested ones too, and the ``kv``/``prev_kv`` of watch
events). The range end ``"\\0"`` ("every key from the start key on", which is what
``from_key`` and an empty key with ``prefix`` give) becomes the end of the
namespace, so a view never reaches a key outside it. A view costs nothing beyond
that rewriting: it shares its client's connection, and the calls without keys
(leases, cluster, maintenance, auth) are the client's own.

Where this differs from Go's ``namespace``: an empty key with ``prefix`` (or
``from_key``) is the whole namespace (Go refuses any empty key); any other empty key
of a request, in a txn operation too, is refused with ``EmptyKeyError`` as the server
refuses it (Go sends the key equal to the prefix); the end of a prefix ending in 0xff is
``keys.prefix_end``'s ("a\\xff" ends at "b", where Go's carry gives "b\\x00", which
takes in the key "b"). The key equal to the prefix itself (the namespace's empty
key, which no view can write) is outside the ranges of the view's requests (a
compare or a watch given an empty key would name it, as in Go).

A view does not own its client: closing the view (or leaving its ``with``) does
nothing; close the client. Lease IDs are global, as in etcd: a lease granted
through one namespace can be revoked through another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.mvccpb import kv_pb2
from synod.api.v3electionpb import v3election_pb2 as epb
from synod.api.v3lockpb import v3lock_pb2 as lpb
from synod.client.aio import AsyncClient
from synod.client.errors import EmptyKeyError
from synod.client.keys import FROM_KEY, Key, key_range, prefix_end, to_bytes
from synod.client.sync import Client
from synod.client.watch import Watch
from synod.rpctypes import EMPTY_KEY

__all__ = ["Namespace", "NamespacedAsyncClient", "NamespacedClient", "NamespacedWatch"]


_Ranged = pb.RangeRequest | pb.DeleteRangeRequest


def _empty_key() -> EmptyKeyError:
    return EmptyKeyError(grpc.StatusCode.INVALID_ARGUMENT, EMPTY_KEY.message)


class Namespace:
    """The key rewriting of one prefix (pure: no I/O). The views use it; so may anything else."""

    __slots__ = ("_cut", "end", "prefix")

    def __init__(self, prefix: Key) -> None:
        self.prefix = to_bytes(prefix)
        self.end = prefix_end(self.prefix)  # "\0" for "" (or all 0xff): the namespace is the keyspace's end
        self._cut = len(self.prefix)

    # -- on the way in ---------------------------------------------------------------------------------

    def key(self, key: Key) -> bytes:
        return self.prefix + to_bytes(key)

    def interval(self, key: bytes, range_end: bytes) -> tuple[bytes, bytes]:
        """A request's (key, range_end) in the namespace, as the server takes them.

        An empty range end (one key) stays empty; ``"\\0"`` (every key from ``key`` on)
        becomes the end of the namespace; any other end is prefixed.
        """
        if not range_end:
            return self.prefix + key, b""
        if range_end == FROM_KEY:
            return self.prefix + key, self.end
        return self.prefix + key, self.prefix + range_end

    def range(
        self, key: Key, range_end: Key | None = None, prefix: bool = False, from_key: bool = False
    ) -> tuple[bytes, bytes]:
        """The client's range options (``keys.key_range``'s), in the namespace.

        An empty key, alone or with a ``range_end``, is refused (``EmptyKeyError``), as
        etcd refuses it: it would otherwise name the key equal to the prefix. With
        ``prefix`` or ``from_key`` it means the whole namespace.
        """
        k, end = key_range(key, range_end, prefix, from_key)
        if not k:
            raise _empty_key()
        return self.interval(k, end)

    def compare(self, compare: pb.Compare) -> pb.Compare:
        """A copy of a compare with its key (and range end, comparing a range) in the namespace."""
        out = pb.Compare()
        out.CopyFrom(compare)
        out.key, out.range_end = self.interval(compare.key, compare.range_end)
        return out

    def op(self, op: pb.RequestOp) -> pb.RequestOp:
        """A copy of a transaction's operation in the namespace (a nested transaction's, recursively)."""
        out = pb.RequestOp()
        kind = op.WhichOneof("request")
        if kind == "request_put":
            if not op.request_put.key:
                raise _empty_key()
            out.request_put.CopyFrom(op.request_put)
            out.request_put.key = self.prefix + op.request_put.key
        elif kind == "request_range":
            self._range_into(out.request_range, op.request_range)
        elif kind == "request_delete_range":
            self._range_into(out.request_delete_range, op.request_delete_range)
        elif kind == "request_txn":
            t = op.request_txn
            compare, success, failure = self.txn(t.compare, t.success, t.failure)
            out.request_txn.compare.extend(compare)
            out.request_txn.success.extend(success)
            out.request_txn.failure.extend(failure)
        else:
            out.CopyFrom(op)  # an empty operation: the server answers for it
        return out

    def _range_into(
        self, out: pb.RangeRequest | pb.DeleteRangeRequest, r: pb.RangeRequest | pb.DeleteRangeRequest
    ) -> None:
        if not r.key:
            raise _empty_key()
        out.CopyFrom(r)  # type: ignore[arg-type]
        out.key, out.range_end = self.interval(r.key, r.range_end)

    def txn(
        self, compare: Iterable[pb.Compare], success: Iterable[pb.RequestOp], failure: Iterable[pb.RequestOp]
    ) -> tuple[list[pb.Compare], list[pb.RequestOp], list[pb.RequestOp]]:
        """A transaction's compares and operations, copied into the namespace."""
        return (
            [self.compare(c) for c in compare],
            [self.op(o) for o in success],
            [self.op(o) for o in failure],
        )

    # -- on the way out --------------------------------------------------------------------------------

    def strip_kvs(self, kvs: Iterable[kv_pb2.KeyValue]) -> None:
        cut = self._cut
        if cut:
            for kv in kvs:
                kv.key = kv.key[cut:]

    def strip_range(self, resp: pb.RangeResponse) -> pb.RangeResponse:
        self.strip_kvs(resp.kvs)
        return resp

    def strip_put(self, resp: pb.PutResponse) -> pb.PutResponse:
        if self._cut and resp.HasField("prev_kv"):
            resp.prev_kv.key = resp.prev_kv.key[self._cut :]
        return resp

    def strip_delete(self, resp: pb.DeleteRangeResponse) -> pb.DeleteRangeResponse:
        self.strip_kvs(resp.prev_kvs)
        return resp

    def strip_txn(self, resp: pb.TxnResponse) -> pb.TxnResponse:
        if not self._cut:
            return resp
        for r in resp.responses:
            kind = r.WhichOneof("response")
            if kind == "response_range":
                self.strip_kvs(r.response_range.kvs)
            elif kind == "response_put":
                self.strip_put(r.response_put)
            elif kind == "response_delete_range":
                self.strip_kvs(r.response_delete_range.prev_kvs)
            elif kind == "response_txn":
                self.strip_txn(r.response_txn)
        return resp

    def strip_watch(self, resp: pb.WatchResponse) -> pb.WatchResponse:
        cut = self._cut
        if cut:
            for event in resp.events:
                event.kv.key = event.kv.key[cut:]
                if event.HasField("prev_kv"):
                    event.prev_kv.key = event.prev_kv.key[cut:]
        return resp

    def strip_lease_keys(self, resp: pb.LeaseTimeToLiveResponse) -> pb.LeaseTimeToLiveResponse:
        """Keep the lease's keys inside the namespace, prefix stripped; drop the others (as etcd's)."""
        if resp.keys:
            cut, prefix = self._cut, self.prefix
            inside = [k[cut:] for k in resp.keys if k.startswith(prefix)]
            del resp.keys[:]
            resp.keys.extend(inside)
        return resp


class NamespacedAsyncClient(AsyncClient):
    """An ``AsyncClient`` whose keys live under ``prefix``; the same methods, over ``client``.

    It is an ``AsyncClient`` (so code taking one takes the view): the calls with keys
    are rewritten, and the others are ``client``'s, on its connection (an attribute the
    view lacks is the client's). ``lease_time_to_live(keys=True)`` lists the lease's
    keys inside the namespace, prefix stripped, and leaves out its keys outside (as
    etcd's ``namespace.NewLease`` does): a lease shared across namespaces shows each
    view its own keys only.
    """

    def __init__(
        self, client: AsyncClient, prefix: Key
    ) -> None:  # no super().__init__: no connection of its own
        self.client = client
        self.namespace = Namespace(prefix)

    def __getattr__(self, name: str) -> Any:
        # Only for attributes the view does not have: the client's state (its connection, ...).
        if name in ("client", "namespace"):
            raise AttributeError(name)
        return getattr(self.client, name)

    def __repr__(self) -> str:
        return f"NamespacedAsyncClient({self.client!r}, {self.namespace.prefix!r})"

    async def __aenter__(self) -> NamespacedAsyncClient:
        return self

    async def close(self) -> None:
        """Nothing: the view does not own its client (close that)."""

    # -- KV -------------------------------------------------------------------------------------------

    async def get(
        self,
        key: Key,
        *,
        range_end: Key | None = None,
        prefix: bool = False,
        from_key: bool = False,
        **options: Any,
    ) -> pb.RangeResponse:
        k, end = self.namespace.range(key, range_end, prefix, from_key)
        return self.namespace.strip_range(await self.client.get(k, range_end=end, **options))

    async def get_prefix(self, prefix: Key, **options: Any) -> pb.RangeResponse:
        return await self.get(prefix, prefix=True, **options)

    async def get_range(self, start: Key, end: Key, **options: Any) -> pb.RangeResponse:
        return await self.get(start, range_end=end, **options)

    async def put(self, key: Key, value: Key, **options: Any) -> pb.PutResponse:
        if not key:
            raise _empty_key()
        return self.namespace.strip_put(await self.client.put(self.namespace.key(key), value, **options))

    async def delete(
        self,
        key: Key,
        *,
        range_end: Key | None = None,
        prefix: bool = False,
        from_key: bool = False,
        **options: Any,
    ) -> pb.DeleteRangeResponse:
        k, end = self.namespace.range(key, range_end, prefix, from_key)
        return self.namespace.strip_delete(await self.client.delete(k, range_end=end, **options))

    async def delete_prefix(self, prefix: Key, *, prev_kv: bool = False) -> pb.DeleteRangeResponse:
        return await self.delete(prefix, prefix=True, prev_kv=prev_kv)

    async def txn(
        self,
        compare: Sequence[pb.Compare] = (),
        success: Sequence[pb.RequestOp] = (),
        failure: Sequence[pb.RequestOp] = (),
        **options: Any,
    ) -> pb.TxnResponse:
        resp = await self.client.txn(*self.namespace.txn(compare, success, failure), **options)
        return self.namespace.strip_txn(resp)

    # -- watch ----------------------------------------------------------------------------------------------

    def watch(
        self,
        key: Key,
        *,
        range_end: Key | None = None,
        prefix: bool = False,
        from_key: bool = False,
        **options: Any,
    ) -> NamespacedWatch:
        """As ``AsyncClient.watch``; an empty key alone watches the key equal to the prefix (as etcd's)."""
        k, end = self.namespace.interval(*key_range(key, range_end, prefix, from_key))
        return NamespacedWatch(self.client.watch(k, range_end=end, **options), self.namespace)

    def watch_prefix(self, prefix: Key, **options: Any) -> NamespacedWatch:
        return self.watch(prefix, prefix=True, **options)

    # -- leases -------------------------------------------------------------------------------------------

    async def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> pb.LeaseTimeToLiveResponse:
        """As ``AsyncClient``'s; ``keys``: only the lease's keys in the namespace, prefix stripped."""
        resp = await self.client.lease_time_to_live(lease_id, keys=keys)
        return self.namespace.strip_lease_keys(resp)

    # -- the Lock and Election services: names are key prefixes, so they live in the namespace too --------

    async def lock(self, name: Key, lease: int = 0) -> lpb.LockResponse:
        resp = await self.client.lock(self.namespace.key(name), lease)
        resp.key = resp.key[len(self.namespace.prefix) :]
        return resp

    async def unlock(self, key: Key) -> lpb.UnlockResponse:
        return await self.client.unlock(self.namespace.key(key))

    def _leader_in(self, leader: epb.LeaderKey) -> epb.LeaderKey:
        ns = self.namespace
        return epb.LeaderKey(
            name=ns.key(leader.name), key=ns.key(leader.key), rev=leader.rev, lease=leader.lease
        )

    def _leader_out(self, leader: epb.LeaderKey) -> None:
        cut = len(self.namespace.prefix)
        leader.name, leader.key = leader.name[cut:], leader.key[cut:]

    async def campaign(self, name: Key, value: Key, lease: int) -> epb.CampaignResponse:
        resp = await self.client.campaign(self.namespace.key(name), value, lease)
        self._leader_out(resp.leader)
        return resp

    async def proclaim(self, leader: epb.LeaderKey, value: Key) -> epb.ProclaimResponse:
        return await self.client.proclaim(self._leader_in(leader), value)

    async def resign(self, leader: epb.LeaderKey) -> epb.ResignResponse:
        return await self.client.resign(self._leader_in(leader))

    async def election_leader(self, name: Key) -> epb.LeaderResponse:
        resp = await self.client.election_leader(self.namespace.key(name))
        self.namespace.strip_kvs([resp.kv])
        return resp


class NamespacedWatch(Watch):
    """A client's ``Watch`` whose events' keys are stripped of the namespace's prefix."""

    def __init__(self, watch: Watch, namespace: Namespace) -> None:  # no super().__init__: it wraps
        self.inner = watch
        self._namespace = namespace

    def __aiter__(self) -> AsyncIterator[pb.WatchResponse]:
        return self._stripped()

    async def _stripped(self) -> AsyncIterator[pb.WatchResponse]:
        strip = self._namespace.strip_watch
        async for resp in self.inner:
            yield strip(resp)

    async def __aenter__(self) -> NamespacedWatch:
        await self.inner.created()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.cancel()

    @property
    def next_revision(self) -> int:
        return self.inner.next_revision

    @next_revision.setter
    def next_revision(self, revision: int) -> None:
        self.inner.next_revision = revision

    @property
    def watch_id(self) -> int:
        return self.inner.watch_id

    @watch_id.setter
    def watch_id(self, watch_id: int) -> None:
        self.inner.watch_id = watch_id

    async def created(self) -> None:
        await self.inner.created()

    async def request_progress(self) -> None:
        await self.inner.request_progress()

    async def cancel(self) -> None:
        await self.inner.cancel()


class NamespacedClient(Client):
    """The blocking ``Client``'s namespaced view, over ``client`` (see ``NamespacedAsyncClient``).

    Its ``aio`` is the namespaced view of ``client.aio``; the calls run on ``client``'s
    event loop thread. Closing the view does nothing (close ``client``).
    """

    def __init__(self, client: Client, prefix: Key) -> None:  # no super().__init__: it shares client's loop
        self.client = client
        self._portal = client._portal
        self.aio = NamespacedAsyncClient(client.aio, prefix)

    def __getattr__(self, name: str) -> Any:
        if name in ("client", "_portal", "aio"):
            raise AttributeError(name)
        return getattr(self.client, name)

    def __repr__(self) -> str:
        return f"NamespacedClient({self.client!r}, {self.namespace.prefix!r})"

    @property
    def namespace(self) -> Namespace:
        assert isinstance(self.aio, NamespacedAsyncClient)
        return self.aio.namespace

    def __enter__(self) -> NamespacedClient:
        return self

    def close(self) -> None:
        """Nothing: the view does not own its client (close that)."""
