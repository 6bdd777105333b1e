"""The client's connection: endpoints, channels, failover, retries and the auth token.

One endpoint is in use at a time (the pinned one); when it can't be reached the
next one is tried, round the list, until the call's deadline. Which failed calls
are retried follows etcd's clientv3 retry interceptor:

- a *repeatable* call (a read, or a change that is the same if done twice, such as
  a lease revoke) is retried on any ``UNAVAILABLE``: a connection failure, or the
  server's ``etcdserver: no leader``, ``request timed out`` and the like;
- any other call is retried only when it certainly never reached a server (the
  connection could not be made); otherwise the error is the caller's to judge,
  since the change may or may not have been applied.

With a user and password, the client authenticates on first use and sends the
token with every call; a call refused for an ``invalid auth token`` (expired,
or issued by a member that restarted) authenticates again and is retried once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.client.errors import (
    ClientClosedError,
    ConnectionFailedError,
    EtcdError,
    InvalidAuthTokenError,
    RequestTimeoutError,
    from_rpc_error,
)

R = TypeVar("R", bound=Message)

# A connection that was never made: the request was not sent (grpc-core's wording).
_NOT_SENT = ("failed to connect to all addresses", "DNS resolution failed", "no address available")
_BACKOFF_FIRST = 0.025
DEFAULT_MAX_MESSAGE_BYTES = 2 * 1024 * 1024 + 512 * 1024  # etcd's request limit and gRPC's overhead
# The marker a grpc.aio stream's read() returns at its end (not in grpc's type stubs).
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]
_BACKOFF_MAX = 1.0


@dataclass(frozen=True, slots=True)
class TLS:
    """TLS for every endpoint: PEM bytes of the CA, and of a client certificate and key if wanted."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None  # the name the server's certificate must carry, if not its host


@dataclass(frozen=True, slots=True)
class Options:
    timeout: float | None = 5.0  # per request, across its retries; None: no deadline
    keepalive_time: float | None = None  # HTTP/2 pings on idle connections, as clientv3's
    keepalive_timeout: float = 20.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES


def parse_endpoint(endpoint: str) -> tuple[str, bool]:
    """``host:port``, ``http://host:port`` or ``https://host:port`` -> (gRPC target, TLS wanted)."""
    for scheme, secure in (("https://", True), ("http://", False), ("unix://", False)):
        if endpoint.startswith(scheme):
            rest = endpoint[len(scheme) :]
            return (endpoint if scheme == "unix://" else rest.rstrip("/")), secure
    return endpoint, False


