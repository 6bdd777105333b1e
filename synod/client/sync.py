"""``Client``: the blocking API, the same shape as ``AsyncClient``'s, for threads and scripts.

A ``Client`` owns an ``AsyncClient`` on an event loop of its own, run by a daemon
thread (the *portal*); each blocking call hands its coroutine to that loop and
waits for the answer. So there is one implementation of every behaviour
(retries, failover, watch resumption, keep-alives), and a ``Client`` may be
shared by any number of threads. A watch is a blocking iterator; a keep-alive's
``lost`` is a ``threading.Event``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.v3electionpb import v3election_pb2 as epb
from synod.api.v3lockpb import v3lock_pb2 as lpb
from synod.client.aio import AsyncClient
from synod.client.errors import ClientClosedError, EtcdError
from synod.client.keys import Key
from synod.client.lease import KeepAlive
from synod.client.watch import Watch

T = TypeVar("T")


class Portal:
    """An event loop in a daemon thread, and a blocking way to run coroutines on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="synod-client", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a blocking synod.Client call from its own event loop (use AsyncClient there)")
        if self.loop.is_closed():
            coro.close()
            raise ClientClosedError()
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Client:
    """The blocking client; its methods and arguments are ``AsyncClient``'s (see there)."""

    def __init__(self, endpoints: Sequence[str] | str = ("127.0.0.1:2379",), **options: Any) -> None:
        self._portal = Portal()
        self.aio: AsyncClient = self._portal.run(_make(endpoints, options))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._portal.loop.is_closed():
            self._portal.run(self.aio.close())
            self._portal.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._portal.run(coro)

    # -- KV -------------------------------------------------------------------------------------------

    def get(self, key: Key, **options: Any) -> pb.RangeResponse:
        return self._run(self.aio.get(key, **options))

    def get_prefix(self, prefix: Key, **options: Any) -> pb.RangeResponse:
        return self._run(self.aio.get_prefix(prefix, **options))

    def get_range(self, start: Key, end: Key, **options: Any) -> pb.RangeResponse:
        return self._run(self.aio.get_range(start, end, **options))

    def put(self, key: Key, value: Key, **options: Any) -> pb.PutResponse:
        return self._run(self.aio.put(key, value, **options))

    def delete(self, key: Key, **options: Any) -> pb.DeleteRangeResponse:
        return self._run(self.aio.delete(key, **options))

    def delete_prefix(self, prefix: Key, *, prev_kv: bool = False) -> pb.DeleteRangeResponse:
        return self._run(self.aio.delete_prefix(prefix, prev_kv=prev_kv))

    def txn(
        self,
        compare: Sequence[pb.Compare] = (),
        success: Sequence[pb.RequestOp] = (),
        failure: Sequence[pb.RequestOp] = (),
        **options: Any,
    ) -> pb.TxnResponse:
        return self._run(self.aio.txn(compare, success, failure, **options))

    def compact(self, revision: int, *, physical: bool = False) -> pb.CompactionResponse:
        return self._run(self.aio.compact(revision, physical=physical))

    # -- watch ----------------------------------------------------------------------------------------------

    def watch(self, key: Key, **options: Any) -> SyncWatch:
        """Returns once the server created the watch (as clientv3's): later changes are its events."""
        return SyncWatch(self._portal, self.aio.watch(key, **options))

    def watch_prefix(self, prefix: Key, **options: Any) -> SyncWatch:
        return self.watch(prefix, prefix=True, **options)

    # -- leases -------------------------------------------------------------------------------------------

    def lease_grant(self, ttl: int, *, lease_id: int = 0) -> pb.LeaseGrantResponse:
        return self._run(self.aio.lease_grant(ttl, lease_id=lease_id))

    def lease_revoke(self, lease_id: int) -> pb.LeaseRevokeResponse:
        return self._run(self.aio.lease_revoke(lease_id))

    def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> pb.LeaseTimeToLiveResponse:
        return self._run(self.aio.lease_time_to_live(lease_id, keys=keys))

    def leases(self) -> pb.LeaseLeasesResponse:
        return self._run(self.aio.leases())

    def lease_keep_alive_once(self, lease_id: int) -> pb.LeaseKeepAliveResponse:
        return self._run(self.aio.lease_keep_alive_once(lease_id))

    def keep_alive(
        self, lease_id: int, ttl: int, *, on_lost: Callable[[EtcdError], None] | None = None
    ) -> SyncKeepAlive:
        """Renew in the background; ``on_lost`` runs on the client's thread: keep it short."""
        return SyncKeepAlive(self._portal, lease_id, ttl, self.aio, on_lost)

    # -- cluster and maintenance ---------------------------------------------------------------------------

    def member_list(self, *, linearizable: bool = False) -> pb.MemberListResponse:
        return self._run(self.aio.member_list(linearizable=linearizable))

    def member_add(self, peer_urls: Sequence[str], *, learner: bool = False) -> pb.MemberAddResponse:
        return self._run(self.aio.member_add(peer_urls, learner=learner))

    def member_remove(self, member_id: int) -> pb.MemberRemoveResponse:
        return self._run(self.aio.member_remove(member_id))

    def member_update(self, member_id: int, peer_urls: Sequence[str]) -> pb.MemberUpdateResponse:
        return self._run(self.aio.member_update(member_id, peer_urls))

    def member_promote(self, member_id: int) -> pb.MemberPromoteResponse:
        return self._run(self.aio.member_promote(member_id))

    def status(self, endpoint: int | None = None) -> pb.StatusResponse:
        return self._run(self.aio.status(endpoint))

    def hash_kv(self, revision: int = 0, endpoint: int | None = None) -> pb.HashKVResponse:
        return self._run(self.aio.hash_kv(revision, endpoint))

    def move_leader(self, target_id: int) -> pb.MoveLeaderResponse:
        return self._run(self.aio.move_leader(target_id))

    def alarms(self) -> pb.AlarmResponse:
        return self._run(self.aio.alarms())

    # -- auth ----------------------------------------------------------------------------------------

    def auth_enable(self) -> pb.AuthEnableResponse:
        return self._run(self.aio.auth_enable())

    def auth_disable(self) -> pb.AuthDisableResponse:
        return self._run(self.aio.auth_disable())

    def user_add(self, name: str, password: str = "", *, no_password: bool = False) -> pb.AuthUserAddResponse:
        return self._run(self.aio.user_add(name, password, no_password=no_password))

    def user_delete(self, name: str) -> pb.AuthUserDeleteResponse:
        return self._run(self.aio.user_delete(name))

    def user_change_password(self, name: str, password: str) -> pb.AuthUserChangePasswordResponse:
        return self._run(self.aio.user_change_password(name, password))

    def user_grant_role(self, user: str, role: str) -> pb.AuthUserGrantRoleResponse:
        return self._run(self.aio.user_grant_role(user, role))

    def user_revoke_role(self, name: str, role: str) -> pb.AuthUserRevokeRoleResponse:
        return self._run(self.aio.user_revoke_role(name, role))

    def user_get(self, name: str) -> pb.AuthUserGetResponse:
        return self._run(self.aio.user_get(name))

    def user_list(self) -> pb.AuthUserListResponse:
        return self._run(self.aio.user_list())

    def role_add(self, name: str) -> pb.AuthRoleAddResponse:
        return self._run(self.aio.role_add(name))

    def role_delete(self, role: str) -> pb.AuthRoleDeleteResponse:
        return self._run(self.aio.role_delete(role))

    def role_get(self, role: str) -> pb.AuthRoleGetResponse:
        return self._run(self.aio.role_get(role))

    def role_list(self) -> pb.AuthRoleListResponse:
        return self._run(self.aio.role_list())

    def role_grant_permission(
        self, role: str, key: Key, range_end: Key = b"", *, perm: str = "readwrite", prefix: bool = False
    ) -> pb.AuthRoleGrantPermissionResponse:
        return self._run(self.aio.role_grant_permission(role, key, range_end, perm=perm, prefix=prefix))

    def role_revoke_permission(
        self, role: str, key: Key, range_end: Key = b"", *, prefix: bool = False
    ) -> pb.AuthRoleRevokePermissionResponse:
        return self._run(self.aio.role_revoke_permission(role, key, range_end, prefix=prefix))

    def lock(self, name: Key, lease: int = 0) -> lpb.LockResponse:
        return self._run(self.aio.lock(name, lease))

    def unlock(self, key: Key) -> lpb.UnlockResponse:
        return self._run(self.aio.unlock(key))

    def campaign(self, name: Key, value: Key, lease: int) -> epb.CampaignResponse:
        return self._run(self.aio.campaign(name, value, lease))

    def proclaim(self, leader: epb.LeaderKey, value: Key) -> epb.ProclaimResponse:
        return self._run(self.aio.proclaim(leader, value))

    def resign(self, leader: epb.LeaderKey) -> epb.ResignResponse:
        return self._run(self.aio.resign(leader))

    def election_leader(self, name: Key) -> epb.LeaderResponse:
        return self._run(self.aio.election_leader(name))

    def authenticate(self) -> None:
        self._run(self.aio.authenticate())


