"""Watches over etcd's Watch stream, delivered as clientv3 (etcd 3.4's Go client) delivers them to etcdctl.

All the watches of a command share one stream (``watch -i`` adds several);
they are created one at a time, each answered by a Created response that
clientv3 does not pass on. Responses go to their watch by ID (a progress
notification with ID -1 to all). A response with an error (compacted
revision, or canceled) is delivered and ends its watch; a server-side cancel
ends it silently. If the stream fails with Unavailable or Internal, it is
opened again (on the next endpoint) and every watch resumes after the last
revision it saw; any other end (including a clean one: ``EOF``) ends every
watch with a canceled response carrying the error, as clientv3's closeErr.

Unlike clientv3 3.4, a watch resumes after the revision of its Created or
progress response rather than at it (3.4 can repeat an event there).
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.api.mvccpb import kv_pb2
from synod.ctl.rpc import Client, go_error, is_retryable, status_code
from synod.ctl.stream import BidiStream, StreamEnd

INVALID_WATCH_ID = -1
COMPACTED = "etcdserver: mvcc: required revision has been compacted"
FUTURE_REV = "etcdserver: mvcc: required revision is a future revision"
_MAX_BACKOFF = 0.1


@dataclass
class WatchResponse:
    """clientv3's WatchResponse (``events`` is None only in the response that reports ``close_error``)."""

    header: pb.ResponseHeader = field(default_factory=pb.ResponseHeader)
    events: list[kv_pb2.Event] | None = None
    compact_revision: int = 0
    canceled: bool = False
    created: bool = False
    close_error: str | None = None
    cancel_reason: str = ""

    def err(self) -> str | None:
        """The error this response reports, as etcdctl prints it, or None."""
        if self.close_error is not None:
            return self.close_error
        if self.compact_revision:
            return COMPACTED
        if self.canceled:
            if self.cancel_reason:
                return f"rpc error: code = FailedPrecondition desc = {self.cancel_reason}"
            return FUTURE_REV
        return None

    def is_progress_notify(self) -> bool:
        return (
            not self.events
            and not self.canceled
            and not self.created
            and not self.compact_revision
            and self.header.revision != 0
        )


@dataclass(eq=False)
class Watch:
    """One watch; ``request.start_revision`` moves past every revision delivered (for resuming)."""

    request: pb.WatchCreateRequest
    watch_id: int = INVALID_WATCH_ID


# What WatchSession.handle returns: responses for watches, and None when a watch has ended.
Delivery = tuple[Watch, WatchResponse | None]
Stream = BidiStream[pb.WatchRequest, pb.WatchResponse]


