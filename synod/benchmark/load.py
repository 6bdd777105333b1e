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

The worker pool, the dealing of connections and the rate limiter are shared
with the watch and lease benchmarks.
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
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from typing import Any, Protocol

import grpc
import grpc.aio
import uvloop

from synod.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc

DEFAULT_DIAL_TIMEOUT = 5.0  # seconds to wait for connections when --dial-timeout is 0
MAX_CHUNK = 256  # request indices a worker claims at once, at most
WORKER_EXITED = "benchmark worker exited"
EXIT_TIMEOUT = 10.0  # seconds a finished worker may take to close its connections and exit

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per channel, as etcd's clients
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),  # let the server judge request sizes
    ("grpc.enable_retries", 0),  # every request is sent once, its failure counted
]

# gRPC status codes as Go's codes.Code.String() names them.
_GO_CODE_NAMES = {grpc.StatusCode.CANCELLED: "Canceled"}

_SPAWN = multiprocessing.get_context("spawn")

Pipe = multiprocessing.connection.Connection
Send = Callable[[bytes], Awaitable[object]]  # sends one request, raises on failure


class LoadError(Exception):
    """The load could not be run (a connection failed, a worker died)."""


class FatalError(Exception):
    """Raised in a worker: the run cannot go on (etcd's tool would exit); the message is printed as is."""


class RequestFailed(Exception):
    """A request failed without a gRPC status (a stream ended early); counted under its message."""


class Requests(Protocol):
    """The requests of one benchmark: the serialized request for each index, and how a client sends it."""

    def request(self, index: int) -> bytes: ...

    async def open(self, channel: grpc.aio.Channel) -> Send:
        """Set up one client on ``channel`` (once, after the run started) and return its sender."""
        ...


class UnaryRequests:
    """Requests sent as one unary call of ``method`` each."""

    method: str

    async def open(self, channel: grpc.aio.Channel) -> Send:
        return channel.unary_unary(self.method, None, None)


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
class Outcome:
    """One worker's measurements: latencies and start times (monotonic ns), errors by message."""

    latencies: array[int] = field(default_factory=lambda: array("q"))
    starts: array[int] = field(default_factory=lambda: array("q"))
    errors: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Deal:
    """Connections and clients dealt to ``procs`` workers: worker ``c % procs`` owns connection ``c``."""

    procs: int
    endpoints: list[list[str]]  # per worker: the endpoint of each connection it owns
    client_conns: list[list[int]]  # per worker: for each of its clients, the local index of its connection

    def owner(self, conn: int) -> tuple[int, int]:
        """The worker owning connection ``conn``, and the connection's index within that worker."""
        return conn % self.procs, conn // self.procs


