"""Crash safety: SIGKILL at random moments loses no acknowledged write and applies nothing twice.

Every writer puts unique keys, one per request. After each kill and restart:
every acknowledged put is there with the value and revision it was
acknowledged with; every key has version 1 (an entry replayed twice would give
version 2); and the revisions are exactly 2..current, one per key (nothing
applied twice, nothing missing in between). The kill moment is chosen by the
seed as a number of acknowledged writes, so the run is a function of the seed
up to thread scheduling.
"""

from __future__ import annotations

import os
import random
import threading

import grpc
import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.wal import wal as walmod
from tests.support.servers import ServerProcess, wait_until

WRITERS = 8


class Writers:
    """Threads that put unique keys until stopped, recording what was acknowledged."""

    def __init__(self, endpoint: str, cycle: int) -> None:
        self.acked: dict[bytes, tuple[bytes, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(endpoint, f"c{cycle}-w{i}"), daemon=True)
            for i in range(WRITERS)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def _run(self, endpoint: str, prefix: str) -> None:
        with grpc.insecure_channel(endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            seq = 0
            while not self._stop.is_set():
                key = f"{prefix}-{seq:06d}".encode()
                value = os.urandom(8)
                try:
                    resp = kv.Put(pb.PutRequest(key=key, value=value), timeout=10)
                except grpc.RpcError:
                    return  # the server died under us: this put is unacknowledged
                with self._lock:
                    self.acked[key] = (value, resp.header.revision)
                seq += 1

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def _check(endpoint: str, acked: dict[bytes, tuple[bytes, int]]) -> int:
    with grpc.insecure_channel(endpoint) as ch:
        resp = rpc_pb2_grpc.KVStub(ch).Range(pb.RangeRequest(key=b"\0", range_end=b"\0"), timeout=30)
    found = {kv.key: kv for kv in resp.kvs}
    for key, (value, rev) in acked.items():
        kv = found.get(key)
        assert kv is not None, f"acknowledged put of {key!r} at revision {rev} was lost"
        assert (kv.value, kv.mod_revision) == (value, rev), f"{key!r} changed"
    assert all(kv.version == 1 and kv.create_revision == kv.mod_revision for kv in resp.kvs), "applied twice"
    revisions = sorted(kv.mod_revision for kv in resp.kvs)
    assert revisions == list(range(2, resp.header.revision + 1)), "revisions are not one per put"
    return len(resp.kvs)


def _kill_cycles(tmp_path, seed: int, cycles: int) -> None:
    rng = random.Random(seed)
    print(f"crash test seed {seed}")
    server = ServerProcess("synod", tmp_path / "data")
    server.start()
    acked: dict[bytes, tuple[bytes, int]] = {}
    try:
        for cycle in range(cycles):
            writers = Writers(server.endpoint, cycle)
            writers.start()
            threshold = rng.randrange(1, 400)
            wait_until(lambda w=writers, n=threshold: w.count() >= n, 60, f"{threshold} acknowledged puts")
            server.kill()
            writers.stop()
            acked.update(writers.acked)
            server.start()
            stored = _check(server.endpoint, acked)
            assert stored >= len(acked)
    finally:
        server.kill()


def test_sigkill_while_writing_loses_nothing_acknowledged(tmp_path):
    _kill_cycles(tmp_path, seed=int(os.environ.get("SYNOD_CRASH_SEED", "20261124")), cycles=6)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_sigkill_while_writing_many_cycles(tmp_path, seed):
    _kill_cycles(tmp_path, seed=seed, cycles=25)


def test_torn_wal_tail_starts_clean(tmp_path):
    """A crash in the middle of writing a batch leaves part of a record: the member starts without it."""
    server = ServerProcess("synod", tmp_path / "data").start()
    writers = Writers(server.endpoint, 0)
    writers.start()
    wait_until(lambda: writers.count() >= 50, 60, "50 acknowledged puts")
    writers.stop()
    server.kill()
    wal_dir = tmp_path / "data" / "member" / "wal"
    last = sorted(p for p in os.listdir(wal_dir) if p.endswith(".wal"))[-1]
    path = wal_dir / last
    # Half of a record for an entry that was never acknowledged, as a torn write leaves it.
    torn = walmod.encode_entry(walmod.Entry(10**6, 99, b"x" * 300))
    with open(path, "ab") as f:
        f.write(torn[: len(torn) // 2])
    server.start()
    try:
        assert _check(server.endpoint, writers.acked) == len(writers.acked)
        assert f"cut off a torn tail of {len(torn) // 2} bytes" in server.log_text()
        assert torn[: len(torn) // 2] not in path.read_bytes()
    finally:
        server.kill()


def test_corrupt_wal_middle_refuses_to_start(tmp_path):
    server = ServerProcess("synod", tmp_path / "data").start()
    with grpc.insecure_channel(server.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for i in range(20):
            kv.Put(pb.PutRequest(key=f"k{i}".encode(), value=b"value-%d" % i))
    server.stop()
    wal_dir = tmp_path / "data" / "member" / "wal"
    path = wal_dir / sorted(os.listdir(wal_dir))[0]
    data = bytearray(path.read_bytes())
    data[data.index(b"value-3")] ^= 0x01
    path.write_bytes(bytes(data))
    server.proc = None
    with pytest.raises(RuntimeError, match="exited with 1"):
        server.start()
    assert "corrupt record" in server.log_text()
