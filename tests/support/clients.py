"""One coroutine-shaped face for both synod clients, so a test body runs against either.

``open_client("async", endpoints)`` wraps an ``AsyncClient``; ``open_client("sync",
endpoints)`` wraps a blocking ``Client``, each of whose calls runs in a worker thread
(so the coroutine driving the test keeps its loop free, and the ``Client``'s own
portal thread does the work, as in a threaded program). Watches and keep-alives are
wrapped too: ``Events.next(timeout)`` and ``Lease.wait_lost(timeout)`` bound every
wait by a deadline, whichever client is underneath.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.client import AsyncClient, Client
from synod.client.errors import EtcdError
from synod.client.lease import KeepAlive
from synod.client.sync import SyncKeepAlive, SyncWatch
from synod.client.watch import Watch

KINDS = ("sync", "async")


class Events:
    """A watch of either client: ``await next(timeout)`` per response."""

    def __init__(self, watch: Watch | SyncWatch) -> None:
        self.watch = watch
        self._it: Any = aiter(watch) if isinstance(watch, Watch) else None
        self.responses: list[pb.WatchResponse] = []

    @property
    def next_revision(self) -> int:
        return self.watch.next_revision

    async def next(self, timeout: float = 10.0) -> pb.WatchResponse:
        """The next response; ``StopAsyncIteration`` when the watch ended, ``TimeoutError`` if none came."""
        if isinstance(self.watch, Watch):
            resp: pb.WatchResponse = await asyncio.wait_for(anext(self._it), timeout)
        else:
            # A worker thread blocks in next(); on timeout the test fails and cancel() ends it.
            resp = await asyncio.wait_for(asyncio.to_thread(_next_or_stop, self.watch), timeout)
        self.responses.append(resp)
        return resp

    async def events(self, count: int, timeout: float = 10.0) -> list[pb.Event]:
        """Exactly the next ``count`` events (fails on a response that would overshoot)."""
        deadline = time.monotonic() + timeout
        events: list[pb.Event] = []
        while len(events) < count:
            resp = await self.next(max(0.01, deadline - time.monotonic()))
            events.extend(resp.events)
        assert len(events) == count, f"{len(events)} events, wanted {count}: {events}"
        return events

    async def request_progress(self) -> None:
        if isinstance(self.watch, Watch):
            await self.watch.request_progress()
        else:
            await asyncio.to_thread(self.watch.request_progress)

    async def cancel(self) -> None:
        if isinstance(self.watch, Watch):
            await self.watch.cancel()
        else:
            await asyncio.to_thread(self.watch.cancel)


def _next_or_stop(watch: SyncWatch) -> pb.WatchResponse:
    try:
        return next(watch)
    except StopIteration:
        raise StopAsyncIteration from None


class Lease:
    """A keep-alive of either client."""

    def __init__(self, keepalive: KeepAlive | SyncKeepAlive) -> None:
        self.handle = keepalive
        self.inner: KeepAlive = keepalive if isinstance(keepalive, KeepAlive) else keepalive.keepalive

    @property
    def renewals(self) -> int:
        return self.inner.renewals

    @property
    def ttl(self) -> int:
        return self.inner.ttl

    def is_lost(self) -> bool:
        if isinstance(self.handle, KeepAlive):
            return self.handle.lost.is_set()
        return self.handle.lost.is_set()

    async def wait_lost(self, timeout: float) -> EtcdError:
        if isinstance(self.handle, KeepAlive):
            return await asyncio.wait_for(self.handle.wait_lost(), timeout)
        error = await asyncio.to_thread(self.handle.wait_lost, timeout)
        if error is None:
            raise TimeoutError(f"the keep-alive was not lost within {timeout}s")
        return error

    async def close(self) -> None:
        if isinstance(self.handle, KeepAlive):
            await self.handle.close()
        else:
            await asyncio.to_thread(self.handle.close)


class Api:
    """Every ``AsyncClient`` method as a coroutine, whichever client runs it."""

    def __init__(self, kind: str, client: AsyncClient | Client) -> None:
        self.kind = kind
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)
        if isinstance(self.client, AsyncClient):
            return method  # type: ignore[no-any-return]

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call

    @property
    def aio(self) -> AsyncClient:
        return self.client if isinstance(self.client, AsyncClient) else self.client.aio

    async def watch(self, key: Any, **options: Any) -> Events:
        """A watch that the server has created (the blocking client's ``watch()`` waits for it too)."""
        if isinstance(self.client, AsyncClient):
            w = self.client.watch(key, **options)
            await w.created()
            return Events(w)
        return Events(await asyncio.to_thread(self.client.watch, key, **options))

    async def keep_alive(self, lease_id: int, ttl: int, **options: Any) -> Lease:
        if isinstance(self.client, AsyncClient):
            return Lease(self.client.keep_alive(lease_id, ttl, **options))
        return Lease(await asyncio.to_thread(self.client.keep_alive, lease_id, ttl, **options))


@contextlib.asynccontextmanager
async def open_client(kind: str, endpoints: Sequence[str] | str, **options: Any) -> AsyncIterator[Api]:
    if kind == "async":
        aclient = AsyncClient(endpoints, **options)
        try:
            yield Api(kind, aclient)
        finally:
            await aclient.close()
    else:
        client = await asyncio.to_thread(Client, endpoints, **options)
        try:
            yield Api(kind, client)
        finally:
            await asyncio.to_thread(client.close)


def run(coro: Any, timeout: float = 60.0) -> Any:
    """Run a test body with an overall deadline."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """``wait_until`` for coroutines: poll a (sync or async) predicate until truthy or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
