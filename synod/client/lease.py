"""Keeping a lease alive in the background, and telling its owner when it is lost.

A ``KeepAlive`` renews its lease on a ``LeaseKeepAlive`` stream every third of
the lease's TTL (as clientv3 does). When the stream breaks it reconnects (to the
next endpoint if the pinned one is gone) and renews again. The lease is *lost*
when the server answers TTL 0 (it expired or was revoked), or when no renewal
has succeeded before the lease's own deadline (the last granted TTL, counted
from the moment its renewal was sent): past it the server has expired the
lease, whatever the client hears later. Then ``lost`` is set, the ``on_lost``
callback runs once, ``wait_lost()`` returns, and the task ends.

Time comes from ``clock`` (a monotonic clock), so tests can control it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.client.connection import EOF, Connection
from synod.client.errors import (
    ClientClosedError,
    ConnectionFailedError,
    EtcdError,
    LeaseExpiredError,
    LeaseNotFoundError,
    from_rpc_error,
)
from synod.rpctypes import LEASE_NOT_FOUND

_KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
_MIN_INTERVAL = 0.5  # clientv3 renews at least every 500 ms for short leases


class KeepAlive:
    def __init__(
        self,
        conn: Connection,
        lease_id: int,
        ttl: int,
        on_lost: Callable[[EtcdError], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conn = conn
        self.lease_id = lease_id
        self.ttl = ttl  # the TTL the last renewal granted
        self._on_lost = on_lost
        self._clock = clock
        self.deadline = clock() + ttl  # the server expires the lease no earlier than this
        self.lost = asyncio.Event()
        self.error: EtcdError | None = None
        self.renewals = 0
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"keepalive {lease_id:x}")

    async def wait_lost(self) -> EtcdError:
        await self.lost.wait()
        assert self.error is not None
        return self.error

    async def client_closed(self) -> None:
        """The client closed: nobody renews the lease any more, which is losing it."""
        self._lose(ClientClosedError())
        await self.close()

    async def close(self) -> None:
        """Stop renewing (the lease itself stays until it expires or is revoked)."""
        self._closed = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def __aenter__(self) -> KeepAlive:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _interval(self) -> float:
        return max(self.ttl / 3, _MIN_INTERVAL)

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            index = self._conn.pinned
            call: Any = None
            renewals = self.renewals
            try:
                channel: Any = self._conn.channel(index)
                call = channel.stream_stream(
                    _KEEPALIVE, request_serializer=pb.LeaseKeepAliveRequest.SerializeToString,
                    response_deserializer=pb.LeaseKeepAliveResponse.FromString,
                )(metadata=self._conn.stream_metadata())  # fmt: skip
                if await self._renew_on(call):
                    return  # lost
            except grpc.aio.AioRpcError as e:
                error = from_rpc_error(e)
                if error.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                    self._lose(error)
                    return
                self._conn.failover(index)
            except asyncio.InvalidStateError:  # the stream failed while we slept: a write to it
                self._conn.failover(index)
            except EtcdError as e:  # the client closed
                self._lose(e)
                return
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed or (task is not None and task.cancelling()) or not self._conn.closed:
                    raise
                # The client closed its channels under the stream: nobody renews the lease now.
                self._lose(ClientClosedError())
                return
            finally:
                if call is not None and not call.done():
                    call.cancel()
            if self._clock() >= self.deadline:
                self._lose(LeaseExpiredError(grpc.StatusCode.NOT_FOUND, _expired_unrenewed(self.lease_id)))
                return
            # The backoff grows over failed streams only: one that renewed starts it again.
            attempt = 1 if self.renewals > renewals else attempt + 1
            await asyncio.sleep(min(self._conn.backoff(attempt), max(0.0, self.deadline - self._clock())))

    async def _renew_on(self, call: Any) -> bool:
        """Renew every interval on one stream: True once the lease is lost, False if the stream ended."""
        while True:
            sent = self._clock()
            await call.write(pb.LeaseKeepAliveRequest(ID=self.lease_id))
            try:
                async with asyncio.timeout(max(0.05, self.deadline - self._clock())):
                    resp = await call.read()
            except TimeoutError:
                self._lose(LeaseExpiredError(grpc.StatusCode.NOT_FOUND, _expired_unrenewed(self.lease_id)))
                return True
            if resp is EOF:
                return False
            if resp.TTL <= 0:
                self._lose(LeaseExpiredError(grpc.StatusCode.NOT_FOUND, LEASE_NOT_FOUND.message))
                return True
            self.ttl = resp.TTL
            self.deadline = sent + resp.TTL
            self.renewals += 1
            await asyncio.sleep(self._interval())

    def _lose(self, error: EtcdError) -> None:
        if self.lost.is_set():
            return
        self.error = error
        self.lost.set()
        if self._on_lost is not None and not self._closed:
            self._on_lost(error)


def _expired_unrenewed(lease_id: int) -> str:
    return f"synod: lease {lease_id:x} was not renewed before its TTL ran out"


async def keep_alive_once(conn: Connection, lease_id: int) -> pb.LeaseKeepAliveResponse:
    """One renewal on a stream of its own (retried on another endpoint while unavailable)."""
    attempt = 0
    deadline = None if conn.options.timeout is None else time.monotonic() + conn.options.timeout
    while True:
        index = conn.pinned
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        channel: Any = conn.channel(index)
        call: Any = channel.stream_stream(
            _KEEPALIVE, request_serializer=pb.LeaseKeepAliveRequest.SerializeToString,
            response_deserializer=pb.LeaseKeepAliveResponse.FromString,
        )(metadata=conn.stream_metadata(), timeout=remaining)  # fmt: skip
        try:
            await call.write(pb.LeaseKeepAliveRequest(ID=lease_id))
            resp = await call.read()
            if resp is EOF:
                error: EtcdError = ConnectionFailedError(
                    grpc.StatusCode.UNAVAILABLE, "synod: the stream ended"
                )
            elif resp.TTL <= 0:
                raise LeaseNotFoundError(grpc.StatusCode.NOT_FOUND, LEASE_NOT_FOUND.message)
            else:
                return resp  # type: ignore[no-any-return]
        except grpc.aio.AioRpcError as e:
            error = from_rpc_error(e)
            if error.code != grpc.StatusCode.UNAVAILABLE:
                raise error from None
        finally:
            call.cancel()
        conn.failover(index)
        attempt += 1
        pause = conn.backoff(attempt)
        if deadline is not None and time.monotonic() + pause >= deadline:
            raise error
        await asyncio.sleep(pause)
