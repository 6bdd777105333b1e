"""Auth, differential: users, roles, permissions and tokens, answered alike by a real etcd 3.4 and synod.

Each test starts a fresh pair (auth state is not something another test
should inherit): a real etcd, the reference, and the other side, synod or a
second etcd. The second etcd is the harness's own check: the etcd-against-etcd
run must pass, which shows the comparison looks only at what is deterministic.
Every request of a script goes to both over raw gRPC, as the same user (each
side's own token for that user), and the answers are compared field by field
(tests/support/authpair.py says what is normalised: cluster and member IDs,
a simple token's random letters, a JWT's signature, sizes and hashes).

The places where synod answers differently from etcd 3.4 on purpose (etcd's
known weaknesses: nested txns and a txn's put unchecked, a from-key watch
checked by its first key, a crash on a grant without a permission, waiting for
a simple token's index) are not in the pair scripts: ``test_known_differences``
asserts, for each, synod's answer and etcd 3.4's documented one separately.

A failure lists every diverging step of the script: the request, who sent it,
etcd's answer and the other side's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from synod.api.authpb import auth_pb2 as apb
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.authpair import RPC_TIMEOUT, As, Pair, Side, as_, started_pair
from tests.support.servers import ServerProcess, wait_until

FAST = ["--bcrypt-cost", "4"]
R, W, RW = apb.Permission.READ, apb.Permission.WRITE, apb.Permission.READWRITE
ALL = b"\x00"  # a range end: every key from the key on

PairFactory = Callable[..., Pair]


@pytest.fixture(params=["synod", "etcd"])
def make_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PairFactory]:
    """Start (etcd, other) pairs with extra server flags; the other is synod, or a second etcd."""
    kind: str = request.param
    made = 0
    with contextlib.ExitStack() as stack:

        def make(*extra: str) -> Pair:
            nonlocal made
            n, made = made, made + 1  # a fresh directory per pair
            ref = ServerProcess("etcd", tmp_path / f"etcd-{n}", extra_args=[*FAST, *extra])
            other = ServerProcess(kind, tmp_path / f"{kind}-other-{n}", extra_args=[*FAST, *extra])
            return stack.enter_context(started_pair(ref, other, "synod" if kind == "synod" else "etcd#2"))

        yield make


@pytest.fixture
def pair(make_pair: PairFactory) -> Pair:
    return make_pair()


# -- script helpers ---------------------------------------------------------------------------------------


def perm(kind: int, key: bytes, end: bytes = b"") -> apb.Permission:
    return apb.Permission(permType=kind, key=key, range_end=end)  # type: ignore[arg-type]


def user_add(p: Pair, name: str, password: str = "pw", who: str | As | None = None, **kw: Any) -> str:
    return p.call("Auth.UserAdd", pb.AuthUserAddRequest(name=name, password=password, **kw), who)


def grant_role(p: Pair, user: str, role: str, who: str | As | None = None) -> str:
    return p.call("Auth.UserGrantRole", pb.AuthUserGrantRoleRequest(user=user, role=role), who)


def role_add(p: Pair, name: str, who: str | As | None = None) -> str:
    return p.call("Auth.RoleAdd", pb.AuthRoleAddRequest(name=name), who)


def grant_perm(p: Pair, role: str, permission: apb.Permission | None, who: str | As | None = None) -> str:
    return p.call(
        "Auth.RoleGrantPermission", pb.AuthRoleGrantPermissionRequest(name=role, perm=permission), who
    )


def user_with(p: Pair, name: str, *perms: apb.Permission, who: str | As | None = None) -> None:
    """A user ``name`` (password "pw") with a role of the same name holding ``perms``."""
    user_add(p, name, who=who)
    role_add(p, name, who=who)
    for x in perms:
        grant_perm(p, name, x, who=who)
    grant_role(p, name, name, who=who)


def enable(p: Pair) -> None:
    """root (password "rootpw") with the root role; auth on; root logged in."""
    user_add(p, "root", "rootpw")
    grant_role(p, "root", "root")
    p.call("Auth.AuthEnable", pb.AuthEnableRequest())
    p.login("root", "rootpw")


def put(p: Pair, key: bytes, value: bytes = b"v", who: str | As | None = "root", **kw: Any) -> str:
    return p.call("KV.Put", pb.PutRequest(key=key, value=value, **kw), who)


def rng(key: bytes, end: bytes = b"", **kw: Any) -> pb.RangeRequest:
    return pb.RangeRequest(key=key, range_end=end, **kw)


def op_put(key: bytes, **kw: Any) -> pb.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=b"t", **kw))


def op_range(key: bytes, end: bytes = b"", **kw: Any) -> pb.RequestOp:
    return pb.RequestOp(request_range=pb.RangeRequest(key=key, range_end=end, **kw))


def op_delete(key: bytes, end: bytes = b"", **kw: Any) -> pb.RequestOp:
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key, range_end=end, **kw))


def version_is(key: bytes, version: int, end: bytes = b"") -> pb.Compare:
    return pb.Compare(key=key, range_end=end, target=pb.Compare.VERSION, version=version)


# -- users and roles --------------------------------------------------------------------------------------


def test_users_and_roles(pair: Pair) -> None:
    """Every user and role call with auth off, success and each error."""
    p = pair
    user_add(p, "")  # etcdserver: user name is empty
    user_add(p, "", options=apb.UserAddOptions(no_password=True))
    user_add(p, "root", "rootpw")
    user_add(p, "root", "again")  # etcdserver: user name already exists
    for name in ("zed", "alice", "bob"):  # listed sorted
        user_add(p, name)
    user_add(p, "carol", "", options=apb.UserAddOptions(no_password=True))
    user_add(p, "dave", "")  # an empty password is a password
    p.call("Auth.UserList", pb.AuthUserListRequest())
    p.call("Auth.UserGet", pb.AuthUserGetRequest(name="alice"))
    p.call("Auth.UserGet", pb.AuthUserGetRequest(name="nobody"))
    p.call("Auth.UserGet", pb.AuthUserGetRequest(name=""))
    p.call("Auth.RoleList", pb.AuthRoleListRequest())  # none
    role_add(p, "")  # etcdserver: role name is empty
    for name in ("writer", "reader", "extra"):
        role_add(p, name)
    role_add(p, "reader")  # etcdserver: role name already exists
    p.call("Auth.RoleList", pb.AuthRoleListRequest())
    p.call("Auth.RoleGet", pb.AuthRoleGetRequest(role="reader"))  # no permissions yet
    p.call("Auth.RoleGet", pb.AuthRoleGetRequest(role="nope"))
    p.call("Auth.RoleGet", pb.AuthRoleGetRequest(role="root"))  # the built-in role has no entry
    p.call("Auth.RoleGet", pb.AuthRoleGetRequest(role=""))

    grant_role(p, "alice", "writer")
    grant_role(p, "alice", "reader")
    grant_role(p, "alice", "reader")  # a second grant is ignored
    grant_role(p, "alice", "root")  # "root" needs no RoleAdd
    grant_role(p, "nobody", "reader")  # etcdserver: user name not found
    grant_role(p, "alice", "nope")  # etcdserver: role name not found
    grant_role(p, "nobody", "nope")  # the user is looked up first
    grant_role(p, "", "reader")
    grant_role(p, "alice", "")
    p.call("Auth.UserGet", pb.AuthUserGetRequest(name="alice"))  # roles sorted
    revoke = pb.AuthUserRevokeRoleRequest
    p.call("Auth.UserRevokeRole", revoke(name="alice", role="root"))
    p.call("Auth.UserRevokeRole", revoke(name="alice", role="root"))  # role is not granted to the user
    p.call("Auth.UserRevokeRole", revoke(name="alice", role="nope"))  # the role need not exist
    p.call("Auth.UserRevokeRole", revoke(name="nobody", role="reader"))
    p.call("Auth.UserRevokeRole", revoke(name="root", role="root"))  # not granted (and auth is off)
    p.call("Auth.UserGet", pb.AuthUserGetRequest(name="alice"))

    # Permissions sort by key; a grant of the same key and range end replaces the type.
    grant_perm(p, "reader", perm(R, b"m", b"n"))
    grant_perm(p, "reader", perm(R, b"b"))
    grant_perm(p, "reader", perm(W, b"a", ALL))
    grant_perm(p, "reader", perm(RW, b"m", b"n"))  # replaces READ on [m, n)
    grant_perm(p, "reader", perm(R, b"", b""))
    grant_perm(p, "nope", perm(R, b"x"))  # etcdserver: role name not found
    p.call("Auth.RoleGet", pb.AuthRoleGetRequest(role="reader"))
    # The same key with another range end is another permission; etcd looks for the one to
    # replace only at the first permission of that key.
    grant_perm(p, "reader", perm(R, b"m", b"o"))
    grant_perm(p, "reader", perm(W, b"m", b"o"))
    grant_perm(p, "reader", perm(R, b"m", b"n"))
    p.call("Auth.RoleGet", pb.AuthRoleGetRequest(role="reader"))
    rp = pb.AuthRoleRevokePermissionRequest
    p.call("Auth.RoleRevokePermission", rp(role="reader", key=b"zz"))  # permission is not granted
    p.call("Auth.RoleRevokePermission", rp(role="reader", key=b"m"))  # not with that range end
    p.call("Auth.RoleRevokePermission", rp(role="reader", key=b"m", range_end=b"o"))  # every match
    p.call("Auth.RoleRevokePermission", rp(role="reader", key=b"b"))
    p.call("Auth.RoleRevokePermission", rp(role="reader", key=b"b"))
    p.call("Auth.RoleRevokePermission", rp(role="nope", key=b"b"))
    p.call("Auth.RoleRevokePermission", rp(role="reader", key=b"a", range_end=ALL))
    p.call("Auth.RoleGet", pb.AuthRoleGetRequest(role="reader"))

    # Deleting a role takes it from its users.
    p.call("Auth.RoleDelete", pb.AuthRoleDeleteRequest(role="writer"))
    p.call("Auth.RoleDelete", pb.AuthRoleDeleteRequest(role="writer"))
    p.call("Auth.RoleDelete", pb.AuthRoleDeleteRequest(role="root"))  # never added
    p.call("Auth.UserGet", pb.AuthUserGetRequest(name="alice"))
    p.call("Auth.RoleList", pb.AuthRoleListRequest())

    # "root" may also be added as a role; deleting it (auth off) takes it from root as well.
    grant_role(p, "root", "root")
    role_add(p, "root")
    grant_perm(p, "root", perm(R, b"r"))
    p.call("Auth.RoleGet", pb.AuthRoleGetRequest(role="root"))
    p.call("Auth.RoleList", pb.AuthRoleListRequest())
    p.call("Auth.RoleDelete", pb.AuthRoleDeleteRequest(role="root"))
    p.call("Auth.UserGet", pb.AuthUserGetRequest(name="root"))
    p.call("Auth.AuthEnable", pb.AuthEnableRequest())  # root user does not have root role

    cp = pb.AuthUserChangePasswordRequest
    p.call("Auth.UserChangePassword", cp(name="nobody", password="x"))
    p.call("Auth.UserChangePassword", cp(name="alice", password="new"))
    p.call("Auth.UserChangePassword", cp(name="carol", password="now-one"))  # still no password user
    p.call("Auth.UserChangePassword", cp(name="", password="x"))
    p.call("Auth.UserGet", pb.AuthUserGetRequest(name="carol"))
    p.call("Auth.UserDelete", pb.AuthUserDeleteRequest(name="nobody"))
    p.call("Auth.UserDelete", pb.AuthUserDeleteRequest(name=""))
    p.call("Auth.UserDelete", pb.AuthUserDeleteRequest(name="dave"))
    p.call("Auth.UserDelete", pb.AuthUserDeleteRequest(name="root"))  # allowed while auth is off
    p.call("Auth.UserList", pb.AuthUserListRequest())
    p.call("Auth.AuthDisable", pb.AuthDisableRequest())  # already off: nothing to do
    p.call("KV.Range", rng(b"a"))  # the KV revision never moved
    p.check()


def test_enable_disable_authenticate(pair: Pair) -> None:
    p = pair
    auth = pb.AuthenticateRequest
    p.call("Auth.Authenticate", auth(name="root", password="x"))  # authentication is not enabled
    p.call("Auth.Authenticate", auth(name="ghost", password="x"))
    p.call("Auth.AuthEnable", pb.AuthEnableRequest())  # root user does not exist
    user_add(p, "root", "rootpw")
    p.call("Auth.AuthEnable", pb.AuthEnableRequest())  # root user does not have root role
    grant_role(p, "root", "root")
    user_add(p, "carol", "", options=apb.UserAddOptions(no_password=True))
    user_add(p, "dave", "")
    user_with(p, "alice", perm(RW, b"a"))
    user_add(p, "admin", "adminpw")
    grant_role(p, "admin", "root")  # another user with the root role
    p.call("Auth.AuthEnable", pb.AuthEnableRequest())
    p.call("Auth.AuthEnable", pb.AuthEnableRequest())  # on: needs root, and there is no token
    p.login("root", "rootpw")
    p.call("Auth.AuthEnable", pb.AuthEnableRequest(), "root")  # already on: ignored
    p.login("root", "wrong")  # authentication failed, invalid user ID or password
    p.login("ghost", "x")
    p.login("", "")
    p.login("carol", "x")  # a user without a password can't authenticate
    p.login("carol", "")
    p.login("dave", "")  # the empty password
    p.login("dave", "x")
    p.login("alice", "pw")
    p.login("admin", "adminpw")
    p.call("Auth.UserList", pb.AuthUserListRequest(), "admin")
    p.call("Auth.UserList", pb.AuthUserListRequest(), "dave")  # no role: denied
    # While enabled, root can't be deleted nor lose the root role (even where it has no entry).
    p.call("Auth.UserDelete", pb.AuthUserDeleteRequest(name="root"), "root")
    p.call("Auth.UserRevokeRole", pb.AuthUserRevokeRoleRequest(name="root", role="root"), "root")
    p.call("Auth.RoleDelete", pb.AuthRoleDeleteRequest(role="root"), "root")
    p.call("Auth.UserRevokeRole", pb.AuthUserRevokeRoleRequest(name="root", role="other"), "root")
    p.call("Auth.UserRevokeRole", pb.AuthUserRevokeRoleRequest(name="admin", role="root"), "admin")
    p.call("Auth.UserList", pb.AuthUserListRequest(), "admin")  # admin is not one any more
    p.call("Auth.AuthDisable", pb.AuthDisableRequest())  # user name is empty
    p.call("Auth.AuthDisable", pb.AuthDisableRequest(), "alice")  # permission denied
    p.call("Auth.AuthDisable", pb.AuthDisableRequest(), "root")
    p.call("Auth.AuthDisable", pb.AuthDisableRequest(), "root")  # its token went with auth
    p.call("Auth.AuthDisable", pb.AuthDisableRequest())
    p.login("root", "rootpw")  # authentication is not enabled
    p.call("Auth.AuthEnable", pb.AuthEnableRequest())  # auth is off: anyone may turn it on
    p.call("KV.Range", rng(b"a"), "alice")  # a token from before: invalid auth token
    p.login("alice", "pw")
    p.call("KV.Range", rng(b"a"), "alice")
    p.check()


# -- permissions ------------------------------------------------------------------------------------------

# Each user has one kind of permission on a key, a prefix and a from-key range.
SHAPES = (perm(R, b"k"), perm(R, b"p/", b"p0"), perm(R, b"z", ALL))
KIND_USERS = {"reader": R, "writer": W, "rw": RW}


def kind_users(p: Pair) -> None:
    """root; reader, writer and rw with their kind on each shape; some keys; auth on; all logged in."""
    for name, kind in KIND_USERS.items():
        user_with(p, name, *(perm(kind, s.key, s.range_end) for s in SHAPES))
    for key in (b"k", b"p/1", b"p/2", b"z", b"z1", b"other", b"y"):
        put(p, key, b"seed", None)
    enable(p)
    for name in KIND_USERS:
        p.login(name, "pw")


def test_ranges_by_permission(pair: Pair) -> None:
    p = pair
    kind_users(p)
    ranges = [
        rng(b"k"),
        rng(b"k", serializable=True),
        rng(b"k", keys_only=True),
        rng(b"k", count_only=True),
        rng(b"k", b"k\x00"),  # the key as a range
        rng(b"k", b"l"),  # more than the key
        rng(b"p/1"),
        rng(b"p/", b"p0"),
        rng(b"p/1", b"p/3"),  # inside the prefix
        rng(b"p/", b"p1"),  # beyond it
        rng(b"o", b"p0"),  # from before it
        rng(b"p/", b"p0", limit=1, sort_order=pb.RangeRequest.DESCEND),
        rng(b"z"),
        rng(b"z1"),
        rng(b"z", ALL),
        rng(b"za", ALL),
        rng(b"z", b"zz"),
        rng(b"y", ALL),  # from before the from-key range
        rng(b"other"),
        rng(ALL, ALL),  # everything
        rng(b"p0", b"p/"),  # an empty (reversed) range
    ]
    for who in (*KIND_USERS, "root", None):
        for r in ranges:
            p.call("KV.Range", r, who)
    p.check()


def test_puts_and_deletes_by_permission(pair: Pair) -> None:
    p = pair
    kind_users(p)
    for who in (*KIND_USERS, None):
        for key in (b"k", b"p/9", b"z9", b"other", b"p0"):
            put(p, key, who.encode() if who else b"-", who)
            put(p, key, b"again", who, prev_kv=True)  # prev_kv needs read as well
        put(p, b"k", b"", who, ignore_value=True)
    deletes = [
        pb.DeleteRangeRequest(key=b"k"),
        pb.DeleteRangeRequest(key=b"p/9", prev_kv=True),
        pb.DeleteRangeRequest(key=b"p/8", range_end=b"p/9"),
        pb.DeleteRangeRequest(key=b"p/", range_end=b"p0", prev_kv=True),
        pb.DeleteRangeRequest(key=b"p/", range_end=b"p1"),
        pb.DeleteRangeRequest(key=b"z9"),
        pb.DeleteRangeRequest(key=b"za", range_end=ALL, prev_kv=True),
        pb.DeleteRangeRequest(key=b"z", range_end=ALL),
        pb.DeleteRangeRequest(key=b"y", range_end=ALL),
        pb.DeleteRangeRequest(key=b"other"),
    ]
    for who in (None, "reader", "writer", "rw"):
        for d in deletes:
            p.call("KV.DeleteRange", d, who)
        for key in (b"k", b"p/9", b"z9"):  # something to delete for the next one
            put(p, key)
    p.call("KV.Range", rng(ALL, ALL), "root")
    p.check()


def test_txns_by_permission(pair: Pair) -> None:
    p = pair
    kind_users(p)
    txns = [
        pb.TxnRequest(),  # nothing to check: anyone, even with no token
        pb.TxnRequest(compare=[version_is(b"k", 1)]),  # a compare needs read
        pb.TxnRequest(compare=[version_is(b"p/", 1, b"p0")]),  # a compare on a range
        pb.TxnRequest(compare=[version_is(b"other", 1)]),
        pb.TxnRequest(success=[op_range(b"k"), op_range(b"p/", b"p0")]),  # read-only
        pb.TxnRequest(success=[op_range(b"k", serializable=True)]),  # read-only, serializable
        pb.TxnRequest(success=[op_range(b"k")], failure=[op_range(b"other")]),  # both branches
        pb.TxnRequest(compare=[version_is(b"k", 1)], success=[op_put(b"k")], failure=[op_range(b"k")]),
        pb.TxnRequest(success=[op_put(b"p/5")], failure=[op_put(b"other")]),
        pb.TxnRequest(success=[op_put(b"z5"), op_delete(b"p/5")]),
        pb.TxnRequest(success=[op_delete(b"p/", b"p0", prev_kv=True)]),  # prev_kv needs read
        pb.TxnRequest(success=[op_delete(b"z", ALL)]),
        pb.TxnRequest(failure=[op_delete(b"y", ALL)]),
        pb.TxnRequest(compare=[version_is(b"z1", 1)], success=[op_put(b"p/6"), op_range(b"z", ALL)]),
    ]
    for who in (None, *KIND_USERS, "root"):
        for t in txns:
            p.call("KV.Txn", t, who)
    p.check()


def test_leases_under_auth(pair: Pair) -> None:
    p = pair
    kind_users(p)
    grant = pb.LeaseGrantRequest
    p.call("Lease.LeaseGrant", grant(ID=1001, TTL=60), "root")
    put(p, b"secret", lease=1001)  # a key nobody else may write
    p.call("Lease.LeaseGrant", grant(ID=1002, TTL=60), "root")
    put(p, b"k", lease=1002)
    p.call("Lease.LeaseGrant", grant(ID=1003, TTL=60), "writer")  # anyone may grant
    p.call("Lease.LeaseGrant", grant(ID=1004, TTL=60))  # even with no token
    for who in ("writer", "reader", None):
        put(p, b"p/l", who=who, lease=1001)  # the lease holds a key they can't write
        put(p, b"p/l", who=who, lease=1003)
        put(p, b"p/l", who=who, lease=999)  # unknown lease
        put(p, b"other", who=who, lease=999)
        p.call("Lease.LeaseRevoke", pb.LeaseRevokeRequest(ID=1001), who)
        p.call("Lease.LeaseRevoke", pb.LeaseRevokeRequest(ID=999), who)
        p.call("Lease.LeaseTimeToLive", pb.LeaseTimeToLiveRequest(ID=1001, keys=True), who, ttl=True)
        p.call("Lease.LeaseLeases", pb.LeaseLeasesRequest(), who)
        p.stream("Lease.LeaseKeepAlive", [pb.LeaseKeepAliveRequest(ID=1001)], who)
    p.call("Lease.LeaseRevoke", pb.LeaseRevokeRequest(ID=1004))  # no keys: nothing to check
    p.call("Lease.LeaseRevoke", pb.LeaseRevokeRequest(ID=1002), "reader")  # holds k: reader can't write it
    p.call("Lease.LeaseRevoke", pb.LeaseRevokeRequest(ID=1002))
    p.call("Lease.LeaseRevoke", pb.LeaseRevokeRequest(ID=1002), "writer")
    p.call("Lease.LeaseRevoke", pb.LeaseRevokeRequest(ID=1003), "reader")  # holds p/l
    p.call("Lease.LeaseRevoke", pb.LeaseRevokeRequest(ID=1003), "rw")
    p.call("Lease.LeaseRevoke", pb.LeaseRevokeRequest(ID=1001), "root")
    p.call("KV.Range", rng(ALL, ALL, keys_only=True), "root")
    p.call("Lease.LeaseLeases", pb.LeaseLeasesRequest(), "root")
    p.check()


def test_watches_under_auth(pair: Pair) -> None:
    p = pair
    kind_users(p)
    w = p.watch("reader", "reader's stream")
    creates = [
        pb.WatchCreateRequest(key=b"k"),  # allowed: watch 0
        pb.WatchCreateRequest(key=b"other"),  # created and cancelled at once, watch_id -1
        pb.WatchCreateRequest(key=b"p/", range_end=b"p0", prev_kv=True),  # watch 1
        pb.WatchCreateRequest(key=b"p/", range_end=b"p1"),
        pb.WatchCreateRequest(key=b"z", range_end=ALL),  # from a key, with read on all from there
        pb.WatchCreateRequest(key=b"", range_end=b""),  # the empty key is "\0"
        pb.WatchCreateRequest(key=b"k", watch_id=7),
        pb.WatchCreateRequest(key=b"other", watch_id=8),
    ]
    for c in creates:
        w.create(c)
    put(p, b"k", b"1")
    w.next("the events on k (watches 0 and 7)", count=2)
    put(p, b"p/1", b"2")
    w.next("the event on p/1")
    for who in ("writer", None, As(token="bogus"), As(token="bogus.1"), "root"):
        other = p.watch(who, f"stream {as_(who).show()}")
        other.create(pb.WatchCreateRequest(key=b"k"))
        other.create(pb.WatchCreateRequest(key=b"z", range_end=ALL))
    # Permissions are checked when a watch is created: taking them away leaves it on.
    p.call("Auth.UserRevokeRole", pb.AuthUserRevokeRoleRequest(name="reader", role="reader"), "root")
    put(p, b"k", b"3")
    w.next("the events on k after the revoke", count=2)
    w.create(pb.WatchCreateRequest(key=b"k"))  # a new one is refused
    put(p, b"z1", b"4")
    w.next("the event on z1")
    p.check()


# -- admin-only calls ------------------------------------------------------------------------------------


def test_admin_only_calls(pair: Pair) -> None:
    """What needs the root role, what a user may ask about itself, and what needs nothing."""
    p = pair
    user_with(p, "alice", perm(RW, b"a", b"b"))
    role_add(p, "other")
    user_add(p, "admin", "adminpw")
    grant_role(p, "admin", "root")
    put(p, b"a1", b"1", None)
    enable(p)
    p.login("alice", "pw")
    p.login("admin", "adminpw")
    unknown_member = 0x1234
    for who in ("alice", None, As(token="bogus"), "admin", "root"):
        p.call("Auth.UserList", pb.AuthUserListRequest(), who)
        p.call("Auth.RoleList", pb.AuthRoleListRequest(), who)
        p.call("Auth.UserGet", pb.AuthUserGetRequest(name="alice"), who)  # alice may ask about herself
        p.call("Auth.UserGet", pb.AuthUserGetRequest(name="root"), who)
        p.call("Auth.UserGet", pb.AuthUserGetRequest(name="nobody"), who)
        p.call("Auth.UserGet", pb.AuthUserGetRequest(name=""), who)  # no token: "" is oneself
        p.call("Auth.RoleGet", pb.AuthRoleGetRequest(role="alice"), who)  # one's own role
        p.call("Auth.RoleGet", pb.AuthRoleGetRequest(role="other"), who)
        p.call("Auth.RoleGet", pb.AuthRoleGetRequest(role="nope"), who)
        p.call("Auth.RoleGet", pb.AuthRoleGetRequest(role="root"), who)
        p.call("Auth.AuthEnable", pb.AuthEnableRequest(), who)
        user_add(p, "", who=who)  # admin first, then the name
        user_add(p, "root", who=who)
        p.call("Auth.UserDelete", pb.AuthUserDeleteRequest(name="nobody"), who)
        p.call("Auth.UserChangePassword", pb.AuthUserChangePasswordRequest(name="nobody"), who)
        grant_role(p, "nobody", "other", who)
        p.call("Auth.UserRevokeRole", pb.AuthUserRevokeRoleRequest(name="nobody", role="x"), who)
        role_add(p, "alice", who)
        grant_perm(p, "nope", perm(R, b"x"), who)
        p.call("Auth.RoleRevokePermission", pb.AuthRoleRevokePermissionRequest(role="nope", key=b"x"), who)
        p.call("Auth.RoleDelete", pb.AuthRoleDeleteRequest(role="nope"), who)
        # Maintenance: Defragment, Hash, HashKV and Snapshot need root; Status and Alarm don't.
        p.call("Maintenance.Defragment", pb.DefragmentRequest(), who)
        p.call("Maintenance.Hash", pb.HashRequest(), who)
        p.call("Maintenance.HashKV", pb.HashKVRequest(), who)
        p.stream("Maintenance.Snapshot", [pb.SnapshotRequest()], who)
        p.call("Maintenance.Status", pb.StatusRequest(), who)
        p.call("Maintenance.Alarm", pb.AlarmRequest(action=pb.AlarmRequest.GET), who)
        # Cluster: membership changes need root; the list doesn't. (Unknown IDs: nothing changes.)
        p.call("Cluster.MemberList", pb.MemberListRequest(), who)
        p.call("Cluster.MemberRemove", pb.MemberRemoveRequest(ID=unknown_member), who)
        p.call(
            "Cluster.MemberUpdate", pb.MemberUpdateRequest(ID=unknown_member, peerURLs=["http://x:1"]), who
        )
        p.call("Cluster.MemberPromote", pb.MemberPromoteRequest(ID=unknown_member), who)
        if who not in ("admin", "root"):  # refused before anything is added
            p.call("Cluster.MemberAdd", pb.MemberAddRequest(peerURLs=["http://127.0.0.1:1"]), who)
        # Leases and compaction need nothing.
        p.call("Lease.LeaseGrant", pb.LeaseGrantRequest(ID=77, TTL=60), who)
        p.call("Lease.LeaseTimeToLive", pb.LeaseTimeToLiveRequest(ID=77), who, ttl=True)
        p.stream("Lease.LeaseKeepAlive", [pb.LeaseKeepAliveRequest(ID=77)], who)
        p.call("Lease.LeaseLeases", pb.LeaseLeasesRequest(), who)
        p.call("Lease.LeaseRevoke", pb.LeaseRevokeRequest(ID=77), who)  # no keys: nothing to check
        put(p, b"a1", b"again", "root")
        p.call("KV.Compact", pb.CompactionRequest(revision=2), who)
    p.check()


# -- tokens -----------------------------------------------------------------------------------------------


def test_tokens(pair: Pair) -> None:
    p = pair
    user_with(p, "alice", perm(RW, b"a", b"b"))
    user_with(p, "bob", perm(R, b"a", b"b"))
    put(p, b"a1", b"1", None)
    enable(p)
    p.login("alice", "pw")
    p.login("bob", "pw")
    a1 = rng(b"a1")
    p.call("KV.Range", a1)  # user name is empty
    p.call("KV.Put", pb.PutRequest(key=b"a1", value=b"x"))
    # (A simple token naming a log index never reached, such as "bogus.-1", makes etcd wait for
    # that index until the call's deadline; synod refuses it at once: test_unreachable_index below.)
    for token in ("bogus", "bogus.1", "bogus.x", "", ".", "a.b.c"):
        p.call("KV.Range", a1, As(token=token))  # invalid auth token
        p.call("KV.Put", pb.PutRequest(key=b"a1", value=b"x"), As(token=token))
    p.call("KV.Range", a1, "alice")
    p.call("KV.Range", a1, As(user="alice", key="authorization"))  # as grpc-gateway sends it
    # "token" is read first: a bad one there is not saved by a good "authorization".
    p.call("KV.Range", a1, As(user="alice", key="authorization", also=(("token", "bogus"),)))
    p.call("KV.Range", a1, As(user="alice", also=(("authorization", "bogus"),)))
    p.call("Auth.UserGet", pb.AuthUserGetRequest(name="alice"), "bob")  # bob's token is not alice's
    # A simple token takes the current auth revision: changes don't make it stale.
    grant_perm(p, "bob", perm(R, b"c"), "root")
    role_add(p, "unrelated", "root")
    p.call("KV.Range", a1, "alice")
    p.call("KV.Put", pb.PutRequest(key=b"a1", value=b"2"), "alice")
    p.call("KV.Range", rng(b"c"), "bob")
    # Losing a role takes effect at once.
    p.call("Auth.UserRevokeRole", pb.AuthUserRevokeRoleRequest(name="bob", role="bob"), "root")
    p.call("KV.Range", a1, "bob")  # permission denied
    p.call("Auth.UserGet", pb.AuthUserGetRequest(name="bob"), "bob")  # still oneself
    # A new password ends the user's tokens; the old password no longer authenticates.
    p.call("Auth.UserChangePassword", pb.AuthUserChangePasswordRequest(name="alice", password="new"), "root")
    p.call("KV.Range", a1, "alice")  # invalid auth token
    p.call("Auth.UserGet", pb.AuthUserGetRequest(name="alice"), "alice")
    p.login("alice", "pw")
    p.login("alice", "new")
    p.call("KV.Range", a1, "alice")
    # So does deleting the user, and adding it again brings nothing back.
    p.call("Auth.UserDelete", pb.AuthUserDeleteRequest(name="alice"), "root")
    p.call("KV.Range", a1, "alice")
    user_add(p, "alice", who="root")
    grant_role(p, "alice", "alice", "root")
    p.call("KV.Range", a1, "alice")
    p.login("alice", "pw")
    p.call("KV.Range", a1, "alice")
    # Turning auth off ends every simple token: a request that carries one is refused even
    # though auth is off, one without a token is served.
    p.call("Auth.AuthDisable", pb.AuthDisableRequest(), "root")
    p.call("KV.Range", a1, "alice")
    p.call("KV.Put", pb.PutRequest(key=b"a1", value=b"3"), "root")
    p.call("Auth.UserList", pb.AuthUserListRequest(), "root")
    p.call("KV.Range", a1)
    p.call("KV.Put", pb.PutRequest(key=b"a1", value=b"4"))
    w = p.watch("alice", "a watch with a token from before AuthDisable")
    w.create(pb.WatchCreateRequest(key=b"a1"))
    p.call("Auth.AuthEnable", pb.AuthEnableRequest())
    p.call("KV.Range", a1, "alice")  # still gone
    p.login("alice", "pw")
    p.login("root", "rootpw")
    p.call("KV.Range", a1, "alice")
    p.call("Auth.UserList", pb.AuthUserListRequest(), "root")
    p.check()


def test_simple_token_ttl(make_pair: PairFactory) -> None:
    """--auth-token-ttl: a simple token not used for that long is gone."""
    p = make_pair("--auth-token-ttl", "2")
    user_with(p, "alice", perm(R, b"a"))
    enable(p)
    p.login("alice", "pw")
    p.call("KV.Range", rng(b"a"), "alice")  # used now: good for 2 s more
    # Wait, on each side, until a token issued after alice's was used last has expired: probing
    # a token renews it, so each probe spends a token of its own, never used before.
    for side in p.sides:
        probes = [
            side.stubs["Auth"]
            .Authenticate(pb.AuthenticateRequest(name="root", password="rootpw"), timeout=RPC_TIMEOUT)
            .token
            for _ in range(60)
        ]

        def expired(side: Side = side, probes: list[str] = probes) -> bool:
            try:
                side.stubs["KV"].Range(rng(b"a"), metadata=(("token", probes.pop(0)),), timeout=RPC_TIMEOUT)
            except grpc.RpcError as e:
                return e.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
            return False

        wait_until(expired, timeout=15.0, what=f"{side.label}'s simple tokens to expire", interval=0.25)
    p.call("KV.Range", rng(b"a"), "alice")  # invalid auth token
    p.login("alice", "pw")
    p.call("KV.Range", rng(b"a"), "alice")
    p.check()


def test_unreachable_index(tmp_path: Path) -> None:
    """A simple token whose index the member will never apply: etcd 3.4 may wait for it until the
    deadline; a one-member synod has applied everything it ever issued, so it refuses at once
    (docs/compatibility.md)."""
    got = {}
    for kind in ("synod", "etcd"):
        server = ServerProcess(kind, tmp_path / kind, extra_args=["--bcrypt-cost", "4"])
        server.start()
        try:
            with grpc.insecure_channel(server.endpoint) as ch:
                auth = rpc_pb2_grpc.AuthStub(ch)
                auth.UserAdd(pb.AuthUserAddRequest(name="root", password="pw"))
                auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"))
                auth.AuthEnable(pb.AuthEnableRequest())
                kv = rpc_pb2_grpc.KVStub(ch)
                with pytest.raises(grpc.RpcError) as e:
                    kv.Range(pb.RangeRequest(key=b"k"), metadata=(("token", "bogus.-1"),), timeout=2)
                got[kind] = e.value.code()  # type: ignore[attr-defined]
        finally:
            server.kill()
    assert got["synod"] == grpc.StatusCode.UNAUTHENTICATED
    # etcd refuses it too when nothing else is in flight; in a busy sequence it waited (above).
    assert got["etcd"] in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.DEADLINE_EXCEEDED)
