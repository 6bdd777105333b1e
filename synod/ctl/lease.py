"""synodctl's Lease calls: unary ones with failover (rpc.py), keep-alives over the LeaseKeepAlive stream.

``keep_alive`` renews as clientv3 3.4's lessor does: a request at once, then
one a third of the TTL after each answer (every 0.5 s until the first answer);
it ends when the server answers TTL 0 (the lease is gone), or when no answer
came before the deadline (the dial timeout plus one second at first, then the
TTL), and reopens a failed stream after 0.5 s. ``keep_alive_once`` retries on
Unavailable and Internal errors only, as clientv3 does.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

from synod import rpctypes
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.ctl.rpc import CallError, Client, go_error, is_retryable
from synod.ctl.stream import BidiStream, StreamEnd

RETRY_CONN_WAIT = 0.5  # clientv3's retryConnWait: also its keep-alive send loop's tick
DEFAULT_TTL = 5.0  # clientv3's first keep-alive deadline when there is no dial timeout
_RETRY_PAUSE = 0.05

KeepAliveStream = BidiStream[pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse]


class LeaseClient(Client):
    """Lease RPCs against the first endpoint that answers."""

    def grant(self, ttl: int, timeout: float | None) -> pb.LeaseGrantResponse:
        req = pb.LeaseGrantRequest(TTL=ttl)
        return self.call(
            rpc_pb2_grpc.LeaseStub, "LeaseGrant", req, pb.LeaseGrantResponse, timeout, retry_unavailable=True
        )

    def revoke(self, lease_id: int, timeout: float | None) -> pb.LeaseRevokeResponse:
        req = pb.LeaseRevokeRequest(ID=lease_id)
        return self.call(
            rpc_pb2_grpc.LeaseStub,
            "LeaseRevoke",
            req,
            pb.LeaseRevokeResponse,
            timeout,
            retry_unavailable=True,
        )

    def time_to_live(self, lease_id: int, keys: bool, timeout: float | None) -> pb.LeaseTimeToLiveResponse:
        req = pb.LeaseTimeToLiveRequest(ID=lease_id, keys=keys)
        return self.call(
            rpc_pb2_grpc.LeaseStub,
            "LeaseTimeToLive",
            req,
            pb.LeaseTimeToLiveResponse,
            timeout,
            retry_unavailable=True,
        )

    def leases(self, timeout: float | None) -> pb.LeaseLeasesResponse:
        req = pb.LeaseLeasesRequest()
        return self.call(
            rpc_pb2_grpc.LeaseStub,
            "LeaseLeases",
            req,
            pb.LeaseLeasesResponse,
            timeout,
            retry_unavailable=True,
        )

    # -- keep-alives ------------------------------------------------------------------------------

    def _open(self, attempt: int, inbox: queue.Queue[tuple[object, object]]) -> KeepAliveStream:
        endpoints = [e for e in self.endpoints if e] or ["127.0.0.1:0"]
        stub = rpc_pb2_grpc.LeaseStub(self.channel(endpoints[attempt % len(endpoints)]))
        return BidiStream(stub.LeaseKeepAlive, inbox, pb.LeaseKeepAliveResponse)

    def keep_alive_once(self, lease_id: int) -> pb.LeaseKeepAliveResponse:
        """One renewal; CallError (``requested lease not found`` if the lease is gone)."""
        attempt = 0
        while True:
            inbox: queue.Queue[tuple[object, object]] = queue.Queue()
            stream = self._open(attempt, inbox)
            stream.send(pb.LeaseKeepAliveRequest(ID=lease_id))
            _, item = inbox.get()
            stream.close()
            if isinstance(item, pb.LeaseKeepAliveResponse):
                if item.TTL <= 0:
                    raise CallError(rpctypes.LEASE_NOT_FOUND.message)
                return item
            assert isinstance(item, StreamEnd)
            if item.error is None:
                raise CallError("EOF")
            if not is_retryable(item.error):
                raise go_error(item.error)
            attempt += 1
            time.sleep(_RETRY_PAUSE)

    def keep_alive(self, lease_id: int) -> Iterator[pb.LeaseKeepAliveResponse]:
        """Each renewal's answer, until the lease is gone or answers stop coming."""
        inbox: queue.Queue[tuple[object, object]] = queue.Queue()
        first_timeout = self.dial_timeout + 1.0 if self.dial_timeout > 0 else DEFAULT_TTL
        deadline = time.monotonic() + first_timeout
        next_keep_alive = time.monotonic()
        attempt = 0
        stream: KeepAliveStream | None = self._open(attempt, inbox)
        reopen_at = 0.0
        next_send = 0.0
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return
                if stream is None and now >= reopen_at:
                    attempt += 1
                    stream = self._open(attempt, inbox)
                if stream is not None and now >= next_send:
                    if next_keep_alive <= now:
                        stream.send(pb.LeaseKeepAliveRequest(ID=lease_id))
                    next_send = now + RETRY_CONN_WAIT
                wake = min(deadline, next_send if stream is not None else reopen_at)
                try:
                    source, item = inbox.get(timeout=max(wake - time.monotonic(), 0.0))
                except queue.Empty:
                    continue
                if source is not stream:
                    continue
                if isinstance(item, StreamEnd):
                    stream = None
                    reopen_at = time.monotonic() + RETRY_CONN_WAIT
                    continue
                assert isinstance(item, pb.LeaseKeepAliveResponse)
                if lease_id != item.ID:
                    continue
                if item.TTL <= 0:
                    return
                now = time.monotonic()
                next_keep_alive = now + item.TTL / 3
                deadline = now + item.TTL
                yield item
        finally:
            if stream is not None:
                stream.close()
