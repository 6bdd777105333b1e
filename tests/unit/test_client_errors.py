"""Error mapping (synod.client.errors): etcd's messages to their classes, the rest by status code."""

from __future__ import annotations

import grpc
import pytest

from synod import rpctypes
from synod.client import errors

ALL = {name: e for name, e in vars(rpctypes).items() if isinstance(e, rpctypes.ErrorCode)}


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_etcd_error_has_its_class(name: str) -> None:
    e = ALL[name]
    error = errors.error_for(e.code, e.message)
    assert type(error) is not errors.EtcdError, f"{name} maps to the generic class"
    assert isinstance(error, errors.EtcdError)
    assert (error.code, error.message, str(error)) == (e.code, e.message, e.message)


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        (rpctypes.COMPACTED, errors.CompactedError),
        (rpctypes.FUTURE_REV, errors.FutureRevisionError),
        (rpctypes.EMPTY_KEY, errors.EmptyKeyError),
        (rpctypes.LEASE_NOT_FOUND, errors.LeaseNotFoundError),
        (rpctypes.LEASE_EXIST, errors.LeaseExistError),
        (rpctypes.NO_LEADER, errors.NoLeaderError),
        (rpctypes.INVALID_AUTH_TOKEN, errors.InvalidAuthTokenError),
        (rpctypes.TIMEOUT, errors.ServerTimeoutError),
        (rpctypes.TIMEOUT_DUE_TO_LEADER_FAIL, errors.ServerTimeoutError),
        (rpctypes.WATCH_CANCELED, errors.WatchCanceledError),
    ],
)
def test_named_classes(error: rpctypes.ErrorCode, cls: type[errors.EtcdError]) -> None:
    assert type(errors.error_for(error.code, error.message)) is cls


def test_unknown_messages_go_by_status_code() -> None:
    timeout = errors.error_for(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    assert type(timeout) is errors.RequestTimeoutError
    down = errors.error_for(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    assert type(down) is errors.ConnectionFailedError
    other = errors.error_for(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max")
    assert type(other) is errors.EtcdError
    assert other.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "EtcdError(RESOURCE_EXHAUSTED" in repr(other)
    # The message decides, whatever the code: etcd's texts are the API.
    by_message = errors.error_for(grpc.StatusCode.UNKNOWN, rpctypes.COMPACTED.message)
    assert type(by_message) is errors.CompactedError


def test_from_rpc_error() -> None:
    e = grpc.aio.AioRpcError(
        grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), rpctypes.LEASE_NOT_FOUND.message
    )
    error = errors.from_rpc_error(e)
    assert type(error) is errors.LeaseNotFoundError and error.code == grpc.StatusCode.NOT_FOUND
    bare = errors.from_rpc_error(grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, None, None, None))  # type: ignore[arg-type]
    assert (type(bare), bare.message) == (errors.EtcdError, "")


def test_client_closed() -> None:
    closed = errors.ClientClosedError()
    assert closed.code == grpc.StatusCode.CANCELLED and "closed" in closed.message
