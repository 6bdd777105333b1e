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
``load.py``). Worker 0 also sends the puts: its own watchers learn ``st`` at
once, the other workers through a pipe from it (a few tens of microseconds
more, added to the latency of an event that came before ``st``). A worker
tells worker 0 "done" once all its watchers have the event; the next put waits
for every worker. The run is timed by worker 0, from before the first put to
the last put's last event. ``--put-rate 0`` means no limit (etcd 3.4's tool
then puts nothing: its limiter has no tokens).
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

from synod.api.etcdserverpb import rpc_pb2
from synod.benchmark.load import (
    WORKER_EXITED,
    FatalError,
    Limiter,
    LoadResult,
    Outcome,
    Pipe,
    WorkerPool,
    close_channels,
    connect,
    deal,
    describe_error,
    make_pipe,
)
from synod.benchmark.put import PUT_METHOD
from synod.benchmark.watch import WatchCall, create_request, open_watch_stream, stream_error, wait_created


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


@dataclass(frozen=True)
class _Puts:
    """What the driving worker needs for the puts."""

    endpoint: str
    total: int
    rate: int
    key: bytes
    value: bytes


async def open_watches(channel: grpc.aio.Channel, key: bytes, count: int) -> WatchCall:
    """A Watch stream with ``count`` watches of ``key``, created one after the other as clientv3 does."""
    call = open_watch_stream(channel)
    request = create_request(key)
    for _ in range(count):
        await call.write(request)
        await wait_created(call)
    return call


class _Rounds:
    """A worker's watchers' events, put after put: latencies once both the event and ``st`` are known."""

    def __init__(self, watchers: int, on_done: Callable[[int], None]) -> None:
        self.watchers = watchers
        self.on_done = on_done  # called with a put's index once all the watchers got its event
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
                self.acked.pop(self.round, None)
                self.round += 1
                self.count = 0
                self.on_done(self.round - 1)

    def ack(self, index: int, st: int) -> None:
        """Put ``index`` was acknowledged at ``st``: its watchers are released now."""
        known = time.monotonic_ns()
        for arrived in self.unacked.pop(index, ()):
            self.out.latencies.append(max(arrived, known) - st)
            self.out.starts.append(st)
        if index >= self.round:
            self.acked[index] = st

    def result(self, *extra: int) -> tuple[Any, ...]:
        return ("result", self.out.latencies.tobytes(), self.out.starts.tobytes(), *extra)


def add_reader(pipe: Pipe, callback: Callable[..., None], *args: Any) -> None:
    """Call ``callback(*args)`` whenever ``pipe`` has a message (read whole: the pipe stays blocking)."""
    asyncio.get_running_loop().add_reader(pipe.fileno(), callback, *args)
    os.set_blocking(pipe.fileno(), True)  # the loop made it non-blocking; messages are read whole


def remove_reader(pipe: Pipe) -> None:
    asyncio.get_running_loop().remove_reader(pipe.fileno())


async def _read_events(call: WatchCall, rounds: _Rounds) -> None:
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


async def _follow(pipe: Pipe, calls: list[WatchCall], watchers: int, driver: Pipe) -> None:
    """A worker without the puts: its watchers' rounds, told ``st`` by the driving worker."""
    rounds = _Rounds(watchers, lambda index: driver.send(("done", index)))
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_message() -> None:
        try:
            message = driver.recv()
        except EOFError:  # the driver failed; the parent hears why from it
            message = ("stop",)
        if message[0] == "acked":
            rounds.ack(message[1], message[2])
        else:
            remove_reader(driver)
            if not stop.done():
                stop.set_result(None)

    add_reader(driver, on_message)
    readers = [asyncio.create_task(_read_events(call, rounds)) for call in calls]
    try:
        pipe.send(("ready",))
        await asyncio.wait([stop, *readers], return_when=asyncio.FIRST_COMPLETED)
        for reader in readers:
            if reader.done():
                reader.result()  # raises what ended it
    finally:
        remove_reader(driver)
        for reader in readers:
            reader.cancel()
    pipe.send(rounds.result())


