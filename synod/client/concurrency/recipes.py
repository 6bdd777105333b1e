"""etcd's contrib/recipes: barriers, double barriers, queues and priority queues.

Each comes as an asyncio class (``AsyncBarrier``, ...) and a blocking one
(``Barrier``, ...) that runs it on a ``Client``'s loop.

- ``Barrier(client, key)``: ``hold()`` puts the barrier key, ``release()`` deletes
  it, ``wait()`` blocks while it exists.
- ``DoubleBarrier(session, key, count)``: ``enter()`` blocks until ``count``
  participants have entered, ``leave()`` until all of them have left. A
  participant's key has its session's lease, so one that dies does not block
  the others for ever.
- ``Queue(client, prefix)``: FIFO; ``dequeue()`` waits for an item when empty.
  Each item is taken by one consumer (a delete guarded by its mod revision).
- ``PriorityQueue(client, key)``: ``enqueue(value, priority)``; the smallest
  priority number comes out first, FIFO within a priority.

Values are ``bytes`` when read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.mvccpb import kv_pb2 as mvccpb
from synod.client import txn as t
from synod.client.aio import AsyncClient
from synod.client.concurrency.errors import ConcurrencyError, KeyExistsError, TooManyClientsError
from synod.client.concurrency.session import AsyncSession, Session
from synod.client.keys import Key, to_bytes
from synod.client.sync import Client, Portal

PUT, DELETE = mvccpb.Event.PUT, mvccpb.Event.DELETE


# -- building blocks ------------------------------------------------------------------------------------


async def put_new(client: AsyncClient, key: bytes, value: Key = b"", lease: int = 0) -> int:
    """Create ``key`` (``KeyExistsError`` if it exists); the revision it was created at."""
    resp = await client.txn([t.version(key) == 0], [t.put(key, value, lease=lease)])
    if not resp.succeeded:
        raise KeyExistsError()
    return int(resp.header.revision)


async def put_unique(
    client: AsyncClient, prefix: bytes, value: Key = b"", lease: int = 0
) -> tuple[bytes, int]:
    """A new key ``<prefix>/<nanoseconds>`` (retried if taken): the key and its create revision."""
    while True:
        key = prefix + b"/" + str(time.time_ns()).encode()
        try:
            return key, await put_new(client, key, value, lease)
        except KeyExistsError:
            continue


async def put_sequential(client: AsyncClient, prefix: bytes, value: Key) -> tuple[bytes, int]:
    """A new key ``<prefix>/<16-digit sequence number>``, one past the greatest there.

    A base key ``__<prefix>``, written with each new key, guards the allocation: a
    number allocated, used and deleted by another client meanwhile is not reused.
    """
    base = b"__" + prefix
    while True:
        last = await client.get(
            prefix + b"/", prefix=True, sort_target=pb.RangeRequest.KEY, sort_order=pb.RangeRequest.DESCEND,
            limit=1,
        )  # fmt: skip
        number = int(last.kvs[0].key.rsplit(b"/", 1)[-1]) + 1 if last.kvs else 0
        key = prefix + b"/" + f"{number:016d}".encode()
        resp = await client.txn(
            [t.mod_revision(base) < last.header.revision + 1], [t.put(base, ""), t.put(key, value)]
        )
        if resp.succeeded:
            return key, int(resp.header.revision)


async def wait_events(
    client: AsyncClient, key: bytes, revision: int, types: Sequence[int], *, prefix: bool = False
) -> mvccpb.Event:
    """From ``revision`` on, wait for events of ``types`` in that order; the last one."""
    i = 0
    async with client.watch(key, prefix=prefix, start_revision=revision) as watch:
        async for resp in watch:
            for event in resp.events:
                if event.type == types[i]:
                    i += 1
                    if i == len(types):
                        return event
    raise ConcurrencyError("lost watcher waiting for events")


async def delete_revision(client: AsyncClient, key: bytes, mod_revision: int) -> bool:
    """Delete ``key`` if it is still at ``mod_revision``: whether this call took it."""
    resp = await client.txn([t.mod_revision(key) == mod_revision], [t.delete(key)])
    return bool(resp.succeeded)


# -- barrier ------------------------------------------------------------------------------------------------


class AsyncBarrier:
    def __init__(self, client: AsyncClient, key: Key) -> None:
        self.client = client
        self.key = to_bytes(key)

    async def hold(self) -> None:
        """Raise the barrier (``KeyExistsError`` if it is up)."""
        await put_new(self.client, self.key)

    async def release(self) -> None:
        await self.client.delete(self.key)

    async def wait(self, timeout: float | None = None) -> None:
        """Return once the barrier is down (at once if it is not up)."""
        async with asyncio.timeout(timeout):
            resp = await self.client.get(self.key)
            if resp.kvs:
                # (etcd's waits for a put, then a delete: stuck if the key was put before the read.)
                await wait_events(self.client, self.key, resp.header.revision + 1, [DELETE])


# -- double barrier -----------------------------------------------------------------------------------------


class AsyncDoubleBarrier:
    def __init__(self, session: AsyncSession, key: Key, count: int) -> None:
        self.session = session
        self.client = session.client
        self.key = to_bytes(key)
        self.count = count
        self._waiters = self.key + b"/waiters"
        self._ready = self.key + b"/ready"
        self.my_key = b""
        self._my_revision = 0

    async def enter(self, timeout: float | None = None) -> None:
        """Wait until ``count`` participants have entered (``TooManyClientsError`` past ``count``)."""
        async with asyncio.timeout(timeout):
            self.session.check()
            self.my_key, self._my_revision = await put_unique(
                self.client, self._waiters, lease=self.session.lease_id
            )
            resp = await self.client.get(self._waiters, prefix=True)
            if len(resp.kvs) > self.count:
                await self.client.delete(self.my_key)
                self.my_key = b""
                raise TooManyClientsError()
            if len(resp.kvs) == self.count:
                await self.client.put(self._ready, "")  # the last one in lets everybody through
                return
            await wait_events(self.client, self._ready, self._my_revision, [PUT])

    async def leave(self, timeout: float | None = None) -> None:
        """Wait until every participant has left."""
        async with asyncio.timeout(timeout):
            while True:
                resp = await self.client.get(self._waiters, prefix=True)
                if not resp.kvs:
                    return
                lowest = min(resp.kvs, key=lambda kv: kv.mod_revision)
                highest = max(resp.kvs, key=lambda kv: kv.mod_revision)
                if len(resp.kvs) == 1:  # the last one out lowers the barrier
                    await self.client.txn((), [t.delete(self._ready), t.delete(self.my_key)])
                    return
                if lowest.key == self.my_key:
                    # The lowest waits for the highest to go, then looks again.
                    await wait_events(self.client, highest.key, highest.mod_revision, [DELETE])
                    continue
                # The others delete themselves and wait for the lowest to go.
                await self.client.delete(self.my_key)
                await wait_events(self.client, lowest.key, lowest.mod_revision, [DELETE])
                return


# -- queues -------------------------------------------------------------------------------------------------


async def _dequeue(client: AsyncClient, prefix: bytes, sort_target: int) -> bytes:
    """Take the first key under ``prefix`` (by ``sort_target``), waiting for one if there is none."""
    while True:
        resp = await client.get(
            prefix, prefix=True, sort_target=sort_target, sort_order=pb.RangeRequest.ASCEND, limit=1
        )
        if resp.kvs:
            kv = resp.kvs[0]
            if await delete_revision(client, kv.key, kv.mod_revision):
                return bytes(kv.value)
            continue  # another consumer took it: look again
        event = await wait_events(client, prefix, resp.header.revision + 1, [PUT], prefix=True)
        if await delete_revision(client, event.kv.key, event.kv.mod_revision):
            return bytes(event.kv.value)


class AsyncQueue:
    def __init__(self, client: AsyncClient, prefix: Key) -> None:
        self.client = client
        self.prefix = to_bytes(prefix)

    async def enqueue(self, value: Key) -> None:
        await put_unique(self.client, self.prefix, value)

    async def dequeue(self, timeout: float | None = None) -> bytes:
        """The oldest item (by create revision), taken off the queue; waits while it is empty."""
        async with asyncio.timeout(timeout):
            return await _dequeue(self.client, self.prefix + b"/", pb.RangeRequest.CREATE)


class AsyncPriorityQueue:
    def __init__(self, client: AsyncClient, key: Key) -> None:
        self.client = client
        self.key = to_bytes(key) + b"/"

    async def enqueue(self, value: Key, priority: int) -> None:
        """``priority``: 0 (first out) to 65535."""
        if not 0 <= priority <= 0xFFFF:
            raise ValueError("a priority is from 0 to 65535")
        await put_sequential(self.client, self.key + f"{priority:05d}".encode(), value)

    async def dequeue(self, timeout: float | None = None) -> bytes:
        """The item of the smallest priority number (the oldest of those), taken off the queue."""
        async with asyncio.timeout(timeout):
            return await _dequeue(self.client, self.key, pb.RangeRequest.KEY)


# -- blocking -----------------------------------------------------------------------------------------------


class Barrier:
    def __init__(self, client: Client, key: Key) -> None:
        self._portal: Portal = client._portal
        self.aio = AsyncBarrier(client.aio, key)

    def hold(self) -> None:
        self._portal.run(self.aio.hold())

    def release(self) -> None:
        self._portal.run(self.aio.release())

    def wait(self, timeout: float | None = None) -> None:
        self._portal.run(self.aio.wait(timeout))


class DoubleBarrier:
    def __init__(self, session: Session, key: Key, count: int) -> None:
        self._portal: Portal = session._portal
        self.aio = AsyncDoubleBarrier(session.aio, key, count)

    def enter(self, timeout: float | None = None) -> None:
        self._portal.run(self.aio.enter(timeout))

    def leave(self, timeout: float | None = None) -> None:
        self._portal.run(self.aio.leave(timeout))


class Queue:
    def __init__(self, client: Client, prefix: Key) -> None:
        self._portal: Portal = client._portal
        self.aio = AsyncQueue(client.aio, prefix)

    def enqueue(self, value: Key) -> None:
        self._portal.run(self.aio.enqueue(value))

    def dequeue(self, timeout: float | None = None) -> bytes:
        return self._portal.run(self.aio.dequeue(timeout))


class PriorityQueue:
    def __init__(self, client: Client, key: Key) -> None:
        self._portal: Portal = client._portal
        self.aio = AsyncPriorityQueue(client.aio, key)

    def enqueue(self, value: Key, priority: int) -> None:
        self._portal.run(self.aio.enqueue(value, priority))

    def dequeue(self, timeout: float | None = None) -> bytes:
        return self._portal.run(self.aio.dequeue(timeout))
