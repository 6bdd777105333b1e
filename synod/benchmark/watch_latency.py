"""The ``watch-latency`` benchmark: how long after a put is acknowledged its watchers get the event.

As etcd 3.4's tool: ``--clients`` watchers of one key, client ``i`` on
connection ``i % conns``, the watchers of a connection sharing one Watch stream
(as clientv3's watcher does), and one more connection for the puts. The puts
are sequential: each waits for a token (a bucket of ``--put-rate`` tokens
refilled at ``--put-rate`` a second), is sent, and once it is acknowledged at
time ``st`` every watcher must get its event before the next put. A watcher's
latency is from ``st`` to when it takes its event; an event that came before
the acknowledgement is taken as soon as the watcher learns ``st`` (etcd's tool
releases its watcher goroutines at ``st`` the same way).

The watchers live in worker processes (whole connections each, as in
``load.py``); the parent sends the puts. After each acknowledgement the parent
tells every worker ``st``; a worker says "done" once all its watchers have the
event, and the parent starts the next round when every worker has.
"""

from __future__ import annotations

import asyncio
import os
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import uvloop

from synod.api.etcdserverpb import rpc_pb2
from synod.benchmark.load import (
    FatalError,
    Limiter,
    LoadError,
    LoadResult,
    Outcome,
    Pipe,
    WorkerPool,
    close_channels,
    connect,
    deal,
    describe_error,
)
from synod.benchmark.put import PUT_METHOD

WATCH_METHOD = "/etcdserverpb.Watch/Watch"


@dataclass(frozen=True)
class WatchLatencySpec:
    """``total`` sequential puts of ``key`` watched by ``clients`` watchers over ``conns`` connections."""

    endpoints: Sequence[str]
    conns: int
    clients: int
    procs: int
    total: int
    put_rate: int  # puts per second, with a burst of as many; 0 is unlimited
    key: bytes
    value: bytes
    dial_timeout: float = 0.0


@dataclass(frozen=True)
class _Plan:
    endpoints: list[str]  # the worker's connections
    watchers: dict[int, int]  # local connection -> watchers on its stream
    key: bytes
    dial_timeout: float


async def stream_error(call: grpc.aio.StreamStreamCall[bytes, bytes]) -> str:
    """Why a stream ended: its gRPC status as etcd's client reports it."""
    code = await call.code()
    details = await call.details()
    if details.startswith("etcdserver: "):
        return details
    return f"watch stream ended: {code.name}: {details}"


async def open_watches(
    channel: grpc.aio.Channel, key: bytes, count: int
) -> grpc.aio.StreamStreamCall[bytes, bytes]:
    """A Watch stream with ``count`` watches of ``key``, created one after the other as clientv3 does."""
    call: grpc.aio.StreamStreamCall[bytes, bytes] = channel.stream_stream(WATCH_METHOD, None, None)(None)
    request = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key)).SerializeToString()
    for _ in range(count):
        await call.write(request)
        await wait_created(call)
    return call


async def wait_created(call: grpc.aio.StreamStreamCall[bytes, bytes]) -> int:
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


class _Rounds:
    """A worker's watchers' events, put after put: latencies once both the event and ``st`` are known."""

    def __init__(self, pipe: Pipe, watchers: int) -> None:
        self.pipe = pipe
        self.watchers = watchers
        self.round = 0  # the put whose events are coming in
        self.count = 0  # events of that put received so far
        self.unacked: dict[int, list[int]] = {}  # put -> arrival times of events that came before its st
        self.acked: dict[int, int] = {}  # put -> st, while its events are still coming
        self.out = Outcome()

    def events(self, now: int, n: int) -> None:
        for _ in range(n):
            st = self.acked.get(self.round)
            if st is None:
                self.unacked.setdefault(self.round, []).append(now)
            else:
                self.out.latencies.append(now - st)
                self.out.starts.append(st)
            self.count += 1
            if self.count == self.watchers:
                self.pipe.send(("done", self.round))
                self.acked.pop(self.round, None)
                self.round += 1
                self.count = 0

    def ack(self, index: int, st: int) -> None:
        known = time.monotonic_ns()
        for arrived in self.unacked.pop(index, ()):
            self.out.latencies.append(max(arrived, known) - st)
            self.out.starts.append(st)
        if index >= self.round:
            self.acked[index] = st


def add_reader(pipe: Pipe, callback: Callable[..., None], *args: Any) -> None:
    """Call ``callback(*args)`` whenever ``pipe`` has a message (read whole: the pipe stays blocking)."""
    asyncio.get_running_loop().add_reader(pipe.fileno(), callback, *args)
    os.set_blocking(pipe.fileno(), True)  # the loop made it non-blocking; messages are read whole


def remove_reader(pipe: Pipe) -> None:
    asyncio.get_running_loop().remove_reader(pipe.fileno())
    os.set_blocking(pipe.fileno(), True)


async def _read_events(call: grpc.aio.StreamStreamCall[bytes, bytes], rounds: _Rounds) -> None:
    parse = rpc_pb2.WatchResponse.FromString
    monotonic_ns = time.monotonic_ns
    while True:
        raw = await call.read()
        now = monotonic_ns()
        if not isinstance(raw, bytes):  # EOF
            raise FatalError(await stream_error(call))
        resp = parse(raw)
        if resp.canceled:
            raise FatalError(f"watch canceled: {resp.cancel_reason}")
        if resp.events:
            rounds.events(now, len(resp.events))


