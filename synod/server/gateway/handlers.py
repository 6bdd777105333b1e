"""What the JSON gateway does with a request: a gRPC method called through its route, or /version, /health.

A gateway path calls the same ``Route`` a gRPC call of that method reaches
(the member's dispatcher, or a front end's relay to it), with the request
message the JSON body decodes to, so every method answers over JSON exactly
as over gRPC, and one that is not built yet answers as it does over gRPC.

As grpc-gateway: a unary or server-streaming method reads the first JSON value
of the body (an empty body is the empty request; what follows the value is
ignored); a bidirectional one (watch, lease keep-alive) reads successive JSON
values from the body as they arrive, each one request, while its responses
stream back: the first must decode or the call fails with 400; a later one that
does not decode ends the requests (the watch goes on).
"""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import AsyncIterator

from google.protobuf.message import Message
from grpc import StatusCode

from synod import ETCD_API_VERSION, __version__
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.auth.caller import CALLER_TOKEN
from synod.rpctypes import RPCError
from synod.server.api.methods import BY_PATH, Method
from synod.server.gateway import gojson, jsonpb
from synod.server.gateway.connection import Exchange
from synod.server.gateway.paths import method_for
from synod.server.wire.connection import Resolve, Route
from synod.server.wire.messages import too_large

_TEXT = [(b"content-type", b"text/plain; charset=utf-8"), (b"x-content-type-options", b"nosniff")]
_JSON = [(b"content-type", b"application/json")]
# What grpc-gateway passes on from the gRPC call: its response header, or on an error its trailer.
_GRPC_HEADER = [(b"grpc-metadata-content-type", b"application/grpc")]
_GRPC_TRAILER = [(b"Grpc-Trailer-Content-Type", b"application/grpc")]
_JSON_OK = [*_JSON, *_GRPC_HEADER]
_RANGE = BY_PATH["/etcdserverpb.KV/Range"]
_ALARM = BY_PATH["/etcdserverpb.Maintenance/Alarm"]
# A body longer than this is not kept (etcd's gateway reads any body whole): far over the request
# limit (in base64, a request's bytes are 4/3 as long), it is refused as too large without being read.
MAX_BODY = 64 << 20


