"""Auth in the apply path: etcd's ``authApplierV3``.

``check`` runs before an entry is applied while auth is enabled: the request
header names the user and the auth revision of its token (set by the member
that proposed it), and the request must be allowed to that user at the state
the entry applies to, so every member decides alike. ``apply`` applies the
entries that change or read the auth store.

Beyond etcd 3.4 (docs/compatibility.md): the ops of nested txns are checked as
the outer ones are (etcd 3.4 skips them), and a txn's puts need read
permission for ``prev_kv`` and write permission on their lease's keys, as a
plain put does.
"""

from __future__ import annotations

from typing import Any

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb.raft_internal_pb2 import InternalRaftRequest
from synod.auth.store import AuthInfo, AuthStore
from synod.auth.tokens import TokenProvider
from synod.lease.lessor import Lessor

# Requests only a user with the root role may make.
ADMIN = (
    "auth_enable",
    "auth_disable",
    "auth_user_add",
    "auth_user_delete",
    "auth_user_change_password",
    "auth_user_grant_role",
    "auth_user_revoke_role",
    "auth_role_add",
    "auth_role_grant_permission",
    "auth_role_revoke_permission",
    "auth_role_delete",
    "auth_user_list",
    "auth_role_list",
)
AUTH_REQUESTS = (*ADMIN, "authenticate", "auth_user_get", "auth_role_get", "auth_status")


def auth_request_of(irr: InternalRaftRequest) -> str | None:
    for name in AUTH_REQUESTS:
        if irr.HasField(name):
            return name
    return None


class AuthApplier:
    def __init__(self, store: AuthStore, tokens: TokenProvider, lessor: Lessor) -> None:
        self.store = store
        self.tokens = tokens
        self._lessor = lessor

    # -- permission checks (auth enabled) ---------------------------------------------

    def check(self, irr: InternalRaftRequest) -> None:
        """Raise RPCError if the entry's user may not make its request."""
        info = AuthInfo(irr.header.username, irr.header.auth_revision)
        if irr.HasField("put"):
            self._check_put(info, irr.put)
        elif irr.HasField("delete_range"):
            self._check_delete(info, irr.delete_range)
        elif irr.HasField("txn"):
            self.check_txn(info, irr.txn)
        elif irr.HasField("lease_revoke"):
            self._check_lease_keys(info, irr.lease_revoke.ID)
        elif self._needs_admin(info, irr):
            self.store.check_admin(info)

    def _needs_admin(self, info: AuthInfo, irr: InternalRaftRequest) -> bool:
        """Admin calls; and reading another user, or a role one does not have."""
        which = auth_request_of(irr)
        if which == "auth_user_get":
            return irr.auth_user_get.name != info.username
        if which == "auth_role_get":
            return not self.store.has_role(info.username, irr.auth_role_get.role)
        return which in ADMIN

    def _check_put(self, info: AuthInfo, r: pb.PutRequest) -> None:
        self.store.check_write(info, r.key)
        self._check_lease_keys(info, r.lease)
        if r.prev_kv:
            self.store.check_range(info, r.key)

    def _check_delete(self, info: AuthInfo, r: pb.DeleteRangeRequest) -> None:
        self.store.check_write(info, r.key, r.range_end)
        if r.prev_kv:
            self.store.check_range(info, r.key, r.range_end)

    def _check_lease_keys(self, info: AuthInfo, lease_id: int) -> None:
        """Whoever attaches to or revokes a lease must be allowed to write all its keys."""
        lease = self._lessor.lookup(lease_id) if lease_id else None
        if lease is not None:
            for key in sorted(lease.keys):
                self.store.check_write(info, key)

    def check_txn(self, info: AuthInfo, r: pb.TxnRequest) -> None:
        """Compares need read permission; every op of both branches what it needs (nested txns too)."""
        for c in r.compare:
            self.store.check_range(info, c.key, c.range_end)
        for op in (*r.success, *r.failure):
            which = op.WhichOneof("request")
            if which == "request_range":
                self.store.check_range(info, op.request_range.key, op.request_range.range_end)
            elif which == "request_put":
                self._check_put(info, op.request_put)
            elif which == "request_delete_range":
                d = op.request_delete_range
                if d.prev_kv:
                    self.store.check_range(info, d.key, d.range_end)
                self.store.check_write(info, d.key, d.range_end)
            elif which == "request_txn":
                self.check_txn(info, op.request_txn)

    # -- auth entries -------------------------------------------------------------------

    def apply(self, which: str, irr: InternalRaftRequest, index: int) -> Any:
        """The response to an auth entry (raises RPCError)."""
        s = self.store
        if which == "authenticate":
            a = irr.authenticate
            s.may_authenticate(a.name)
            token = self.tokens.assign(a.name, s.revision, a.simple_token, index)
            return pb.AuthenticateResponse(token=token)
        if which == "auth_enable":
            s.enable()
            self.tokens.enable()
            return pb.AuthEnableResponse()
        if which == "auth_disable":
            s.disable()
            self.tokens.disable()
            return pb.AuthDisableResponse()
        if which == "auth_status":
            return pb.AuthStatusResponse(enabled=s.enabled, authRevision=s.revision)
        if which == "auth_user_add":
            s.user_add(irr.auth_user_add)
            return pb.AuthUserAddResponse()
        if which == "auth_user_delete":
            s.user_delete(irr.auth_user_delete)
            self.tokens.invalidate_user(irr.auth_user_delete.name)
            return pb.AuthUserDeleteResponse()
        if which == "auth_user_change_password":
            s.user_change_password(irr.auth_user_change_password)
            self.tokens.invalidate_user(irr.auth_user_change_password.name)
            return pb.AuthUserChangePasswordResponse()
        if which == "auth_user_grant_role":
            s.user_grant_role(irr.auth_user_grant_role)
            return pb.AuthUserGrantRoleResponse()
        if which == "auth_user_revoke_role":
            s.user_revoke_role(irr.auth_user_revoke_role)
            return pb.AuthUserRevokeRoleResponse()
        if which == "auth_user_get":
            return s.user_get(irr.auth_user_get)
        if which == "auth_user_list":
            return s.user_list()
        if which == "auth_role_add":
            s.role_add(irr.auth_role_add)
            return pb.AuthRoleAddResponse()
        if which == "auth_role_delete":
            s.role_delete(irr.auth_role_delete)
            return pb.AuthRoleDeleteResponse()
        if which == "auth_role_get":
            return s.role_get(irr.auth_role_get)
        if which == "auth_role_list":
            return s.role_list()
        if which == "auth_role_grant_permission":
            s.role_grant_permission(irr.auth_role_grant_permission)
            return pb.AuthRoleGrantPermissionResponse()
        assert which == "auth_role_revoke_permission", which
        s.role_revoke_permission(irr.auth_role_revoke_permission)
        return pb.AuthRoleRevokePermissionResponse()
