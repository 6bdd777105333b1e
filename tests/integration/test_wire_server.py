"""synod's gRPC server (synod/server/wire) driven by grpcio's client: calls, streams, errors, flow control.

etcd's own clients (etcdctl, Go) are run against it by the interop tests; here
a toy set of routes checks the transport itself, with a real client on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc import StatusCode

from synod.rpctypes import ErrorCode, RPCError
from synod.server.api.methods import StreamWrite
from synod.server.wire.connection import Route
from synod.server.wire.server import GrpcServer
from tests.support.servers import free_port

LIMIT = 4 << 20
DEADLINE = 30.0


class Toy:
    """Routes for the tests, and what the handlers saw."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.release = asyncio.Event()
        self.slow_started = asyncio.Event()
        self.written = 0
        self.routes: dict[bytes, Route] = {
            b"/t.T/Echo": Route(unary=self.echo),
            b"/t.T/Fail": Route(unary=self.fail),
            b"/t.T/Slow": Route(unary=self.slow),
            b"/t.T/Chat": Route(stream=self.chat, client_streaming=True),
            b"/t.T/Flood": Route(stream=self.flood),
            b"/t.T/Hang": Route(stream=self.hang, client_streaming=True),
        }

    def resolve(self, path: bytes) -> Route | RPCError:
        return self.routes.get(path) or RPCError(ErrorCode(StatusCode.UNIMPLEMENTED, "nope"))

    async def echo(self, request: bytes) -> bytes:
        return request

    async def fail(self, request: bytes) -> bytes:
        raise RPCError(ErrorCode(StatusCode.FAILED_PRECONDITION, request.decode()))

    async def slow(self, request: bytes) -> bytes:
        self.slow_started.set()
        await self.release.wait()
        return b"done"

    async def chat(self, requests: AsyncIterator[bytes], write: StreamWrite) -> None:
        async for r in requests:
            await write(r[::-1])

    async def flood(self, requests: AsyncIterator[bytes], write: StreamWrite) -> None:
        async for r in requests:
            count, size = (int(x) for x in r.split(b","))
            for i in range(count):
                await write(i.to_bytes(4, "big") + b"x" * size)
                self.written = i + 1

    async def hang(self, requests: AsyncIterator[bytes], write: StreamWrite) -> None:
        try:
            await write(b"ready")
            async for _ in requests:
                pass
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def run(test: Callable[[Toy, grpc.aio.Channel, GrpcServer], Awaitable[None]]) -> None:
    async def main() -> None:
        toy = Toy()
        server = GrpcServer(toy.resolve, LIMIT)
        port = free_port()
        await server.listen([f"127.0.0.1:{port}"])
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        try:
            await asyncio.wait_for(test(toy, channel, server), DEADLINE)
        finally:
            await channel.close()
            await server.stop(None)

    asyncio.run(main())


def unary(channel: grpc.aio.Channel, path: str, **kw: Any) -> Any:
    return channel.unary_unary(path, request_serializer=None, response_deserializer=None, **kw)


def test_unary_calls_round_trip_small_and_large_messages():
    async def test(toy: Toy, channel: grpc.aio.Channel, server: GrpcServer) -> None:
        echo = unary(channel, "/t.T/Echo")
        assert await echo(b"") == b""
        assert await echo(b"hello") == b"hello"
        big = bytes(range(256)) * (3 << 12)  # 3 MiB: many windows' worth in both directions
        assert await echo(big) == big
        results = await asyncio.gather(*(echo(str(i).encode()) for i in range(500)))
        assert results == [str(i).encode() for i in range(500)]

    run(test)


def test_errors_carry_their_code_and_message_percent_encoded():
    async def test(toy: Toy, channel: grpc.aio.Channel, server: GrpcServer) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await unary(channel, "/t.T/Fail")("etcdserver: 100% é".encode())
        assert e.value.code() == StatusCode.FAILED_PRECONDITION
        assert e.value.details() == "etcdserver: 100% é"
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await unary(channel, "/t.T/Missing")(b"")
        assert (e.value.code(), e.value.details()) == (StatusCode.UNIMPLEMENTED, "nope")

    run(test)


def test_a_request_over_the_limit_gets_grpc_go_words_and_the_connection_stays_usable():
    async def test(toy: Toy, channel: grpc.aio.Channel, server: GrpcServer) -> None:
        echo = unary(channel, "/t.T/Echo")
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await echo(b"x" * (LIMIT + 1))
        assert e.value.code() == StatusCode.RESOURCE_EXHAUSTED
        assert e.value.details() == f"grpc: received message larger than max ({LIMIT + 1} vs. {LIMIT})"
        assert await echo(b"after") == b"after"

    run(test)


def test_gzip_compressed_requests_are_accepted():
    async def test(toy: Toy, channel: grpc.aio.Channel, server: GrpcServer) -> None:
        echo = unary(channel, "/t.T/Echo")
        assert await echo(b"squeeze me " * 1000, compression=grpc.Compression.Gzip) == b"squeeze me " * 1000

    run(test)


def test_bidirectional_stream_keeps_order():
    async def test(toy: Toy, channel: grpc.aio.Channel, server: GrpcServer) -> None:
        call = channel.stream_stream("/t.T/Chat", request_serializer=None, response_deserializer=None)()
        for i in range(2000):
            await call.write(f"m{i}".encode())
        await call.done_writing()
        got = [r async for r in call]
        assert got == [f"m{i}".encode()[::-1] for i in range(2000)]
        assert await call.code() == StatusCode.OK

    run(test)


def test_a_client_that_does_not_read_holds_up_only_its_stream():
    async def test(toy: Toy, channel: grpc.aio.Channel, server: GrpcServer) -> None:
        flood = channel.unary_stream("/t.T/Flood", request_serializer=None, response_deserializer=None)
        call = flood(b"2000,65536")  # 128 MiB if nothing held the writer back
        first = await call.read()  # then read nothing for a while
        assert first[:4] == (0).to_bytes(4, "big")
        # The handler is held back by flow control: other calls still get answers meanwhile.
        for _ in range(20):
            assert await unary(channel, "/t.T/Echo")(b"ping") == b"ping"
        assert toy.written < 2000
        seen = 1
        while (message := await call.read()) is not grpc.aio.EOF:
            assert message[:4] == seen.to_bytes(4, "big")
            seen += 1
        assert seen == 2000

    run(test)


def test_client_cancel_cancels_the_handler():
    async def test(toy: Toy, channel: grpc.aio.Channel, server: GrpcServer) -> None:
        call = channel.stream_stream("/t.T/Hang", request_serializer=None, response_deserializer=None)()
        assert await call.read() == b"ready"
        call.cancel()
        await toy.cancelled.wait()

    run(test)


def test_graceful_stop_finishes_running_calls_and_refuses_new_connections():
    async def test(toy: Toy, channel: grpc.aio.Channel, server: GrpcServer) -> None:
        echo = unary(channel, "/t.T/Echo")
        assert await echo(b"warm") == b"warm"
        slow = asyncio.ensure_future(unary(channel, "/t.T/Slow")(b""))
        await toy.slow_started.wait()
        stopping = asyncio.ensure_future(server.stop(grace=DEADLINE))
        toy.release.set()
        assert await slow == b"done"
        await stopping
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await echo(b"late", timeout=5)
        assert e.value.code() == StatusCode.UNAVAILABLE

    run(test)