class Gateway:
    """The request handler of every gateway connection of one process."""

    def __init__(self, resolve: Resolve, limit: int, server_version: str) -> None:
        self._resolve = resolve
        self._limit = limit  # the largest request message, as gRPC's
        self._version = json.dumps(
            {"etcdserver": server_version, "etcdcluster": f"{ETCD_API_VERSION}.0", "synod": __version__},
            separators=(",", ":"),
        ).encode()

    async def __call__(self, ex: Exchange) -> None:
        path = ex.path
        method = method_for(path)
        if ex.method == b"OPTIONS":  # a CORS preflight: etcd's access controller answers it alone
            await ex.respond(200, b"", [])
        elif method is not None:
            if ex.method != b"POST":
                await ex.respond(405, b"Method Not Allowed\n", _TEXT)
            else:
                await self._call(ex, method)
        elif path in ("/version", "/health"):
            if ex.method != b"GET":
                await ex.respond(405, b"Method Not Allowed\n", [(b"allow", b"GET"), *_TEXT])
            elif path == "/version":
                await ex.respond(200, self._version, _JSON)
            else:
                await self._health(ex)
        elif path.startswith("/v3/") or path.startswith("/v3beta/"):
            await ex.respond(404, b"Not Found\n", _TEXT)  # grpc-gateway's
        else:
            await ex.respond(404, b"404 page not found\n", _TEXT)  # net/http's

    # -- gRPC methods -------------------------------------------------------------------------------

    async def _call(self, ex: Exchange, method: Method) -> None:
        # grpc-gateway passes "Authorization" on as metadata "authorization", and any
        # "Grpc-Metadata-<name>" header as metadata "<name>"; etcd reads "token" first.
        token = ex.header(b"grpc-metadata-token")
        if token is None:
            token = ex.header(b"authorization")
        if token is not None:
            CALLER_TOKEN.set(token.decode("utf-8", "replace"))  # this exchange's task alone
        found = self._resolve(method.path.encode())
        if isinstance(found, RPCError):
            await _drain(ex)
            await self._fail(ex, found, called=True)
            return
        try:
            if method.client_streaming:
                await self._bidi(ex, method, found)
                return
            body = await ex.read_all(MAX_BODY)
            if body is None:
                raise too_large(MAX_BODY * 3 // 4, self._limit)
            request = _first_request(method.request, body)
        except RPCError as e:
            await self._fail(ex, e, called=False)
            return
        try:
            if len(request) > self._limit:
                raise too_large(len(request), self._limit)
            if found.unary is not None:
                response = await found.unary(request)
                await ex.respond(
                    200, jsonpb.response_json(method.response, response), [*_JSON, *_GRPC_HEADER]
                )
            else:
                await self._stream(ex, method, found, _one(request))
        except RPCError as e:
            await self._fail(ex, e, called=True)

    async def _bidi(self, ex: Exchange, method: Method, route: Route) -> None:
        values = _json_values(ex.body())
        first = await anext(values, None)
        requests: list[bytes] = []
        try:
            if isinstance(first, Exception):
                raise jsonpb.invalid_argument(str(first))
            if first is not None:
                requests.append(jsonpb.parse_request(method.request, first.value))
        except RPCError as e:
            await _drain(ex)
            await self._fail(ex, e, called=True)  # the stream was opened before the first request
            return

        async def more() -> AsyncIterator[bytes]:
            for request in requests:
                yield request
            if first is None:
                return
            async for value in values:
                if isinstance(value, Exception):
                    return  # grpc-gateway closes the sending side on a request it can't decode
                try:
                    request = jsonpb.parse_request(method.request, value.value)
                except RPCError:
                    return
                if len(request) > self._limit:
                    return
                yield request

        await self._stream(ex, method, route, more())

    async def _stream(
        self, ex: Exchange, method: Method, route: Route, requests: AsyncIterator[bytes]
    ) -> None:
        assert route.stream is not None

        async def write(message: bytes) -> None:
            if not ex.started:
                await ex.start(200, _GRPC_HEADER)
            await ex.send(jsonpb.stream_result(method.response, message))

        try:
            await route.stream(requests, write)
        except RPCError as e:
            if not ex.started:
                await ex.start(jsonpb.HTTP_STATUS.get(e.code, 500), _GRPC_HEADER)
            await ex.send(jsonpb.stream_error_json(e))
            await ex.finish()
            return
        if not ex.started:
            await ex.start(200, _GRPC_HEADER)
        await ex.finish()

    async def _fail(self, ex: Exchange, error: RPCError, *, called: bool) -> None:
        """``called``: the gRPC call was made (grpc-gateway then passes its trailer on)."""
        status, body = jsonpb.error_json(error)
        await ex.respond(status, body, _JSON, trailers=_GRPC_TRAILER if called else None)

    # -- /health ------------------------------------------------------------------------------------

    async def _health(self, ex: Exchange) -> None:
        """etcd's /health: no alarm raised, and a linearizable read goes through."""
        healthy = await self._healthy()
        status = 200 if healthy else 503
        body = b'{"health":"%s"}' % (b"true" if healthy else b"false")
        await ex.respond(status, body, [(b"content-type", b"text/plain; charset=utf-8")])

    async def _healthy(self) -> bool:
        alarm = self._resolve(_ALARM.path.encode())
        rng = self._resolve(_RANGE.path.encode())
        if isinstance(rng, RPCError) or rng.unary is None:
            return False
        try:
            if not isinstance(alarm, RPCError) and alarm.unary is not None:
                try:
                    raw = await alarm.unary(pb.AlarmRequest().SerializeToString())
                except RPCError as e:
                    if e.code != StatusCode.UNIMPLEMENTED:  # no alarms in this synod yet
                        raise
                else:
                    if pb.AlarmResponse.FromString(raw).alarms:
                        return False
            request = pb.RangeRequest(key=b"health", keys_only=True, limit=1).SerializeToString()
            await asyncio.wait_for(rng.unary(request), timeout=5.0)
        except (RPCError, TimeoutError):
            return False
        return True


# -- request bodies ----------------------------------------------------------------------------------


class _Value:
    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


_WHITESPACE = " \t\r\n"


def _split_value(text: str) -> tuple[object, str] | None:
    """The first JSON value of ``text`` (no leading whitespace) and what follows it; None if the
    value is cut short. Raises gojson.SyntaxError_ (with Go's words) for one that is not JSON."""
    try:
        end = gojson.value_end(text)
    except gojson.Truncated:
        return None
    return jsonpb.loads(text[:end]), text[end:]


def _first_request(request_type: type[Message], body: bytes) -> bytes:
    """The body's first JSON value as a request (json.Decoder.Decode then jsonpb, as grpc-gateway)."""
    text = body.decode("utf-8", "replace").lstrip(_WHITESPACE)
    if not text:
        return b""  # no value: io.EOF, which grpc-gateway lets through as the empty request
    try:
        found = _split_value(text)
    except gojson.SyntaxError_ as e:
        raise jsonpb.invalid_argument(e.message) from None
    if found is None:
        raise jsonpb.invalid_argument("unexpected EOF")
    return jsonpb.parse_request(request_type, found[0])


async def _json_values(chunks: AsyncIterator[bytes]) -> AsyncIterator[_Value | Exception]:
    """Successive JSON values of a body as they complete; an Exception for one that can't be read."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text = ""
    ended = False
    while True:
        text = text.lstrip(_WHITESPACE)
        if text:
            try:
                found = _split_value(text)
            except gojson.SyntaxError_ as e:
                yield e
                return
            if found is not None:
                value, text = found
                yield _Value(value)
                continue
            if ended:
                yield ValueError("unexpected EOF")
                return
        if ended:
            return
        chunk = await anext(chunks, None)
        if chunk is None:
            ended = True
            text += decoder.decode(b"", final=True)
        else:
            text += decoder.decode(chunk)


async def _one(request: bytes) -> AsyncIterator[bytes]:
    yield request


async def _drain(ex: Exchange) -> None:
    async for _ in ex.body():
        pass
