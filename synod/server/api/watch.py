"""The Watch service: one bidirectional stream carries many watchers (etcd's ``serverWatchStream``).

Per stream, requests create, cancel and ask for progress; responses leave in
order through one queue: control responses (created, canceled, progress)
always fit, event responses fit while fewer than ``STREAM_BUFFER`` plus one
per watcher of the stream are waiting (a commit offers every watcher its
response before the writer runs, so a thousand watchers on one stream must
not overflow it at once). A full buffer makes the watchable store park the
watcher as a victim, so a client that does not read holds up only itself;
when the writer has drained the queue, the victims are retried at once.

Differences from etcd 3.4, on purpose:
* a ``WatchProgressRequest`` is answered once every watcher on the stream is
  synced (as etcd 3.5 does), so its revision really is a bookmark;
* the header revision of a catch-up response is the last revision it covers.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.mvcc.store import PUT, Change, ErrCompacted
from synod.mvcc.watchable_store import WatchableStore, Watcher, WatchResponse
from synod.server.api.methods import StreamHandler, StreamWrite
from synod.server.api.watch_codec import encode_event, encode_watch_response
from synod.server.etcdserver import EtcdServer

STREAM_BUFFER = 128  # event responses waiting to be written, per stream, beyond one per watcher
INVALID_WATCH_ID = -1
ERR_EMPTY_RANGE = "mvcc: watcher range is empty"
ERR_DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"


class _Options:
    __slots__ = ("fragment", "prev_kv", "progress_notify", "quiet")

    def __init__(self, cr: pb.WatchCreateRequest) -> None:
        self.prev_kv = cr.prev_kv
        self.fragment = cr.fragment
        self.progress_notify = cr.progress_notify
        self.quiet = True  # no events sent since the last progress tick


class WatchService:
    def __init__(self, server: EtcdServer, progress_interval: float) -> None:
        self._server = server
        self._progress_interval = progress_interval
        self._waiting_progress: set[WatchStream] = set()
        self._header_rev = -1
        self._header_bytes = b""
        server.after_watch_sync.append(self._answer_progress_requests)

    @property
    def watchable(self) -> WatchableStore:
        return self._server.watchable

    def streams(self) -> dict[str, StreamHandler]:
        return {"/etcdserverpb.Watch/Watch": self.watch}

    async def watch(self, requests: AsyncIterator[bytes], write: StreamWrite) -> None:
        stream = WatchStream(self)
        writer = asyncio.ensure_future(stream.write_loop(write))
        reader = asyncio.ensure_future(self._read(requests, stream))
        ticker = asyncio.ensure_future(stream.progress_loop(self._progress_interval))
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failed write or a bad request ends the stream with its error
            if writer not in done:
                # The client closed its side: as etcd, the watchers go on until it cancels the call
                # (a JSON gateway watch whose request body has ended is one).
                await writer
        finally:
            for task in (reader, writer, ticker):
                task.cancel()
            stream.close()
            self._waiting_progress.discard(stream)

    @staticmethod
    async def _read(requests: AsyncIterator[bytes], stream: WatchStream) -> None:
        server = stream._server
        async for raw in requests:
            req = pb.WatchRequest.FromString(raw)
            denied = ""
            if req.HasField("create_request"):
                cr = req.create_request
                denied = await server.watch_denied(cr.key, cr.range_end)
            stream.handle(req, denied)

    def header(self, revision: int) -> bytes:
        """The encoded response header at ``revision`` (the last one is cached: many watchers share it)."""
        if revision != self._header_rev:
            s = self._server
            self._header_bytes = pb.ResponseHeader(
                cluster_id=s.cluster_id, member_id=s.member_id, revision=revision, raft_term=s.term
            ).SerializeToString()
            self._header_rev = revision
        return self._header_bytes

    def wait_progress(self, stream: WatchStream) -> None:
        self._waiting_progress.add(stream)

    def _answer_progress_requests(self) -> None:
        for stream in list(self._waiting_progress):
            if stream.all_synced():
                self._waiting_progress.discard(stream)
                stream.send_progress()


class WatchStream:
    """One client stream: its watchers, and the queue of responses to write."""

    def __init__(self, service: WatchService) -> None:
        self._service = service
        self._watchable = service.watchable
        self._server = service._server
        self._watchers: dict[int, Watcher] = {}
        self._options: dict[int, _Options] = {}
        self._next_id = 0
        self._queue: collections.deque[bytes | WatchResponse] = collections.deque()
        self._waiting_events = 0
        self._refused = False  # a response was refused since the queue last drained
        self._ready = asyncio.Event()
        self._max_bytes = self._server.cfg.max_request_bytes

    # -- requests ---------------------------------------------------------------

    def handle(self, req: pb.WatchRequest, denied: str = "") -> None:
        """``denied``: why auth refuses this create request (etcd's cancel reason)."""
        which = req.WhichOneof("request_union")
        if which == "create_request":
            self._create(req.create_request, denied)
        elif which == "cancel_request":
            self._cancel(req.cancel_request.watch_id)
        elif which == "progress_request":
            if self.all_synced():
                self.send_progress()
            else:
                self._service.wait_progress(self)

    def _create(self, cr: pb.WatchCreateRequest, denied: str = "") -> None:
        key = cr.key or b"\x00"
        end: bytes | None = None if not cr.range_end else b"" if cr.range_end == b"\x00" else cr.range_end
        rev = self._server.revision
        error = ""
        watch_id = cr.watch_id
        if denied:
            error = denied
        elif end and key >= end:
            error = ERR_EMPTY_RANGE
        elif watch_id == 0:  # the server picks
            while self._next_id in self._watchers:
                self._next_id += 1
            watch_id = self._next_id
            self._next_id += 1
        elif watch_id in self._watchers:
            error = ERR_DUPLICATE_ID
        if error:
            self._control(rev, INVALID_WATCH_ID, created=True, canceled=True, cancel_reason=error)
            return
        # The created response goes first: every event of this watcher follows it in the queue.
        self._control(rev, watch_id, created=True)
        filters = set(cr.filters)
        self._options[watch_id] = _Options(cr)
        self._watchers[watch_id] = self._watchable.watch(
            watch_id,
            key,
            end,
            cr.start_revision or rev + 1,
            self,
            no_put=pb.WatchCreateRequest.NOPUT in filters,
            no_delete=pb.WatchCreateRequest.NODELETE in filters,
        )
        if len(self._watchable.unsynced):
            self._server.kick_watchers()

    def _cancel(self, watch_id: int) -> None:
        w = self._watchers.pop(watch_id, None)
        if w is None:
            return  # etcd answers nothing for an unknown watch
        self._options.pop(watch_id, None)
        self._watchable.cancel(w)
        self._control(self._server.revision, watch_id, canceled=True)

    def close(self) -> None:
        for w in self._watchers.values():
            self._watchable.cancel(w)
        self._watchers.clear()

    def all_synced(self) -> bool:
        return all(w.compacted or self._watchable.is_synced(w) for w in self._watchers.values())

    def send_progress(self) -> None:
        self._control(self._server.revision, INVALID_WATCH_ID)

    # -- responses ----------------------------------------------------------------

    def try_send(self, response: WatchResponse) -> bool:
        """The watchable store's delivery (WatchSink)."""
        if self._waiting_events >= STREAM_BUFFER + len(self._watchers):
            self._refused = True
            return False
        self._waiting_events += 1
        self._queue.append(response)
        self._ready.set()
        return True

    def _control(self, revision: int, watch_id: int, **flags: bool | str) -> None:
        header = self._service.header(revision)
        self._queue.append(encode_watch_response(header, watch_id, **flags))  # type: ignore[arg-type]
        self._ready.set()

    async def write_loop(self, write: StreamWrite) -> None:
        queue = self._queue
        while True:
            while not queue:
                if self._refused:
                    self._refused = False
                    self._server.kick_watchers()  # room again: retry the victims now
                self._ready.clear()
                await self._ready.wait()
            item = queue.popleft()
            if isinstance(item, bytes):
                await write(item)
                continue
            self._waiting_events -= 1
            for data in self._encode(item):
                await write(data)

    def _encode(self, resp: WatchResponse) -> list[bytes]:
        header = self._service.header(resp.revision)
        if resp.compact_revision:
            return [
                encode_watch_response(
                    header, resp.watch_id, canceled=True, compact_revision=resp.compact_revision
                )
            ]
        options = self._options.get(resp.watch_id)
        prev_kv = options is not None and options.prev_kv
        events = [self._event_bytes(c, prev_kv) for c in resp.changes]
        if options is not None and events:
            options.quiet = False
        if options is None or not options.fragment or len(events) < 2:
            return [encode_watch_response(header, resp.watch_id, events)]
        return self._fragments(header, resp.watch_id, events)

    def _event_bytes(self, change: Change, prev_kv: bool) -> bytes:
        if not prev_kv or (change.type == PUT and change.kv.create_revision == change.kv.mod_revision):
            if change.event_bytes is None:
                change.event_bytes = encode_event(change)
            return change.event_bytes
        if change.prev_event_bytes is None:
            change.prev_event_bytes = encode_event(change, self._prev_kv(change))
        return change.prev_event_bytes

    def _prev_kv(self, change: Change) -> bytes | None:
        """The key's value just before the change (none if it did not exist or was compacted)."""
        try:
            kvs = self._server.store.read().range(change.kv.key, None, rev=change.kv.mod_revision - 1).kvs
        except ErrCompacted:
            return None
        return kvs[0].SerializeToString() if kvs else None

    def _fragments(self, header: bytes, watch_id: int, events: list[bytes]) -> list[bytes]:
        """etcd's fragmenting: responses under --max-request-bytes, all but the last flagged."""
        whole = encode_watch_response(header, watch_id, events)
        if len(whole) < self._max_bytes:
            return [whole]
        out: list[bytes] = []
        i = 0
        while i < len(events):
            j = i + 1  # a fragment holds at least one event
            while (
                j < len(events)
                and len(encode_watch_response(header, watch_id, events[i : j + 1], fragment=True))
                < self._max_bytes
            ):
                j += 1
            out.append(encode_watch_response(header, watch_id, events[i:j], fragment=j < len(events)))
            i = j
        return out

    async def progress_loop(self, interval: float) -> None:
        """Notify progress, every interval, to watchers that asked for it and got no events meanwhile."""
        while True:
            await asyncio.sleep(interval)
            for watch_id, options in self._options.items():
                if not options.progress_notify:
                    continue
                if options.quiet:
                    self._watchable.progress(self._watchers[watch_id])
                options.quiet = True
