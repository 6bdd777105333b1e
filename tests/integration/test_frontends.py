"""gRPC front-end processes: connections spread over them are answered as by the member itself."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import grpc
import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.servers import wait_until

CONNECTIONS = 24


def _channels(endpoint: str) -> list[grpc.Channel]:
    # A private subchannel pool per channel: one TCP connection each, spread by the kernel.
    return [
        grpc.insecure_channel(endpoint, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CONNECTIONS)
    ]


def _frontend_pids(member_pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(member_pid), "-f", "synod.server.frontend"], capture_output=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def synod3(start_server):
    """A member with two front ends: three processes share the client port."""
    server = start_server("synod", "--frontend-procs", "2")
    wait_until(lambda: len(_frontend_pids(server.proc.pid)) == 2, 30, "two front ends")
    return server


def test_every_connection_gets_the_members_answers(synod3):
    channels = _channels(synod3.endpoint)
    try:
        revisions = []
        for i, ch in enumerate(channels):
            kv = rpc_pb2_grpc.KVStub(ch)
            revisions.append(kv.Put(pb.PutRequest(key=b"k%02d" % i, value=b"v")).header.revision)
            with pytest.raises(grpc.RpcError) as err:
                kv.Put(pb.PutRequest(key=b"", value=b"v"))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details() == "etcdserver: key is not provided"
            with pytest.raises(grpc.RpcError) as err:
                rpc_pb2_grpc.LeaseStub(ch).LeaseRevoke(pb.LeaseRevokeRequest(ID=12345))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert err.value.details() == "etcdserver: requested lease not found"
        # One member orders every write, whichever process took the connection.
        assert revisions == list(range(2, 2 + CONNECTIONS))
        got = rpc_pb2_grpc.KVStub(channels[-1]).Range(pb.RangeRequest(key=b"k", range_end=b"l"))
        assert got.count == CONNECTIONS
    finally:
        for ch in channels:
            ch.close()


def test_a_killed_front_end_is_replaced(synod3):
    member = synod3.proc.pid
    victim = _frontend_pids(member)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: victim not in _frontend_pids(member) and len(_frontend_pids(member)) == 2,
        30,
        "a new front end",
    )
    channels = _channels(synod3.endpoint)
    try:
        for ch in channels:
            rpc_pb2_grpc.KVStub(ch).Put(pb.PutRequest(key=b"after", value=b"restart"), timeout=10)
    finally:
        for ch in channels:
            ch.close()


def test_front_ends_exit_with_their_member(synod3):
    pids = _frontend_pids(synod3.proc.pid)
    synod3.kill()

    def gone() -> bool:
        # Exited, or a zombie waiting for whoever inherited it to reap it.
        return all(not _alive(p) for p in pids)

    wait_until(gone, 10, "front ends to exit")
