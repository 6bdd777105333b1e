"""Auth over gRPC, differential: what the gateway tests can't send, against synod and a real etcd 3.4.

Watches refused by auth, the Lock service as its caller, JWT tokens, and the
places where synod checks more than etcd 3.4 does on purpose (each asserted on
both sides, so the difference stays visible: docs/compatibility.md, "Auth").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from synod.api.authpb import auth_pb2 as apb
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.api.v3lockpb import v3lock_pb2 as lpb
from synod.api.v3lockpb import v3lock_pb2_grpc
from tests.support.keys import rsa_pem_pair
from tests.support.servers import ServerProcess

FAST = ["--bcrypt-cost", "4"]
Metadata = tuple[tuple[str, str], ...]
KINDS = ("synod", "etcd")


class Side:
    def __init__(self, server: ServerProcess) -> None:
        self.channel = grpc.insecure_channel(server.endpoint)
        self.auth = rpc_pb2_grpc.AuthStub(self.channel)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.watch = rpc_pb2_grpc.WatchStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.lock = v3lock_pb2_grpc.LockStub(self.channel)

    def token(self, name: str, password: str) -> Metadata:
        return (
            ("token", self.auth.Authenticate(pb.AuthenticateRequest(name=name, password=password)).token),
        )

    def set_up(self) -> tuple[Metadata, Metadata]:
        """root, and "bob" with readwrite on [a, b) and read on the key "r"; enabled. Their tokens."""
        a = self.auth
        a.UserAdd(pb.AuthUserAddRequest(name="root", password="rootpw"))
        a.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"))
        a.UserAdd(pb.AuthUserAddRequest(name="bob", password="pw"))
        a.RoleAdd(pb.AuthRoleAddRequest(name="bob"))
        rw = apb.Permission(permType=apb.Permission.READWRITE, key=b"a", range_end=b"b")
        a.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(name="bob", perm=rw))
        r = apb.Permission(permType=apb.Permission.READ, key=b"r")
        a.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(name="bob", perm=r))
        a.UserGrantRole(pb.AuthUserGrantRoleRequest(user="bob", role="bob"))
        a.AuthEnable(pb.AuthEnableRequest())
        return self.token("root", "rootpw"), self.token("bob", "pw")


def answer(call: object) -> object:
    """A call's answer, or its error as (code, message)."""
    try:
        return call() if callable(call) else call
    except grpc.RpcError as e:
        return (e.code(), e.details())  # type: ignore[attr-defined]


@pytest.fixture
def sides(tmp_path: Path) -> Iterator[dict[str, Side]]:
    servers = {k: ServerProcess(k, tmp_path / k, extra_args=FAST) for k in KINDS}
    made: dict[str, Side] = {}
    try:
        for k, s in servers.items():
            s.start()
            made[k] = Side(s)
        yield made
    finally:
        for side in made.values():
            side.channel.close()
        for s in servers.values():
            s.kill()


def first_watch_answer(side: Side, md: Metadata | None, create: pb.WatchCreateRequest) -> pb.WatchResponse:
    stream = side.watch.Watch(iter([pb.WatchRequest(create_request=create)]), metadata=md, timeout=10)
    try:
        resp: pb.WatchResponse = next(iter(stream))
        return resp
    finally:
        stream.cancel()


def test_watches_refused_by_auth(sides: dict[str, Side]) -> None:
    answers: dict[str, list[object]] = {}
    for kind, side in sides.items():
        _, bob = side.set_up()
        got: list[object] = []
        for md, key, end in [
            (bob, b"a1", b""),  # allowed
            (bob, b"a", b"b"),  # allowed: the whole range
            (bob, b"z", b""),  # denied
            (bob, b"a", b"c"),  # denied: more than bob may read
            (None, b"a1", b""),  # no token
            ((("token", "bogus.1"),), b"a1", b""),  # a token nobody issued
        ]:
            resp = first_watch_answer(side, md, pb.WatchCreateRequest(key=key, range_end=end))
            got.append((resp.created, resp.canceled, resp.watch_id, resp.cancel_reason))
        answers[kind] = got
    assert answers["synod"] == answers["etcd"]


def lock_scenario(side: Side) -> list[object]:
    root, bob = side.set_up()
    lease = side.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30), metadata=root).ID
    held = side.lock.Lock(lpb.LockRequest(name=b"a-lock", lease=lease), metadata=bob, timeout=10)
    got: list[object] = [held.key.startswith(b"a-lock/")]
    got.append(side.lock.Unlock(lpb.UnlockRequest(key=held.key), metadata=bob, timeout=10).header.revision)
    for md, name in ((bob, b"z-lock"), (None, b"a-lock")):  # bob may not write there; nobody
        got.append(
            answer(
                lambda md=md, name=name: side.lock.Lock(
                    lpb.LockRequest(name=name, lease=lease), metadata=md, timeout=10
                )
            )
        )
    return got


