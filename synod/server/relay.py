"""The relay between gRPC front-end processes and their member, over a Unix socket.

A gRPC call costs grpc.aio far more CPU than synod spends on the request, so a
member can spread its client connections over front-end processes that share
its port. A front end does no parsing: it hands each call's raw request bytes
to the member and the member's raw response bytes (or error) back. All state
stays in the member, so every guarantee is the member's.

Frames, in both directions::

    u32 length of the rest | u8 kind | u32 call id | u16 method id | payload

Unary calls: HELLO (front end -> member, first frame, payload = the shared
secret), CALL (payload = request), OK (payload = response), ERR (payload = u8
gRPC status code, then the UTF-8 message).

Streams: OPEN (front end -> member), MSG (a message, either way), HALF_CLOSE
(the client sent its last message), END (member -> front end: the status, as
ERR's payload, code 0 for OK), CANCEL (front end -> member: the client went
away), CREDIT (front end -> member, payload u32: messages written to the
client). The member sends at most ``STREAM_WINDOW`` messages a front end has
not yet written to its client, so a client that does not read holds up its
own stream, as it would in-process, and nothing else.

AUTH_CALL and AUTH_OPEN are CALL and OPEN for a call that carries an auth
token: their payload starts with the token (u16 length, then UTF-8), which
the member serves the call with.

Frames written in one event-loop turn go out in one write.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import struct
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from grpc import StatusCode

from synod import rpctypes
from synod.auth.caller import CALLER_TOKEN
from synod.rpctypes import ErrorCode, RPCError
from synod.server.api.methods import METHODS, Dispatcher, StreamHandler, not_implemented

log = logging.getLogger("synod.relay")

HELLO, CALL, OK, ERR, OPEN, MSG, HALF_CLOSE, END, CANCEL, CREDIT, AUTH_CALL, AUTH_OPEN = range(12)
STREAM_WINDOW = 64
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_END_OK = b"\x00"

_HEADER = struct.Struct(">IBIH")
_REST = _HEADER.size - 4  # bytes of the header counted by the length field
_CODES = {code.value[0]: code for code in StatusCode}

UNAVAILABLE = ErrorCode(StatusCode.UNAVAILABLE, "synod: the member is not reachable from this front end")


def frame(kind: int, call_id: int, method_id: int, payload: bytes) -> bytes:
    return _HEADER.pack(_REST + len(payload), kind, call_id, method_id) + payload


def with_token(token: str, payload: bytes) -> bytes:
    raw = token.encode()
    if len(raw) > 0xFFFF:
        raise RPCError(rpctypes.INVALID_AUTH_TOKEN)  # longer than any token a member issues
    return _U16.pack(len(raw)) + raw + payload


def split_token(payload: bytes) -> tuple[str, bytes]:
    (n,) = _U16.unpack_from(payload)
    return payload[2 : 2 + n].decode(errors="replace"), payload[2 + n :]


def error_payload(e: RPCError) -> bytes:
    return bytes((e.code.value[0],)) + e.message.encode()


def parse_end(payload: bytes) -> RPCError | None:
    """The status that ended a stream: None for OK."""
    return None if payload[0] == 0 else parse_error(payload)


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


class _MemberStream:
    """One relayed stream, as the member serves it."""

    def __init__(self, side: MemberSide, call_id: int, method_id: int) -> None:
        self._side = side
        self.call_id = call_id
        self.method_id = method_id
        self.requests: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._credits = STREAM_WINDOW
        self._credit_waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    async def iter_requests(self) -> AsyncIterator[bytes]:
        while (request := await self.requests.get()) is not None:
            yield request

    async def write(self, data: bytes) -> None:
        while self._credits <= 0:
            self._credit_waiter = asyncio.get_running_loop().create_future()
            await self._credit_waiter
        self._credits -= 1
        self._side.send(frame(MSG, self.call_id, self.method_id, data))

    def add_credits(self, n: int) -> None:
        self._credits += n
        waiter, self._credit_waiter = self._credit_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class MemberSide(_Framed):
    """One front end's connection, as the member sees it."""

    def __init__(self, dispatcher: Dispatcher, secret: bytes) -> None:
        super().__init__()
        self._dispatcher = dispatcher
        self._secret = secret
        self._greeted = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: dict[int, _MemberStream] = {}

    def frame_received(self, kind: int, call_id: int, method_id: int, payload: bytes) -> None:
        if not self._greeted:
            if kind != HELLO or payload != self._secret:
                log.warning("relay: a connection without the secret was refused")
                self._transport.close()
                return
            self._greeted = True
            return
        if method_id >= len(METHODS):
            log.error("relay: frame for unknown method %d; closing", method_id)
            self._transport.close()
            return
        if kind == CALL:
            self._start(self._serve(call_id, method_id, payload))
        elif kind == OPEN:
            self._open(call_id, method_id)
        elif kind == AUTH_CALL:
            token, request = split_token(payload)
            self._start(self._serve(call_id, method_id, request), token)
        elif kind == AUTH_OPEN:
            self._open(call_id, method_id, split_token(payload)[0])
        elif (stream := self._streams.get(call_id)) is not None:
            if kind == MSG:
                stream.requests.put_nowait(payload)
            elif kind == HALF_CLOSE:
                stream.requests.put_nowait(None)
            elif kind == CREDIT:
                stream.add_credits(_U32.unpack(payload)[0])
            elif kind == CANCEL and stream.task is not None:
                stream.task.cancel()

    def _start(self, coro: Coroutine[Any, Any, None], token: str | None = None) -> asyncio.Task[None]:
        """Serve a call in a task of its own, as the caller's token (if any) says."""
        context = contextvars.copy_context()
        if token is not None:
            context.run(CALLER_TOKEN.set, token)
        task = self._loop.create_task(coro, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _serve(self, call_id: int, method_id: int, payload: bytes) -> None:
        method = METHODS[method_id]
        try:
            response = await self._dispatcher.call_bytes(method, payload)
        except RPCError as e:
            self.send(frame(ERR, call_id, method_id, error_payload(e)))
        except Exception as e:
            self.send(frame(ERR, call_id, method_id, error_payload(_bug(method.path, e))))
        else:
            self.send(frame(OK, call_id, method_id, response))

    def _open(self, call_id: int, method_id: int, token: str | None = None) -> None:
        method = METHODS[method_id]
        serve = self._dispatcher.stream_handler(method)
        if serve is None:
            self.send(frame(END, call_id, method_id, error_payload(not_implemented(method))))
            return
        stream = _MemberStream(self, call_id, method_id)
        self._streams[call_id] = stream
        stream.task = self._start(self._serve_stream(stream, serve), token)

    async def _serve_stream(self, stream: _MemberStream, serve: StreamHandler) -> None:
        try:
            await serve(stream.iter_requests(), stream.write)
            end = _END_OK
        except asyncio.CancelledError:
            return  # the front end cancelled: it expects no END
        except RPCError as e:
            end = error_payload(e)
        except Exception as e:
            end = error_payload(_bug(METHODS[stream.method_id].path, e))
        finally:
            self._streams.pop(stream.call_id, None)
        self.send(frame(END, stream.call_id, stream.method_id, end))

    def connection_lost(self, exc: Exception | None) -> None:
        for task in self._tasks:
            task.cancel()


def _bug(path: str, e: Exception) -> RPCError:
    """A handler failed unexpectedly: answer as gRPC answers an unexpected exception, and log it."""
    log.error("relay: %s failed", path, exc_info=e)
    return RPCError(ErrorCode(StatusCode.UNKNOWN, f"Unexpected {type(e).__name__}: {e}"))


class FrontEndSide(_Framed):
    """The front end's connection to its member: ``await call(method_id, request)``."""

    def __init__(self, secret: bytes) -> None:
        super().__init__()
        self._secret = secret
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        # Each open stream's incoming messages, then None (ended OK) or the RPCError that ended it.
        self._streams: dict[int, asyncio.Queue[bytes | RPCError | None]] = {}
        self.closed: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.send(frame(HELLO, 0, 0, self._secret))

    def _call_id(self) -> int:
        if self.closed.done():
            raise RPCError(UNAVAILABLE)
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        return self._next_id

    def call(self, method_id: int, request: bytes) -> asyncio.Future[bytes]:
        call_id = self._call_id()
        fut: asyncio.Future[bytes] = self._loop.create_future()
        self._pending[call_id] = fut
        token = CALLER_TOKEN.get()
        if token is None:
            self.send(frame(CALL, call_id, method_id, request))
        else:
            self.send(frame(AUTH_CALL, call_id, method_id, with_token(token, request)))
        return fut

    def open_stream(self, method_id: int) -> tuple[int, asyncio.Queue[bytes | RPCError | None]]:
        call_id = self._call_id()
        incoming: asyncio.Queue[bytes | RPCError | None] = asyncio.Queue()
        self._streams[call_id] = incoming
        token = CALLER_TOKEN.get()
        if token is None:
            self.send(frame(OPEN, call_id, method_id, b""))
        else:
            self.send(frame(AUTH_OPEN, call_id, method_id, with_token(token, b"")))
        return call_id, incoming

    def stream_frame(self, kind: int, call_id: int, method_id: int, payload: bytes = b"") -> None:
        """Send MSG, HALF_CLOSE, CREDIT or CANCEL for an open stream (CANCEL forgets it)."""
        if kind == CANCEL:
            if self._streams.pop(call_id, None) is None:
                return  # it had ended already
        elif call_id not in self._streams:
            return
        self.send(frame(kind, call_id, method_id, payload))

    def frame_received(self, kind: int, call_id: int, method_id: int, payload: bytes) -> None:
        if kind in (MSG, END):
            incoming = self._streams.get(call_id)
            if incoming is None:
                return  # cancelled meanwhile
            if kind == MSG:
                incoming.put_nowait(payload)
            else:
                del self._streams[call_id]
                incoming.put_nowait(parse_end(payload))
            return
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
        streams, self._streams = self._streams, {}
        for incoming in streams.values():
            incoming.put_nowait(RPCError(UNAVAILABLE))
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
