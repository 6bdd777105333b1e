"""The JSON gateway's URL paths: which gRPC method each one calls, as etcd's grpc-gateway maps them.

The table is etcd 3.4's (the ``google.api.http`` options of its protos), plus
the paths etcd 3.5 added for methods synod's protos already have
(``/v3/auth/status``, ``/v3/maintenance/downgrade``) and ``/v3/maintenance/hashkv``
for HashKV: in etcd 3.4 HashKV is bound to ``/v3/maintenance/hash`` too, where
Hash, registered first, always answers (fixed in etcd 3.5.10 the same way).

Prefixes: etcd 3.4 serves ``/v3/`` and rewrites ``/v3beta/`` to it; synod
rewrites ``/v3alpha/`` as well (etcd 3.2's prefix, the one of the 3.2 release
examples), where etcd 3.4 answers 404.
"""

from __future__ import annotations

from synod.server.api.methods import BY_PATH, Method

_PATHS: dict[str, str] = {
    "kv/range": "etcdserverpb.KV/Range",
    "kv/put": "etcdserverpb.KV/Put",
    "kv/deleterange": "etcdserverpb.KV/DeleteRange",
    "kv/txn": "etcdserverpb.KV/Txn",
    "kv/compaction": "etcdserverpb.KV/Compact",
    "watch": "etcdserverpb.Watch/Watch",
    "lease/grant": "etcdserverpb.Lease/LeaseGrant",
    "lease/revoke": "etcdserverpb.Lease/LeaseRevoke",
    "kv/lease/revoke": "etcdserverpb.Lease/LeaseRevoke",
    "lease/keepalive": "etcdserverpb.Lease/LeaseKeepAlive",
    "lease/timetolive": "etcdserverpb.Lease/LeaseTimeToLive",
    "kv/lease/timetolive": "etcdserverpb.Lease/LeaseTimeToLive",
    "lease/leases": "etcdserverpb.Lease/LeaseLeases",
    "kv/lease/leases": "etcdserverpb.Lease/LeaseLeases",
    "cluster/member/add": "etcdserverpb.Cluster/MemberAdd",
    "cluster/member/remove": "etcdserverpb.Cluster/MemberRemove",
    "cluster/member/update": "etcdserverpb.Cluster/MemberUpdate",
    "cluster/member/list": "etcdserverpb.Cluster/MemberList",
    "cluster/member/promote": "etcdserverpb.Cluster/MemberPromote",
    "maintenance/alarm": "etcdserverpb.Maintenance/Alarm",
    "maintenance/status": "etcdserverpb.Maintenance/Status",
    "maintenance/defragment": "etcdserverpb.Maintenance/Defragment",
    "maintenance/hash": "etcdserverpb.Maintenance/Hash",
    "maintenance/hashkv": "etcdserverpb.Maintenance/HashKV",
    "maintenance/snapshot": "etcdserverpb.Maintenance/Snapshot",
    "maintenance/transfer-leadership": "etcdserverpb.Maintenance/MoveLeader",
    "maintenance/downgrade": "etcdserverpb.Maintenance/Downgrade",
    "auth/enable": "etcdserverpb.Auth/AuthEnable",
    "auth/disable": "etcdserverpb.Auth/AuthDisable",
    "auth/status": "etcdserverpb.Auth/AuthStatus",
    "auth/authenticate": "etcdserverpb.Auth/Authenticate",
    "auth/user/add": "etcdserverpb.Auth/UserAdd",
    "auth/user/get": "etcdserverpb.Auth/UserGet",
    "auth/user/list": "etcdserverpb.Auth/UserList",
    "auth/user/delete": "etcdserverpb.Auth/UserDelete",
    "auth/user/changepw": "etcdserverpb.Auth/UserChangePassword",
    "auth/user/grant": "etcdserverpb.Auth/UserGrantRole",
    "auth/user/revoke": "etcdserverpb.Auth/UserRevokeRole",
    "auth/role/add": "etcdserverpb.Auth/RoleAdd",
    "auth/role/get": "etcdserverpb.Auth/RoleGet",
    "auth/role/list": "etcdserverpb.Auth/RoleList",
    "auth/role/delete": "etcdserverpb.Auth/RoleDelete",
    "auth/role/grant": "etcdserverpb.Auth/RoleGrantPermission",
    "auth/role/revoke": "etcdserverpb.Auth/RoleRevokePermission",
    "lock/lock": "v3lockpb.Lock/Lock",
    "lock/unlock": "v3lockpb.Lock/Unlock",
    "election/campaign": "v3electionpb.Election/Campaign",
    "election/proclaim": "v3electionpb.Election/Proclaim",
    "election/leader": "v3electionpb.Election/Leader",
    "election/observe": "v3electionpb.Election/Observe",
    "election/resign": "v3electionpb.Election/Resign",
}

PREFIXES = ("/v3/", "/v3beta/", "/v3alpha/")

GATEWAY: dict[str, Method] = {
    prefix + path: BY_PATH["/" + method] for prefix in PREFIXES for path, method in _PATHS.items()
}


def method_for(path: str) -> Method | None:
    """The method a request path calls (the query string ignored, as grpc-gateway ignores it for POST)."""
    return GATEWAY.get(path.partition("?")[0])
