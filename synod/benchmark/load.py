"""Load generation: the clients spread over worker processes, each an asyncio loop on uvloop.

One Python process saturates long before a server does, so the ``--clients``
are dealt to several worker processes. As in etcd's tool, client ``i`` sends
over connection ``i % conns``; a worker owns whole connections (``c % procs``)
together with the clients that use them, so the client-to-connection sharing
is the same as etcd's. Every connection is its own gRPC channel with a private
subchannel pool, hence its own TCP connection.

Work is handed out dynamically, as etcd's shared request channel does: workers
claim chunks of request indices from a counter in shared memory, and their
clients take indices from the claimed chunk. Requests are pre-serialized bytes
and responses are not parsed: only the status and the latency matter here.
Each worker measures latencies with the system-wide monotonic clock and sends
them back at the end; the parent times the run from the moment it releases
the (already connected) workers until the last one finishes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from typing import Any, Protocol

import grpc
import grpc.aio
import uvloop

from synod.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc

DEFAULT_DIAL_TIMEOUT = 5.0  # seconds to wait for connections when --dial-timeout is 0
MAX_CHUNK = 256  # request indices a worker claims at once, at most

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per channel, as etcd's clients
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),  # let the server judge request sizes
    ("grpc.enable_retries", 0),  # every request is sent once, its failure counted
]

# gRPC status codes as Go's codes.Code.String() names them.
_GO_CODE_NAMES = {grpc.StatusCode.CANCELLED: "Canceled"}


class LoadError(Exception):
    """The load could not be run (a connection failed, a worker died)."""


class Requests(Protocol):
    """The requests of one benchmark: a gRPC method and the serialized request for each index."""

    method: str

    def request(self, index: int) -> bytes: ...


@dataclass(frozen=True)
class LoadSpec:
    """What to run: ``total`` requests from ``clients`` clients over ``conns`` connections."""

    endpoints: Sequence[str]
    conns: int
    clients: int
    procs: int
    total: int
    requests: Requests
    rate: float = 0.0  # requests per second over all clients; 0 is unlimited
    dial_timeout: float = 0.0
    sample: bool = False


@dataclass
class LoadResult:
    """Latencies (ns, in completion order per worker), request start times, errors, wall time."""

    latencies_ns: array[int]
    starts_unix_ns: array[int]
    errors: Counter[str]
    total_ns: int


@dataclass(frozen=True)
class WorkerPlan:
    """One worker's share: its connections' endpoints, each client's local connection, its rate."""

    endpoints: list[str]
    client_conns: list[int]
    rate: float
    total: int
    chunk: int
    dial_timeout: float
    sample: bool
    requests: Requests


@dataclass
class _Outcome:
    latencies: array[int] = field(default_factory=lambda: array("q"))
    starts: array[int] = field(default_factory=lambda: array("q"))
    errors: Counter[str] = field(default_factory=Counter)


