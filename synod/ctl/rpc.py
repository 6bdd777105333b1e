"""synodctl's connections: channels to the endpoints, unary calls with failover, errors in Go's words.

Endpoints are tried in order: one that cannot be connected to (within the dial
timeout) is passed over, and a call that may be repeated and gets UNAVAILABLE
moves on to the next. Passes over the endpoints repeat until the command's
deadline; then the error is etcd's ``context deadline exceeded``. The KV, Lease
and Watch clients (kv.py, lease.py, watch.py) build on ``Client``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from synod import rpctypes

T = TypeVar("T")

# Go's names for gRPC status codes, as "rpc error: code = ... desc = ..." prints them.
_GO_CODE_NAMES = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}
# Server errors etcd's client knows by their text and prints bare.
_KNOWN_MESSAGES = frozenset(
    e.message
    for e in vars(rpctypes).values()
    if isinstance(e, rpctypes.ErrorCode) and e is not rpctypes.WATCH_CANCELED
)
DEADLINE_EXCEEDED = "context deadline exceeded"
MAX_SEND_BYTES = 2 * 1024 * 1024  # etcd's client default
MIN_KEEPALIVE_TIME = 10.0
# The metadata clientv3.WithRequireLeader adds (etcdctl's watches and lease keep-alives).
REQUIRE_LEADER = (("hasleader", "true"),)
_RETRY_PAUSE = 0.05


class CallError(Exception):
    """A failed call; the message is what etcdctl prints after ``Error:``."""


def go_error(e: grpc.RpcError, deadline_passed: bool = False) -> CallError:
    """A gRPC error as etcd's Go client words it (etcd's own errors bare, others ``rpc error: ...``)."""
    if not isinstance(e, grpc.Call):
        return CallError(str(e))
    code, details = e.code(), e.details() or ""
    if details in _KNOWN_MESSAGES:
        return CallError(details)
    if deadline_passed and code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return CallError(DEADLINE_EXCEEDED)
    return CallError(f"rpc error: code = {_GO_CODE_NAMES.get(code, str(code))} desc = {details}")


def status_code(e: BaseException) -> grpc.StatusCode | None:
    return e.code() if isinstance(e, grpc.Call) else None


def is_retryable(e: BaseException) -> bool:
    """Whether clientv3 retries a stream after this error (Unavailable and Internal), except 'no leader'."""
    if not isinstance(e, grpc.Call):
        return False
    if e.details() == rpctypes.NO_LEADER.message:
        return False
    return e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)


def not_connected(e: grpc.Call) -> bool:
    """Whether an UNAVAILABLE call never reached a server (no connection could be made)."""
    details = (e.details() or "").lower()
    return "failed to connect" in details or "connections to all backends failing" in details


def _target(endpoint: str) -> tuple[str, bool]:
    """A gRPC target and whether it wants TLS, from an etcd endpoint (``host:port``, ``http://``, ``https://``)."""
    if endpoint.startswith("http://"):
        return endpoint[len("http://") :], False
    if endpoint.startswith("https://"):
        return endpoint[len("https://") :], True
    return endpoint, False


class Client:
    """Channels to the endpoints, and unary calls against the first endpoint that answers."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        dial_timeout: float = 2.0,
        keepalive_time: float = 2.0,
        keepalive_timeout: float = 6.0,
        insecure: bool = True,
    ) -> None:
        self.endpoints = list(endpoints)
        self.dial_timeout = dial_timeout
        self._insecure = insecure
        self._options = [
            ("grpc.max_receive_message_length", -1),
            ("grpc.max_send_message_length", MAX_SEND_BYTES),
            # Go's gRPC pings at most every 10s, whatever etcdctl asks for; so does synodctl.
            ("grpc.keepalive_time_ms", int(max(keepalive_time, MIN_KEEPALIVE_TIME) * 1000)),
            ("grpc.keepalive_timeout_ms", int(keepalive_timeout * 1000)),
            ("grpc.initial_reconnect_backoff_ms", 100),
            # Also the shortest time a connection attempt may take: the dial timeout bounds it.
            ("grpc.min_reconnect_backoff_ms", max(int(dial_timeout * 1000), 1)),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        self._channels: dict[str, grpc.Channel] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def channel(self, endpoint: str) -> grpc.Channel:
        channel = self._channels.get(endpoint)
        if channel is None:
            target, secure = _target(endpoint)
            if secure or not self._insecure:
                credentials = grpc.ssl_channel_credentials()
                channel = grpc.secure_channel(target, credentials, options=self._options)
            else:
                channel = grpc.insecure_channel(target, options=self._options)
            self._channels[endpoint] = channel
        return channel

    def call(
        self,
        stub_type: Callable[[grpc.Channel], Any],
        method: str,
        req: object,
        response_type: type[T],
        timeout: float | None,
        *,
        retry_unavailable: bool,
        endpoints: Sequence[str] | None = None,
    ) -> T:
        """One unary call with failover; ``timeout`` None: no deadline (etcdctl's context.TODO calls).

        ``endpoints``: only these (clientv3's calls to one endpoint: Status, HashKV); default all.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        targets = self.endpoints if endpoints is None else list(endpoints)

        def remaining() -> float | None:
            return None if deadline is None else deadline - time.monotonic()

        while True:
            server_error: CallError | None = None
            for endpoint in targets:
                left = remaining()
                if left is not None and left <= 0:
                    raise CallError(DEADLINE_EXCEEDED)
                if not endpoint:
                    continue  # an empty endpoint never connects (etcdctl waits out its deadline too)
                stub = stub_type(self.channel(endpoint))
                try:
                    resp = getattr(stub, method)(req, timeout=left, wait_for_ready=False)
                except grpc.RpcError as e:
                    left = remaining()
                    error = go_error(e, left is not None and left <= 0)
                    if not (isinstance(e, grpc.Call) and e.code() == grpc.StatusCode.UNAVAILABLE):
                        raise error from None
                    if not_connected(e):
                        continue  # never sent: any request may go to the next endpoint
                    if not retry_unavailable:
                        raise error from None
                    server_error = error
                    continue
                assert isinstance(resp, response_type)
                return resp
            if server_error is not None:
                raise server_error
            left = remaining()
            if left is not None and left <= 0:
                raise CallError(DEADLINE_EXCEEDED)
            time.sleep(_RETRY_PAUSE if left is None else min(_RETRY_PAUSE, left))
