"""Watches and leases across a leader's death in a 3-member synod cluster (real processes)."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.api.mvccpb import kv_pb2
from tests.integration.test_cluster import put_eventually
from tests.support.servers import ClusterProcesses, ServerProcess, wait_until


def leader_and_followers(cluster: ClusterProcesses) -> tuple[ServerProcess, list[ServerProcess]]:
    def find() -> tuple[ServerProcess, list[ServerProcess]] | None:
        ids: dict[int, ServerProcess] = {}
        leaders = set()
        for m in cluster.members:
            try:
                st = rpc_pb2_grpc.MaintenanceStub(grpc.insecure_channel(m.endpoint)).Status(
                    pb.StatusRequest(), timeout=2
                )
            except grpc.RpcError:
                continue
            ids[st.header.member_id] = m
            leaders.add(st.leader)
        if len(leaders) != 1 or not leaders - {0} or next(iter(leaders)) not in ids:
            return None
        leader = ids[next(iter(leaders))]
        return leader, [m for m in cluster.members if m is not leader]

    found: tuple[ServerProcess, list[ServerProcess]] = wait_until(find, 30, "one leader", interval=0.1)
    return found


class Watcher:
    """A watch on ``prefix`` from one member, collecting every event in a thread."""

    def __init__(self, endpoint: str, prefix: bytes) -> None:
        self.events: list[kv_pb2.Event] = []
        self.created = threading.Event()
        self._channel = grpc.insecure_channel(endpoint)
        self._stop = threading.Event()
        end = prefix[:-1] + b"\xff"
        create = pb.WatchRequest(create_request=pb.WatchCreateRequest(key=prefix, range_end=end))

        def requests():  # type: ignore[no-untyped-def]
            yield create
            self._stop.wait()

        self._call = rpc_pb2_grpc.WatchStub(self._channel).Watch(requests())
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for resp in self._call:
                if resp.created:
                    self.created.set()
                self.events.extend(resp.events)
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._call.cancel()
        self._channel.close()


def test_a_watch_on_a_follower_keeps_delivering_after_the_leader_dies(tmp_path: Path) -> None:
    cluster = ClusterProcesses("synod", tmp_path).start()
    try:
        put_eventually(cluster.endpoints, b"w/start", b"0")
        leader, followers = leader_and_followers(cluster)
        watcher = Watcher(followers[0].endpoint, b"w/")
        assert watcher.created.wait(10)
        acked: list[int] = []
        for i in range(30):
            acked.append(put_eventually(cluster.endpoints, b"w/%03d" % i, b"x").header.revision)
        leader.kill()
        live = [f.endpoint for f in followers]
        for i in range(30, 60):
            acked.append(put_eventually(live, b"w/%03d" % i, b"x").header.revision)
        wait_until(lambda: len(watcher.events) >= 60, 30, "every event on the follower's watch")
        watcher.close()
        got = [(e.kv.key, e.kv.mod_revision) for e in watcher.events]
        assert got == [(b"w/%03d" % i, rev) for i, rev in enumerate(acked)]  # no gap, no duplicate
    finally:
        cluster.kill()


def test_a_lease_kept_alive_through_a_follower_expires_once_after_a_failover(tmp_path: Path) -> None:
    cluster = ClusterProcesses("synod", tmp_path).start()
    try:
        put_eventually(cluster.endpoints, b"l/start", b"0")
        leader, followers = leader_and_followers(cluster)
        follower = followers[0]
        lease = rpc_pb2_grpc.LeaseStub(grpc.insecure_channel(follower.endpoint))
        granted = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=3), timeout=10)
        kv = rpc_pb2_grpc.KVStub(grpc.insecure_channel(follower.endpoint))
        kv.Put(pb.PutRequest(key=b"l/key", value=b"v", lease=granted.ID), timeout=10)
        watcher = Watcher(followers[1].endpoint, b"l/")
        assert watcher.created.wait(10)
        # Keep-alives sent to a follower reach the leader's lessor.
        for _ in range(3):
            (resp,) = list(lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=granted.ID)]), timeout=10))
            assert resp.TTL == 3
        ttl = lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=granted.ID), timeout=10)
        assert 0 < ttl.TTL <= 3 and ttl.grantedTTL == 3
        leader.kill()
        # The new leader gives the lease a full TTL, then revokes it: its key is deleted once.
        expired = lambda: any(e.type == kv_pb2.Event.DELETE for e in watcher.events)  # noqa: E731
        wait_until(expired, 30, "the lease to expire")
        live = [f.endpoint for f in followers]
        put_eventually(live, b"l/after", b"1")
        wait_until(lambda: any(e.kv.key == b"l/after" for e in watcher.events), 30, "a later event")
        watcher.close()
        deletes = [e.kv.key for e in watcher.events if e.type == kv_pb2.Event.DELETE]
        assert deletes == [b"l/key"]
        for endpoint in live:
            got = rpc_pb2_grpc.KVStub(grpc.insecure_channel(endpoint)).Range(pb.RangeRequest(key=b"l/key"))
            assert got.count == 0
    finally:
        cluster.kill()
