"""Generated protobuf modules are fresh and match etcd 3.5's wire contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool

# Importing the modules registers their descriptors in the default pool.
from synod.api.authpb import auth_pb2
from synod.api.etcdserverpb import etcdserver_pb2, raft_internal_pb2, rpc_pb2  # noqa: F401
from synod.api.membershippb import membership_pb2  # noqa: F401
from synod.api.mvccpb import kv_pb2
from synod.api.v3electionpb import v3election_pb2  # noqa: F401
from synod.api.v3lockpb import v3lock_pb2  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]

UNARY = (False, False)
SERVER_STREAM = (False, True)
BIDI = (True, True)

# fully qualified service -> [(method, (client_streaming, server_streaming))]
EXPECTED_SERVICES: dict[str, list[tuple[str, tuple[bool, bool]]]] = {
    "etcdserverpb.KV": [
        ("Range", UNARY),
        ("Put", UNARY),
        ("DeleteRange", UNARY),
        ("Txn", UNARY),
        ("Compact", UNARY),
    ],
    "etcdserverpb.Watch": [("Watch", BIDI)],
    "etcdserverpb.Lease": [
        ("LeaseGrant", UNARY),
        ("LeaseRevoke", UNARY),
        ("LeaseKeepAlive", BIDI),
        ("LeaseTimeToLive", UNARY),
        ("LeaseLeases", UNARY),
    ],
    "etcdserverpb.Cluster": [
        ("MemberAdd", UNARY),
        ("MemberRemove", UNARY),
        ("MemberUpdate", UNARY),
        ("MemberList", UNARY),
        ("MemberPromote", UNARY),
    ],
    "etcdserverpb.Maintenance": [
        ("Alarm", UNARY),
        ("Status", UNARY),
        ("Defragment", UNARY),
        ("Hash", UNARY),
        ("HashKV", UNARY),
        ("Snapshot", SERVER_STREAM),
        ("MoveLeader", UNARY),
        ("Downgrade", UNARY),
    ],
    "etcdserverpb.Auth": [
        ("AuthEnable", UNARY),
        ("AuthDisable", UNARY),
        ("AuthStatus", UNARY),
        ("Authenticate", UNARY),
        ("UserAdd", UNARY),
        ("UserGet", UNARY),
        ("UserList", UNARY),
        ("UserDelete", UNARY),
        ("UserChangePassword", UNARY),
        ("UserGrantRole", UNARY),
        ("UserRevokeRole", UNARY),
        ("RoleAdd", UNARY),
        ("RoleGet", UNARY),
        ("RoleList", UNARY),
        ("RoleDelete", UNARY),
        ("RoleGrantPermission", UNARY),
        ("RoleRevokePermission", UNARY),
    ],
    "v3lockpb.Lock": [("Lock", UNARY), ("Unlock", UNARY)],
    "v3electionpb.Election": [
        ("Campaign", UNARY),
        ("Proclaim", UNARY),
        ("Leader", UNARY),
        ("Observe", SERVER_STREAM),
        ("Resign", UNARY),
    ],
}


def test_generated_modules_are_fresh() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("service", sorted(EXPECTED_SERVICES))
def test_service_methods(service: str) -> None:
    pool = descriptor_pool.Default()
    sd = pool.FindServiceByName(service)
    got = [(m.name, (m.client_streaming, m.server_streaming)) for m in sd.methods]
    assert got == EXPECTED_SERVICES[service]
    for name, _ in EXPECTED_SERVICES[service]:
        assert pool.FindMethodByName(f"{service}.{name}").full_name == f"{service}.{name}"


def test_method_io_types() -> None:
    pool = descriptor_pool.Default()
    cases = {
        "etcdserverpb.KV.Compact": ("CompactionRequest", "CompactionResponse"),
        "etcdserverpb.Maintenance.Snapshot": ("SnapshotRequest", "SnapshotResponse"),
        "etcdserverpb.Auth.UserAdd": ("AuthUserAddRequest", "AuthUserAddResponse"),
        "v3electionpb.Election.Observe": ("LeaderRequest", "LeaderResponse"),
    }
    for method, (req, resp) in cases.items():
        md = pool.FindMethodByName(method)
        assert (md.input_type.name, md.output_type.name) == (req, resp)


@pytest.mark.parametrize(
    ("message", "field", "number"),
    [
        ("etcdserverpb.RangeRequest", "max_create_revision", 13),
        ("etcdserverpb.Compare", "range_end", 64),
        ("etcdserverpb.Compare", "lease", 8),
        ("etcdserverpb.WatchResponse", "events", 11),
        ("etcdserverpb.WatchCreateRequest", "fragment", 8),
        ("etcdserverpb.PutRequest", "ignore_lease", 6),
        ("etcdserverpb.Member", "isLearner", 5),
        ("etcdserverpb.StatusResponse", "isLearner", 10),
        ("etcdserverpb.StatusResponse", "dbSizeInUse", 9),
        ("etcdserverpb.MemberListRequest", "linearizable", 1),
        ("etcdserverpb.AuthUserAddRequest", "hashedPassword", 4),
        ("etcdserverpb.InternalRaftRequest", "header", 100),
        ("etcdserverpb.InternalRaftRequest", "auth_status", 1013),
        ("etcdserverpb.InternalRaftRequest", "downgrade_info_set", 1302),
        ("mvccpb.KeyValue", "lease", 6),
    ],
)
def test_field_numbers(message: str, field: str, number: int) -> None:
    md = descriptor_pool.Default().FindMessageTypeByName(message)
    assert md.fields_by_name[field].number == number


def test_compare_oneof() -> None:
    md = descriptor_pool.Default().FindMessageTypeByName("etcdserverpb.Compare")
    oneof = md.oneofs_by_name["target_union"]
    assert sorted(f.number for f in oneof.fields) == [4, 5, 6, 7, 8]
    assert md.fields_by_name["range_end"].containing_oneof is None


def test_enums() -> None:
    assert rpc_pb2.AlarmType.Value("NOSPACE") == 1
    assert rpc_pb2.AlarmType.Value("CORRUPT") == 2
    assert rpc_pb2.DowngradeRequest.DowngradeAction.Value("CANCEL") == 2
    assert kv_pb2.Event.EventType.Value("DELETE") == 1
    assert auth_pb2.Permission.Type.Value("READWRITE") == 2


def test_wire_bytes() -> None:
    # Hand-encoded: field 3 (key) = b"a", field 64 (range_end) = b"b".
    cmp = rpc_pb2.Compare(key=b"a", range_end=b"b")
    assert cmp.SerializeToString() == bytes.fromhex("1a0161" + "820401" + "62")