def test_lock_as_its_caller(sides: dict[str, Side]) -> None:
    assert lock_scenario(sides["synod"]) == lock_scenario(sides["etcd"])


def test_where_synod_checks_more_than_etcd(sides: dict[str, Side]) -> None:
    """etcd 3.4 skips nested txns' ops, a txn put's prev_kv, and checks a from-key watch by its
    first key only; synod refuses all three (docs/compatibility.md)."""
    denied = (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
    nested = pb.TxnRequest(
        success=[
            pb.RequestOp(
                request_txn=pb.TxnRequest(
                    success=[pb.RequestOp(request_put=pb.PutRequest(key=b"z", value=b"x"))]
                )
            )
        ]
    )
    prev_kv = pb.TxnRequest(
        success=[pb.RequestOp(request_put=pb.PutRequest(key=b"a0", value=b"x", prev_kv=True))]
    )
    want = {"etcd": ("accepted", "accepted", False), "synod": (denied, denied, True)}
    for kind, side in sides.items():
        assert stricter_scenario(side, nested, prev_kv) == want[kind], kind


def stricter_scenario(side: Side, nested: pb.TxnRequest, prev_kv: pb.TxnRequest) -> tuple[object, ...]:
    root, bob = side.set_up()
    # A user who may write the key a0 but not read it, for the prev_kv case.
    side.auth.RoleAdd(pb.AuthRoleAddRequest(name="w"), metadata=root)
    w = apb.Permission(permType=apb.Permission.WRITE, key=b"a0")
    side.auth.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(name="w", perm=w), metadata=root)
    side.auth.UserAdd(pb.AuthUserAddRequest(name="wo", password="pw"), metadata=root)
    side.auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="wo", role="w"), metadata=root)
    bob, wo = side.token("bob", "pw"), side.token("wo", "pw")
    got_nested = answer(lambda: side.kv.Txn(nested, metadata=bob) and "accepted")
    got_prev = answer(lambda: side.kv.Txn(prev_kv, metadata=wo) and "accepted")
    from_key = first_watch_answer(side, bob, pb.WatchCreateRequest(key=b"a", range_end=b"\x00"))
    return got_nested, got_prev, from_key.canceled


def jwt_scenario(server: ServerProcess) -> tuple[list[object], object]:
    """What the JWTs get, and (apart) a put with bob's JWT after a change that concerns him not."""
    server.start()
    side = Side(server)
    try:
        root, bob = side.set_up()
        got: list[object] = [root[0][1].count("."), bob[0][1].count(".")]  # header.claims.signature
        got.append(side.kv.Put(pb.PutRequest(key=b"a1", value=b"v"), metadata=bob).header.revision)
        side.auth.RoleAdd(pb.AuthRoleAddRequest(name="later"), metadata=root)
        unrelated = answer(
            lambda: side.kv.Put(pb.PutRequest(key=b"a1", value=b"w"), metadata=bob).header.revision
        )
        # A change of what bob may do makes his JWT stale: he must authenticate again.
        perm = apb.Permission(permType=apb.Permission.READ, key=b"later")
        side.auth.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(name="bob", perm=perm), metadata=root)
        got.append(answer(lambda: side.kv.Put(pb.PutRequest(key=b"a1", value=b"x"), metadata=bob)))
        got.append(answer(lambda: side.kv.Range(pb.RangeRequest(key=b"a1"), metadata=bob)))
        fresh = side.token("bob", "pw")
        got.append(side.kv.Range(pb.RangeRequest(key=b"a1"), metadata=fresh).count)
        return got, unrelated
    finally:
        side.channel.close()
        server.kill()


def test_jwt_tokens(tmp_path: Path) -> None:
    """etcd 3.4 makes every JWT stale at any auth change (etcd-io/etcd#13300); synod only those of
    the users the change concerns (docs/compatibility.md)."""
    priv, pub, _ = rsa_pem_pair(tmp_path, "jwt")
    spec = f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=5m"
    synod, etcd = (ServerProcess(k, tmp_path / k, extra_args=[*FAST, "--auth-token", spec]) for k in KINDS)
    (ours, our_unrelated), (theirs, their_unrelated) = jwt_scenario(synod), jwt_scenario(etcd)
    assert ours == theirs
    stale = (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: revision of auth store is old")
    assert their_unrelated == stale
    assert isinstance(our_unrelated, int)  # accepted: the put's revision