async def _watch_worker(pipe: Pipe, plan: _Plan) -> None:
    channels = await connect(plan.endpoints, plan.dial_timeout)
    loop = asyncio.get_running_loop()
    readers: list[asyncio.Task[None]] = []
    calls: list[grpc.aio.StreamStreamCall[bytes, bytes]] = []
    try:
        calls = list(
            await asyncio.gather(*(open_watches(channels[c], plan.key, n) for c, n in plan.watchers.items()))
        )
        rounds = _Rounds(pipe, sum(plan.watchers.values()))
        stop: asyncio.Future[None] = loop.create_future()

        def on_message() -> None:
            try:
                message = pipe.recv()
            except EOFError:  # the parent is gone
                message = ("stop",)
                remove_reader(pipe)
            if message[0] == "acked":
                rounds.ack(message[1], message[2])
            elif not stop.done():
                stop.set_result(None)

        add_reader(pipe, on_message)
        readers = [asyncio.create_task(_read_events(call, rounds)) for call in calls]
        pipe.send(("ready",))
        await asyncio.wait([stop, *readers], return_when=asyncio.FIRST_COMPLETED)
        remove_reader(pipe)
        for reader in readers:
            if reader.done():
                reader.result()  # raises what ended it
        pipe.send(("result", rounds.out.latencies.tobytes(), rounds.out.starts.tobytes()))
    finally:
        for reader in readers:
            reader.cancel()
        for call in calls:
            call.cancel()
        await close_channels(channels)


class _Driver:
    """The parent's side: the puts, and the workers' "done" for each."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.dones: Counter[int] = Counter()
        self.waiting: tuple[int, asyncio.Future[None]] | None = None
        self.error: LoadError | None = None

    def on_message(self, worker: int) -> None:
        pipe, proc = self.pool.workers[worker]
        try:
            message = pipe.recv()
        except EOFError:
            self.fail(LoadError(f"benchmark worker exited with code {proc.exitcode}"))
            return
        if message[0] == "done":
            self.dones[message[1]] += 1
            self.wake()
        else:
            self.fail(LoadError(message[1] if message[0] == "error" else f"unexpected {message[0]!r}"))

    def fail(self, error: LoadError) -> None:
        if self.error is None:
            self.error = error
        self.wake()

    def wake(self) -> None:
        if self.waiting is None:
            return
        index, future = self.waiting
        if future.done():
            return
        if self.error is not None:
            future.set_exception(self.error)
        elif self.dones[index] == len(self.pool.workers):
            future.set_result(None)

    async def all_done(self, index: int) -> None:
        if self.error is not None:
            raise self.error
        if self.dones[index] < len(self.pool.workers):
            future = asyncio.get_running_loop().create_future()
            self.waiting = (index, future)
            try:
                await future
            finally:
                self.waiting = None
        del self.dones[index]

    async def run(self, spec: WatchLatencySpec, put_endpoint: str) -> tuple[int, int]:
        """Every put, one after the other; the run's start and end (monotonic ns)."""
        try:
            (channel,) = await connect([put_endpoint], spec.dial_timeout)
        except FatalError as err:
            raise LoadError(str(err)) from None
        pipes = []
        try:
            for i, (pipe, _) in enumerate(self.pool.workers):
                add_reader(pipe, self.on_message, i)
                pipes.append(pipe)
            put = channel.unary_unary(PUT_METHOD, None, None)
            request = rpc_pb2.PutRequest(key=spec.key, value=spec.value).SerializeToString()
            limiter = Limiter(spec.put_rate, burst=spec.put_rate) if spec.put_rate > 0 else None
            start_ns = time.monotonic_ns()
            for index in range(spec.total):
                if limiter is not None:
                    await limiter.wait()
                try:
                    await put(request)
                except grpc.aio.AioRpcError as err:
                    raise LoadError(
                        f"Failed to Put for watch latency benchmark: {describe_error(err)}"
                    ) from None
                st = time.monotonic_ns()
                self.pool.send_all(("acked", index, st))
                await self.all_done(index)
            end_ns = time.monotonic_ns()
        finally:
            for pipe in pipes:
                remove_reader(pipe)
            await close_channels([channel])
        return start_ns, end_ns


def run_watch_latency(spec: WatchLatencySpec) -> LoadResult:
    """Run the watchers and the puts; every watcher's latency for every put."""
    dealt = deal(spec.endpoints, spec.conns, spec.clients, spec.procs)
    plans = [
        _Plan(dealt.endpoints[p], dict(Counter(dealt.client_conns[p])), spec.key, spec.dial_timeout)
        for p in range(dealt.procs)
    ]
    put_endpoint = spec.endpoints[spec.conns % len(spec.endpoints)]  # etcd's tool dials it after the others
    with WorkerPool(_watch_worker, [(plan,) for plan in plans]) as pool:
        pool.expect("ready")
        unix_offset_ns = time.time_ns() - time.monotonic_ns()
        start_ns, end_ns = uvloop.run(_Driver(pool).run(spec, put_endpoint))
        pool.send_all(("stop",))
        latencies, starts = array("q"), array("q")
        for _, lat_bytes, start_bytes in pool.expect("result"):
            latencies.frombytes(lat_bytes)
            starts.frombytes(start_bytes)
    starts_unix = array("q", (s + unix_offset_ns for s in starts))
    return LoadResult(latencies, starts_unix, Counter(), end_ns - start_ns)
