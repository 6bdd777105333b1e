"""What every service shares: the response header and the mapping of errors to gRPC statuses."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.rpctypes import RPCError
from synod.server.etcdserver import EtcdServer

_Resp = TypeVar("_Resp")


class Header:
    """Fills response headers as etcd's v3rpc does: cluster, member, term, and a revision if unset."""

    def __init__(self, server: EtcdServer) -> None:
        self._server = server

    def fill(self, h: pb.ResponseHeader) -> None:
        s = self._server
        h.cluster_id = s.cluster_id
        h.member_id = s.member_id
        h.raft_term = s.term
        if not h.revision:
            h.revision = s.revision


def rpc_errors(
    method: Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[_Resp]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[_Resp]]:
    """Answer an RPCError raised by the method with its gRPC status and message."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> _Resp:
        try:
            return await method(self, request, context)
        except RPCError as e:
            await context.abort(e.code, e.message)
            raise AssertionError("unreachable: abort raises") from e

    return wrapper
