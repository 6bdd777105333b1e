"""synodctl's KV calls over gRPC: failover across endpoints, errors worded as etcd's Go client words them.

The one module that talks to the server (a later client library can take its
place). Endpoints are tried in order: one that cannot be connected to (within
the dial timeout) is passed over, and a read that gets UNAVAILABLE moves on to
the next. Passes over the endpoints repeat until the command's deadline; then
the error is etcd's ``context deadline exceeded``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TypeVar

import grpc

from synod import rpctypes
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc

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
_RETRY_PAUSE = 0.05


class KVError(Exception):
    """A failed call; the message is what etcdctl prints after ``Error:``."""


def _go_error(e: grpc.RpcError, deadline_passed: bool) -> KVError:
    if not isinstance(e, grpc.Call):
        return KVError(str(e))
    code, details = e.code(), e.details() or ""
    if details in _KNOWN_MESSAGES:
        return KVError(details)
    if deadline_passed and code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return KVError(DEADLINE_EXCEEDED)
    return KVError(f"rpc error: code = {_GO_CODE_NAMES.get(code, str(code))} desc = {details}")


def _not_connected(e: grpc.Call) -> bool:
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


def _is_read_only(req: pb.TxnRequest) -> bool:
    for op in [*req.success, *req.failure]:
        kind = op.WhichOneof("request")
        if kind == "request_txn":
            if not _is_read_only(op.request_txn):
                return False
        elif kind != "request_range":
            return False
    return True


class KVClient:
    """KV RPCs against the first endpoint that answers."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        dial_timeout: float = 2.0,
        keepalive_time: float = 2.0,
        keepalive_timeout: float = 6.0,
        insecure: bool = True,
    ) -> None:
        self._endpoints = list(endpoints)
        self._dial_timeout = dial_timeout
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

    def __enter__(self) -> KVClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def range(self, req: pb.RangeRequest, timeout: float | None) -> pb.RangeResponse:
        return self._call("Range", req, pb.RangeResponse, timeout, retry_unavailable=True)

    def put(self, req: pb.PutRequest, timeout: float | None) -> pb.PutResponse:
        return self._call("Put", req, pb.PutResponse, timeout, retry_unavailable=False)

    def delete_range(self, req: pb.DeleteRangeRequest, timeout: float | None) -> pb.DeleteRangeResponse:
        return self._call("DeleteRange", req, pb.DeleteRangeResponse, timeout, retry_unavailable=False)

    def txn(self, req: pb.TxnRequest, timeout: float | None) -> pb.TxnResponse:
        return self._call("Txn", req, pb.TxnResponse, timeout, retry_unavailable=_is_read_only(req))

    def compact(self, req: pb.CompactionRequest, timeout: float | None) -> pb.CompactionResponse:
        return self._call("Compact", req, pb.CompactionResponse, timeout, retry_unavailable=False)

    def _channel(self, endpoint: str) -> grpc.Channel:
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

    def _call(
        self,
        method: str,
        req: object,
        response_type: type[T],
        timeout: float | None,
        *,
        retry_unavailable: bool,
    ) -> T:
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else deadline - time.monotonic()

        while True:
            server_error: KVError | None = None
            for endpoint in self._endpoints:
                left = remaining()
                if left is not None and left <= 0:
                    raise KVError(DEADLINE_EXCEEDED)
                if not endpoint:
                    continue  # an empty endpoint never connects (etcdctl waits out its deadline too)
                stub = rpc_pb2_grpc.KVStub(self._channel(endpoint))
                try:
                    resp = getattr(stub, method)(req, timeout=left, wait_for_ready=False)
                except grpc.RpcError as e:
                    left = remaining()
                    error = _go_error(e, left is not None and left <= 0)
                    if not (isinstance(e, grpc.Call) and e.code() == grpc.StatusCode.UNAVAILABLE):
                        raise error from None
                    if _not_connected(e):
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
                raise KVError(DEADLINE_EXCEEDED)
            time.sleep(_RETRY_PAUSE if left is None else min(_RETRY_PAUSE, left))