def plan_workers(spec: LoadSpec) -> list[WorkerPlan]:
    """Deal connections and clients to at most ``spec.procs`` workers, keeping etcd's client->conn map."""
    conns = max(1, spec.conns)
    nprocs = max(1, min(spec.procs, conns, spec.clients))
    endpoints: list[list[str]] = [[] for _ in range(nprocs)]
    for c in range(conns):
        endpoints[c % nprocs].append(spec.endpoints[c % len(spec.endpoints)])
    client_conns: list[list[int]] = [[] for _ in range(nprocs)]
    for i in range(spec.clients):
        c = i % conns
        client_conns[c % nprocs].append(c // nprocs)
    chunk = max(1, min(MAX_CHUNK, spec.total // (nprocs * 64)))
    return [
        WorkerPlan(
            endpoints=endpoints[p],
            client_conns=client_conns[p],
            rate=spec.rate * len(client_conns[p]) / spec.clients if spec.rate > 0 else 0.0,
            total=spec.total,
            chunk=chunk,
            dial_timeout=spec.dial_timeout,
            sample=spec.sample,
            requests=spec.requests,
        )
        for p in range(nprocs)
    ]


def describe_error(err: grpc.aio.AioRpcError) -> str:
    """An RPC error as etcd's Go client reports it: etcd's own message, else gRPC's status text."""
    details = err.details() or ""
    if details.startswith("etcdserver: "):
        return details
    code = err.code()
    name = _GO_CODE_NAMES.get(code, "".join(w.capitalize() for w in code.name.split("_")))
    return f"rpc error: code = {name} desc = {details}"


class _Limiter:
    """Spaces requests ``1/rate`` apart (a token bucket of one token, as etcd's tool uses)."""

    def __init__(self, rate: float) -> None:
        self.interval_ns = int(1e9 / rate)
        self.next_ns = 0

    async def wait(self) -> None:
        now = time.monotonic_ns()
        at = max(now, self.next_ns)
        self.next_ns = at + self.interval_ns
        if at > now:
            await asyncio.sleep((at - now) / 1e9)


class _Indices:
    """Request indices for one worker's clients, claimed chunk by chunk from the shared counter."""

    def __init__(self, counter: Synchronized[int], total: int, chunk: int) -> None:
        self.counter = counter
        self.total = total
        self.chunk = chunk
        self.next = 0
        self.end = 0

    def take(self) -> int | None:
        if self.next >= self.end:
            with self.counter.get_lock():
                start = self.counter.value
                if start >= self.total:
                    return None
                self.counter.value = self.end = min(self.total, start + self.chunk)
            self.next = start
        index = self.next
        self.next += 1
        return index


async def _client(
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes],
    plan: WorkerPlan,
    indices: _Indices,
    limiter: _Limiter | None,
    out: _Outcome,
) -> None:
    make = plan.requests.request
    latencies, starts, sample = out.latencies, out.starts, plan.sample
    monotonic_ns = time.monotonic_ns
    while (index := indices.take()) is not None:
        request = make(index)
        if limiter is not None:
            await limiter.wait()
        start = monotonic_ns()
        try:
            await call(request)
        except grpc.aio.AioRpcError as err:
            out.errors[describe_error(err)] += 1
            continue
        latencies.append(monotonic_ns() - start)
        if sample:
            starts.append(start)


async def _work(
    plan: WorkerPlan, counter: Synchronized[int], pipe: multiprocessing.connection.Connection
) -> None:
    channels = [grpc.aio.insecure_channel(ep, options=CHANNEL_OPTIONS) for ep in plan.endpoints]
    try:
        timeout = plan.dial_timeout or DEFAULT_DIAL_TIMEOUT
        try:
            await asyncio.wait_for(asyncio.gather(*(ch.channel_ready() for ch in channels)), timeout)
        except TimeoutError:
            pipe.send(("error", f"dial error: no connection to {', '.join(sorted(set(plan.endpoints)))}"))
            return
        pipe.send(("ready",))
        if pipe.recv() != "go":  # blocks this loop on purpose: nothing runs before the start
            return
        calls = [ch.unary_unary(plan.requests.method, None, None) for ch in channels]
        indices = _Indices(counter, plan.total, plan.chunk)
        limiter = _Limiter(plan.rate) if plan.rate > 0 else None
        out = _Outcome()
        await asyncio.gather(*(_client(calls[c], plan, indices, limiter, out) for c in plan.client_conns))
        end_ns = time.monotonic_ns()
        pipe.send(("done", out.latencies.tobytes(), out.starts.tobytes(), dict(out.errors), end_ns))
    finally:
        await asyncio.gather(*(ch.close(None) for ch in channels))


def _worker_main(
    plan: WorkerPlan, counter: Synchronized[int], pipe: multiprocessing.connection.Connection
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and ends its workers
    try:
        uvloop.run(_work(plan, counter, pipe))
    except BaseException:
        pipe.send(("error", "worker failed:\n" + traceback.format_exc()))
        raise


def _receive(pipe: multiprocessing.connection.Connection, proc: multiprocessing.process.BaseProcess) -> Any:
    multiprocessing.connection.wait([pipe, proc.sentinel])
    if pipe.poll():
        return pipe.recv()
    raise LoadError(f"benchmark worker exited with code {proc.exitcode}")


def run_load(spec: LoadSpec) -> LoadResult:
    """Run the load to completion and gather every worker's measurements."""
    ctx = multiprocessing.get_context("spawn")
    counter: Synchronized[int] = ctx.Value("q", 0)
    workers: list[tuple[multiprocessing.connection.Connection, multiprocessing.process.BaseProcess]] = []
    try:
        for plan in plan_workers(spec):
            parent_end, child_end = ctx.Pipe()
            worker = ctx.Process(target=_worker_main, args=(plan, counter, child_end), daemon=True)
            worker.start()
            child_end.close()
            workers.append((parent_end, worker))
        for pipe, proc in workers:
            message = _receive(pipe, proc)
            if message[0] != "ready":
                raise LoadError(message[1])
        start_ns = time.monotonic_ns()
        unix_offset_ns = time.time_ns() - time.monotonic_ns()
        for pipe, _ in workers:
            pipe.send("go")
        latencies, starts, errors = array("q"), array("q"), Counter[str]()
        end_ns = start_ns
        for pipe, proc in workers:
            message = _receive(pipe, proc)
            if message[0] != "done":
                raise LoadError(message[1])
            _, lat_bytes, start_bytes, errs, worker_end = message
            latencies.frombytes(lat_bytes)
            starts.frombytes(start_bytes)
            errors.update(errs)
            end_ns = max(end_ns, worker_end)
        for _, proc in workers:
            proc.join()
    finally:
        for pipe, proc in workers:
            if proc.is_alive():
                proc.terminate()
                proc.join()
            pipe.close()
    starts_unix = array("q", (s + unix_offset_ns for s in starts))
    return LoadResult(latencies, starts_unix, errors, end_ns - start_ns)


def find_leader_endpoints(endpoints: Sequence[str], timeout: float) -> list[str]:
    """The leader's client endpoints (``host:port``), asking the first member that answers."""
    for endpoint in endpoints:
        try:
            with grpc.insecure_channel(endpoint) as ch:
                maintenance = rpc_pb2_grpc.MaintenanceStub(ch)
                status = maintenance.Status(rpc_pb2.StatusRequest(), timeout=timeout)
                members = rpc_pb2_grpc.ClusterStub(ch).MemberList(
                    rpc_pb2.MemberListRequest(), timeout=timeout
                )
        except grpc.RpcError:
            continue
        for member in members.members:
            if status.leader == member.ID:
                return [url.split("://", 1)[-1] for url in member.clientURLs]
    print("failed to find a leader endpoint", file=sys.stderr)
    raise SystemExit(1)


def default_procs() -> int:
    """Worker processes by default: one per CPU this process may run on."""
    return len(os.sched_getaffinity(0))
