"""The member's own client: ``synod.client.AsyncClient`` calling the member's dispatcher, no socket.

etcd serves its Lock and Election services with a clientv3 wired to its own
server; this is that wiring. ``InProcessChannel`` stands in for the grpc.aio
channel the client opens (the two methods it uses: ``unary_unary`` and
``stream_stream``): a unary call runs the method's handler on its encoded
request and decodes the answer (so neither side shares a message the other may
change), a stream runs the method's stream handler with queues for both
directions. Errors come out as grpc.aio's ``AioRpcError`` with the handler's
code and message, so the client maps them to its exceptions as it maps a
remote server's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from grpc import StatusCode

from synod.client.aio import AsyncClient
from synod.client.connection import EOF
from synod.rpctypes import RPCError
from synod.server.api.methods import BY_PATH, Dispatcher, Method

# How many answers of a stream wait for its reader before the handler's writes wait too.
STREAM_BUFFER = 64


def _error(code: StatusCode, message: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), message, None)


class InProcessChannel:
    """``bind`` it to the dispatcher before the first call (the dispatcher's services may use it)."""

    def __init__(self, dispatcher: Dispatcher | None = None) -> None:
        self._dispatcher = dispatcher

    def bind(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    @property
    def dispatcher(self) -> Dispatcher:
        assert self._dispatcher is not None, "the in-process channel was not bound to a dispatcher"
        return self._dispatcher

    def unary_unary(
        self,
        path: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
    ) -> Callable[..., Any]:
        method = BY_PATH[path]
        serialize = request_serializer or (lambda m: m.SerializeToString())
        deserialize = response_deserializer or method.response.FromString

        async def call(request: Any, timeout: float | None = None, **_: Any) -> Any:
            try:
                async with asyncio.timeout(timeout):
                    return deserialize(await self.dispatcher.call_bytes(method, serialize(request)))
            except RPCError as e:
                raise _error(e.code, e.message) from None
            except TimeoutError:
                raise _error(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None

        return call

    def stream_stream(
        self,
        path: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
    ) -> Callable[..., InProcessStream]:
        method = BY_PATH[path]

        def open_call(*_: Any, **__: Any) -> InProcessStream:
            return InProcessStream(self.dispatcher, method, request_serializer, response_deserializer)

        return open_call

    async def close(self, grace: float | None = None) -> None:
        pass


class InProcessStream:
    """A bidirectional call: ``write``, ``read`` (``EOF`` at the end), ``done_writing``, ``cancel``."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        method: Method,
        serialize: Callable[[Any], bytes] | None,
        deserialize: Callable[[bytes], Any] | None,
    ) -> None:
        handler = dispatcher.stream_handler(method)
        self._serialize = serialize or (lambda m: m.SerializeToString())
        self._deserialize = deserialize or method.response.FromString
        self._requests: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._responses: asyncio.Queue[bytes | None] = asyncio.Queue(STREAM_BUFFER)
        self._error: grpc.aio.AioRpcError | None = None
        if handler is None:
            self._error = _error(StatusCode.UNIMPLEMENTED, f"synod: {method.path} is not implemented yet")
            self._task: asyncio.Task[None] | None = None
            self._responses.put_nowait(None)
        else:
            self._task = asyncio.ensure_future(self._run(handler))

    async def _incoming(self) -> AsyncIterator[bytes]:
        while (request := await self._requests.get()) is not None:
            yield request

    async def _run(self, handler: Any) -> None:
        try:
            await handler(self._incoming(), self._responses.put)
        except RPCError as e:
            self._error = _error(e.code, e.message)
        except asyncio.CancelledError:
            self._error = _error(StatusCode.CANCELLED, "Locally cancelled by application!")
            with contextlib.suppress(asyncio.QueueFull):  # a reader still waiting finds the end
                self._responses.put_nowait(None)
            raise
        await self._responses.put(None)  # after what the reader has still to read

    async def write(self, message: Any) -> None:
        if self.done():
            raise grpc.aio.UsageError("the stream has ended")
        self._requests.put_nowait(self._serialize(message))

    async def done_writing(self) -> None:
        self._requests.put_nowait(None)

    async def read(self) -> Any:
        data = await self._responses.get()
        if data is None:
            self._responses.put_nowait(None)  # every later read finds the end too
            if self._error is not None:
                raise self._error
            return EOF
        return self._deserialize(data)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while (message := await self.read()) is not EOF:
            yield message

    def done(self) -> bool:
        return self._task is None or self._task.done()

    def cancel(self) -> bool:
        if self._task is None or self._task.done():
            return False
        return self._task.cancel()


def inprocess_client(channel: InProcessChannel) -> AsyncClient:
    """An AsyncClient whose every call is served through ``channel``; no deadline of its own."""
    return AsyncClient(["in-process:0"], timeout=None, channel_factory=lambda target, secure: channel)