def deal(endpoints: Sequence[str], conns: int, clients: int, procs: int) -> Deal:
    """Deal ``conns`` connections (round-robin over the endpoints) and ``clients`` clients to workers."""
    conns = max(1, conns)
    nprocs = max(1, min(procs, conns, clients))
    owned: list[list[str]] = [[] for _ in range(nprocs)]
    for c in range(conns):
        owned[c % nprocs].append(endpoints[c % len(endpoints)])
    client_conns: list[list[int]] = [[] for _ in range(nprocs)]
    for i in range(clients):
        c = i % conns
        client_conns[c % nprocs].append(c // nprocs)
    return Deal(nprocs, owned, client_conns)


def plan_workers(spec: LoadSpec) -> list[WorkerPlan]:
    """Deal connections and clients to at most ``spec.procs`` workers, keeping etcd's client->conn map."""
    dealt = deal(spec.endpoints, spec.conns, spec.clients, spec.procs)
    chunk = max(1, min(MAX_CHUNK, spec.total // (dealt.procs * 64)))
    return [
        WorkerPlan(
            endpoints=dealt.endpoints[p],
            client_conns=dealt.client_conns[p],
            rate=spec.rate * len(dealt.client_conns[p]) / spec.clients if spec.rate > 0 else 0.0,
            total=spec.total,
            chunk=chunk,
            dial_timeout=spec.dial_timeout,
            sample=spec.sample,
            requests=spec.requests,
        )
        for p in range(dealt.procs)
    ]


def describe_error(err: grpc.aio.AioRpcError) -> str:
    """An RPC error as etcd's Go client reports it: etcd's own message, else gRPC's status text."""
    details = err.details() or ""
    if details.startswith("etcdserver: "):
        return details
    code = err.code()
    name = _GO_CODE_NAMES.get(code, "".join(w.capitalize() for w in code.name.split("_")))
    return f"rpc error: code = {name} desc = {details}"


class Limiter:
    """A token bucket of ``burst`` tokens refilled at ``rate`` a second, full at first, as Go's rate.Limiter.

    ``wait`` takes a token, sleeping until one is due if the bucket is empty.
    """

    def __init__(self, rate: float, burst: int = 1) -> None:
        self.interval_ns = int(1e9 / rate)
        self.burst = max(1, burst)
        self.full_at_ns = 0  # when the bucket will be full again, had nothing more been taken

    async def wait(self) -> None:
        now = time.monotonic_ns()
        self.full_at_ns = max(self.full_at_ns, now) + self.interval_ns
        at = self.full_at_ns - self.burst * self.interval_ns
        if at > now:
            await asyncio.sleep((at - now) / 1e9)


class Indices:
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


def shared_counter() -> Synchronized[int]:
    """A counter in shared memory for the workers to claim request indices from."""
    return _SPAWN.Value("q", 0)


async def connect(endpoints: Sequence[str], dial_timeout: float) -> list[grpc.aio.Channel]:
    """One channel (one TCP connection) per endpoint given, all connected, or FatalError."""
    channels = [grpc.aio.insecure_channel(ep, options=CHANNEL_OPTIONS) for ep in endpoints]
    try:
        timeout = dial_timeout or DEFAULT_DIAL_TIMEOUT
        await asyncio.wait_for(asyncio.gather(*(ch.channel_ready() for ch in channels)), timeout)
    except TimeoutError:
        await close_channels(channels)
        raise FatalError(f"dial error: no connection to {', '.join(sorted(set(endpoints)))}") from None
    return channels


async def close_channels(channels: Sequence[grpc.aio.Channel]) -> None:
    await asyncio.gather(*(ch.close(None) for ch in channels))


async def _client(
    channel: grpc.aio.Channel,
    plan: WorkerPlan,
    indices: Indices,
    limiter: Limiter | None,
    out: Outcome,
) -> None:
    send = await plan.requests.open(channel)
    make = plan.requests.request
    latencies, starts, sample = out.latencies, out.starts, plan.sample
    monotonic_ns = time.monotonic_ns
    while (index := indices.take()) is not None:
        request = make(index)
        if limiter is not None:
            await limiter.wait()
        start = monotonic_ns()
        try:
            await send(request)
        except grpc.aio.AioRpcError as err:
            out.errors[describe_error(err)] += 1
            continue
        except RequestFailed as err:
            out.errors[str(err)] += 1
            continue
        latencies.append(monotonic_ns() - start)
        if sample:
            starts.append(start)


async def _work(pipe: Pipe, plan: WorkerPlan, counter: Synchronized[int]) -> None:
    channels = await connect(plan.endpoints, plan.dial_timeout)
    try:
        pipe.send(("ready",))
        if pipe.recv() != "go":  # blocks this loop on purpose: nothing runs before the start
            return
        indices = Indices(counter, plan.total, plan.chunk)
        limiter = Limiter(plan.rate) if plan.rate > 0 else None
        out = Outcome()
        await asyncio.gather(*(_client(channels[c], plan, indices, limiter, out) for c in plan.client_conns))
        end_ns = time.monotonic_ns()
        pipe.send(("done", out.latencies.tobytes(), out.starts.tobytes(), dict(out.errors), end_ns))
    finally:
        await close_channels(channels)


WorkerFn = Callable[..., Coroutine[Any, Any, None]]


def _worker_main(work: WorkerFn, pipe: Pipe, *args: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and ends its workers
    try:
        uvloop.run(work(pipe, *args))
    except FatalError as err:
        pipe.send(("error", str(err)))
    except BaseException:
        pipe.send(("error", "worker failed:\n" + traceback.format_exc()))
        raise


def make_pipe() -> tuple[Pipe, Pipe]:
    """A duplex pipe that may be handed to workers (to let two of them talk)."""
    return _SPAWN.Pipe()


class WorkerPool:
    """Worker processes, each running ``work(pipe, *args)`` on uvloop; a context manager that ends them.

    A worker reports a failure as ``("error", message)``; ``expect`` turns it into LoadError.
    """

    def __init__(self, work: WorkerFn, args: Sequence[tuple[Any, ...]]) -> None:
        self.workers: list[tuple[Pipe, multiprocessing.process.BaseProcess]] = []
        try:
            for worker_args in args:
                parent_end, child_end = _SPAWN.Pipe()
                proc = _SPAWN.Process(target=_worker_main, args=(work, child_end, *worker_args), daemon=True)
                proc.start()
                child_end.close()
                self.workers.append((parent_end, proc))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(graceful=exc_type is None)

    def expect(self, kind: str) -> list[Any]:
        """Every worker's next message, which must be of ``kind``, in worker order.

        Whichever worker fails first raises LoadError at once; a worker's own error is preferred
        to another's report that it exited.
        """
        messages: dict[int, Any] = {}
        while len(messages) < len(self.workers):
            waiting: dict[Any, int] = {}
            for i, (pipe, proc) in enumerate(self.workers):
                if i not in messages:
                    waiting[pipe] = waiting[proc.sentinel] = i
            ready = multiprocessing.connection.wait(list(waiting))
            errors = []
            for i in sorted({waiting[obj] for obj in ready}):
                pipe, proc = self.workers[i]
                try:
                    if not pipe.poll():
                        raise EOFError
                    message = pipe.recv()
                except EOFError:
                    proc.join(timeout=EXIT_TIMEOUT)
                    errors.append(f"{WORKER_EXITED} with code {proc.exitcode}")
                    continue
                if message[0] == kind:
                    messages[i] = message
                else:
                    errors.append(message[1] if message[0] == "error" else f"unexpected {message[0]!r}")
            if errors:
                raise LoadError(min(errors, key=lambda e: e.startswith(WORKER_EXITED)))
        return [messages[i] for i in range(len(self.workers))]

    def send_all(self, message: Any) -> None:
        for pipe, _ in self.workers:
            pipe.send(message)

    def close(self, graceful: bool = False) -> None:
        """End the workers: wait for them to exit if ``graceful`` (they are done), else terminate them."""
        for pipe, proc in self.workers:
            if graceful:
                proc.join(timeout=EXIT_TIMEOUT)
            if proc.is_alive():
                proc.terminate()
                proc.join()
            pipe.close()
        self.workers = []


def run_load(spec: LoadSpec) -> LoadResult:
    """Run the load to completion and gather every worker's measurements."""
    counter = shared_counter()
    with WorkerPool(_work, [(plan, counter) for plan in plan_workers(spec)]) as pool:
        pool.expect("ready")
        start_ns = time.monotonic_ns()
        unix_offset_ns = time.time_ns() - time.monotonic_ns()
        pool.send_all("go")
        latencies, starts, errors = array("q"), array("q"), Counter[str]()
        end_ns = start_ns
        for _, lat_bytes, start_bytes, errs, worker_end in pool.expect("done"):
            latencies.frombytes(lat_bytes)
            starts.frombytes(start_bytes)
            errors.update(errs)
            end_ns = max(end_ns, worker_end)
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