class SyncWatch:
    """A blocking iterator over a ``Watch``'s responses; ``cancel()`` from any thread ends it."""

    def __init__(self, portal: Portal, watch: Watch) -> None:
        self._portal = portal
        self.watch = watch
        self._responses: AsyncIterator[pb.WatchResponse] = aiter(watch)
        portal.run(watch.created())

    def __iter__(self) -> Iterator[pb.WatchResponse]:
        return self

    def __next__(self) -> pb.WatchResponse:
        try:
            return self._portal.run(_next(self._responses))
        except StopAsyncIteration:
            raise StopIteration from None

    def __enter__(self) -> SyncWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    @property
    def next_revision(self) -> int:
        return self.watch.next_revision

    def request_progress(self) -> None:
        self._portal.run(self.watch.request_progress())

    def cancel(self) -> None:
        if not self._portal.loop.is_closed():
            self._portal.run(self.watch.cancel())


class SyncKeepAlive:
    def __init__(
        self,
        portal: Portal,
        lease_id: int,
        ttl: int,
        client: AsyncClient,
        on_lost: Callable[[EtcdError], None] | None,
    ) -> None:
        self._portal = portal
        self.lost = threading.Event()
        self.error: EtcdError | None = None

        def lost(error: EtcdError) -> None:
            self.error = error
            self.lost.set()
            if on_lost is not None:
                on_lost(error)

        async def start() -> KeepAlive:
            return client.keep_alive(lease_id, ttl, on_lost=lost)

        self.keepalive = portal.run(start())

    @property
    def ttl(self) -> int:
        return self.keepalive.ttl

    def wait_lost(self, timeout: float | None = None) -> EtcdError | None:
        self.lost.wait(timeout)
        return self.error

    def close(self) -> None:
        if not self._portal.loop.is_closed():
            self._portal.run(self.keepalive.close())

    def __enter__(self) -> SyncKeepAlive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _make(endpoints: Sequence[str] | str, options: dict[str, Any]) -> AsyncClient:
    return AsyncClient(endpoints, **options)


async def _next(responses: AsyncIterator[pb.WatchResponse]) -> pb.WatchResponse:
    return await anext(responses)
