"""etcd's auth store: users, roles, their permissions, and whether auth is enabled.

The state lives in the backend (buckets ``auth``, ``authUsers``, ``authRoles``,
values encoded as etcd's ``authpb`` messages) and is mirrored in memory. Only
applied log entries change it, so every member holds the same; each change
bumps the auth revision, which tokens carry, so a request made with a token
older than the latest change is answered ``revision of auth store is old`` and
the client fetches a new one.

Methods that change the state take the request messages and raise ``RPCError``
with etcd's answers; checks (``check_*``) raise when a request is not allowed.
Passwords arrive hashed (``hashedPassword``, base64 of the bcrypt hash, as
etcd 3.5 logs them), never in the clear.
"""

from __future__ import annotations

import base64
import bisect
import struct
from dataclasses import dataclass

from grpc import StatusCode

from synod import rpctypes
from synod.api.authpb.auth_pb2 import Permission, Role, User, UserAddOptions
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.auth import passwords
from synod.auth.perms import RangePermissions
from synod.backend import backend as bk
from synod.backend.backend import Backend
from synod.rpctypes import ErrorCode, RPCError

ROOT = "root"  # the user and the role that may do everything
_ENABLED_KEY = b"authEnabled"
_REVISION_KEY = b"authRevision"
# synod's own: per user, the auth revision at which what the user may do last changed.
_USER_REVISION = b"synod/userRevision/"
_U64 = struct.Struct(">Q")
# The revision internal requests carry (the member itself acting as root): never old.
SERVER_REVISION = 2**64 - 1
# etcd answers this one with its internal error's words (it has no gRPC error for it).
NO_PASSWORD_USER = ErrorCode(
    StatusCode.UNKNOWN, "auth: authentication failed, password was given for no password user"
)


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """Who a request is from: the user its token names, and the auth revision it was issued at."""

    username: str
    revision: int


NOBODY = AuthInfo("", 0)
SERVER = AuthInfo(ROOT, SERVER_REVISION)


def _has_root(user: User) -> bool:
    return ROOT in user.roles


