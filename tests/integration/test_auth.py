"""Auth across what the differential tests can't reach: restarts, JWT keys, the member's own
lease revocations, Lock through the in-process client, front-end processes, both gRPC engines
and the gateway's Authorization header. (Answers are compared with etcd's in
tests/differential/test_auth_differential.py.)"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import jwt
import pytest

from synod import AsyncClient
from synod.api.authpb import auth_pb2 as apb
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.api.v3lockpb import v3lock_pb2 as lpb
from synod.api.v3lockpb import v3lock_pb2_grpc
from synod.client.errors import EtcdError
from tests.support.http_json import post
from tests.support.keys import rsa_pem_pair
from tests.support.servers import ClusterProcesses, ServerProcess, wait_until

FAST = ("--bcrypt-cost", "4")
Metadata = tuple[tuple[str, str], ...]


class Stubs:
    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        self.auth = rpc_pb2_grpc.AuthStub(self.channel)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.lock = v3lock_pb2_grpc.LockStub(self.channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(self.channel)

    def token(self, name: str, password: str) -> Metadata:
        return (
            ("token", self.auth.Authenticate(pb.AuthenticateRequest(name=name, password=password)).token),
        )


@pytest.fixture
def stubs() -> Iterator[Callable[[ServerProcess], Stubs]]:
    made: list[Stubs] = []

    def make(server: ServerProcess) -> Stubs:
        made.append(Stubs(server.endpoint))
        return made[-1]

    yield make
    for s in made:
        s.channel.close()


def set_up(s: Stubs) -> Metadata:
    """root (password "rootpw") and user "reader" (password "pw", role "r": read on [a, c)), enabled."""
    s.auth.UserAdd(pb.AuthUserAddRequest(name="root", password="rootpw"))
    s.auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"))
    s.auth.UserAdd(pb.AuthUserAddRequest(name="reader", password="pw"))
    s.auth.RoleAdd(pb.AuthRoleAddRequest(name="r"))
    perm = apb.Permission(permType=apb.Permission.READ, key=b"a", range_end=b"c")
    s.auth.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(name="r", perm=perm))
    s.auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="reader", role="r"))
    s.auth.AuthEnable(pb.AuthEnableRequest())
    return s.token("root", "rootpw")


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    return err.code(), err.details()  # type: ignore[attr-defined]


DENIED = (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
INVALID_TOKEN = (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
NO_USER = (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty")


def test_auth_state_survives_a_restart_and_simple_tokens_do_not(
    start_server: Callable[..., ServerProcess], stubs: Callable[[ServerProcess], Stubs]
) -> None:
    server = start_server("synod", *FAST)
    s = stubs(server)
    root = set_up(s)
    s.kv.Put(pb.PutRequest(key=b"b", value=b"1"), metadata=root)
    server.stop()  # (after a kill, replaying the log would hand out the same tokens again, as etcd's)
    server.start()
    # Tokens are in memory only: the old one is unknown now, the passwords are not.
    assert code_of(lambda: s.kv.Range(pb.RangeRequest(key=b"b"), metadata=root)) == INVALID_TOKEN
    reader = s.token("reader", "pw")
    assert s.kv.Range(pb.RangeRequest(key=b"b"), metadata=reader).kvs[0].value == b"1"
    assert code_of(lambda: s.kv.Put(pb.PutRequest(key=b"b", value=b"2"), metadata=reader)) == DENIED
    assert code_of(lambda: s.kv.Range(pb.RangeRequest(key=b"b"))) == NO_USER
    root = s.token("root", "rootpw")
    assert list(s.auth.UserList(pb.AuthUserListRequest(), metadata=root).users) == ["reader", "root"]


def test_jwt_tokens_are_signed_and_outlive_a_restart(
    tmp_path: Path, start_server: Callable[..., ServerProcess], stubs: Callable[[ServerProcess], Stubs]
) -> None:
    priv, pub, key = rsa_pem_pair(tmp_path, "jwt")
    spec = f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=10m"
    server = start_server("synod", *FAST, "--auth-token", spec)
    s = stubs(server)
    root = set_up(s)
    claims = jwt.decode(root[0][1], key.public_key(), algorithms=["RS256"])
    assert claims["username"] == "root" and isinstance(claims["revision"], int) and "exp" in claims
    s.kv.Put(pb.PutRequest(key=b"k", value=b"v"), metadata=root)
    server.kill()
    server.start()
    # A JWT is checked by its signature, so the member needs no memory of it.
    assert s.kv.Range(pb.RangeRequest(key=b"k"), metadata=root).count == 1
    _, _, other = rsa_pem_pair(tmp_path, "other")
    forged = jwt.encode(claims, other, algorithm="RS256")  # signed with a key the member doesn't know
    assert code_of(lambda: s.kv.Range(pb.RangeRequest(key=b"k"), metadata=(("token", forged),))) == (
        INVALID_TOKEN
    )
    # A change that does not concern root leaves its JWT as good as before (etcd 3.4 would call it
    # stale); one that does makes it stale: the client must fetch a new one.
    s.auth.RoleAdd(pb.AuthRoleAddRequest(name="later"), metadata=root)
    s.kv.Put(pb.PutRequest(key=b"k", value=b"1"), metadata=root)
    s.auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="later"), metadata=root)
    assert code_of(lambda: s.kv.Put(pb.PutRequest(key=b"k", value=b"2"), metadata=root)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: revision of auth store is old",
    )


def test_bad_jwt_options_stop_the_start(tmp_path: Path) -> None:
    server = ServerProcess(
        "synod", tmp_path / "m", extra_args=["--auth-token", "jwt,sign-method=RS256,priv-key=/nonexistent"]
    )
    with pytest.raises(RuntimeError, match="cannot read /nonexistent"):
        server.start()


def test_expired_leases_are_revoked_while_auth_is_enabled(
    start_server: Callable[..., ServerProcess], stubs: Callable[[ServerProcess], Stubs]
) -> None:
    s = stubs(start_server("synod", *FAST))
    root = set_up(s)
    lease = s.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=2), metadata=root).ID
    s.kv.Put(pb.PutRequest(key=b"ephemeral", value=b"x", lease=lease), metadata=root)
    # The member revokes it as itself, needing no user's token.
    wait_until(
        lambda: s.kv.Range(pb.RangeRequest(key=b"ephemeral"), metadata=root).count == 0,
        15,
        "the expired lease's key to go",
    )


def test_lock_service_acts_as_its_caller(
    start_server: Callable[..., ServerProcess], stubs: Callable[[ServerProcess], Stubs]
) -> None:
    s = stubs(start_server("synod", *FAST))
    root = set_up(s)
    reader = s.token("reader", "pw")
    lease = s.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30), metadata=root).ID
    held = s.lock.Lock(lpb.LockRequest(name=b"locks/x", lease=lease), metadata=root)
    assert held.key.startswith(b"locks/x/")
    s.lock.Unlock(lpb.UnlockRequest(key=held.key), metadata=root)
    # The lock's keys are written as the caller: reader may not write there, a caller without
    # a token is nobody. (etcd answers both as Unknown, with these words.)
    code, details = code_of(
        lambda: s.lock.Lock(lpb.LockRequest(name=b"locks/x", lease=lease), metadata=reader)
    )
    assert (code, details) == (grpc.StatusCode.UNKNOWN, "etcdserver: permission denied")
    code, details = code_of(lambda: s.lock.Lock(lpb.LockRequest(name=b"locks/x", lease=lease)))
    assert (code, details) == (grpc.StatusCode.UNKNOWN, "etcdserver: user name is empty")


def test_the_client_library_authenticates_and_is_refused_as_etcd_refuses(
    start_server: Callable[..., ServerProcess], stubs: Callable[[ServerProcess], Stubs]
) -> None:
    server = start_server("synod", *FAST)
    set_up(stubs(server))

    async def scenario() -> None:
        async with AsyncClient(server.endpoint, user="reader", password="pw") as c:
            with pytest.raises(EtcdError, match="permission denied"):
                await c.put("b", "1")
            assert (await c.get("b")).count == 0
        with pytest.raises(EtcdError, match="authentication failed"):
            async with AsyncClient(server.endpoint, user="reader", password="wrong") as c:
                await c.get("b")

    asyncio.run(scenario())


@pytest.mark.parametrize("engine", ["wire", "grpcio"])
def test_tokens_reach_the_member_through_front_ends_and_either_engine(
    engine: str, start_server: Callable[..., ServerProcess], stubs: Callable[[ServerProcess], Stubs]
) -> None:
    server = start_server("synod", *FAST, "--frontend-procs", "2", "--grpc-engine", engine)
    root = set_up(stubs(server))
    # Each new connection may land on the member or on either front end.
    for i in range(12):
        s = stubs(server)
        s.kv.Put(pb.PutRequest(key=b"b%d" % i, value=b"v"), metadata=root)
        assert code_of(lambda s=s: s.kv.Range(pb.RangeRequest(key=b"b"))) == NO_USER  # type: ignore[misc]
        stream = s.maintenance.Snapshot(pb.SnapshotRequest(), metadata=root)
        assert next(iter(stream)).blob  # a stream carries the token too
    assert stubs(server).kv.Range(pb.RangeRequest(key=b"b", range_end=b"c"), metadata=root).count == 12


def test_the_gateway_reads_the_token_from_authorization(
    start_server: Callable[..., ServerProcess], stubs: Callable[[ServerProcess], Stubs]
) -> None:
    server = start_server("synod", *FAST)
    s = stubs(server)
    set_up(s)
    reply = post(server.endpoint, "/v3/auth/authenticate", {"name": "reader", "password": "pw"})
    token = reply.json["token"]
    key = base64.b64encode(b"b").decode()
    s.kv.Put(pb.PutRequest(key=b"b", value=b"v"), metadata=s.token("root", "rootpw"))
    got = post(server.endpoint, "/v3/kv/range", {"key": key}, headers={"Authorization": token})
    assert got.status == 200 and got.json["count"] == "1"
    denied = post(server.endpoint, "/v3/kv/put", {"key": key, "value": key}, headers={"Authorization": token})
    assert denied.status == 403
    assert json.loads(denied.body)["message"] == "etcdserver: permission denied"
    nobody = post(server.endpoint, "/v3/kv/range", {"key": key})
    assert nobody.status == 400 and nobody.json["message"] == "etcdserver: user name is empty"


def test_a_cluster_shares_users_and_simple_tokens(tmp_path: Path) -> None:
    cluster = ClusterProcesses("synod", tmp_path, extra_args=list(FAST)).start()
    try:
        first, second, third = (Stubs(m.endpoint) for m in cluster.members)
        root = set_up(first)
        # A token issued through one member works on the others as soon as they have applied it
        # (a member that has not yet waits for it), for writes proposed there and for reads.
        reader = second.token("reader", "pw")
        third_root = third.token("root", "rootpw")
        third.kv.Put(pb.PutRequest(key=b"b", value=b"from-third"), metadata=third_root)
        assert first.kv.Range(pb.RangeRequest(key=b"b"), metadata=reader).kvs[0].value == b"from-third"
        assert third.kv.Range(pb.RangeRequest(key=b"b"), metadata=reader).count == 1
        assert code_of(lambda: first.kv.Put(pb.PutRequest(key=b"b", value=b"x"), metadata=reader)) == DENIED
        # A change through one member applies on every member: the reader loses its role.
        second.auth.UserRevokeRole(pb.AuthUserRevokeRoleRequest(name="reader", role="r"), metadata=root)
        reader = third.token("reader", "pw")
        assert code_of(lambda: third.kv.Range(pb.RangeRequest(key=b"b"), metadata=reader)) == DENIED
        for s in (first, second, third):
            s.channel.close()
    finally:
        cluster.kill()


def test_the_client_library_manages_users_and_roles(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server("synod", *FAST)

    async def scenario() -> None:
        async with AsyncClient(server.endpoint) as c:
            await c.user_add("root", "rootpw")
            await c.user_grant_role("root", "root")
            await c.user_add("svc", no_password=True)
            await c.role_add("svc")
            await c.role_grant_permission("svc", "svc/", prefix=True, perm="readwrite")
            await c.role_grant_permission("svc", "config", perm="read")
            await c.user_grant_role("svc", "svc")
            got = await c.role_get("svc")
            assert [(p.key, p.range_end, p.permType) for p in got.perm] == [
                (b"config", b"", apb.Permission.READ),
                (b"svc/", b"svc0", apb.Permission.READWRITE),
            ]
            assert list((await c.user_get("svc")).roles) == ["svc"]
            await c.auth_enable()
        async with AsyncClient(server.endpoint, user="root", password="rootpw") as root:
            assert list((await root.user_list()).users) == ["root", "svc"]
            await root.role_revoke_permission("svc", "config")
            await root.user_revoke_role("svc", "svc")
            await root.role_delete("svc")
            assert list((await root.role_list()).roles) == []  # "root" needs no role entry
            await root.user_delete("svc")
            await root.user_change_password("root", "newpw")  # which ends this client's token
        async with AsyncClient(server.endpoint, user="root", password="newpw") as root:
            await root.auth_disable()

    asyncio.run(scenario())
