"""A 3-member synod cluster under faults, with concurrent clients; the history must be linearizable.

Clients put, get (linearizable) and compare-and-swap a few keys through random
members while a seeded fault schedule SIGKILLs and restarts members (the
leader among them), freezes them with SIGSTOP/SIGCONT, cuts one off from
the others with a partition (peer traffic goes through fault-injecting
proxies, tests/support/peer_proxy.py), and replaces one with a new member
with empty data (removed, killed, added on the same addresses and started
with --initial-cluster-state existing; at least once a run). Afterwards:

* the recorded history is linearizable (tests/support/linearizability.py;
  a write whose answer never came may or may not have happened);
* every acknowledged write is in it, so none was lost (the checker sees the
  final reads);
* every member reports the same HashKV at the same revision.

The run prints its seed; ``SYNOD_ROBUSTNESS_SEED=N`` replays a schedule
(the faults' order and timing; the clients' interleaving is the machine's).
``--run-slow`` runs a longer schedule.
"""

from __future__ import annotations

import math
import os
import random
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.linearizability import Operation, check
from tests.support.servers import ClusterProcesses, ServerProcess, wait_until

KEYS = [b"r/a", b"r/b", b"r/c"]
CLIENTS = 6
CALL_TIMEOUT = 3.0


class Client(threading.Thread):
    def __init__(self, n: int, cluster: ClusterProcesses, stop: threading.Event, seed: int) -> None:
        super().__init__(daemon=True)
        self.n = n
        self.rng = random.Random(seed)
        self.stop = stop
        self.history: list[Operation] = []
        self.channels = [grpc.insecure_channel(e) for e in cluster.endpoints]
        self.acked = 0

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            seq += 1
            kv = rpc_pb2_grpc.KVStub(self.rng.choice(self.channels))
            key = self.rng.choice(KEYS)
            value = b"%d-%d" % (self.n, seq)
            r = self.rng.random()
            call = time.monotonic()
            try:
                if r < 0.4:
                    kv.Put(pb.PutRequest(key=key, value=value), timeout=CALL_TIMEOUT)
                    self.history.append(Operation(self.n, call, time.monotonic(), "put", key, value=value))
                    self.acked += 1
                elif r < 0.75:
                    got = kv.Range(pb.RangeRequest(key=key), timeout=CALL_TIMEOUT)
                    out = got.kvs[0].value if got.kvs else None
                    self.history.append(Operation(self.n, call, time.monotonic(), "get", key, output=out))
                else:
                    expected = self._last_seen(key)
                    eq = pb.Compare.EQUAL
                    cmp = (
                        pb.Compare(key=key, target=pb.Compare.VALUE, result=eq, value=expected)
                        if expected is not None
                        else pb.Compare(key=key, target=pb.Compare.VERSION, result=eq, version=0)
                    )
                    txn = pb.TxnRequest(
                        compare=[cmp], success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))]
                    )
                    resp = kv.Txn(txn, timeout=CALL_TIMEOUT)
                    done = time.monotonic()
                    self.history.append(
                        Operation(self.n, call, done, "cas", key, value, expected, output=resp.succeeded)
                    )
                    self.acked += 1
            except grpc.RpcError:
                # A failed read changed nothing; a failed write may or may not have happened.
                if r < 0.4:
                    self.history.append(Operation(self.n, call, math.inf, "put", key, value=value))
                elif r >= 0.75:
                    expected = self._last_seen(key)
                    self.history.append(Operation(self.n, call, math.inf, "cas", key, value, expected))

    def _last_seen(self, key: bytes) -> bytes | None:
        for op in reversed(self.history):
            if op.key == key and op.ret != math.inf:
                if op.kind == "get":
                    return op.output  # type: ignore[return-value]
                if op.kind == "put" or (op.kind == "cas" and op.output):
                    return op.value
        return None


def current_leader(cluster: ClusterProcesses) -> ServerProcess | None:
    for m in cluster.members:
        try:
            with grpc.insecure_channel(m.endpoint) as ch:
                st = rpc_pb2_grpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=1)
        except grpc.RpcError:
            continue
        for candidate in cluster.members:
            if cluster.member_id(candidate) == st.leader:
                return candidate
    return None


