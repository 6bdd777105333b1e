"""The client-facing gRPC server: every etcd service and method registered from the start.

What serves a method is pluggable: in the member process it is the
``Dispatcher`` (messages in and out); in a front-end process it is the relay to
the member (raw bytes in and out, parsed only by the member). Methods with no
handler answer ``UNIMPLEMENTED``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import grpc
from grpc import StatusCode
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health_pb2_grpc

from synod.rpctypes import ErrorCode, RPCError
from synod.server.api.header import Header
from synod.server.api.kv import KVService
from synod.server.api.lease import LeaseService
from synod.server.api.methods import METHODS, Dispatcher, Method, StreamHandler, not_implemented
from synod.server.api.watch import WatchService
from synod.server.config import GRPC_OVERHEAD_BYTES
from synod.server.etcdserver import EtcdServer

_GRPC_CAP_SLACK = 4 << 20

HandlerFactory = Callable[[Method], "grpc.RpcMethodHandler[Any, Any]"]


def build_dispatcher(etcd: EtcdServer) -> Dispatcher:
    header = Header(etcd)
    kv = KVService(etcd, header)
    lease = LeaseService(etcd, header)
    watch = WatchService(etcd, etcd.cfg.watch_progress_notify_interval)
    return Dispatcher({**kv.handlers(), **lease.handlers()}, {**lease.streams(), **watch.streams()})


def receive_limit(max_request_bytes: int) -> int:
    """The largest request message accepted, as etcd sets gRPC's limit."""
    return max_request_bytes + GRPC_OVERHEAD_BYTES


def check_message_size(request: bytes, limit: int) -> None:
    """etcd's answer (grpc-go's words) to a message over the limit; grpc-core words it differently."""
    if len(request) > limit:
        raise RPCError(
            ErrorCode(
                StatusCode.RESOURCE_EXHAUSTED,
                f"grpc: received message larger than max ({len(request)} vs. {limit})",
            )
        )


def server_options(max_request_bytes: int, *, reuse_port: bool) -> list[tuple[str, int]]:
    return [
        # gRPC's own cap sits above etcd's limit, so that check_message_size answers with etcd's words.
        ("grpc.max_receive_message_length", receive_limit(max_request_bytes) + _GRPC_CAP_SLACK),
        ("grpc.max_send_message_length", 2**31 - 1),
        # Front-end processes of one member share its port; otherwise a second
        # server on the same address must fail to bind rather than split the traffic.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        # etcd lets clients ping every 5 s; etcdctl's keepalive is 2 s, so be lenient.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
        ("grpc.http2.max_ping_strikes", 0),
    ]


def unimplemented_handler(method: Method) -> grpc.RpcMethodHandler[Any, Any]:
    error = not_implemented(method)

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(error.code, error.message)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        await context.abort(error.code, error.message)
        yield  # pragma: no cover - makes this an async generator

    if method.unary:
        return grpc.unary_unary_rpc_method_handler(unary)
    if not method.client_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming)
    if not method.server_streaming:
        return grpc.stream_unary_rpc_method_handler(unary)
    return grpc.stream_stream_rpc_method_handler(streaming)


def raw_unary_handler(
    call: Callable[[bytes], Awaitable[bytes]], limit: int
) -> grpc.RpcMethodHandler[Any, Any]:
    """A unary method on raw bytes (no (de)serializers): etcd's size check, then ``call``.

    An RPCError raised by ``call`` is answered as its gRPC status and message.
    """

    async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        try:
            check_message_size(request, limit)
            return await call(request)
        except RPCError as e:
            await context.abort(e.code, e.message)
            raise  # pragma: no cover - abort raises

    return grpc.unary_unary_rpc_method_handler(unary)


async def _checked(requests: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    async for request in requests:
        check_message_size(request, limit)
        yield request


async def _one(request: bytes) -> AsyncIterator[bytes]:
    yield request


def raw_stream_handler(method: Method, serve: StreamHandler, limit: int) -> grpc.RpcMethodHandler[Any, Any]:
    """A streaming method on raw bytes: ``serve(requests, write)``; RPCError ends it with that status."""

    async def run(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            await serve(_checked(requests, limit), context.write)
        except RPCError as e:
            await context.abort(e.code, e.message)

    async def unary_request(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await run(_one(request), context)

    if method.client_streaming:
        return grpc.stream_stream_rpc_method_handler(run)
    return grpc.unary_stream_rpc_method_handler(unary_request)


def dispatcher_handlers(dispatcher: Dispatcher, max_request_bytes: int) -> HandlerFactory:
    """Serve methods in this process, on raw bytes as relayed calls are served."""
    limit = receive_limit(max_request_bytes)

    def factory(method: Method) -> grpc.RpcMethodHandler[Any, Any]:
        if method.unary:
            if dispatcher.handler(method) is None:
                return unimplemented_handler(method)
            return raw_unary_handler(partial(dispatcher.call_bytes, method), limit)
        serve = dispatcher.stream_handler(method)
        if serve is None:
            return unimplemented_handler(method)
        return raw_stream_handler(method, serve, limit)

    return factory


def build_server(
    handlers: HandlerFactory, addresses: list[str], *, max_request_bytes: int, reuse_port: bool = False
) -> grpc.aio.Server:
    server = grpc.aio.server(options=server_options(max_request_bytes, reuse_port=reuse_port))
    by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = defaultdict(dict)
    for method in METHODS:
        by_service[method.service][method.name] = handlers(method)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service, methods) for service, methods in by_service.items()]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_async.HealthServicer(), server)
    for address in addresses:
        server.add_insecure_port(address)
    return server
