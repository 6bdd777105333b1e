"""The gRPC server: listening sockets, their connections, and a graceful stop.

It serves raw bytes, as the rest of synod does: a method is a ``Route``
(``connection.py``) found by its ``:path``; requests reach it unparsed and its
responses leave as given. Why not grpc.aio: its per-message cost (a socket
write and an event-loop wake-up for each message of a stream) made watch
fan-out, the thing etcd is built around, several times slower than etcd's;
``docs/benchmarks.md`` has the figures.

With an ``http`` handler (the JSON gateway), a connection whose first bytes
are not HTTP/2's preface is handed to an HTTP/1.1 connection instead, once,
before anything is read or sent (``transport.set_protocol``): gRPC connections
pay nothing per call for sharing the port.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from synod.rpctypes import RPCError
from synod.server.gateway.connection import GatewayConnection, Handler
from synod.server.wire.connection import GrpcConnection, Resolve, Route

__all__ = ["GrpcServer", "RPCError", "Route"]


def _split(address: str) -> tuple[str, int]:
    """ "host:port" or "[v6]:port"."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

Connection = GrpcConnection | GatewayConnection


class GrpcServer:
    def __init__(self, resolve: Resolve, limit: int, http: Handler | None = None) -> None:
        self._resolve = resolve
        self._limit = limit
        self._http = http
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: set[Connection] = set()

    def _protocol(self) -> GrpcConnection:
        conn = GrpcConnection(self._resolve, self._limit, self._connections.discard)
        self._connections.add(conn)
        return conn

    def _http_protocol(self) -> GatewayConnection:
        assert self._http is not None
        conn = GatewayConnection(self._http, self._connections.discard)
        self._connections.add(conn)
        return conn

    def _sniffer(self) -> _Sniffer:
        return _Sniffer(self)

    async def listen(self, addresses: list[str], *, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        factory: Callable[[], asyncio.Protocol] = self._protocol if self._http is None else self._sniffer
        for address in addresses:
            host, port = _split(address)
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._servers.append(await loop.create_server(factory, sock=sock, backlog=4096))

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def stop(self, grace: float | None) -> None:
        """Stop listening; let running calls finish for ``grace`` seconds, then end them."""
        for server in self._servers:
            server.close()
        conns = list(self._connections)
        for conn in conns:
            conn.go_away()
        if grace and conns:
            idle = [asyncio.ensure_future(c.idle.wait()) for c in conns]
            _, late = await asyncio.wait(idle, timeout=grace)
            for fut in late:
                fut.cancel()
        tasks = [t for c in conns for t in c.cancel_calls()]
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for conn in conns:
            conn.close()
        for server in self._servers:
            await server.wait_closed()


class _Sniffer(asyncio.Protocol):
    """A new connection until its first bytes tell HTTP/2 (gRPC) from HTTP/1.x (the gateway)."""

    def __init__(self, server: GrpcServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._seen = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        seen = self._seen + data
        if len(seen) < len(_PREFACE) and _PREFACE.startswith(seen):
            self._seen = seen
            return
        assert self._transport is not None
        real: GrpcConnection | GatewayConnection = (
            self._server._protocol() if seen.startswith(_PREFACE) else self._server._http_protocol()
        )
        self._transport.set_protocol(real)
        real.connection_made(self._transport)
        real.data_received(seen)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
