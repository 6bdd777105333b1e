"""A watch that survives its connection: it resumes where it left off, with no gap and no duplicate.

Each ``Watch`` has its own stream. The revision it needs next (``next_revision``)
advances past every event delivered and past every progress notification (which
promises that nothing older is still to come). When the stream breaks (the
member restarted, the connection dropped, the endpoint is gone) the watch opens a
new stream, on the next endpoint if the pinned one fails, with
``start_revision = next_revision``; etcd delivers the events of one revision in
one response, so resuming at a revision boundary repeats and skips nothing. If
that revision has been compacted meanwhile, iteration raises ``CompactedError``
(the caller must read the current state again), as it does for a watch created
at a compacted revision.

Iterating yields etcd's ``WatchResponse`` messages: ones with events, and
progress notifications (no events; ``header.revision`` is the promise). The
"created" answer is consumed, not yielded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.client.connection import EOF, Connection
from synod.client.errors import (
    ClientClosedError,
    CompactedError,
    EtcdError,
    InvalidAuthTokenError,
    WatchCanceledError,
    from_rpc_error,
)
from synod.rpctypes import COMPACTED, INVALID_AUTH_TOKEN

_WATCH = "/etcdserverpb.Watch/Watch"


class Watch:
    """``async for response in watch`` (or ``async with``); ``cancel()`` ends it."""

    def __init__(self, conn: Connection, request: pb.WatchCreateRequest) -> None:
        self._conn = conn
        self._request = request
        self.next_revision = request.start_revision  # 0 until the first stream says where it starts
        self.watch_id = -1
        self._call: Any = None
        self._first: Any = None  # a response created() read and the iteration has yet to see
        self._opened_with: tuple[tuple[str, str], ...] | None = None  # the current stream's token
        self._canceled = False
        self._attempt = 0

    def __aiter__(self) -> AsyncIterator[pb.WatchResponse]:
        return self._responses()

    async def __aenter__(self) -> Watch:
        await self.created()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cancel()

    async def created(self) -> None:
        """Open the stream and wait for the server's "created" answer, as clientv3's ``Watch`` does.

        A watch from now on (no ``start_revision``) is bound to the revision the server
        created it at: a change made after this returns is one of its events, even if the
        stream breaks before iteration starts. Without it, the stream opens on the first
        iteration. (A failure here is left to the iteration, which retries or raises it.)
        """
        for _ in range(2):  # a second time after a token refused
            if self._call is not None or self._canceled or self._conn.closed:
                return
            try:
                call = await self._open(self._conn.pinned)
                self._first = await call.read()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await self._close_call()
                return
            if self._first is EOF or not self._first.created:
                return
            if not self._first.canceled:
                self._take_created(self._first)
                self._first = None
                return
            if not await self._refresh_token(self._first.cancel_reason):
                return  # the iteration raises it
            await self._close_call()

    async def _refresh_token(self, reason: str) -> bool:
        """Whether the stream was refused for its token and a new one is in hand to retry with.

        etcd 3.4 cancels a watch created with an expired or unknown token (reason:
        "... invalid auth token"), where a unary call gets the error itself; clientv3
        authenticates again for both.
        """
        if not self._conn.authenticates or INVALID_AUTH_TOKEN.message not in reason:
            return False
        timeout = self._conn.options.timeout
        await self._conn.authenticate(
            None if timeout is None else time.monotonic() + timeout, stale=self._opened_with
        )
        return True

    def _take_created(self, resp: pb.WatchResponse) -> None:
        self.watch_id = resp.watch_id
        if self.next_revision == 0:
            self.next_revision = resp.header.revision + 1

    async def _read(self) -> Any:
        """The next response of the current stream (EOF at its end); ``created()``'s first comes first."""
        first, self._first = self._first, None
        if first is not None:
            return first
        if self._call is None:  # cancel() closed it while the caller held a response
            return EOF
        return await self._call.read()

    async def _responses(self) -> AsyncIterator[pb.WatchResponse]:
        refreshed = False  # a new token was fetched for this stream: refused again, it is an error
        while not self._canceled:
            index = self._conn.pinned
            try:
                if self._call is None:
                    await self._open(index)
                while (resp := await self._read()) is not EOF:
                    self._attempt = 0
                    if resp.created and not resp.canceled:
                        self._take_created(resp)
                        refreshed = False
                        continue
                    if resp.canceled:
                        if self._canceled:  # the answer to our own cancel request
                            return
                        if not refreshed and await self._refresh_token(resp.cancel_reason):
                            refreshed = True
                            break  # reopen with the new token, at next_revision
                        raise _canceled(resp)
                    if resp.events:
                        self.next_revision = resp.events[-1].kv.mod_revision + 1
                    elif resp.header.revision >= self.next_revision:  # a progress notification
                        self.next_revision = resp.header.revision + 1
                    yield resp
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as e:
                # InvalidStateError: the stream failed before a write (the server went away).
                if self._canceled or self._conn.closed:
                    break
                if isinstance(e, grpc.aio.AioRpcError):
                    error = from_rpc_error(e)
                    if isinstance(error, InvalidAuthTokenError) and not refreshed:
                        refreshed = await self._refresh_token(error.message)
                        if refreshed:
                            await self._close_call()
                            continue
                    if error.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                        raise error from None
                self._conn.failover(index)
            except asyncio.CancelledError:
                await self._close_call()
                if _cancelling():  # the iterating task itself is cancelled
                    raise
                if self._canceled:  # cancel() cancelled the stream under the iteration
                    return
                if self._conn.closed:  # close() cancelled it, closing the channel
                    raise ClientClosedError() from None
                raise
            if self._canceled or self._conn.closed:
                break
            # The stream ended (an error, or the server went away): resume where it left off.
            await self._close_call()
            self._attempt += 1
            await asyncio.sleep(self._conn.backoff(self._attempt))
        if self._conn.closed and not self._canceled:
            raise ClientClosedError()

    async def _open(self, index: int) -> Any:
        create = pb.WatchCreateRequest()
        create.CopyFrom(self._request)
        create.start_revision = self.next_revision
        channel: Any = self._conn.channel(index)
        self._opened_with = self._conn.stream_metadata()
        self._call = channel.stream_stream(
            _WATCH, request_serializer=pb.WatchRequest.SerializeToString,
            response_deserializer=pb.WatchResponse.FromString,
        )(metadata=self._opened_with)  # fmt: skip
        await self._call.write(pb.WatchRequest(create_request=create))
        return self._call

    async def request_progress(self) -> None:
        """Ask for a progress notification (etcd 3.4: answered when the watcher is in sync)."""
        if self._call is not None:
            await self._call.write(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    async def cancel(self) -> None:
        """Stop watching; an iteration in progress ends."""
        if self._canceled:
            return
        self._canceled = True
        call = self._call
        if call is not None and self.watch_id >= 0 and not call.done():
            try:
                await call.write(
                    pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=self.watch_id))
                )
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
                pass
        await self._close_call()

    async def _close_call(self) -> None:
        call, self._call = self._call, None
        self._first = None
        if call is not None and not call.done():
            call.cancel()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _canceled(resp: pb.WatchResponse) -> EtcdError:
    code = grpc.StatusCode.OUT_OF_RANGE if resp.compact_revision else grpc.StatusCode.CANCELLED
    if resp.compact_revision:
        error = CompactedError(code, COMPACTED.message)
        error.compact_revision = resp.compact_revision
        return error
    return WatchCanceledError(code, resp.cancel_reason or "etcdserver: watch canceled")


def create_request(
    key: bytes,
    range_end: bytes,
    start_revision: int,
    prev_kv: bool,
    progress_notify: bool,
    filters: Sequence[int],
) -> pb.WatchCreateRequest:
    """(No ``fragment``: a revision split over responses could not be resumed without a duplicate.)"""
    return pb.WatchCreateRequest(
        key=key, range_end=range_end, start_revision=start_revision, prev_kv=prev_kv,
        progress_notify=progress_notify, filters=filters,  # type: ignore[arg-type]
    )  # fmt: skip
