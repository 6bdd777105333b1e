"""The Auth service: etcd's users, roles, permissions and tokens (``synod.auth``).

Every call but Authenticate goes through the log, as in etcd 3.4 (UserGet and
the lists too), so its permission check and its answer come from the state the
entry applies to. Authenticate checks the password on this member first (in
a thread: bcrypt is slow by design), then logs only the token's random part.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from synod import rpctypes
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb.raft_internal_pb2 import InternalRaftRequest
from synod.rpctypes import RPCError
from synod.server.api.header import Header
from synod.server.api.methods import UnaryHandler
from synod.server.etcdserver import EtcdServer

# Each logged Auth method and the InternalRaftRequest field that carries its request.
_LOGGED = {
    "AuthEnable": "auth_enable",
    "AuthDisable": "auth_disable",
    "AuthStatus": "auth_status",
    "UserAdd": "auth_user_add",
    "UserGet": "auth_user_get",
    "UserList": "auth_user_list",
    "UserDelete": "auth_user_delete",
    "UserChangePassword": "auth_user_change_password",
    "UserGrantRole": "auth_user_grant_role",
    "UserRevokeRole": "auth_user_revoke_role",
    "RoleAdd": "auth_role_add",
    "RoleGet": "auth_role_get",
    "RoleList": "auth_role_list",
    "RoleDelete": "auth_role_delete",
    "RoleGrantPermission": "auth_role_grant_permission",
    "RoleRevokePermission": "auth_role_revoke_permission",
}


class AuthService:
    def __init__(self, server: EtcdServer, header: Header) -> None:
        self._server = server
        self._header = header

    def handlers(self) -> dict[str, UnaryHandler]:
        table: dict[str, UnaryHandler] = {
            f"/etcdserverpb.Auth/{name}": self._logged(field) for name, field in _LOGGED.items()
        }
        table["/etcdserverpb.Auth/Authenticate"] = self.authenticate
        table["/etcdserverpb.Auth/RoleGrantPermission"] = self.role_grant_permission
        return table

    def _logged(self, field: str) -> Callable[[Any], Awaitable[Any]]:
        async def call(request: Any) -> Any:
            irr = InternalRaftRequest()
            getattr(irr, field).CopyFrom(request)
            resp = await self._server.auth_request(irr)
            self._header.fill(resp.header)
            return resp

        return call

    async def authenticate(self, request: pb.AuthenticateRequest) -> pb.AuthenticateResponse:
        resp = await self._server.authenticate(request)
        self._header.fill(resp.header)
        return resp

    async def role_grant_permission(
        self, request: pb.AuthRoleGrantPermissionRequest
    ) -> pb.AuthRoleGrantPermissionResponse:
        if not request.HasField("perm"):
            raise RPCError(rpctypes.PERMISSION_NOT_GIVEN)  # etcd 3.4 crashes on this request
        resp: pb.AuthRoleGrantPermissionResponse = await self._logged("auth_role_grant_permission")(request)
        return resp
