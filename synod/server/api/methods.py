"""Every RPC of etcd's API, read from the generated descriptors, and the table that serves them.

A ``Method`` is one RPC: its full gRPC path, message classes and streaming
shape. ``Dispatcher`` maps the implemented methods to their handlers (unary:
``async (request) -> response``; streaming: see ``StreamHandler``), which raise
``RPCError`` for an error status; a method without a handler answers
``UNIMPLEMENTED``. The in-process gRPC server and the relay
from front-end processes both serve through it, so they can't disagree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message
from grpc import StatusCode

from synod.api.etcdserverpb import rpc_pb2
from synod.api.v3electionpb import v3election_pb2
from synod.api.v3lockpb import v3lock_pb2
from synod.rpctypes import ErrorCode, RPCError

_FILES: tuple[FileDescriptor, ...] = (rpc_pb2.DESCRIPTOR, v3lock_pb2.DESCRIPTOR, v3election_pb2.DESCRIPTOR)

UnaryHandler = Callable[[Any], Awaitable[Message]]
StreamWrite = Callable[[bytes], Awaitable[None]]
# A streaming method: raw request messages in (one for a server-streaming method), raw
# responses out through ``write`` (which waits while the client is not reading); it returns
# to end the stream with OK, or raises RPCError to end it with that status.
StreamHandler = Callable[[AsyncIterator[bytes], StreamWrite], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Method:
    id: int  # position in METHODS: the same in every process running this code
    service: str  # e.g. "etcdserverpb.KV"
    name: str  # e.g. "Range"
    request: type[Message]
    response: type[Message]
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def unary(self) -> bool:
        return not (self.client_streaming or self.server_streaming)


def _methods() -> tuple[Method, ...]:
    found = []
    for fd in _FILES:
        for service in fd.services_by_name.values():
            for m in service.methods:
                found.append(
                    (
                        service.full_name,
                        m.name,
                        message_factory.GetMessageClass(m.input_type),
                        message_factory.GetMessageClass(m.output_type),
                        m.client_streaming,
                        m.server_streaming,
                    )
                )
    found.sort(key=lambda f: (f[0], f[1]))
    return tuple(Method(i, *f) for i, f in enumerate(found))


METHODS: tuple[Method, ...] = _methods()
BY_PATH: dict[str, Method] = {m.path: m for m in METHODS}


def not_implemented(method: Method) -> RPCError:
    return RPCError(ErrorCode(StatusCode.UNIMPLEMENTED, f"synod: {method.path} is not implemented yet"))


class Dispatcher:
    def __init__(
        self, handlers: dict[str, UnaryHandler], streams: dict[str, StreamHandler] | None = None
    ) -> None:
        streams = streams or {}
        for paths, unary in ((handlers, True), (streams, False)):
            wrong = [p for p in paths if p not in BY_PATH or BY_PATH[p].unary != unary]
            if wrong:
                raise ValueError(f"handlers that do not fit etcd's methods: {sorted(wrong)}")
        self._handlers: list[UnaryHandler | None] = [handlers.get(m.path) for m in METHODS]
        self._streams: list[StreamHandler | None] = [streams.get(m.path) for m in METHODS]

    def handler(self, method: Method) -> UnaryHandler | None:
        return self._handlers[method.id]

    def stream_handler(self, method: Method) -> StreamHandler | None:
        return self._streams[method.id]

    async def call(self, method: Method, request: Message) -> Message:
        handler = self._handlers[method.id]
        if handler is None:
            raise not_implemented(method)
        return await handler(request)

    async def call_bytes(self, method: Method, request: bytes) -> bytes:
        """The relay's path: raw request in, raw response out."""
        handler = self._handlers[method.id]
        if handler is None:
            raise not_implemented(method)
        response = await handler(method.request.FromString(request))
        return response.SerializeToString()