def faults(cluster: ClusterProcesses, rng: random.Random, duration: float, log: list[str]) -> None:
    """Kill, restart, freeze, thaw and partition members on a seeded schedule, one fault at a time.

    A third of the faults go to the leader (when one is known).
    """
    deadline = time.monotonic() + duration
    kinds = ["kill", "stop", "partition"] if cluster.proxies is not None else ["kill", "stop"]
    replaced = False
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.3, 1.2))
        victim = rng.choice(cluster.members)
        if rng.random() < 1 / 3:
            victim = current_leader(cluster) or victim
        # Every run replaces one member, at a seeded moment in its first half; longer runs more.
        if (not replaced and rng.random() < 0.25) or rng.random() < 0.05:
            fault = "replace"
            replaced = True
        else:
            fault = rng.choice(kinds)
        if not replaced and time.monotonic() > deadline - duration / 2:
            fault, replaced = "replace", True
        assert victim.proc is not None
        if fault == "replace":
            log.append(f"replace {victim.name}")
            cluster.replace(victim)
            log.append(f"replaced {victim.name}")
        elif fault == "partition":
            assert cluster.proxies is not None
            others = [cluster.member_id(m) for m in cluster.members if m is not victim]
            log.append(f"partition {victim.name}")
            cluster.proxies.cut([[cluster.member_id(victim)], others])
            time.sleep(rng.uniform(0.5, 3.0))
            cluster.proxies.heal()
            log.append("heal")
        elif fault == "kill":
            log.append(f"kill {victim.name}")
            victim.kill()
            time.sleep(rng.uniform(0.2, 1.5))
            victim.start()
            log.append(f"restart {victim.name}")
        else:
            log.append(f"stop {victim.name}")
            victim.proc.send_signal(signal.SIGSTOP)
            time.sleep(rng.uniform(0.2, 2.5))
            victim.proc.send_signal(signal.SIGCONT)
            log.append(f"cont {victim.name}")


def hash_kv(member: ServerProcess, revision: int) -> int:
    with grpc.insecure_channel(member.endpoint) as ch:
        resp = rpc_pb2_grpc.MaintenanceStub(ch).HashKV(pb.HashKVRequest(revision=revision), timeout=10)
        return resp.hash


def run(tmp_path: Path, seed: int, duration: float) -> None:
    print(f"robustness seed {seed}")
    rng = random.Random(seed)
    cluster = ClusterProcesses("synod", tmp_path, extra_args=["--frontend-procs", "0"], proxied=True).start()
    stop = threading.Event()
    clients = [Client(i, cluster, stop, seed * 100 + i) for i in range(CLIENTS)]
    log: list[str] = []
    try:
        for c in clients:
            c.start()
        try:
            faults(cluster, rng, duration, log)
        finally:
            print("faults:", ", ".join(log))
        stop.set()
        for c in clients:
            c.join(CALL_TIMEOUT * 3)
        # Final reads through every member, after the faults: acknowledged writes must be there.
        history = [op for c in clients for op in c.history]
        for key in KEYS:
            for i, m in enumerate(cluster.members):
                call = time.monotonic()

                def read(m: ServerProcess = m, key: bytes = key) -> pb.RangeResponse | None:
                    try:
                        with grpc.insecure_channel(m.endpoint) as ch:
                            return rpc_pb2_grpc.KVStub(ch).Range(pb.RangeRequest(key=key), timeout=5)
                    except grpc.RpcError:
                        return None

                got = wait_until(read, 30, f"a final read of {key!r} from {m.name}", interval=0.2)
                out = got.kvs[0].value if got.kvs else None
                history.append(Operation(1000 + i, call, time.monotonic(), "get", key, output=out))
        result = check(history, timeout=120)
        assert result.ok, f"seed {seed}: {result.explanation}\nfaults: {log}"
        assert sum(c.acked for c in clients) > 20, f"seed {seed}: too few writes succeeded to mean anything"
        # Same data everywhere: every member hashes alike at the same revision.
        rev = wait_until(
            lambda: min(
                rpc_pb2_grpc.KVStub(grpc.insecure_channel(m.endpoint))
                .Range(pb.RangeRequest(key=b"r/", serializable=True), timeout=5)
                .header.revision
                for m in cluster.members
            ),
            30,
            "every member to apply",
        )
        hashes = {m.name: hash_kv(m, rev) for m in cluster.members}
        assert len(set(hashes.values())) == 1, f"seed {seed}: members differ at revision {rev}: {hashes}"
    finally:
        stop.set()
        for m in cluster.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.send_signal(signal.SIGCONT)
        cluster.kill()


def _seed() -> int:
    env = os.environ.get("SYNOD_ROBUSTNESS_SEED")
    return int(env) if env else random.SystemRandom().randrange(1 << 30)


def test_cluster_under_kills_freezes_partitions_and_replacement_stays_linearizable(tmp_path: Path) -> None:
    run(tmp_path, _seed(), duration=15.0)


@pytest.mark.slow
def test_cluster_under_faults_for_minutes_stays_linearizable(tmp_path: Path) -> None:
    run(tmp_path, _seed(), duration=180.0)
