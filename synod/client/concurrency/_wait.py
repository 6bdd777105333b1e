"""Waiting for keys to go: the building block of the mutex's and the election's queues."""

from __future__ import annotations

import asyncio
import contextlib

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.mvccpb import kv_pb2 as mvccpb
from synod.client.aio import AsyncClient
from synod.client.concurrency.errors import ConcurrencyError, SessionExpiredError
from synod.client.concurrency.session import AsyncSession


async def wait_delete(client: AsyncClient, key: bytes, revision: int) -> None:
    """Return once ``key`` is deleted at ``revision`` or later."""
    async with client.watch(key, start_revision=revision) as watch:
        async for resp in watch:
            if any(event.type == mvccpb.Event.DELETE for event in resp.events):
                return
    raise ConcurrencyError("lost watcher waiting for delete")


async def wait_deletes(client: AsyncClient, prefix: bytes, max_create_revision: int) -> pb.ResponseHeader:
    """Wait until no key under ``prefix`` created at ``max_create_revision`` or before is left.

    Only the youngest such key is watched, each time: the waiters form a queue by
    create revision and each waits for the one just ahead of it (no thundering herd).
    """
    while True:
        resp = await client.get(
            prefix, prefix=True, sort_target=pb.RangeRequest.CREATE, sort_order=pb.RangeRequest.DESCEND,
            limit=1, max_create_revision=max_create_revision,
        )  # fmt: skip
        if not resp.kvs:
            return resp.header
        await wait_delete(client, resp.kvs[0].key, resp.header.revision)


async def wait_turn(
    session: AsyncSession, prefix: bytes, my_key: bytes, my_revision: int, since_revision: int
) -> None:
    """Wait until every key queued ahead of ``my_key`` (created at ``my_revision``) is gone.

    Raises ``SessionExpiredError`` as soon as the session ends or ``my_key`` (which
    exists at ``since_revision``) is deleted: the waiter has left the queue.
    """
    client = session.client
    turn = asyncio.ensure_future(wait_deletes(client, prefix, my_revision - 1))
    mine = asyncio.ensure_future(wait_delete(client, my_key, since_revision + 1))
    done = asyncio.ensure_future(session.done.wait())
    tasks = [turn, mine, done]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if turn.done() and not turn.cancelled():
        turn.result()  # raises what the wait raised
        return
    if mine.done() and not mine.cancelled() and mine.exception() is not None:
        mine.result()
    raise SessionExpiredError()
