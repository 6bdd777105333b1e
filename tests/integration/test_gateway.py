"""The JSON gateway served in-process beside gRPC on one port: full-duplex watches, and a watch that
ends with its connection. (The answers themselves are compared with etcd's in
tests/differential/test_gateway_differential.py.)
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.server.api.grpc_server import build_dispatcher, build_server, dispatcher_routes
from synod.server.config import ServerConfig
from synod.server.etcdserver import EtcdServer
from tests.support.servers import free_port


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for ``predicate`` on the event loop, with a deadline."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)
    assert predicate(), what


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[tuple[EtcdServer, str]]:
    etcd = EtcdServer(ServerConfig(data_dir=str(tmp_path)))
    await etcd.start()
    address = f"127.0.0.1:{free_port()}"
    server = build_server(
        dispatcher_routes(build_dispatcher(etcd)), [address], max_request_bytes=1 << 20, gateway=True
    )
    await server.start()
    try:
        yield etcd, address
    finally:
        await server.stop(None)
        await etcd.stop()


class HttpStream:
    """One HTTP/1.1 request whose chunked body and chunked answer both stay open."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.status = 0

    @classmethod
    async def open(cls, address: str, path: str) -> HttpStream:
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        return cls(reader, writer)

    async def send(self, value: dict[str, Any]) -> None:
        data = json.dumps(value).encode()
        self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await self.writer.drain()

    async def line(self) -> Any:
        if not self.status:
            head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
            self.status = int(head.split()[1])
        size = int((await asyncio.wait_for(self.reader.readline(), 10)).strip(), 16)
        chunk = await self.reader.readexactly(size + 2)
        return json.loads(chunk[:-2])

    def close(self) -> None:
        self.writer.close()


async def post(address: str, path: str, body: dict[str, Any]) -> Any:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    data = json.dumps(body).encode()
    writer.write(
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data)
    )
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
    )
    body_bytes = await reader.readexactly(length)
    writer.close()
    return json.loads(body_bytes)


def test_a_watch_streams_while_another_client_writes_and_ends_with_its_connection(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as (etcd, address):
            before = etcd.watchable.watcher_count
            watch = await HttpStream.open(address, "/v3/watch")
            await watch.send({"create_request": {"key": b64(b"job/"), "range_end": b64(b"job0")}})
            created = await watch.line()
            assert watch.status == 200 and created["result"]["created"] is True
            assert etcd.watchable.watcher_count == before + 1
            for i in range(20):  # a second HTTP client writes, one put at a time
                await post(address, "/v3/kv/put", {"key": b64(b"job/%d" % (i % 3)), "value": b64(b"%d" % i)})
            got = []
            while len(got) < 20:
                got += [(e["kv"]["key"], e["kv"]["value"]) for e in (await watch.line())["result"]["events"]]
            assert got == [(b64(b"job/%d" % (i % 3)), b64(b"%d" % i)) for i in range(20)]
            # Full duplex: a second watch created in the same, still open, request body.
            await watch.send({"create_request": {"key": b64(b"other"), "watch_id": "5"}})
            second = await watch.line()
            assert second["result"]["created"] is True and second["result"]["watch_id"] == "5"
            assert etcd.watchable.watcher_count == before + 2
            watch.close()  # the client goes away: its watchers are cancelled on the server
            await until(lambda: etcd.watchable.watcher_count == before, "the watchers cancelled")

    asyncio.run(scenario())


def test_grpc_and_json_share_the_port(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as (_, address):
            await post(address, "/v3/kv/put", {"key": b64(b"shared"), "value": b64(b"json")})
            async with grpc.aio.insecure_channel(address) as ch:
                resp = await rpc_pb2_grpc.KVStub(ch).Range(pb.RangeRequest(key=b"shared"))
            assert resp.kvs[0].value == b"json"
            reply = await post(address, "/v3/kv/range", {"key": b64(b"shared")})
            assert reply["kvs"][0]["value"] == b64(b"json")

    asyncio.run(scenario())
