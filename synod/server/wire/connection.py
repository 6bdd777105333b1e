"""One client connection of the gRPC server: HTTP/2 (the h2 library) carrying gRPC calls.

Rules of this module:

* Everything runs on the event loop; the h2 state machine is touched only here.
* Bytes h2 produces are written to the socket once per event-loop turn
  (``_flush``), however many calls and messages produced them: this is what
  makes fan-out cheap (a thousand watch events to one connection are one
  socket write, where grpc.aio makes one write per message).
* A call's outbound messages respect HTTP/2 flow control: what does not fit
  in the stream's window waits in the call, and the writer waits with it, so
  a client that does not read holds up only its own streams.
* Inbound bytes are acknowledged (WINDOW_UPDATE) when their messages are
  taken by the handler, so a client can't make the server buffer without
  bound either.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
from grpc import StatusCode

from synod.auth.caller import CALLER_TOKEN
from synod.rpctypes import ErrorCode, RPCError
from synod.server.api.methods import StreamHandler
from synod.server.wire.messages import MessageReader, check_encoding, frame, status_headers

log = logging.getLogger("synod.wire")

UnaryServe = Callable[[bytes], Awaitable[bytes]]

INITIAL_WINDOW = 1 << 20  # per-stream receive window we advertise
CONNECTION_WINDOW = 1 << 26  # connection receive window
INBOUND_QUEUE = 64  # messages a stream handler may leave unread before the client is held back
_DATA_FRAME_HEADER = struct.Struct(">IBI")  # (length << 8 | type), flags, stream id
_GOAWAY_FRAME_HEADER = _DATA_FRAME_HEADER
_CAN_SEND_DATA = (h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_REMOTE)
_RESPONSE_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]
_H2_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)


@dataclass(frozen=True, slots=True)
class Route:
    """How a method is served: ``unary`` (one request, one response) or ``stream``."""

    unary: UnaryServe | None = None
    stream: StreamHandler | None = None
    client_streaming: bool = False  # a stream whose requests arrive as they come (else: exactly one)


Resolve = Callable[[bytes], Route | RPCError]


class _Call:
    """One gRPC call on one HTTP/2 stream."""

    __slots__ = (
        "_blocked",
        "_conn",
        "_inbound",
        "_inbound_ended",
        "_pending",
        "_reader",
        "_unacked",
        "_waiter",
        "headers_sent",
        "id",
        "reset",
        "route",
        "started",
        "task",
        "token",
    )

    def __init__(self, conn: GrpcConnection, stream_id: int, route: Route, reader: MessageReader) -> None:
        self._conn = conn
        self.id = stream_id
        self.route = route
        self._reader = reader
        self._inbound: collections.deque[bytes] = collections.deque()
        self._inbound_ended = False
        self._unacked = 0  # received bytes not yet acknowledged to the client
        self._waiter: asyncio.Future[None] | None = None  # the handler waiting for a request
        self._pending: collections.deque[memoryview] = collections.deque()  # framed bytes over the window
        self._blocked: asyncio.Future[None] | None = None  # the writer waiting for window or socket
        self.headers_sent = False
        self.reset = False
        self.started = False
        self.task: asyncio.Task[None] | None = None
        self.token: str | None = None  # the caller's auth token (metadata "token" or "authorization")

    # -- inbound ----------------------------------------------------------------

    def received(self, data: bytes, flow_length: int) -> list[bytes]:
        """Bytes of a DATA frame; returns the messages it completes (raises RPCError for a bad one)."""
        messages = self._reader.feed(data)
        if self.route.client_streaming and len(self._inbound) >= INBOUND_QUEUE:
            self._unacked += flow_length
        elif flow_length:
            self._conn.ack(self.id, flow_length)
        return messages

    def push(self, message: bytes) -> None:
        self._inbound.append(message)
        self._wake_reader()

    def end_inbound(self) -> None:
        self._inbound_ended = True
        self._wake_reader()

    def _wake_reader(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def requests(self) -> AsyncIterator[bytes]:
        """The client's messages, until it half-closes."""
        inbound = self._inbound
        while True:
            if inbound:
                message = inbound.popleft()
                if self._unacked and len(inbound) < INBOUND_QUEUE:
                    self._conn.ack(self.id, self._unacked)
                    self._unacked = 0
                yield message
            elif self._inbound_ended:
                if self._reader.pending:
                    raise _incomplete_message()
                return
            else:
                self._waiter = self._conn.loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None

    # -- outbound ---------------------------------------------------------------

    async def write(self, message: bytes) -> None:
        """Send one response message; returns once it is handed to HTTP/2 (waits while blocked)."""
        if self.reset:
            raise asyncio.CancelledError
        conn = self._conn
        if not self.headers_sent:
            self.headers_sent = True
            conn.h2.send_headers(self.id, _RESPONSE_HEADERS)
        data = memoryview(frame(message))
        if self._pending:
            self._pending.append(data)
        else:
            rest = conn.send_data(self.id, data)
            if rest is not None:
                self._pending.append(rest)
        conn.flush_soon()
        while self._pending or conn.paused:
            await self._wait_unblocked()

    async def _wait_unblocked(self) -> None:
        self._blocked = self._conn.loop.create_future()
        try:
            await self._blocked
        finally:
            self._blocked = None
        if self.reset:
            raise asyncio.CancelledError

    def unblock(self) -> None:
        """The window grew or the socket drained: send what waits, and wake the writer if all went."""
        pending = self._pending
        while pending:
            rest = self._conn.send_data(self.id, pending[0])
            if rest is not None:
                pending[0] = rest
                break
            pending.popleft()
        if self._blocked is not None and not self._blocked.done() and not pending:
            self._blocked.set_result(None)

    def abort(self) -> None:
        """The client reset the stream or the connection is gone."""
        self.reset = True
        self._pending.clear()
        for fut in (self._blocked, self._waiter):
            if fut is not None and not fut.done():
                fut.set_result(None)
        if self.task is not None:
            self.task.cancel()

    async def finish(self, code: StatusCode, message: str, response: bytes | None = None) -> None:
        """Send the response (if any), then the status; the stream ends."""
        if self.reset:
            return
        if response is not None:
            await self.write(response)
        while self._pending:  # the status goes after every message
            await self._wait_unblocked()
        conn = self._conn
        trailers = status_headers(code, message)
        if self.headers_sent:
            conn.h2.send_headers(self.id, trailers, end_stream=True)
        else:  # trailers-only response
            conn.h2.send_headers(self.id, [*_RESPONSE_HEADERS, *trailers], end_stream=True)
        conn.stop_receiving(self.id)
        conn.flush_soon()


