"""One HTTP/1.1 connection of the JSON gateway, on the h11 library (sans-IO) as an asyncio protocol.

Requests are served one at a time, in order (HTTP/1.1 keep-alive; a
pipelined request waits for the answer before it). Each request's handler
(``Handler``: ``handlers.py``) reads the body as it arrives, so a streaming
watch can take new requests in its body while its response streams, and
answers through ``Exchange``: ``respond`` for a whole response, or ``start``
then ``send`` for a chunked one. When the client goes away the running
handler is cancelled (a watch's watchers with it).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import cast

import h11

log = logging.getLogger(__name__)

MAX_HEADERS = 64 << 10  # the largest request line and headers accepted (Go's net/http: 1 MiB)
Headers = list[tuple[bytes, bytes]]
# etcd's access controller answers every request with these (its default --cors is "*").
CORS: Headers = [
    (b"access-control-allow-headers", b"accept, content-type, authorization"),
    (b"access-control-allow-methods", b"POST, GET, OPTIONS, PUT, DELETE"),
    (b"access-control-allow-origin", b"*"),
]
_JSON: Headers = [(b"content-type", b"application/json")]
_date_cache: tuple[int, bytes] = (0, b"")


def _date() -> tuple[bytes, bytes]:
    """The Date header Go's server puts on every answer (formatted once a second)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True).encode())
    return (b"date", _date_cache[1])


class Exchange:
    """One request and its response."""

    def __init__(self, conn: GatewayConnection, request: h11.Request) -> None:
        self.conn = conn
        self.method = request.method
        self.target = request.target
        self.headers = request.headers
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.started = False
        self.finished = False

    @property
    def path(self) -> str:
        return self.target.decode("latin-1").partition("?")[0]

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return bytes(value)
        return None

    async def body(self) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive."""
        while True:
            chunk = await self._chunks.get()
            if chunk is None:
                return
            yield chunk

    async def read_all(self, limit: int) -> bytes | None:
        """The whole body, or None if it is longer than ``limit`` (the rest is drained)."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.body():
            size += len(chunk)
            if size <= limit:
                parts.append(chunk)
        return b"".join(parts) if size <= limit else None

    async def respond(
        self, status: int, body: bytes, headers: Headers | None = None, *, trailers: Headers | None = None
    ) -> None:
        """A whole answer (with ``trailers``: chunked, the trailer names announced, as grpc-gateway's)."""
        hdrs = [*CORS, *(_JSON if headers is None else headers)]
        if trailers:
            hdrs += [(b"trailer", b", ".join(name for name, _ in trailers)), _date()]
        else:
            hdrs += [_date(), (b"content-length", b"%d" % len(body))]
        self.conn.send(h11.Response(status_code=status, headers=hdrs))
        if body:
            self.conn.send(h11.Data(data=body))
        self.started = True
        if not self.finished:
            self.finished = True
            self.conn.send(h11.EndOfMessage(headers=trailers or []))

    async def start(self, status: int, headers: Headers | None = None) -> None:
        """Begin a streamed (chunked) response."""
        self.started = True
        hdrs = [*CORS, *_JSON, *(headers or []), _date(), (b"transfer-encoding", b"chunked")]
        self.conn.send(h11.Response(status_code=status, headers=hdrs))

    async def send(self, data: bytes) -> None:
        """One piece of a streamed response, flushed at once; waits while the client is not reading."""
        self.conn.send(h11.Data(data=data))
        await self.conn.drained()

    async def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.conn.send(h11.EndOfMessage())


Handler = Callable[[Exchange], Awaitable[None]]


class GatewayConnection(asyncio.Protocol):
    def __init__(self, handler: Handler, on_close: Callable[[GatewayConnection], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        self._handler = handler
        self._on_close = on_close
        self._transport: asyncio.Transport | None = None
        self._exchange: Exchange | None = None
        self._task: asyncio.Task[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self.idle = asyncio.Event()
        self.idle.set()
        self._closing = False

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.h11.receive_data(data)
        except h11.RemoteProtocolError:
            pass  # reported by next_event below
        self._process()

    def eof_received(self) -> bool | None:
        self.h11.receive_data(b"")
        self._process()
        return True  # keep the write side open for the answer of a request in progress

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._writable.set()
        if self._task is not None:
            self._task.cancel()
        self.idle.set()
        self._on_close(self)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- input ------------------------------------------------------------------

    def _process(self) -> None:
        while self._transport is not None:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                self._bad_request(e)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._begin(event)
            elif isinstance(event, h11.Data):
                if self._exchange is not None:
                    self._exchange._chunks.put_nowait(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                if self._exchange is not None:
                    self._exchange._chunks.put_nowait(None)
            elif isinstance(event, h11.ConnectionClosed):
                if self._task is None:
                    self.close()
                return

    def _begin(self, request: h11.Request) -> None:
        self.idle.clear()
        exchange = self._exchange = Exchange(self, request)
        self._task = self.loop.create_task(self._run(exchange))

    async def _run(self, exchange: Exchange) -> None:
        try:
            await self._handler(exchange)
            if not exchange.started:
                await exchange.respond(500, b'{"error":"no answer"}')
            await exchange.finish()
        except asyncio.CancelledError:
            return
        except h11.LocalProtocolError as e:
            log.debug("gateway answer not sent: %s", e)
            self.close()
            return
        except Exception:
            log.exception("a gateway handler failed")
            if not exchange.started:
                await exchange.respond(500, b'{"error":"internal error"}')
            else:
                self.close()
                return
        finally:
            self._task = None
        self._next_cycle()

    def _next_cycle(self) -> None:
        self._exchange = None
        self.idle.set()
        if self._closing or self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
            # The client's request is not over (a body we did not wait for) or it asked to close.
            self.close()
            return
        try:
            self.h11.start_next_cycle()
        except h11.LocalProtocolError:
            self.close()
            return
        self._process()

    def _bad_request(self, error: h11.RemoteProtocolError) -> None:
        """A request h11 can't read: Go's net/http answers 400 and closes."""
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE) and self._exchange is None:
            status = error.error_status_hint
            body = b"%d %s" % (status, _reason(status).encode())
            try:
                self.send(
                    h11.Response(
                        status_code=status,
                        headers=[
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"connection", b"close"),
                            (b"content-length", b"%d" % len(body)),
                        ],
                    )
                )
                self.send(h11.Data(data=body))
                self.send(h11.EndOfMessage())
            except h11.LocalProtocolError:
                pass
        self.close()

    # -- output -----------------------------------------------------------------

    def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data and self._transport is not None:
            self._transport.write(data)

    async def drained(self) -> None:
        if not self._writable.is_set():
            await self._writable.wait()
        if self._transport is None:
            raise asyncio.CancelledError

    def go_away(self) -> None:
        """Stop after the request in progress (the server is stopping)."""
        self._closing = True
        if self._task is None:
            self.close()

    def cancel_calls(self) -> list[asyncio.Task[None]]:
        if self._task is None:
            return []
        self._task.cancel()
        return [self._task]

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