class WatchSession:
    """clientv3's watchGrpcStream: the watches on one Watch stream."""

    def __init__(self, client: Client, inbox: queue.Queue[tuple[object, object]]) -> None:
        self._client = client
        self._inbox = inbox
        self._stream: Stream | None = None
        self._endpoint = 0
        self._active: dict[int, Watch] = {}
        self._resuming: list[Watch] = []  # waiting for their Created response, in order
        self._cancel_sent: set[int] = set()
        self._fragments: pb.WatchResponse | None = None
        self._backoff = 0.001

    @property
    def watching(self) -> bool:
        return bool(self._active or self._resuming)

    @property
    def creating(self) -> bool:
        """Whether a watch still waits for its Created response (clientv3's Watch() blocks until then)."""
        return bool(self._resuming)

    def add(self, request: pb.WatchCreateRequest) -> Watch:
        watch = Watch(request)
        self._resuming.append(watch)
        if self._stream is None:
            self._open()
        elif len(self._resuming) == 1:
            self._send_create(watch)
        return watch

    def request_progress(self) -> None:
        if self._stream is None:
            self._open()
        assert self._stream is not None
        self._stream.send(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def handle(self, source: object, item: object) -> list[Delivery]:
        """What one item from the inbox means for the watches (items of an abandoned stream mean nothing)."""
        if source is not self._stream:
            return []
        if isinstance(item, StreamEnd):
            return self._on_end(item.error)
        assert isinstance(item, pb.WatchResponse)
        return self._on_response(item)

    # -- the stream -------------------------------------------------------------------------------

    def _open(self) -> None:
        endpoints = [e for e in self._client.endpoints if e] or [""]
        endpoint = endpoints[self._endpoint % len(endpoints)]
        stub = rpc_pb2_grpc.WatchStub(self._client.channel(endpoint or "127.0.0.1:0"))
        self._stream = BidiStream(stub.Watch, self._inbox, pb.WatchResponse)
        if self._resuming:
            self._send_create(self._resuming[0])

    def _send_create(self, watch: Watch) -> None:
        assert self._stream is not None
        req = pb.WatchCreateRequest()
        req.CopyFrom(watch.request)
        self._stream.send(pb.WatchRequest(create_request=req))

    def _send_cancel(self, watch_id: int) -> None:
        if self._stream is not None:
            self._stream.send(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=watch_id)))

    def _on_end(self, error: grpc.RpcError | None) -> list[Delivery]:
        if error is not None and is_retryable(error):
            if status_code(error) == grpc.StatusCode.UNAVAILABLE:
                self._backoff = min(self._backoff * 1.25, _MAX_BACKOFF)
                time.sleep(self._backoff)
            self._endpoint += 1
            # Every watch is created again, the established ones after those still waiting.
            self._resuming = [*self._resuming, *self._active.values()]
            self._active, self._cancel_sent, self._fragments = {}, set(), None
            for watch in self._resuming:
                watch.watch_id = INVALID_WATCH_ID
            self._open()
            return []
        message = "EOF" if error is None else str(go_error(error))
        ended = [*self._resuming, *self._active.values()]
        self._resuming, self._active, self._stream = [], {}, None
        out: list[Delivery] = []
        for watch in ended:
            out += [(watch, WatchResponse(canceled=True, close_error=message)), (watch, None)]
        return out

    # -- responses --------------------------------------------------------------------------------

    def _on_response(self, resp: pb.WatchResponse) -> list[Delivery]:
        fragments = self._fragments
        if (
            fragments is not None
            and not (resp.created or resp.canceled)
            and fragments.watch_id == resp.watch_id
        ):
            fragments.events.extend(resp.events)
            fragments.fragment = resp.fragment
            resp = fragments
        self._fragments = None
        if resp.created:
            return self._on_created(resp)
        if resp.canceled and resp.compact_revision == 0:
            # Canceled by the server: clientv3 closes the watch without passing the response on.
            self._cancel_sent.discard(resp.watch_id)
            watch = self._active.pop(resp.watch_id, None)
            return [] if watch is None else self._ended(watch)
        if resp.fragment:
            self._fragments = resp
            return []
        return self._dispatch(resp)

    def _on_created(self, resp: pb.WatchResponse) -> list[Delivery]:
        if not self._resuming:
            return []
        watch = self._resuming.pop(0)
        out: list[Delivery] = []
        if resp.watch_id == INVALID_WATCH_ID or (resp.canceled and resp.cancel_reason):
            out = [(watch, WatchResponse(canceled=True, close_error=resp.cancel_reason)), (watch, None)]
        else:
            watch.watch_id = resp.watch_id
            self._active[resp.watch_id] = watch
            if watch.request.start_revision == 0:
                watch.request.start_revision = resp.header.revision + 1
        if self._resuming:
            self._send_create(self._resuming[0])
        self._close_if_idle()
        return out

    def _dispatch(self, resp: pb.WatchResponse) -> list[Delivery]:
        wr = WatchResponse(
            header=resp.header,
            events=list(resp.events),
            compact_revision=resp.compact_revision,
            canceled=resp.canceled,
            created=resp.created,
            cancel_reason=resp.cancel_reason,
        )
        if wr.is_progress_notify() and resp.watch_id == INVALID_WATCH_ID:
            targets = list(self._active.values())
        elif (watch := self._active.get(resp.watch_id)) is not None:
            targets = [watch]
        else:
            # A response for a watch nobody has: cancel it on the server, once.
            if resp.watch_id not in self._cancel_sent:
                self._cancel_sent.add(resp.watch_id)
                self._send_cancel(resp.watch_id)
            return []
        out: list[Delivery] = []
        for watch in targets:
            if wr.events:
                watch.request.start_revision = wr.events[-1].kv.mod_revision + 1
            elif wr.header.revision:
                watch.request.start_revision = wr.header.revision + 1
            out.append((watch, wr))
            if wr.err() is not None:
                # The watch ends after its error; clientv3 tells the server too.
                del self._active[watch.watch_id]
                self._send_cancel(watch.watch_id)
                out += self._ended(watch)
        return out

    def _ended(self, watch: Watch) -> list[Delivery]:
        self._close_if_idle()
        return [(watch, None)]

    def _close_if_idle(self) -> None:
        """No watch left: the stream is closed (the next watch or progress request opens another)."""
        if not self.watching:
            self.close()
