"""The ``watch`` benchmark: creating many watches, then the rate at which their events arrive.

As etcd 3.4's tool: ``--streams`` Watch streams, stream ``s`` on the connection
of client ``s % clients``, each creating ``--watch-per-stream`` watches one
after the other (clientv3 sends a creation only once the previous one is
answered); a creation's latency is from its request to its answer. The
watched keys are ``--watched-key-total`` keys of ``--key-size`` bytes, each a
varint in a zeroed buffer, handed out round-robin. Then the ``--clients``
clients put ``--put-total`` times (key ``i % watched-key-total``, value
``data``) at ``--put-rate`` puts a second over all, while every event is
counted; as in etcd's tool an event's "latency" is only the time from its
response's arrival to the event being counted, and the figure of interest is
Requests/sec, the events received per second.

etcd's tool never gets past its first put with the default ``--put-rate`` of
0 (a Go rate limiter of rate 0); here 0 means no limit.
"""

from __future__ import annotations

import asyncio
import random
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import grpc
import grpc.aio

from synod.api.etcdserverpb import rpc_pb2
from synod.benchmark.load import (
    MAX_CHUNK,
    FatalError,
    Indices,
    Limiter,
    LoadResult,
    Outcome,
    Pipe,
    WorkerPool,
    close_channels,
    connect,
    deal,
    describe_error,
    shared_counter,
)
from synod.benchmark.put import PUT_METHOD, varint

WATCH_METHOD = "/etcdserverpb.Watch/Watch"
PUT_VALUE = b"data"

WatchCall = grpc.aio.StreamStreamCall[bytes, bytes]


def watched_keys(total: int, key_size: int, key_space_size: int, sequential: bool) -> list[bytes]:
    """The keys to watch: ``key_size`` zero bytes, each led by a key number as a varint."""
    keys = []
    for i in range(total):
        number = i % key_space_size if sequential else random.randrange(key_space_size)
        head = varint(number)
        keys.append(head + bytes(key_size - len(head)))
    return keys


def create_request(key: bytes) -> bytes:
    """A serialized WatchRequest creating a watch of ``key`` from the next revision, as clientv3 sends."""
    return rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key)).SerializeToString()


def open_watch_stream(channel: grpc.aio.Channel) -> WatchCall:
    call: WatchCall = channel.stream_stream(WATCH_METHOD, None, None)(None)
    return call


async def stream_error(call: WatchCall) -> str:
    """Why a Watch stream ended: its gRPC status as etcd's client reports it."""
    code = await call.code()
    details = await call.details()
    if details.startswith("etcdserver: "):
        return details
    return f"watch stream ended: {code.name}: {details}"


async def wait_created(call: WatchCall) -> int:
    """Read the stream up to the answer to a watch creation; the new watch's id."""
    while True:
        raw = await call.read()
        if not isinstance(raw, bytes):  # EOF
            raise FatalError(await stream_error(call))
        resp = rpc_pb2.WatchResponse.FromString(raw)
        if resp.canceled:
            raise FatalError(f"watch canceled: {resp.cancel_reason}")
        if resp.created:
            return resp.watch_id


def puts_per_key(watched: Sequence[bytes], put_total: int) -> Counter[bytes]:
    """How many of the ``put_total`` puts (put ``i`` on ``watched[i % len]``) go to each key."""
    rounds, rest = divmod(put_total, len(watched))
    counts: Counter[bytes] = Counter()
    for j, key in enumerate(watched):
        counts[key] += rounds + (1 if j < rest else 0)
    return counts


@dataclass(frozen=True)
class WatchSpec:
    """``streams`` x ``watch_per_stream`` watches of ``watched``, then ``put_total`` puts."""

    endpoints: Sequence[str]
    conns: int
    clients: int
    procs: int
    streams: int
    watch_per_stream: int
    watched: list[bytes]
    put_total: int
    put_rate: int = 0  # puts per second over all clients; 0 is unlimited
    dial_timeout: float = 0.0
    sample: bool = False


@dataclass(frozen=True)
class _Plan:
    endpoints: list[str]  # the worker's connections
    streams: list[tuple[int, list[int]]]  # per stream: its local connection, the watched key of each watch
    client_conns: list[int]  # per putting client: its local connection
    watched: list[bytes]
    put_total: int
    rate: float
    chunk: int
    dial_timeout: float


class _Events:
    """Counts a worker's events up to the number its watches will get; done when all are in."""

    def __init__(self, expected: int) -> None:
        self.remaining = expected
        self.out = Outcome()
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if expected <= 0:
            self.done.set_result(time.monotonic_ns())

    def received(self, st: int, n: int) -> bool:
        """Count ``n`` events of a response that arrived at ``st``; whether all events are in."""
        latencies, starts = self.out.latencies, self.out.starts
        for _ in range(min(n, self.remaining)):
            latencies.append(time.monotonic_ns() - st)
            starts.append(st)
            self.remaining -= 1
        if self.remaining <= 0 and not self.done.done():
            self.done.set_result(time.monotonic_ns())
        return self.remaining <= 0


async def _create_watches(call: WatchCall, keys: list[bytes], out: Outcome) -> None:
    for key in keys:
        request = create_request(key)
        st = time.monotonic_ns()
        await call.write(request)
        await wait_created(call)
        out.latencies.append(time.monotonic_ns() - st)
        out.starts.append(st)


