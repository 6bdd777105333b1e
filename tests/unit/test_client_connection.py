"""The connection's decisions (synod.client.connection): which failures are retried, failover, backoff.

Calls go to fake multicallables that answer a scripted error or response per attempt and
record which endpoint each attempt went to; no sockets.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import grpc
import pytest

from synod import rpctypes
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.client import errors
from synod.client.connection import Connection, Options, parse_endpoint

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
NOT_SENT = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Connection refused"
MAYBE_SENT = "Socket closed"


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class Script:
    """Answers attempt i with outcomes[i] (an exception to raise, or a response); records endpoints."""

    def __init__(self, conn: Connection, outcomes: list[Any]) -> None:
        self.outcomes = list(outcomes)
        self.endpoints: list[int] = []
        self.metadata: list[Any] = []
        conn._multicallable = self.multicallable  # type: ignore[method-assign]

    def multicallable(self, index: int, path: str, response: Any) -> Any:
        async def call(request: Any, timeout: float | None = None, metadata: Any = None) -> Any:
            self.endpoints.append(index)
            self.metadata.append(metadata)
            outcome = self.outcomes.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        return call


def connection(n: int = 3, timeout: float | None = 5.0, **kw: Any) -> Connection:
    conn = Connection([f"127.0.0.1:{2379 + i}" for i in range(n)], Options(timeout=timeout), **kw)
    conn.backoff = lambda attempt: 0.0  # type: ignore[method-assign]
    return conn


def call(conn: Connection, repeatable: bool) -> Any:
    return asyncio.run(conn.call("/x/Y", pb.RangeRequest(), pb.RangeResponse, repeatable=repeatable))


@pytest.mark.parametrize(
    ("code", "message", "repeatable", "retried"),
    [
        (UNAVAILABLE, NOT_SENT, True, True),
        (UNAVAILABLE, NOT_SENT, False, True),  # never sent: safe to send again
        (UNAVAILABLE, MAYBE_SENT, True, True),
        (UNAVAILABLE, MAYBE_SENT, False, False),  # may have been applied
        (UNAVAILABLE, rpctypes.NO_LEADER.message, True, True),
        (UNAVAILABLE, rpctypes.NO_LEADER.message, False, False),
        (UNAVAILABLE, rpctypes.TIMEOUT.message, False, False),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", True, False),
        (grpc.StatusCode.INVALID_ARGUMENT, rpctypes.EMPTY_KEY.message, True, False),
        (grpc.StatusCode.OUT_OF_RANGE, rpctypes.COMPACTED.message, True, False),
        (grpc.StatusCode.NOT_FOUND, rpctypes.LEASE_NOT_FOUND.message, True, False),
        (grpc.StatusCode.CANCELLED, "Cancelled", True, False),
    ],
)
def test_retryable(code: grpc.StatusCode, message: str, repeatable: bool, retried: bool) -> None:
    error = errors.error_for(code, message)
    assert Connection._retryable(error, repeatable) is retried
    assert Connection._retryable(errors.ClientClosedError(), True) is False


def test_repeatable_calls_fail_over_round_the_endpoints() -> None:
    conn = connection(3)
    answer = pb.RangeResponse(count=1)
    script = Script(conn, [rpc_error(UNAVAILABLE, MAYBE_SENT)] * 4 + [answer])
    assert call(conn, repeatable=True) == answer
    assert script.endpoints == [0, 1, 2, 0, 1]  # each failure moves to the next endpoint, round the list
    assert conn.pinned == 1  # and the client stays on the one that answered


def test_a_write_that_may_have_been_applied_is_not_retried() -> None:
    conn = connection(3)
    script = Script(conn, [rpc_error(UNAVAILABLE, MAYBE_SENT), pb.RangeResponse()])
    with pytest.raises(errors.ConnectionFailedError):
        call(conn, repeatable=False)
    assert script.endpoints == [0]
    # One that certainly was not sent is.
    script = Script(conn, [rpc_error(UNAVAILABLE, NOT_SENT), pb.RangeResponse(count=2)])
    assert call(conn, repeatable=False).count == 2
    assert script.endpoints == [0, 1]


def test_errors_of_etcd_are_raised_at_once() -> None:
    conn = connection(2)
    script = Script(conn, [rpc_error(grpc.StatusCode.OUT_OF_RANGE, rpctypes.FUTURE_REV.message)])
    with pytest.raises(errors.FutureRevisionError):
        call(conn, repeatable=True)
    assert script.endpoints == [0] and conn.pinned == 0


def test_retries_stop_at_the_deadline() -> None:
    conn = connection(2, timeout=0.2)
    conn.backoff = lambda attempt: 0.05  # type: ignore[method-assign]
    Script(conn, [rpc_error(UNAVAILABLE, NOT_SENT)] * 100)
    with pytest.raises(errors.RequestTimeoutError) as e:
        call(conn, repeatable=True)
    assert "deadline" in e.value.message
    # A server's UNAVAILABLE error is kept as it is when the deadline ends the retries.
    Script(conn, [rpc_error(UNAVAILABLE, rpctypes.NO_LEADER.message)] * 100)
    with pytest.raises(errors.NoLeaderError):
        call(conn, repeatable=True)


def test_an_invalid_token_authenticates_again_once() -> None:
    conn = connection(1, user="u", password="p")
    tokens = iter(["t1", "t2", "t3"])

    async def authenticate(deadline: float | None, stale: Any = None) -> None:
        conn.metadata = (("token", next(tokens)),)

    conn.authenticate = authenticate  # type: ignore[method-assign]
    bad = rpc_error(grpc.StatusCode.UNAUTHENTICATED, rpctypes.INVALID_AUTH_TOKEN.message)
    script = Script(conn, [bad, pb.RangeResponse(count=3)])
    assert call(conn, repeatable=False).count == 3
    assert script.metadata == [(("token", "t1"),), (("token", "t2"),)]
    script = Script(conn, [bad, bad])  # refused twice: the second is the caller's
    with pytest.raises(errors.InvalidAuthTokenError):
        call(conn, repeatable=True)


def test_backoff_bounds() -> None:
    conn = Connection(["a:1"], Options(), rng=random.Random(7))
    for attempt in range(1, 40):
        base = min(1.0, 0.025 * 2 ** (attempt - 1))
        for _ in range(20):
            pause = conn.backoff(attempt)
            assert base / 2 <= pause <= base  # jittered in [base/2, base], never over 1 s
    assert conn.backoff(1) <= 0.025 and conn.backoff(30) >= 0.5


def test_failover_and_endpoints() -> None:
    conn = Connection(["a:1", "http://b:2/", "https://c:3"], Options())
    assert [e for e in conn.endpoints] == [("a:1", False), ("b:2", False), ("c:3", True)]
    conn.failover(0)
    assert conn.pinned == 1
    conn.failover(0)  # a stale failure (someone moved on already) changes nothing
    assert conn.pinned == 1
    conn.failover(1)
    conn.failover(2)
    assert conn.pinned == 0
    single = Connection(["a:1"], Options())
    single.failover(0)
    assert single.pinned == 0
    assert parse_endpoint("unix:///tmp/s") == ("unix:///tmp/s", False)
    with pytest.raises(ValueError):
        Connection([], Options())
    with pytest.raises(ValueError):
        Connection(["a:1"], Options(), user="u")


def test_a_closed_connection_refuses_calls() -> None:
    conn = connection(1)
    asyncio.run(conn.close())
    with pytest.raises(errors.ClientClosedError):
        conn.channel()
