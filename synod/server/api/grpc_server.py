"""The client-facing gRPC server: every etcd service and method registered from the start.

What serves a method is a ``Route`` on raw bytes (``synod.server.wire``): in
the member process it is the ``Dispatcher``; in a front-end process it is the
relay to the member (bytes parsed only by the member). Methods with no route
answer ``UNIMPLEMENTED``.

Two engines carry the routes: ``wire`` (the default: synod's own gRPC over
HTTP/2 on the h2 library) and ``grpcio`` (grpc.aio), kept so that the two can
be compared in one run (``docs/benchmarks.md``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, Protocol

import grpc
from grpc import StatusCode
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health_pb2, health_pb2_grpc

from synod.auth.caller import CALLER_TOKEN
from synod.rpctypes import ErrorCode, RPCError
from synod.server.api.auth import AuthService
from synod.server.api.cluster import SERVER_VERSION, ClusterService
from synod.server.api.coordination import CoordinationService
from synod.server.api.header import Header
from synod.server.api.inprocess import InProcessChannel, inprocess_client
from synod.server.api.kv import KVService
from synod.server.api.learner import gate_streams, gate_unary
from synod.server.api.lease import LeaseService
from synod.server.api.maintenance import MaintenanceService
from synod.server.api.methods import METHODS, Dispatcher, Method, StreamWrite, not_implemented
from synod.server.api.watch import WatchService
from synod.server.config import GRPC_OVERHEAD_BYTES
from synod.server.etcdserver import EtcdServer
from synod.server.gateway.handlers import Gateway
from synod.server.wire.connection import Route
from synod.server.wire.messages import too_large
from synod.server.wire.server import GrpcServer

ENGINES = ("wire", "grpcio")
_GRPC_CAP_SLACK = 4 << 20
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_HEALTH_WATCH = "/grpc.health.v1.Health/Watch"

# How a process serves etcd's methods: a route for each implemented one.
Routes = Callable[[Method], Route | None]


def build_dispatcher(etcd: EtcdServer) -> Dispatcher:
    header = Header(etcd)
    kv = KVService(etcd, header)
    lease = LeaseService(etcd, header)
    watch = WatchService(etcd, etcd.cfg.watch_progress_notify_interval)
    cluster = ClusterService(etcd, header)
    maintenance = MaintenanceService(etcd, header)
    auth = AuthService(etcd, header)
    # Lock and Election call the member's own services, as etcd wires its server to itself.
    channel = InProcessChannel()
    coordination = CoordinationService(inprocess_client(channel), header)
    unary = {
        **kv.handlers(),
        **lease.handlers(),
        **cluster.handlers(),
        **maintenance.handlers(),
        **auth.handlers(),
    }
    streams = {**lease.streams(), **watch.streams(), **maintenance.streams()}
    dispatcher = Dispatcher(
        gate_unary(etcd, {**unary, **coordination.handlers()}),
        gate_streams(etcd, {**streams, **coordination.streams()}),
    )
    channel.bind(dispatcher)
    return dispatcher


def dispatcher_routes(dispatcher: Dispatcher) -> Routes:
    """Serve methods in this process, on raw bytes as relayed calls are served."""

    def routes(method: Method) -> Route | None:
        if method.unary:
            if dispatcher.handler(method) is None:
                return None
            return Route(unary=partial(dispatcher.call_bytes, method))
        serve = dispatcher.stream_handler(method)
        if serve is None:
            return None
        return Route(stream=serve, client_streaming=method.client_streaming)

    return routes


def receive_limit(max_request_bytes: int) -> int:
    """The largest request message accepted, as etcd sets gRPC's limit."""
    return max_request_bytes + GRPC_OVERHEAD_BYTES


class ClientServer(Protocol):
    async def start(self) -> None: ...

    async def stop(self, grace: float | None) -> None: ...


def build_server(
    routes: Routes,
    addresses: list[str],
    *,
    max_request_bytes: int,
    reuse_port: bool = False,
    engine: str = "wire",
    gateway: bool = False,
) -> ClientServer:
    """gRPC on ``addresses``; with ``gateway`` (wire engine only) etcd's JSON gateway on them too."""
    if engine == "wire":
        return WireClientServer(routes, addresses, receive_limit(max_request_bytes), reuse_port, gateway)
    if engine == "grpcio":
        return GrpcioClientServer(routes, addresses, max_request_bytes, reuse_port)
    raise ValueError(f"unknown gRPC engine {engine!r} (one of {', '.join(ENGINES)})")


# -- wire: synod's own ------------------------------------------------------------------------


