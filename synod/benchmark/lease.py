"""The ``lease-keepalive`` benchmark: each client grants a lease, then keeps it alive once a request.

As etcd 3.4's tool (through clientv3's ``KeepAliveOnce``), every request opens a
LeaseKeepAlive stream, sends one LeaseKeepAliveRequest, reads one response and
cancels the stream; the lease (TTL 100 s) is granted once per client when the
run starts, inside the timed run, and is not measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import grpc.aio

from synod.api.etcdserverpb import rpc_pb2
from synod.benchmark.load import FatalError, RequestFailed, Send, describe_error

GRANT_METHOD = "/etcdserverpb.Lease/LeaseGrant"
KEEPALIVE_METHOD = "/etcdserverpb.Lease/LeaseKeepAlive"
LEASE_TTL = 100  # seconds, as etcd's tool grants


@dataclass
class LeaseKeepAliveRequests:
    """Per client: one LeaseGrant, then a one-request LeaseKeepAlive stream for every request."""

    ttl: int = LEASE_TTL

    def request(self, index: int) -> bytes:
        return b""  # each client sends its own lease's request

    async def open(self, channel: grpc.aio.Channel) -> Send:
        grant = channel.unary_unary(GRANT_METHOD, None, rpc_pb2.LeaseGrantResponse.FromString)
        try:
            granted: rpc_pb2.LeaseGrantResponse = await grant(
                rpc_pb2.LeaseGrantRequest(TTL=self.ttl).SerializeToString()
            )
        except grpc.aio.AioRpcError as err:
            raise FatalError(f"lease grant failed: {describe_error(err)}") from None
        keepalive = channel.stream_stream(KEEPALIVE_METHOD, None, None)
        request = rpc_pb2.LeaseKeepAliveRequest(ID=granted.ID).SerializeToString()

        async def keepalive_once(_: bytes) -> None:
            call = keepalive(None)
            try:
                await call.write(request)
                if not isinstance(await call.read(), bytes):  # EOF
                    raise RequestFailed("EOF")
            finally:
                call.cancel()

        return keepalive_once
