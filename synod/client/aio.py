"""``AsyncClient``: etcd's v3 API for asyncio, over grpcio's asyncio channels.

The calls answer etcd's protobuf responses (``RangeResponse``, ``PutResponse``,
...: typed by their stubs) and raise the exceptions of ``synod.client.errors``.
Keys and values may be ``str`` (UTF-8) or ``bytes``. Which calls are retried
after a failure, and how endpoints fail over, is ``connection.py``'s.

    async with AsyncClient(["127.0.0.1:2379"]) as client:
        await client.put("greeting", "hello")
        resp = await client.get("greeting")
        resp.kvs[0].value == b"hello"
"""

from __future__ import annotations

import random
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.protobuf.message import Message

from synod.api.authpb.auth_pb2 import Permission
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.v3electionpb import v3election_pb2 as epb
from synod.api.v3lockpb import v3lock_pb2 as lpb
from synod.client import txn as t
from synod.client.connection import DEFAULT_MAX_MESSAGE_BYTES, TLS, Connection, Options
from synod.client.errors import EtcdError
from synod.client.keys import Key, key_range, prefix_end, to_bytes
from synod.client.lease import KeepAlive, keep_alive_once
from synod.client.watch import Watch, create_request

_KV = "/etcdserverpb.KV/"
_LEASE = "/etcdserverpb.Lease/"
_CLUSTER = "/etcdserverpb.Cluster/"
_MAINT = "/etcdserverpb.Maintenance/"
_AUTH = "/etcdserverpb.Auth/"
M = TypeVar("M", bound=Message)
_PERM_TYPES = {"read": Permission.READ, "write": Permission.WRITE, "readwrite": Permission.READWRITE}


def _perm_range(key: Key, range_end: Key, prefix: bool) -> tuple[bytes, bytes]:
    begin = to_bytes(key)
    if prefix:
        return begin, prefix_end(begin)
    return begin, to_bytes(range_end)


_LOCK = "/v3lockpb.Lock/"
_ELECTION = "/v3electionpb.Election/"

SortOrder = int  # pb.RangeRequest.NONE / ASCEND / DESCEND
SortTarget = int  # pb.RangeRequest.KEY / VERSION / CREATE / MOD / VALUE


