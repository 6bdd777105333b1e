"""Callers parked until their request is applied, keyed by request ID (etcd's ``wait``)."""

from __future__ import annotations

import asyncio
from typing import Any


class Wait:
    def __init__(self) -> None:
        self._pending: dict[int, asyncio.Future[Any]] = {}

    def register(self, request_id: int) -> asyncio.Future[Any]:
        if request_id in self._pending:
            raise AssertionError(f"request ID {request_id:x} registered twice")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        return fut

    def trigger(self, request_id: int, result: Any) -> None:
        """Complete the waiter, if any (an exception instance is raised to it)."""
        fut = self._pending.pop(request_id, None)
        if fut is None or fut.done():
            return
        if isinstance(result, BaseException):
            fut.set_exception(result)
        else:
            fut.set_result(result)

    def cancel(self, request_id: int) -> None:
        self._pending.pop(request_id, None)

    def fail_all(self, error: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error)


class AppliedWait:
    """Wait until the applied index reaches a given index."""

    def __init__(self, applied: int = 0) -> None:
        self.applied = applied
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def wait(self, index: int) -> None:
        if self.applied >= index:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((index, fut))
        await fut

    def advance(self, applied: int) -> None:
        self.applied = applied
        if not self._waiters:
            return
        still = []
        for index, fut in self._waiters:
            if index <= applied:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((index, fut))
        self._waiters = still