async def _read_events(call: WatchCall, events: _Events) -> None:
    parse = rpc_pb2.WatchResponse.FromString
    monotonic_ns = time.monotonic_ns
    while True:
        raw = await call.read()
        st = monotonic_ns()
        if not isinstance(raw, bytes):  # EOF
            raise FatalError(await stream_error(call))
        resp = parse(raw)
        if resp.canceled:
            raise FatalError(f"watch canceled: {resp.cancel_reason}")
        if resp.events and events.received(st, len(resp.events)):
            return


async def _put(
    channel: grpc.aio.Channel, requests: list[bytes], indices: Indices, limiter: Limiter | None
) -> None:
    put = channel.unary_unary(PUT_METHOD, None, None)
    while (index := indices.take()) is not None:
        if limiter is not None:
            await limiter.wait()
        try:
            await put(requests[index % len(requests)])
        except grpc.aio.AioRpcError as err:
            raise FatalError(f"put failed: {describe_error(err)}") from None


async def _first_failure(tasks: Sequence[asyncio.Future[Any]], until: asyncio.Future[Any]) -> None:
    """Wait for ``until``, raising at once what any of ``tasks`` raises meanwhile."""
    while True:
        for task in tasks:
            if task.done():
                task.result()
        if until.done():
            return
        pending = [until, *(task for task in tasks if not task.done())]
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)


async def _watch_worker(pipe: Pipe, plan: _Plan, counter: Synchronized[int]) -> None:
    channels = await connect(plan.endpoints, plan.dial_timeout)
    calls = [open_watch_stream(channels[c]) for c, _ in plan.streams]
    tasks: list[asyncio.Future[Any]] = []
    try:
        pipe.send(("ready",))
        if pipe.recv() != "go":
            return
        created = Outcome()
        await asyncio.gather(
            *(
                _create_watches(call, [plan.watched[k] for k in keys], created)
                for call, (_, keys) in zip(calls, plan.streams, strict=True)
            )
        )
        pipe.send(("created", created.latencies.tobytes(), created.starts.tobytes(), time.monotonic_ns()))
        if pipe.recv() != "go":
            return
        per_key = puts_per_key(plan.watched, plan.put_total)
        events = _Events(sum(per_key[plan.watched[k]] for _, keys in plan.streams for k in keys))
        tasks += [asyncio.ensure_future(_read_events(call, events)) for call in calls]
        indices = Indices(counter, plan.put_total, plan.chunk)
        limiter = Limiter(plan.rate) if plan.rate > 0 else None
        requests = [rpc_pb2.PutRequest(key=key, value=PUT_VALUE).SerializeToString() for key in plan.watched]
        putting = asyncio.gather(*(_put(channels[c], requests, indices, limiter) for c in plan.client_conns))
        tasks.append(putting)
        await _first_failure(tasks, putting)
        await _first_failure(tasks, events.done)
        out = events.out
        pipe.send(("received", out.latencies.tobytes(), out.starts.tobytes(), events.done.result()))
    finally:
        for task in tasks:
            task.cancel()
        for call in calls:
            call.cancel()
        await close_channels(channels)


def _gather(messages: list[tuple[str, bytes, bytes, int]], start_ns: int, unix_offset_ns: int) -> LoadResult:
    latencies, starts, end_ns = array("q"), array("q"), start_ns
    for _, lat_bytes, start_bytes, worker_end in messages:
        latencies.frombytes(lat_bytes)
        starts.frombytes(start_bytes)
        end_ns = max(end_ns, worker_end)
    starts_unix = array("q", (s + unix_offset_ns for s in starts))
    return LoadResult(latencies, starts_unix, Counter(), end_ns - start_ns)


def run_watch(spec: WatchSpec, on_created: Callable[[LoadResult], None]) -> LoadResult:
    """Create the watches (``on_created`` gets their latencies), then put; the events' result."""
    dealt = deal(spec.endpoints, spec.conns, spec.clients, spec.procs)
    streams: list[list[tuple[int, list[int]]]] = [[] for _ in range(dealt.procs)]
    for s in range(spec.streams):
        worker, local = dealt.owner((s % spec.clients) % spec.conns)
        keys = [(j * spec.streams + s) % len(spec.watched) for j in range(spec.watch_per_stream)]
        streams[worker].append((local, keys))
    chunk = max(1, min(MAX_CHUNK, spec.put_total // (dealt.procs * 64)))
    plans = [
        _Plan(
            endpoints=dealt.endpoints[p],
            streams=streams[p],
            client_conns=dealt.client_conns[p],
            watched=spec.watched,
            put_total=spec.put_total,
            rate=spec.put_rate * len(dealt.client_conns[p]) / spec.clients if spec.put_rate > 0 else 0.0,
            chunk=chunk,
            dial_timeout=spec.dial_timeout,
        )
        for p in range(dealt.procs)
    ]
    counter = shared_counter()
    with WorkerPool(_watch_worker, [(plan, counter) for plan in plans]) as pool:
        pool.expect("ready")
        unix_offset_ns = time.time_ns() - time.monotonic_ns()
        start_ns = time.monotonic_ns()
        pool.send_all("go")
        on_created(_gather(pool.expect("created"), start_ns, unix_offset_ns))
        start_ns = time.monotonic_ns()
        pool.send_all("go")
        return _gather(pool.expect("received"), start_ns, unix_offset_ns)