def _unknown_path(path: bytes) -> RPCError:
    """grpc-go's answer to a method no service has."""
    text = path.decode("utf-8", "replace")
    service, _, name = text.lstrip("/").rpartition("/")
    if not text.startswith("/") or not service:
        return RPCError(ErrorCode(StatusCode.UNIMPLEMENTED, f'malformed method name: "{text}"'))
    if any(m.service == service for m in METHODS):
        return RPCError(ErrorCode(StatusCode.UNIMPLEMENTED, f"unknown method {name} for service {service}"))
    return RPCError(ErrorCode(StatusCode.UNIMPLEMENTED, f"unknown service {service}"))


_SERVING: bytes = health_pb2.HealthCheckResponse(
    status=health_pb2.HealthCheckResponse.SERVING
).SerializeToString()


async def _health_check(request: bytes) -> bytes:
    return _SERVING


async def _health_watch(requests: AsyncIterator[bytes], write: StreamWrite) -> None:
    async for _ in requests:
        await write(_SERVING)
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await never  # the status only changes when the server stops, which ends the call


class WireClientServer:
    def __init__(
        self, routes: Routes, addresses: list[str], limit: int, reuse_port: bool, gateway: bool = False
    ) -> None:
        table: dict[bytes, Route | RPCError] = {}
        for method in METHODS:
            route = routes(method)
            table[method.path.encode()] = route if route is not None else not_implemented(method)
        table[_HEALTH_CHECK.encode()] = Route(unary=_health_check)
        table[_HEALTH_WATCH.encode()] = Route(stream=_health_watch)
        self._table = table
        self._addresses = addresses
        self._reuse_port = reuse_port
        http = Gateway(self._resolve, limit, SERVER_VERSION) if gateway else None
        self._server = GrpcServer(self._resolve, limit, http)

    def _resolve(self, path: bytes) -> Route | RPCError:
        found = self._table.get(path)
        return found if found is not None else _unknown_path(path)

    async def start(self) -> None:
        try:
            await self._server.listen(self._addresses, reuse_port=self._reuse_port)
        except OSError as e:
            await self._server.stop(None)
            raise RuntimeError(f"cannot listen on {', '.join(self._addresses)}: {e.strerror}") from e

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)


# -- grpcio: grpc.aio ---------------------------------------------------------------------------


def server_options(max_request_bytes: int, *, reuse_port: bool) -> list[tuple[str, int]]:
    return [
        # gRPC's own cap sits above etcd's limit, so that the size check answers with etcd's words.
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


def _check_size(request: bytes, limit: int) -> None:
    if len(request) > limit:
        raise too_large(len(request), limit)


def _unimplemented_handler(method: Method) -> grpc.RpcMethodHandler[Any, Any]:
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


def _take_token(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Serve the call as its token says (grpc.aio runs each call in a task of its own)."""
    found: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key in ("token", "authorization") and key not in found and isinstance(value, str):
            found[key] = value
    token = found.get("token", found.get("authorization"))
    if token is not None:
        CALLER_TOKEN.set(token)


async def _checked(requests: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    async for request in requests:
        _check_size(request, limit)
        yield request


async def _one(request: bytes) -> AsyncIterator[bytes]:
    yield request


def _grpcio_handler(method: Method, route: Route, limit: int) -> grpc.RpcMethodHandler[Any, Any]:
    """A method on raw bytes (no (de)serializers); an RPCError is answered as its status."""
    if route.unary is not None:
        call = route.unary

        async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            try:
                _take_token(context)
                _check_size(request, limit)
                return await call(request)
            except RPCError as e:
                await context.abort(e.code, e.message)
                raise  # pragma: no cover - abort raises

        return grpc.unary_unary_rpc_method_handler(unary)
    serve = route.stream
    assert serve is not None

    async def run(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            _take_token(context)
            await serve(_checked(requests, limit), context.write)
        except RPCError as e:
            await context.abort(e.code, e.message)

    async def unary_request(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await run(_one(request), context)

    if method.client_streaming:
        return grpc.stream_stream_rpc_method_handler(run)
    return grpc.unary_stream_rpc_method_handler(unary_request)


class GrpcioClientServer:
    def __init__(
        self, routes: Routes, addresses: list[str], max_request_bytes: int, reuse_port: bool
    ) -> None:
        limit = receive_limit(max_request_bytes)
        server = grpc.aio.server(options=server_options(max_request_bytes, reuse_port=reuse_port))
        by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = defaultdict(dict)
        for method in METHODS:
            route = routes(method)
            if route is None:
                handler = _unimplemented_handler(method)
            else:
                handler = _grpcio_handler(method, route, limit)
            by_service[method.service][method.name] = handler
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(s, methods) for s, methods in by_service.items()]
        )
        health_pb2_grpc.add_HealthServicer_to_server(health_async.HealthServicer(), server)
        for address in addresses:
            server.add_insecure_port(address)
        self._server = server

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)