class AuthStore:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.users: dict[str, User] = {}
        self.roles: dict[str, Role] = {}
        for name, raw in backend.items(bk.AUTH_USERS):
            self.users[name.decode()] = User.FromString(raw)
        for name, raw in backend.items(bk.AUTH_ROLES):
            self.roles[name.decode()] = Role.FromString(raw)
        self.enabled = backend.get(bk.AUTH, _ENABLED_KEY) == b"\x01"
        stored = backend.get(bk.AUTH, _REVISION_KEY)
        self.revision: int = _U64.unpack(stored)[0] if stored else 0
        if self.revision == 0:
            self._bump()  # etcd starts its auth store at revision 1
        self._perms: dict[str, RangePermissions] = {}
        self._refresh()
        found = {
            k[len(_USER_REVISION) :].decode(): _U64.unpack(v)[0]
            for k, v in backend.items(bk.AUTH, _USER_REVISION, _USER_REVISION[:-1] + b"0")
        }
        # A user with no record (a store from before the records) counts as changed now.
        self._user_revision: dict[str, int] = {name: found.get(name, self.revision) for name in self.users}

    # -- state ------------------------------------------------------------------

    def _bump(self) -> None:
        self.revision += 1
        self._backend.put(bk.AUTH, _REVISION_KEY, _U64.pack(self.revision))

    def _refresh(self) -> None:
        """Rebuild every user's merged permissions (after any change, as etcd does)."""
        perms = {}
        for name, user in self.users.items():
            granted = [p for r in user.roles if (role := self.roles.get(r)) for p in role.keyPermission]
            perms[name] = RangePermissions(granted)
        self._perms = perms

    def _put_user(self, user: User) -> None:
        self.users[user.name.decode()] = user
        self._backend.put(bk.AUTH_USERS, user.name, user.SerializeToString())

    def _put_role(self, role: Role) -> None:
        self.roles[role.name.decode()] = role
        self._backend.put(bk.AUTH_ROLES, role.name, role.SerializeToString())

    def _changed(self, *users: str) -> None:
        """A change of what ``users`` may do (or are): tokens they hold from before it are stale."""
        self._bump()
        self._refresh()
        for name in users:
            key = _USER_REVISION + name.encode()
            if name in self.users:
                self._user_revision[name] = self.revision
                self._backend.put(bk.AUTH, key, _U64.pack(self.revision))
            else:
                self._user_revision.pop(name, None)
                self._backend.delete(bk.AUTH, key)

    def is_stale(self, info: AuthInfo) -> bool:
        """Whether what the token's user may do changed after it was issued.

        etcd 3.4 calls every token from before any auth change stale; synod only those
        of the users the change concerns (docs/compatibility.md).
        """
        return info.revision < self._user_revision.get(info.username, self.revision)

    def _user(self, name: str) -> User:
        user = self.users.get(name)
        if user is None:
            raise RPCError(rpctypes.USER_NOT_FOUND)
        return user

    def _role(self, name: str) -> Role:
        role = self.roles.get(name)
        if role is None:
            raise RPCError(rpctypes.ROLE_NOT_FOUND)
        return role

    # -- enable, disable, authenticate ---------------------------------------------

    def enable(self) -> None:
        if self.enabled:
            return
        root = self.users.get(ROOT)
        if root is None:
            raise RPCError(rpctypes.ROOT_USER_NOT_EXIST)
        if not _has_root(root):
            raise RPCError(rpctypes.ROOT_ROLE_NOT_EXIST)
        self._backend.put(bk.AUTH, _ENABLED_KEY, b"\x01")
        self.enabled = True

    def disable(self) -> None:
        if not self.enabled:
            return
        self._backend.put(bk.AUTH, _ENABLED_KEY, b"\x00")
        self._changed(*self.users)
        self.enabled = False

    def password_hash(self, name: str) -> tuple[bytes, int]:
        """The user's password hash and the revision it was read at, to check a password against."""
        if not self.enabled:
            raise RPCError(rpctypes.AUTH_NOT_ENABLED)
        user = self.users.get(name)
        if user is None:
            raise RPCError(rpctypes.AUTH_FAILED)
        if user.options.no_password:
            raise RPCError(NO_PASSWORD_USER)
        return user.password, self.revision

    def may_authenticate(self, name: str) -> None:
        """The checks etcd repeats when the Authenticate entry is applied."""
        if not self.enabled:
            raise RPCError(rpctypes.AUTH_NOT_ENABLED)
        user = self.users.get(name)
        if user is None or user.options.no_password:
            raise RPCError(rpctypes.AUTH_FAILED)

    # -- users ------------------------------------------------------------------

    def user_add(self, r: pb.AuthUserAddRequest) -> None:
        if not r.name:
            raise RPCError(rpctypes.USER_EMPTY)
        if r.name in self.users:
            raise RPCError(rpctypes.USER_ALREADY_EXIST)
        options = UserAddOptions(no_password=r.options.no_password)
        hashed = b"" if options.no_password else base64.b64decode(r.hashedPassword)
        self._put_user(User(name=r.name.encode(), password=hashed, options=options))
        self._changed(r.name)

    def user_delete(self, r: pb.AuthUserDeleteRequest) -> None:
        if self.enabled and r.name == ROOT:
            raise RPCError(rpctypes.INVALID_AUTH_MGMT)
        self._user(r.name)
        del self.users[r.name]
        self._backend.delete(bk.AUTH_USERS, r.name.encode())
        self._changed(r.name)

    def user_change_password(self, r: pb.AuthUserChangePasswordRequest) -> None:
        user = self._user(r.name)
        updated = User()
        updated.CopyFrom(user)
        updated.password = base64.b64decode(r.hashedPassword)
        self._put_user(updated)
        self._changed(r.name)

    def user_grant_role(self, r: pb.AuthUserGrantRoleRequest) -> None:
        user = self._user(r.user)
        if r.role != ROOT:
            self._role(r.role)
        if r.role in user.roles:
            return  # etcd ignores a duplicate grant
        updated = User()
        updated.CopyFrom(user)
        roles = list(user.roles)
        bisect.insort(roles, r.role)
        del updated.roles[:]
        updated.roles.extend(roles)
        self._put_user(updated)
        self._changed(r.user)

    def user_revoke_role(self, r: pb.AuthUserRevokeRoleRequest) -> None:
        if self.enabled and r.name == ROOT and r.role == ROOT:
            raise RPCError(rpctypes.INVALID_AUTH_MGMT)
        user = self._user(r.name)
        if r.role not in user.roles:
            raise RPCError(rpctypes.ROLE_NOT_GRANTED)
        self._put_user(_without_role(user, r.role))
        self._changed(r.name)

    def user_get(self, r: pb.AuthUserGetRequest) -> pb.AuthUserGetResponse:
        return pb.AuthUserGetResponse(roles=self._user(r.name).roles)

    def user_list(self) -> pb.AuthUserListResponse:
        return pb.AuthUserListResponse(users=sorted(self.users, key=str.encode))

    # -- roles ------------------------------------------------------------------

    def role_add(self, r: pb.AuthRoleAddRequest) -> None:
        if not r.name:
            raise RPCError(rpctypes.ROLE_EMPTY)
        if r.name in self.roles:
            raise RPCError(rpctypes.ROLE_ALREADY_EXIST)
        self._put_role(Role(name=r.name.encode()))
        self._bump()  # etcd does not rebuild permissions here: a new role has none

    def role_delete(self, r: pb.AuthRoleDeleteRequest) -> None:
        if self.enabled and r.role == ROOT:
            raise RPCError(rpctypes.INVALID_AUTH_MGMT)
        self._role(r.role)
        del self.roles[r.role]
        self._backend.delete(bk.AUTH_ROLES, r.role.encode())
        holders = self._holders(r.role)
        for name in holders:
            self._put_user(_without_role(self.users[name], r.role))
        self._changed(*holders)

    def role_get(self, r: pb.AuthRoleGetRequest) -> pb.AuthRoleGetResponse:
        return pb.AuthRoleGetResponse(perm=self._role(r.role).keyPermission)

    def role_list(self) -> pb.AuthRoleListResponse:
        return pb.AuthRoleListResponse(roles=sorted(self.roles, key=str.encode))

    def role_grant_permission(self, r: pb.AuthRoleGrantPermissionRequest) -> None:
        role = self._role(r.name)
        perms = [_copy(p) for p in role.keyPermission]
        i = bisect.bisect_left([p.key for p in perms], r.perm.key)
        # As etcd: only the first permission on the same key is looked at for the same range.
        if i < len(perms) and perms[i].key == r.perm.key and perms[i].range_end == r.perm.range_end:
            perms[i].permType = r.perm.permType
        else:
            perms.append(_copy(r.perm))
            perms.sort(key=lambda p: p.key)  # stable, as Go's sort is on lists this small
        self._put_role(Role(name=role.name, keyPermission=perms))
        self._changed(*self._holders(r.name))

    def role_revoke_permission(self, r: pb.AuthRoleRevokePermissionRequest) -> None:
        role = self._role(r.role)
        kept = [p for p in role.keyPermission if p.key != r.key or p.range_end != r.range_end]
        if len(kept) == len(role.keyPermission):
            raise RPCError(rpctypes.PERMISSION_NOT_GRANTED)
        self._put_role(Role(name=role.name, keyPermission=kept))
        self._changed(*self._holders(r.role))

    def _holders(self, role: str) -> list[str]:
        return [name for name, user in self.users.items() if role in user.roles]

    def has_role(self, username: str, role: str) -> bool:
        user = self.users.get(username)
        return user is not None and role in user.roles

    # -- checks -----------------------------------------------------------------

    def check_admin(self, info: AuthInfo | None) -> None:
        if not self.enabled:
            return
        if info is None or not info.username:
            raise RPCError(rpctypes.USER_EMPTY)
        user = self.users.get(info.username)
        if user is None:
            raise RPCError(rpctypes.USER_NOT_FOUND)
        if not _has_root(user):
            raise RPCError(rpctypes.PERMISSION_DENIED)

    def check_range(self, info: AuthInfo, key: bytes, range_end: bytes = b"") -> None:
        self._check(info, key, range_end, write=False)

    def check_write(self, info: AuthInfo, key: bytes, range_end: bytes = b"") -> None:
        self._check(info, key, range_end, write=True)

    def _check(self, info: AuthInfo, key: bytes, range_end: bytes, *, write: bool) -> None:
        if not self.enabled:
            return
        if info.revision == 0:
            raise RPCError(rpctypes.USER_EMPTY)
        if self.is_stale(info):
            raise RPCError(rpctypes.AUTH_OLD_REVISION)
        user = self.users.get(info.username)
        if user is None:
            raise RPCError(rpctypes.PERMISSION_DENIED)
        if _has_root(user):
            return
        perms = self._perms.get(info.username)
        if perms is None or not perms.permits(key, range_end, write=write):
            raise RPCError(rpctypes.PERMISSION_DENIED)


def _copy(p: Permission) -> Permission:
    return Permission(key=p.key, range_end=p.range_end, permType=p.permType)


def _without_role(user: User, role: str) -> User:
    updated = User()
    updated.CopyFrom(user)
    del updated.roles[:]
    updated.roles.extend(r for r in user.roles if r != role)
    return updated


def hash_for_log(password: str, cost: int) -> str:
    """A password as a request carries it into the log: base64 of its bcrypt hash."""
    return base64.b64encode(passwords.hash_password(password, cost)).decode()
