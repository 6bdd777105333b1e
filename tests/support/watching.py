"""A small asyncio watch client over raw gRPC, for tests."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc

DEADLINE = 30.0


def channel(endpoint: str) -> grpc.aio.Channel:
    """A channel with its own TCP connection (connections spread over the member's processes)."""
    return grpc.aio.insecure_channel(endpoint, options=[("grpc.use_local_subchannel_pool", 1)])


class WatchStream:
    """One Watch stream: send requests, read responses (with a deadline)."""

    def __init__(self, ch: grpc.aio.Channel) -> None:
        self.call: Any = rpc_pb2_grpc.WatchStub(ch).Watch()

    async def send(self, **request: Any) -> None:
        await self.call.write(pb.WatchRequest(**request))

    async def create(self, key: bytes, **options: Any) -> pb.WatchResponse:
        await self.send(create_request=pb.WatchCreateRequest(key=key, **options))
        resp = await self.read()
        assert resp.created, resp
        return resp

    async def read(self, timeout: float = DEADLINE) -> pb.WatchResponse:
        resp = await asyncio.wait_for(self.call.read(), timeout)
        if resp is grpc.aio.EOF:
            raise EOFError("the watch stream ended")
        return resp  # type: ignore[no-any-return]

    async def events(self, n: int, timeout: float = DEADLINE) -> list[pb.WatchResponse]:
        """Responses until they carry ``n`` events in all."""
        out, got = [], 0
        while got < n:
            resp = await self.read(timeout)
            out.append(resp)
            got += len(resp.events)
        return out

    def close(self) -> None:
        self.call.cancel()
