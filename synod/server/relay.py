"""The relay between gRPC front-end processes and their member, over a Unix socket.

A gRPC call costs grpc.aio far more CPU than synod spends on the request, so a
member can spread its client connections over front-end processes that share
its port. A front end does no parsing: it hands each call's raw request bytes
to the member and the member's raw response bytes (or error) back. All state
stays in the member, so every guarantee is the member's.

Frames, in both directions::

    u32 length of the rest | u8 kind | u32 call id | u16 method id | payload

kinds: HELLO (front end -> member, first frame, payload = the shared secret),
CALL (payload = request), OK (payload = response), ERR (payload = u8 gRPC
status code, then the UTF-8 message). Frames written in one event-loop turn
go out in one write.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any

from grpc import StatusCode

from synod.rpctypes import ErrorCode, RPCError
from synod.server.api.methods import METHODS, Dispatcher

log = logging.getLogger("synod.relay")

HELLO, CALL, OK, ERR = 0, 1, 2, 3

_HEADER = struct.Struct(">IBIH")
_REST = _HEADER.size - 4  # bytes of the header counted by the length field
_CODES = {code.value[0]: code for code in StatusCode}

UNAVAILABLE = ErrorCode(StatusCode.UNAVAILABLE, "synod: the member is not reachable from this front end")


def frame(kind: int, call_id: int, method_id: int, payload: bytes) -> bytes:
    return _HEADER.pack(_REST + len(payload), kind, call_id, method_id) + payload


def error_payload(e: RPCError) -> bytes:
    return bytes((e.code.value[0],)) + e.message.encode()


def parse_error(payload: bytes) -> RPCError:
    return RPCError(
        ErrorCode(_CODES.get(payload[0], StatusCode.UNKNOWN), payload[1:].decode(errors="replace"))
    )


class _Framed(asyncio.Protocol):
    """Frame parsing and write batching shared by both ends."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._transport: Any = None  # an asyncio.Transport (uvloop's do not subclass it)
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= _HEADER.size:
            length, kind, call_id, method_id = _HEADER.unpack_from(buf, pos)
            end = pos + 4 + length
            if end > n:
                break
            self.frame_received(kind, call_id, method_id, bytes(buf[pos + _HEADER.size : end]))
            pos = end
        del buf[:pos]

    def frame_received(self, kind: int, call_id: int, method_id: int, payload: bytes) -> None:
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(out))


class MemberSide(_Framed):
    """One front end's connection, as the member sees it."""

    def __init__(self, dispatcher: Dispatcher, secret: bytes) -> None:
        super().__init__()
        self._dispatcher = dispatcher
        self._secret = secret
        self._greeted = False
        self._tasks: set[asyncio.Task[None]] = set()

    def frame_received(self, kind: int, call_id: int, method_id: int, payload: bytes) -> None:
        if not self._greeted:
            if kind != HELLO or payload != self._secret:
                log.warning("relay: a connection without the secret was refused")
                self._transport.close()
                return
            self._greeted = True
            return
        if kind != CALL or method_id >= len(METHODS):
            log.error("relay: unexpected frame kind %d for method %d; closing", kind, method_id)
            self._transport.close()
            return
        task = self._loop.create_task(self._serve(call_id, method_id, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, call_id: int, method_id: int, payload: bytes) -> None:
        method = METHODS[method_id]
        try:
            response = await self._dispatcher.call_bytes(method, payload)
        except RPCError as e:
            self.send(frame(ERR, call_id, method_id, error_payload(e)))
        except Exception as e:  # a bug: answer as gRPC answers an unexpected exception, and say so
            log.exception("relay: %s failed", method.path)
            error = RPCError(ErrorCode(StatusCode.UNKNOWN, f"Unexpected {type(e).__name__}: {e}"))
            self.send(frame(ERR, call_id, method_id, error_payload(error)))
        else:
            self.send(frame(OK, call_id, method_id, response))

    def connection_lost(self, exc: Exception | None) -> None:
        for task in self._tasks:
            task.cancel()


class FrontEndSide(_Framed):
    """The front end's connection to its member: ``await call(method_id, request)``."""

    def __init__(self, secret: bytes) -> None:
        super().__init__()
        self._secret = secret
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self.closed: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.send(frame(HELLO, 0, 0, self._secret))

    def call(self, method_id: int, request: bytes) -> asyncio.Future[bytes]:
        if self.closed.done():
            raise RPCError(UNAVAILABLE)
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        fut: asyncio.Future[bytes] = self._loop.create_future()
        self._pending[self._next_id] = fut
        self.send(frame(CALL, self._next_id, method_id, request))
        return fut

    def frame_received(self, kind: int, call_id: int, method_id: int, payload: bytes) -> None:
        fut = self._pending.pop(call_id, None)
        if fut is None or fut.done():
            return  # the caller went away
        if kind == OK:
            fut.set_result(payload)
        else:
            fut.set_exception(parse_error(payload))

    def connection_lost(self, exc: Exception | None) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(RPCError(UNAVAILABLE))
        if not self.closed.done():
            self.closed.set_result(None)


# The sockets are made here rather than by the event loop, which (with uvloop)
# does not accept Linux's abstract socket names ("\0name").


async def serve_member_side(dispatcher: Dispatcher, address: str, secret: bytes) -> asyncio.AbstractServer:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(address)
    sock.listen(64)
    loop = asyncio.get_running_loop()
    server: Any = await loop.create_unix_server(lambda: MemberSide(dispatcher, secret), sock=sock)
    return server  # type: ignore[no-any-return]


async def connect_front_end_side(address: str, secret: bytes) -> FrontEndSide:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address)
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_unix_connection(lambda: FrontEndSide(secret), sock=sock)
    return protocol