class AsyncClient:
    def __init__(
        self,
        endpoints: Sequence[str] | str = ("127.0.0.1:2379",),
        *,
        timeout: float | None = 5.0,
        user: str | None = None,
        password: str | None = None,
        tls: TLS | None = None,
        keepalive_time: float | None = None,
        keepalive_timeout: float = 20.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        rng: random.Random | None = None,
        channel_factory: Callable[[str, bool], Any] | None = None,
    ) -> None:
        """``timeout``: the deadline of each request, retries included (None: none)."""
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        options = Options(timeout, keepalive_time, keepalive_timeout, max_message_bytes)
        self.conn = Connection(endpoints, options, tls, user, password, rng, channel_factory)
        self._keepalives: weakref.WeakSet[KeepAlive] = weakref.WeakSet()  # told when the client closes

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.conn.close()
        for keepalive in list(self._keepalives):
            await keepalive.client_closed()

    # -- KV -------------------------------------------------------------------------------------------

    async def get(
        self,
        key: Key,
        *,
        range_end: Key | None = None,
        prefix: bool = False,
        from_key: bool = False,
        revision: int = 0,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        limit: int = 0,
        sort_order: SortOrder = pb.RangeRequest.NONE,
        sort_target: SortTarget = pb.RangeRequest.KEY,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
        timeout: float | object | None = ...,
    ) -> pb.RangeResponse:
        """A key or a range (``range_end``, ``prefix``, ``from_key``); linearizable unless serializable."""
        k, end = key_range(key, range_end, prefix, from_key)
        r = pb.RangeRequest(
            key=k, range_end=end, revision=revision,
            serializable=serializable, keys_only=keys_only, count_only=count_only, limit=limit,
            sort_order=sort_order, sort_target=sort_target,  # type: ignore[arg-type]
            min_mod_revision=min_mod_revision, max_mod_revision=max_mod_revision,
            min_create_revision=min_create_revision, max_create_revision=max_create_revision,
        )  # fmt: skip
        return await self.conn.call(_KV + "Range", r, pb.RangeResponse, repeatable=True, timeout=timeout)

    async def get_prefix(self, prefix: Key, **options: object) -> pb.RangeResponse:
        """Every key starting with ``prefix`` (every key, for an empty prefix)."""
        return await self.get(prefix, prefix=True, **options)  # type: ignore[arg-type]

    async def get_range(self, start: Key, end: Key, **options: object) -> pb.RangeResponse:
        """The keys in ``[start, end)``."""
        return await self.get(start, range_end=end, **options)  # type: ignore[arg-type]

    async def put(
        self,
        key: Key,
        value: Key,
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
        timeout: float | object | None = ...,
    ) -> pb.PutResponse:
        r = t.put_request(key, value, lease, prev_kv, ignore_value, ignore_lease)
        return await self.conn.call(_KV + "Put", r, pb.PutResponse, repeatable=False, timeout=timeout)

    async def delete(
        self,
        key: Key,
        *,
        range_end: Key | None = None,
        prefix: bool = False,
        from_key: bool = False,
        prev_kv: bool = False,
        timeout: float | object | None = ...,
    ) -> pb.DeleteRangeResponse:
        k, end = key_range(key, range_end, prefix, from_key)
        r = pb.DeleteRangeRequest(key=k, range_end=end, prev_kv=prev_kv)
        return await self.conn.call(
            _KV + "DeleteRange", r, pb.DeleteRangeResponse, repeatable=False, timeout=timeout
        )

    async def delete_prefix(self, prefix: Key, *, prev_kv: bool = False) -> pb.DeleteRangeResponse:
        return await self.delete(prefix, prefix=True, prev_kv=prev_kv)

    async def txn(
        self,
        compare: Sequence[pb.Compare] = (),
        success: Sequence[pb.RequestOp] = (),
        failure: Sequence[pb.RequestOp] = (),
        *,
        timeout: float | object | None = ...,
    ) -> pb.TxnResponse:
        """If every compare holds, the success operations, else the failure ones (``synod.client.txn``)."""
        r = pb.TxnRequest(compare=compare, success=success, failure=failure)
        return await self.conn.call(_KV + "Txn", r, pb.TxnResponse, repeatable=False, timeout=timeout)

    async def compact(self, revision: int, *, physical: bool = False) -> pb.CompactionResponse:
        r = pb.CompactionRequest(revision=revision, physical=physical)
        return await self.conn.call(_KV + "Compact", r, pb.CompactionResponse, repeatable=False)

    # -- watch ----------------------------------------------------------------------------------------------

    def watch(
        self,
        key: Key,
        *,
        range_end: Key | None = None,
        prefix: bool = False,
        from_key: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
        no_put: bool = False,
        no_delete: bool = False,
    ) -> Watch:
        """Events on a key or range from ``start_revision`` (0: from now on); see ``watch.py``.

        The stream opens on the first iteration; ``await watch.created()`` (or ``async with``)
        opens it now, so that "now" is before any change the caller makes next.
        """
        filters = [pb.WatchCreateRequest.NOPUT] if no_put else []
        if no_delete:
            filters.append(pb.WatchCreateRequest.NODELETE)
        request = create_request(
            *key_range(key, range_end, prefix, from_key), start_revision, prev_kv, progress_notify, filters
        )
        return Watch(self.conn, request)

    def watch_prefix(self, prefix: Key, **options: object) -> Watch:
        return self.watch(prefix, prefix=True, **options)  # type: ignore[arg-type]

    # -- leases -------------------------------------------------------------------------------------------

    async def lease_grant(self, ttl: int, *, lease_id: int = 0) -> pb.LeaseGrantResponse:
        r = pb.LeaseGrantRequest(TTL=ttl, ID=lease_id)
        return await self.conn.call(_LEASE + "LeaseGrant", r, pb.LeaseGrantResponse, repeatable=True)

    async def lease_revoke(self, lease_id: int) -> pb.LeaseRevokeResponse:
        r = pb.LeaseRevokeRequest(ID=lease_id)
        return await self.conn.call(_LEASE + "LeaseRevoke", r, pb.LeaseRevokeResponse, repeatable=True)

    async def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> pb.LeaseTimeToLiveResponse:
        r = pb.LeaseTimeToLiveRequest(ID=lease_id, keys=keys)
        return await self.conn.call(
            _LEASE + "LeaseTimeToLive", r, pb.LeaseTimeToLiveResponse, repeatable=True
        )

    async def leases(self) -> pb.LeaseLeasesResponse:
        r = pb.LeaseLeasesRequest()
        return await self.conn.call(_LEASE + "LeaseLeases", r, pb.LeaseLeasesResponse, repeatable=True)

    async def lease_keep_alive_once(self, lease_id: int) -> pb.LeaseKeepAliveResponse:
        """One renewal; a lease that is gone raises ``LeaseNotFoundError`` (as clientv3's KeepAliveOnce)."""
        return await keep_alive_once(self.conn, lease_id)

    def keep_alive(
        self,
        lease_id: int,
        ttl: int,
        *,
        on_lost: Callable[[EtcdError], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> KeepAlive:
        """Renew ``lease_id`` (granted with ``ttl``) in the background until closed or lost."""
        keepalive = KeepAlive(self.conn, lease_id, ttl, on_lost, clock)
        self._keepalives.add(keepalive)
        return keepalive

    # -- cluster -------------------------------------------------------------------------------------------

    async def member_list(self, *, linearizable: bool = False) -> pb.MemberListResponse:
        r = pb.MemberListRequest(linearizable=linearizable)
        return await self.conn.call(_CLUSTER + "MemberList", r, pb.MemberListResponse, repeatable=True)

    async def member_add(self, peer_urls: Sequence[str], *, learner: bool = False) -> pb.MemberAddResponse:
        r = pb.MemberAddRequest(peerURLs=peer_urls, isLearner=learner)
        return await self.conn.call(_CLUSTER + "MemberAdd", r, pb.MemberAddResponse, repeatable=False)

    async def member_remove(self, member_id: int) -> pb.MemberRemoveResponse:
        r = pb.MemberRemoveRequest(ID=member_id)
        return await self.conn.call(_CLUSTER + "MemberRemove", r, pb.MemberRemoveResponse, repeatable=False)

    async def member_update(self, member_id: int, peer_urls: Sequence[str]) -> pb.MemberUpdateResponse:
        r = pb.MemberUpdateRequest(ID=member_id, peerURLs=peer_urls)
        return await self.conn.call(_CLUSTER + "MemberUpdate", r, pb.MemberUpdateResponse, repeatable=False)

    async def member_promote(self, member_id: int) -> pb.MemberPromoteResponse:
        r = pb.MemberPromoteRequest(ID=member_id)
        return await self.conn.call(_CLUSTER + "MemberPromote", r, pb.MemberPromoteResponse, repeatable=False)

    # -- maintenance --------------------------------------------------------------------------------------

    async def status(self, endpoint: int | None = None) -> pb.StatusResponse:
        """The pinned member's status (or, with ``endpoint``, that endpoint's, without failover)."""
        r = pb.StatusRequest()
        if endpoint is None:
            return await self.conn.call(_MAINT + "Status", r, pb.StatusResponse, repeatable=True)
        return await self.conn.call_one(endpoint, _MAINT + "Status", r, pb.StatusResponse)

    async def hash_kv(self, revision: int = 0, endpoint: int | None = None) -> pb.HashKVResponse:
        r = pb.HashKVRequest(revision=revision)
        if endpoint is None:
            return await self.conn.call(_MAINT + "HashKV", r, pb.HashKVResponse, repeatable=True)
        return await self.conn.call_one(endpoint, _MAINT + "HashKV", r, pb.HashKVResponse)

    async def move_leader(self, target_id: int) -> pb.MoveLeaderResponse:
        """Hand leadership to ``target_id``; only the leader can (ask the endpoint of the leader)."""
        r = pb.MoveLeaderRequest(targetID=target_id)
        return await self.conn.call(_MAINT + "MoveLeader", r, pb.MoveLeaderResponse, repeatable=False)

    async def alarms(self) -> pb.AlarmResponse:
        r = pb.AlarmRequest(action=pb.AlarmRequest.GET)
        return await self.conn.call(_MAINT + "Alarm", r, pb.AlarmResponse, repeatable=True)

    # -- auth (clientv3's Auth: users, roles, permissions) ------------------------------------------------

    async def _auth(self, name: str, request: Any, response: type[M], *, repeatable: bool = False) -> M:
        return await self.conn.call(_AUTH + name, request, response, repeatable=repeatable)

    async def auth_enable(self) -> pb.AuthEnableResponse:
        """Turn auth on (needs a user ``root`` with the role ``root``)."""
        return await self._auth("AuthEnable", pb.AuthEnableRequest(), pb.AuthEnableResponse)

    async def auth_disable(self) -> pb.AuthDisableResponse:
        return await self._auth("AuthDisable", pb.AuthDisableRequest(), pb.AuthDisableResponse)

    async def user_add(
        self, name: str, password: str = "", *, no_password: bool = False
    ) -> pb.AuthUserAddResponse:
        r = pb.AuthUserAddRequest(name=name, password=password)
        r.options.no_password = no_password
        return await self._auth("UserAdd", r, pb.AuthUserAddResponse)

    async def user_delete(self, name: str) -> pb.AuthUserDeleteResponse:
        r = pb.AuthUserDeleteRequest(name=name)
        return await self._auth("UserDelete", r, pb.AuthUserDeleteResponse)

    async def user_change_password(self, name: str, password: str) -> pb.AuthUserChangePasswordResponse:
        r = pb.AuthUserChangePasswordRequest(name=name, password=password)
        return await self._auth("UserChangePassword", r, pb.AuthUserChangePasswordResponse)

    async def user_grant_role(self, user: str, role: str) -> pb.AuthUserGrantRoleResponse:
        r = pb.AuthUserGrantRoleRequest(user=user, role=role)
        return await self._auth("UserGrantRole", r, pb.AuthUserGrantRoleResponse)

    async def user_revoke_role(self, name: str, role: str) -> pb.AuthUserRevokeRoleResponse:
        r = pb.AuthUserRevokeRoleRequest(name=name, role=role)
        return await self._auth("UserRevokeRole", r, pb.AuthUserRevokeRoleResponse)

    async def user_get(self, name: str) -> pb.AuthUserGetResponse:
        r = pb.AuthUserGetRequest(name=name)
        return await self._auth("UserGet", r, pb.AuthUserGetResponse, repeatable=True)

    async def user_list(self) -> pb.AuthUserListResponse:
        r = pb.AuthUserListRequest()
        return await self._auth("UserList", r, pb.AuthUserListResponse, repeatable=True)

    async def role_add(self, name: str) -> pb.AuthRoleAddResponse:
        return await self._auth("RoleAdd", pb.AuthRoleAddRequest(name=name), pb.AuthRoleAddResponse)

    async def role_delete(self, role: str) -> pb.AuthRoleDeleteResponse:
        r = pb.AuthRoleDeleteRequest(role=role)
        return await self._auth("RoleDelete", r, pb.AuthRoleDeleteResponse)

    async def role_get(self, role: str) -> pb.AuthRoleGetResponse:
        r = pb.AuthRoleGetRequest(role=role)
        return await self._auth("RoleGet", r, pb.AuthRoleGetResponse, repeatable=True)

    async def role_list(self) -> pb.AuthRoleListResponse:
        r = pb.AuthRoleListRequest()
        return await self._auth("RoleList", r, pb.AuthRoleListResponse, repeatable=True)

    async def role_grant_permission(
        self, role: str, key: Key, range_end: Key = b"", *, perm: str = "readwrite", prefix: bool = False
    ) -> pb.AuthRoleGrantPermissionResponse:
        """Let ``role`` ``perm`` ("read", "write" or "readwrite") the key, the range up to
        ``range_end`` ("\\0": every key from ``key``), or with ``prefix`` every key under it."""
        begin, end = _perm_range(key, range_end, prefix)
        r = pb.AuthRoleGrantPermissionRequest(name=role)
        r.perm.key, r.perm.range_end, r.perm.permType = begin, end, _PERM_TYPES[perm]
        return await self._auth("RoleGrantPermission", r, pb.AuthRoleGrantPermissionResponse)

    async def role_revoke_permission(
        self, role: str, key: Key, range_end: Key = b"", *, prefix: bool = False
    ) -> pb.AuthRoleRevokePermissionResponse:
        begin, end = _perm_range(key, range_end, prefix)
        r = pb.AuthRoleRevokePermissionRequest(role=role, key=begin, range_end=end)
        return await self._auth("RoleRevokePermission", r, pb.AuthRoleRevokePermissionResponse)

    # -- the Lock and Election services (server-side recipes) ---------------------------------------------

    async def lock(self, name: Key, lease: int = 0) -> lpb.LockResponse:
        """Wait for the lock ``name`` through the server's Lock service; held while ``lease`` lives.

        ``lease`` 0: the server grants a 60 s lease nobody renews (the lock lapses with it). The
        answer's ``key`` unlocks it. Not retried (a retried Lock could queue twice).
        """
        r = lpb.LockRequest(name=to_bytes(name), lease=lease)
        return await self.conn.call(_LOCK + "Lock", r, lpb.LockResponse, repeatable=False, timeout=None)

    async def unlock(self, key: Key) -> lpb.UnlockResponse:
        r = lpb.UnlockRequest(key=to_bytes(key))
        return await self.conn.call(_LOCK + "Unlock", r, lpb.UnlockResponse, repeatable=False)

    async def campaign(self, name: Key, value: Key, lease: int) -> epb.CampaignResponse:
        """Wait until leading the election ``name`` (Election service); the answer's ``leader`` is the
        key that proclaims and resigns."""
        r = epb.CampaignRequest(name=to_bytes(name), value=to_bytes(value), lease=lease)
        return await self.conn.call(
            _ELECTION + "Campaign", r, epb.CampaignResponse, repeatable=False, timeout=None
        )

    async def proclaim(self, leader: epb.LeaderKey, value: Key) -> epb.ProclaimResponse:
        r = epb.ProclaimRequest(leader=leader, value=to_bytes(value))
        return await self.conn.call(_ELECTION + "Proclaim", r, epb.ProclaimResponse, repeatable=False)

    async def resign(self, leader: epb.LeaderKey) -> epb.ResignResponse:
        r = epb.ResignRequest(leader=leader)
        return await self.conn.call(_ELECTION + "Resign", r, epb.ResignResponse, repeatable=False)

    async def election_leader(self, name: Key) -> epb.LeaderResponse:
        r = epb.LeaderRequest(name=to_bytes(name))
        return await self.conn.call(_ELECTION + "Leader", r, epb.LeaderResponse, repeatable=True)

    # -- auth --------------------------------------------------------------------------------------------

    async def authenticate(self) -> None:
        """Get a token now (it is otherwise fetched on the first call)."""
        await self.conn.authenticate(None)