class _Driver:
    """The driving worker: the puts, one after the other, and every worker's "done" for each."""

    def __init__(self, watchers: int, peers: list[Pipe]) -> None:
        self.peers = peers
        self.rounds = _Rounds(watchers, self.done)
        self.dones: Counter[int] = Counter()
        self.waiting: tuple[int, asyncio.Future[None]] | None = None
        self.error: BaseException | None = None

    def done(self, index: int) -> None:
        self.dones[index] += 1
        self.wake()

    def on_peer(self, peer: Pipe) -> None:
        try:
            message = peer.recv()
        except EOFError:
            remove_reader(peer)
            self.fail(FatalError(WORKER_EXITED))
            return
        self.done(message[1])

    def on_reader_done(self, reader: asyncio.Task[None]) -> None:
        if not reader.cancelled() and reader.exception() is not None:
            self.fail(reader.exception() or FatalError("watch reader failed"))

    def fail(self, error: BaseException) -> None:
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
        elif self.dones[index] > len(self.peers):
            future.set_result(None)

    async def all_done(self, index: int) -> None:
        if self.error is not None:
            raise self.error
        if self.dones[index] <= len(self.peers):
            future = asyncio.get_running_loop().create_future()
            self.waiting = (index, future)
            try:
                await future
            finally:
                self.waiting = None
        del self.dones[index]

    async def run(self, pipe: Pipe, calls: list[WatchCall], channel: grpc.aio.Channel, puts: _Puts) -> None:
        for peer in self.peers:
            add_reader(peer, self.on_peer, peer)
        readers: list[asyncio.Task[None]] = []
        try:
            pipe.send(("ready",))
            if pipe.recv() != "go":  # blocks this loop on purpose: nothing runs before the start
                return
            readers = [asyncio.create_task(_read_events(call, self.rounds)) for call in calls]
            for reader in readers:
                reader.add_done_callback(self.on_reader_done)
            put = channel.unary_unary(PUT_METHOD, None, None)
            request = rpc_pb2.PutRequest(key=puts.key, value=puts.value).SerializeToString()
            limiter = Limiter(puts.rate, burst=puts.rate) if puts.rate > 0 else None
            start_ns = time.monotonic_ns()
            for index in range(puts.total):
                if limiter is not None:
                    await limiter.wait()
                try:
                    await put(request)
                except grpc.aio.AioRpcError as err:
                    raise FatalError(
                        f"Failed to Put for watch latency benchmark: {describe_error(err)}"
                    ) from None
                st = time.monotonic_ns()
                self.rounds.ack(index, st)
                for peer in self.peers:
                    peer.send(("acked", index, st))
                await self.all_done(index)
            end_ns = time.monotonic_ns()
        finally:
            for peer in self.peers:
                remove_reader(peer)
            for reader in readers:
                reader.cancel()
        for peer in self.peers:
            peer.send(("stop",))
        pipe.send(self.rounds.result(start_ns, end_ns))


async def _watch_worker(pipe: Pipe, plan: _Plan, puts: _Puts | None, peers: list[Pipe]) -> None:
    """Worker 0 gets ``puts`` and drives (``peers``: its pipes to the others); the others follow it."""
    channels = await connect(plan.endpoints, plan.dial_timeout)
    calls: list[WatchCall] = []
    try:
        if puts is not None:
            channels += await connect([puts.endpoint], plan.dial_timeout)
        opening = (open_watches(channels[c], plan.key, n) for c, n in plan.watchers.items())
        calls = list(await asyncio.gather(*opening))
        watchers = sum(plan.watchers.values())
        if puts is None:
            await _follow(pipe, calls, watchers, peers[0])
        else:
            await _Driver(watchers, peers).run(pipe, calls, channels[-1], puts)
    finally:
        for call in calls:
            call.cancel()
        await close_channels(channels)


def run_watch_latency(spec: WatchLatencySpec) -> LoadResult:
    """Run the watchers and the puts; every watcher's latency for every put."""
    dealt = deal(spec.endpoints, spec.conns, spec.clients, spec.procs)
    plans = [
        _Plan(dealt.endpoints[p], dict(Counter(dealt.client_conns[p])), spec.key, spec.dial_timeout)
        for p in range(dealt.procs)
    ]
    put_endpoint = spec.endpoints[spec.conns % len(spec.endpoints)]  # etcd's tool dials it after the others
    puts = _Puts(put_endpoint, spec.total, spec.put_rate, spec.key, spec.value)
    links = [make_pipe() for _ in plans[1:]]
    args: list[tuple[_Plan, _Puts | None, list[Pipe]]] = [(plans[0], puts, [end for end, _ in links])]
    args += [(plan, None, [follower_end]) for plan, (_, follower_end) in zip(plans[1:], links, strict=True)]
    with WorkerPool(_watch_worker, args) as pool:
        for link in links:
            for end in link:
                end.close()  # the workers have their own copies: a worker's exit is seen by its peer
        pool.expect("ready")
        unix_offset_ns = time.time_ns() - time.monotonic_ns()
        pool.workers[0][0].send("go")
        results = pool.expect("result")
    latencies, starts = array("q"), array("q")
    for message in results:
        latencies.frombytes(message[1])
        starts.frombytes(message[2])
    _, _, _, start_ns, end_ns = results[0]
    starts_unix = array("q", (s + unix_offset_ns for s in starts))
    return LoadResult(latencies, starts_unix, Counter(), end_ns - start_ns)