class Connection:
    """Channels to the endpoints and the unary call path with failover, retry and auth."""

    def __init__(
        self,
        endpoints: Sequence[str],
        options: Options,
        tls: TLS | None = None,
        user: str | None = None,
        password: str | None = None,
        rng: random.Random | None = None,
        channel_factory: Callable[[str, bool], Any] | None = None,
    ) -> None:
        """``channel_factory(target, secure)``: opens a channel in place of grpc.aio's (the server's
        own in-process client uses one that calls its dispatcher)."""
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        if (user is None) != (password is None):
            raise ValueError("give both user and password, or neither")
        self.endpoints = [parse_endpoint(e) for e in endpoints]
        self.options = options
        self._tls = tls
        self._user, self._password = user, password
        self._rng = rng or random.Random()
        self._channel_factory = channel_factory
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._calls: dict[tuple[int, str], Any] = {}
        self._pinned = 0
        self._token: str | None = None
        self._auth_lock: asyncio.Lock | None = None
        self.metadata: tuple[tuple[str, str], ...] | None = None
        self.closed = False

    # -- channels ----------------------------------------------------------------------------------------

    def channel(self, index: int | None = None) -> grpc.aio.Channel:
        """The channel to an endpoint (the pinned one by default), opened on first use."""
        if self.closed:
            raise ClientClosedError()
        i = self._pinned if index is None else index
        ch = self._channels.get(i)
        if ch is None:
            ch = self._channels[i] = self._open(*self.endpoints[i])
        return ch

    def _open(self, target: str, secure: bool) -> grpc.aio.Channel:
        if self._channel_factory is not None:
            return self._channel_factory(target, secure)  # type: ignore[no-any-return]
        o = self.options
        opts: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", o.max_message_bytes),
            ("grpc.max_send_message_length", o.max_message_bytes),
            ("grpc.enable_retries", 0),  # retries are ours: by etcd's rules, not grpc-core's
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if o.keepalive_time is not None:
            opts += [
                ("grpc.keepalive_time_ms", int(o.keepalive_time * 1000)),
                ("grpc.keepalive_timeout_ms", int(o.keepalive_timeout * 1000)),
                ("grpc.keepalive_permit_without_calls", 1),
            ]
        if self._tls is not None and self._tls.server_name:
            opts.append(("grpc.ssl_target_name_override", self._tls.server_name))
        if secure or self._tls is not None:
            t = self._tls or TLS()
            creds = grpc.ssl_channel_credentials(t.ca, t.key, t.cert)
            return grpc.aio.secure_channel(target, creds, options=opts)
        return grpc.aio.insecure_channel(target, options=opts)

    def failover(self, failed: int) -> None:
        """The pinned endpoint failed: move on to the next one (if nobody moved already)."""
        if self._pinned == failed and len(self.endpoints) > 1:
            self._pinned = (failed + 1) % len(self.endpoints)

    @property
    def authenticates(self) -> bool:
        """Whether calls carry a token (a user and password were given)."""
        return self._user is not None

    @property
    def pinned(self) -> int:
        return self._pinned

    def backoff(self, attempt: int) -> float:
        """Jittered exponential backoff before retry number ``attempt`` (1, 2, ...)."""
        base = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2.0 ** min(attempt - 1, 10))
        return base * (0.5 + self._rng.random() / 2)

    # -- unary calls -----------------------------------------------------------------------------------

    def _multicallable(self, index: int, path: str, response: type[Message]) -> Any:
        key = (index, path)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = self.channel(index).unary_unary(
                path, request_serializer=_serialize, response_deserializer=response.FromString
            )
        return call

    async def call(
        self,
        path: str,
        request: Message,
        response: type[R],
        *,
        repeatable: bool,
        timeout: float | object | None = ...,
        authenticate: bool = True,
    ) -> R:
        """One unary RPC, with etcd's retry rules across endpoints, until the deadline."""
        budget = self.options.timeout if timeout is ... else timeout
        deadline = None if budget is None else time.monotonic() + budget  # type: ignore[operator]
        attempt = 0
        refreshed = False
        if authenticate and self._user is not None and self.metadata is None:
            await self.authenticate(deadline)
        while True:
            index = self._pinned
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                multicallable = self._multicallable(index, path, response)
                result: R = await multicallable(
                    request, timeout=remaining, metadata=self.metadata if authenticate else None
                )
                return result
            except grpc.aio.AioRpcError as e:
                error = from_rpc_error(e)
            if isinstance(error, InvalidAuthTokenError) and self._user is not None and not refreshed:
                refreshed = True
                await self.authenticate(deadline, stale=self.metadata)
                continue
            if not self._retryable(error, repeatable):
                raise error
            self.failover(index)
            attempt += 1
            pause = self.backoff(attempt)
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise error if not isinstance(error, ConnectionFailedError) else _timed_out(error)
            await asyncio.sleep(pause)

    async def call_one(self, index: int, path: str, request: Message, response: type[R]) -> R:
        """One RPC to one endpoint: no failover, no retry (to ask a given member)."""
        try:
            result: R = await self._multicallable(index, path, response)(
                request, timeout=self.options.timeout, metadata=self.metadata
            )
            return result
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e) from None

    @staticmethod
    def _retryable(error: EtcdError, repeatable: bool) -> bool:
        if error.code != grpc.StatusCode.UNAVAILABLE or isinstance(error, ClientClosedError):
            return False
        return repeatable or any(s in error.message for s in _NOT_SENT)

    # -- auth ----------------------------------------------------------------------------------------------

    async def authenticate(
        self, deadline: float | None, stale: tuple[tuple[str, str], ...] | None = None
    ) -> None:
        """Get a token (once for concurrent callers: who finds it replaced since ``stale`` uses it)."""
        if self._auth_lock is None:
            self._auth_lock = asyncio.Lock()
        async with self._auth_lock:
            if self.metadata is not None and self.metadata is not stale:
                return
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            resp = await self.call(
                "/etcdserverpb.Auth/Authenticate",
                pb.AuthenticateRequest(name=self._user, password=self._password),
                pb.AuthenticateResponse,
                repeatable=False,
                timeout=remaining,
                authenticate=False,
            )
            self.metadata = (("token", resp.token),)

    def stream_metadata(self) -> tuple[tuple[str, str], ...] | None:
        return self.metadata

    async def close(self) -> None:
        self.closed = True
        channels, self._channels = list(self._channels.values()), {}
        self._calls.clear()
        for ch in channels:
            await ch.close(None)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _timed_out(error: EtcdError) -> EtcdError:
    return RequestTimeoutError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        f"synod: no endpoint answered before the deadline ({error.message})",
    )
