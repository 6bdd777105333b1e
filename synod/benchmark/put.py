"""The ``put`` benchmark: keys and values as etcd's tool builds them, compaction, the HashKV check.

etcd's tool writes each key number as a signed varint into the front of one
reused ``key-size`` buffer, so a short number keeps the tail bytes left there
by an earlier, longer one. Sequential keys reproduce that exactly (the tail
after a full round of the key space is the one of the largest key); random
keys keep their own buffer in each worker process.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from dataclasses import dataclass, field

import grpc

from synod.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from synod.benchmark.load import UnaryRequests
from synod.benchmark.report import go_duration

PUT_METHOD = "/etcdserverpb.KV/Put"
RPC_TIMEOUT = 5.0  # seconds, for compaction's requests as etcd's tool


def varint(n: int) -> bytes:
    """``n`` as Go's ``binary.PutVarint`` encodes it (zig-zag, then 7 bits a byte)."""
    u = (n << 1) if n >= 0 else ~(n << 1)
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def check_key_size(key_size: int, largest: int) -> None:
    """Refuse a key size too small for the largest key number (etcd's tool would panic mid-run)."""
    if largest >= 0 and len(varint(largest)) > key_size:
        raise ValueError(f"--key-size {key_size} is too small for key number {largest}")


def sequential_key(index: int, key_size: int, key_space_size: int) -> bytes:
    """The key etcd's tool puts as its ``index``-th request with ``--sequential-keys``."""
    head = varint(index % key_space_size)
    tail = varint(key_space_size - 1)[len(head) :] if index >= key_space_size else b""
    key = head + tail
    return key + bytes(key_size - len(key))


@dataclass
class PutRequests(UnaryRequests):
    """Serialized PutRequests: ``index`` -> key (sequential, or random in the key space), one value."""

    key_size: int
    key_space_size: int
    sequential: bool
    value: bytes
    method: str = PUT_METHOD
    _rng: random.Random | None = field(default=None, repr=False)
    _buffer: bytearray = field(default_factory=bytearray, repr=False)

    def key(self, index: int) -> bytes:
        if self.sequential:
            return sequential_key(index, self.key_size, self.key_space_size)
        if self._rng is None:  # first use in this process: a seed of its own
            self._rng = random.Random()
            self._buffer = bytearray(self.key_size)
        head = varint(self._rng.randrange(self.key_space_size))
        self._buffer[: len(head)] = head
        return bytes(self._buffer)

    def request(self, index: int) -> bytes:
        return rpc_pb2.PutRequest(key=self.key(index), value=self.value).SerializeToString()


class Compactor:
    """Every ``interval`` seconds, compact to ``index_delta`` revisions behind the current one."""

    def __init__(self, endpoint: str, interval: float, index_delta: int) -> None:
        self.endpoint = endpoint
        self.interval = interval
        self.index_delta = index_delta
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="compactor", daemon=True)

    def __enter__(self) -> Compactor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with grpc.insecure_channel(self.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            compacted = -1
            while not self._stop.wait(self.interval):
                try:
                    rev = kv.Range(rpc_pb2.RangeRequest(key=b"foo"), timeout=RPC_TIMEOUT).header.revision
                    target = max(0, rev - self.index_delta)
                    if target <= compacted:  # nothing written since (etcd's tool would fail here)
                        continue
                    kv.Compact(rpc_pb2.CompactionRequest(revision=target), timeout=RPC_TIMEOUT)
                    compacted = target
                except grpc.RpcError as err:
                    print(f"compaction failed: {err.code().name}: {err.details()}", file=sys.stderr)


def humanize_bytes(n: int) -> str:
    """A size in SI units as go-humanize's ``Bytes`` writes it: ``9 B``, ``45 kB``, ``1.2 MB``."""
    if n < 10:
        return f"{n} B"
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    exp = 0
    while exp + 1 < len(units) and n >= 1000 ** (exp + 1):
        exp += 1
    value = int(n / 1000**exp * 10 + 0.5) / 10
    return f"{value:.1f} {units[exp]}" if value < 10 else f"{value:.0f} {units[exp]}"


def hashkv_summary(endpoint: str) -> str:
    """The HashKV check of ``--check-hashkv``: the endpoint's KV hash, the time it took, its DB size."""
    start = time.monotonic_ns()
    with grpc.insecure_channel(endpoint) as ch:
        maintenance = rpc_pb2_grpc.MaintenanceStub(ch)
        maintenance.HashKV(rpc_pb2.HashKVRequest(revision=0))  # as etcd's tool: the first answer is dropped
        hashed = maintenance.HashKV(rpc_pb2.HashKVRequest(revision=0))
        status = maintenance.Status(rpc_pb2.StatusRequest())
    took = time.monotonic_ns() - start
    return (
        "HashKV Summary:\n"
        f"\tHashKV: {hashed.hash}\n"
        f"\tEndpoint: {endpoint}\n"
        f"\tTime taken to get hashkv: {go_duration(took)}\n"
        f"\tDB size: {humanize_bytes(status.dbSize)}"
    )