def _incomplete_message() -> RPCError:
    return RPCError(ErrorCode(StatusCode.INTERNAL, "grpc: stream ended in the middle of a message"))


class GrpcConnection(asyncio.Protocol):
    """An HTTP/2 connection whose streams are gRPC calls, served through ``resolve``."""

    def __init__(self, resolve: Resolve, limit: int, on_close: Callable[[GrpcConnection], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.h2 = h2.connection.H2Connection(config=_H2_CONFIG)
        self.paused = False
        self._resolve = resolve
        self._limit = limit
        self._on_close = on_close
        self._calls: dict[int, _Call] = {}
        self._transport: asyncio.Transport | None = None
        self._flush_scheduled = False
        self._closing = False
        self.idle = asyncio.Event()  # set while no call runs
        self.idle.set()

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        h2c = self.h2
        h2c.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: INITIAL_WINDOW,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2**31 - 1,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 16 << 20,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        h2c.initiate_connection()
        h2c.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            log.debug("HTTP/2 protocol error from a client: %s", e)
            self._flush()
            self.close()
            return
        for event in events:
            handler = _EVENT_HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        for call in list(self._calls.values()):
            call.abort()
        self._calls.clear()
        self.idle.set()
        self._on_close(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        for call in list(self._calls.values()):
            call.unblock()

    # -- h2 events --------------------------------------------------------------

    def _request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        path = b""
        encoding: bytes | None = None
        token: bytes | None = None
        gateway_token: bytes | None = None
        for name, value in event.headers or ():
            if name == b":path":
                path = bytes(value)
            elif name == b"grpc-encoding":
                encoding = bytes(value)
            elif name == b"token":
                token = bytes(value)
            elif name == b"authorization":
                gateway_token = bytes(value)
        route = self._resolve(path) if not self._closing else _unavailable()
        try:
            if isinstance(route, RPCError):
                raise route
            check_encoding(encoding)
        except RPCError as e:
            self._refuse(sid, e)
            return
        call = _Call(self, sid, route, MessageReader(self._limit, encoding))
        if token is not None or gateway_token is not None:
            call.token = (token if token is not None else gateway_token or b"").decode("utf-8", "replace")
        self._calls[sid] = call
        self.idle.clear()
        if route.client_streaming:
            self._start(call, None)

    def _data(self, event: h2.events.DataReceived) -> None:
        call = self._calls.get(event.stream_id)
        flow = event.flow_controlled_length or 0
        if call is None:
            if flow:
                self.ack(event.stream_id, flow)
            return
        try:
            messages = call.received(event.data or b"", flow)
        except RPCError as e:
            self._fail(call, e)
            return
        for message in messages:
            if call.route.client_streaming:
                call.push(message)
            elif not call.started:
                self._start(call, message)

    def _ended(self, event: h2.events.StreamEnded) -> None:
        call = self._calls.get(event.stream_id)
        if call is None:
            return
        call.end_inbound()
        if not call.started:
            self._fail(call, _incomplete_message() if call._reader.pending else _no_request())

    def _reset(self, event: h2.events.StreamReset) -> None:
        call = self._calls.get(event.stream_id)
        if call is not None:
            call.abort()
            if call.task is None:
                self._forget(call)

    def _window(self, event: h2.events.WindowUpdated) -> None:
        if event.stream_id:
            call = self._calls.get(event.stream_id)
            if call is not None:
                call.unblock()
        else:
            for call in list(self._calls.values()):
                call.unblock()

    def _settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        for call in list(self._calls.values()):
            call.unblock()

    def _terminated(self, event: h2.events.ConnectionTerminated) -> None:
        # The client sent GOAWAY: it opens no more streams; close once the running ones end.
        self._closing = True
        if not self._calls:
            self.close()

    # -- calls ------------------------------------------------------------------

    def _start(self, call: _Call, request: bytes | None) -> None:
        call.started = True
        call.task = self.loop.create_task(self._run(call, request))

    async def _run(self, call: _Call, request: bytes | None) -> None:
        route = call.route
        code, message, response = StatusCode.OK, "", None
        if call.token is not None:
            CALLER_TOKEN.set(call.token)  # this task's own context: the call's alone
        try:
            try:
                if route.unary is not None:
                    assert request is not None
                    response = await route.unary(request)
                else:
                    assert route.stream is not None
                    await route.stream(call.requests() if request is None else _one(request), call.write)
            except RPCError as e:
                code, message = e.code, e.message
            except asyncio.CancelledError:
                if call.reset:
                    return  # the client went away: nobody to answer
                code, message = StatusCode.UNAVAILABLE, "transport is closing"  # the server is stopping
            except Exception as e:
                log.exception("a handler failed on stream %d", call.id)
                code, message = StatusCode.UNKNOWN, str(e)
            await call.finish(code, message, response)
        except asyncio.CancelledError:
            pass
        except h2.exceptions.H2Error as e:
            log.debug("stream %d ended before its answer: %s", call.id, e)
        finally:
            self._forget(call)

    def _forget(self, call: _Call) -> None:
        if self._calls.get(call.id) is call:
            del self._calls[call.id]
        if not self._calls:
            self.idle.set()
            if self._closing:
                self._flush()
                self.close()

    def _refuse(self, stream_id: int, error: RPCError) -> None:
        """Answer a stream that gets no call with its status at once."""
        headers = [*_RESPONSE_HEADERS, *status_headers(error.code, error.message)]
        self.h2.send_headers(stream_id, headers, end_stream=True)
        self.stop_receiving(stream_id)

    def _fail(self, call: _Call, error: RPCError) -> None:
        """End a call with ``error`` (a bad request message), cancelling its handler."""
        if call.task is not None:
            call.task.cancel()  # its end forgets the call
        else:
            self._forget(call)
        if not call.reset:
            call.reset = True
            trailers = status_headers(error.code, error.message)
            headers = trailers if call.headers_sent else [*_RESPONSE_HEADERS, *trailers]
            self.h2.send_headers(call.id, headers, end_stream=True)
            self.stop_receiving(call.id)

    # -- output -----------------------------------------------------------------

    def send_data(self, stream_id: int, data: memoryview) -> memoryview | None:
        """Send what the flow-control windows allow; returns the rest, or None if all went.

        DATA frames are written here rather than by h2's ``send_data``, which
        builds a frame object per call and was most of the cost of a watch
        event. What h2 would do, this does: frames no larger than the peer's
        maximum, both windows reduced by what was sent; a stream that can't
        carry data (reset, or ended by us) takes nothing. h2's own state is
        unchanged by DATA without END_STREAM. ``tests/unit/test_wire.py``
        checks the bytes and windows against h2's.
        """
        h2c = self.h2
        stream = h2c.streams.get(stream_id)
        if stream is None or stream.state_machine.state not in _CAN_SEND_DATA:
            return None
        window = min(h2c.outbound_flow_control_window, stream.outbound_flow_control_window)
        size = h2c.max_outbound_frame_size
        out = h2c._data_to_send
        sent = 0
        while data:
            n = min(len(data), window - sent, size)
            if n <= 0:
                break
            out += _DATA_FRAME_HEADER.pack(n << 8, 0, stream_id)  # length (24 bits), type DATA, flags, id
            out += data[:n]
            sent += n
            data = data[n:]
        stream.outbound_flow_control_window -= sent
        h2c.outbound_flow_control_window -= sent
        return data if data else None

    def stop_receiving(self, stream_id: int) -> None:
        """After our end of a stream: if the client may still be sending, tell it to stop (as grpc-go)."""
        stream = self.h2.streams.get(stream_id)
        if stream is not None and stream.state_machine.state == h2.stream.StreamState.HALF_CLOSED_LOCAL:
            self.h2.reset_stream(stream_id, 0)

    def ack(self, stream_id: int, length: int) -> None:
        """Hand received bytes back to the client's windows (h2 skips a closed stream's own window)."""
        self.h2.acknowledge_received_data(length, stream_id)

    def flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.h2.data_to_send()
        if data and self._transport is not None:
            self._transport.write(data)

    # -- shutdown ---------------------------------------------------------------

    def go_away(self) -> None:
        """Refuse new calls (GOAWAY); close once the running ones end.

        The GOAWAY frame is written here: h2's ``close_connection`` would also
        stop the running calls from sending anything more.
        """
        if self._closing:
            return
        self._closing = True
        last = self.h2.highest_inbound_stream_id
        self.h2._data_to_send += _GOAWAY_FRAME_HEADER.pack(8 << 8 | 0x7, 0, 0) + struct.pack(">II", last, 0)
        self._flush()
        if not self._calls:
            self.close()

    def cancel_calls(self) -> list[asyncio.Task[None]]:
        """End every running call (each answers UNAVAILABLE); returns their tasks."""
        tasks = [c.task for c in self._calls.values() if c.task is not None]
        for task in tasks:
            task.cancel()
        return tasks

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def _one(request: bytes) -> AsyncIterator[bytes]:
    yield request


def _no_request() -> RPCError:
    return RPCError(ErrorCode(StatusCode.INTERNAL, "grpc: the client sent no request message"))


def _unavailable() -> RPCError:
    return RPCError(ErrorCode(StatusCode.UNAVAILABLE, "transport is closing"))


_EVENT_HANDLERS: dict[type[h2.events.Event], Callable[[GrpcConnection, h2.events.Event], None]] = {
    h2.events.RequestReceived: GrpcConnection._request,  # type: ignore[dict-item]
    h2.events.DataReceived: GrpcConnection._data,  # type: ignore[dict-item]
    h2.events.StreamEnded: GrpcConnection._ended,  # type: ignore[dict-item]
    h2.events.StreamReset: GrpcConnection._reset,  # type: ignore[dict-item]
    h2.events.WindowUpdated: GrpcConnection._window,  # type: ignore[dict-item]
    h2.events.RemoteSettingsChanged: GrpcConnection._settings,  # type: ignore[dict-item]
    h2.events.ConnectionTerminated: GrpcConnection._terminated,  # type: ignore[dict-item]
}
