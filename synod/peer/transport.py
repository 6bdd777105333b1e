"""Raft messages between members, over TCP on the peer URLs.

Each member dials every peer once and keeps one outbound connection to each
(reconnecting with backoff); messages to a peer are queued and everything
queued in one event-loop turn goes out in one write (pipelined and batched).
A peer's inbound connections are only read. A connection opens with a hello
naming the cluster, the sender and the receiver, so a member of another
cluster (or a stale address) is refused instead of fed into Raft.

Framing: hello = ``b"SYNODPEER1" | u64 cluster | u64 from | u64 to``, then
frames of ``u32 length | encoded message`` (``synod.raft.codec``).

Messages to an unreachable peer are dropped and Raft is told
(``report_unreachable``), so it probes again instead of assuming delivery.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import struct
from collections.abc import Callable
from urllib.parse import urlsplit

from synod.raft.codec import decode_message, encode_message
from synod.raft.types import Message

log = logging.getLogger("synod.peer")

_MAGIC = b"SYNODPEER1"
_QUERY = b"SYNODPEERQ"  # a member joining with --initial-cluster-state existing asks for the members
_REMOVED = b"REMOVED"  # the answer to a member that was removed from the cluster
_HELLO = struct.Struct(">10sQQQ")
_LEN = struct.Struct(">I")
_U64 = struct.Struct(">Q")
MAX_FRAME = 64 << 20
QUEUE_LIMIT = 4096  # messages waiting for one peer before new ones are dropped
DIAL_TIMEOUT = 1.0
BACKOFF_MIN, BACKOFF_MAX = 0.05, 1.0


def url_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "//" in url else f"http://{url}")
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"peer URL {url!r} has no host and port")
    return parts.hostname, parts.port


class _Peer:
    """The outbound connection to one peer and its queue."""

    def __init__(self, transport: PeerTransport, member_id: int, urls: list[str]) -> None:
        self.transport = transport
        self.id = member_id
        self.urls = urls
        self.queue: collections.deque[bytes] = collections.deque()
        self.ready = asyncio.Event()
        self.connected = False
        self.connected_at: float | None = None  # loop time the current connection was made
        self.task = asyncio.create_task(self._run(), name=f"peer-{member_id:x}")

    def enqueue(self, frame: bytes) -> None:
        if not self.connected or len(self.queue) >= QUEUE_LIMIT:
            self.transport.report_unreachable(self.id)
            return
        self.queue.append(frame)
        self.ready.set()

    async def _run(self) -> None:
        backoff = BACKOFF_MIN
        attempt = 0
        while True:
            url = self.urls[attempt % len(self.urls)]
            attempt += 1
            try:
                host, port = url_address(url)
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), DIAL_TIMEOUT)
            except (OSError, TimeoutError, ValueError) as e:
                log.debug("cannot reach peer %x at %s: %s", self.id, url, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_MIN
            try:
                await self._stream(reader, writer)
            except (OSError, asyncio.IncompleteReadError) as e:
                log.info("lost the connection to peer %x: %s", self.id, e)
            finally:
                self.connected = False
                self.connected_at = None
                self.queue.clear()
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            self.transport.report_unreachable(self.id)
            await asyncio.sleep(backoff)

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        t = self.transport
        writer.write(_HELLO.pack(_MAGIC, t.cluster_id, t.member_id, self.id))
        await writer.drain()
        self.connected = True
        self.connected_at = asyncio.get_running_loop().time()
        log.info("connected to peer %x", self.id)
        closed = asyncio.ensure_future(reader.read())  # the peer writes only to refuse: any end means gone
        try:
            while True:
                waiter = asyncio.ensure_future(self.ready.wait())
                done, _ = await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed in done:
                    waiter.cancel()
                    if closed.result().startswith(_REMOVED):
                        self.transport.on_removed()
                    raise ConnectionResetError("peer closed the connection")
                self.ready.clear()
                frames = list(self.queue)
                self.queue.clear()
                writer.write(b"".join(frames))
                await writer.drain()
        finally:
            closed.cancel()


class PeerTransport:
    """Sends and receives Raft messages for one member (implements the driver's Transport)."""

    def __init__(
        self,
        member_id: int,
        cluster_id: int,
        on_message: Callable[[Message], None],
        report_unreachable: Callable[[int], None] = lambda member: None,
        members: Callable[[], bytes] = lambda: b"",
        is_removed: Callable[[int], bool] = lambda member: False,
    ) -> None:
        self.member_id = member_id
        self._members = members
        self._is_removed = is_removed
        # Called when a peer says this member was removed from the cluster (etcd answers 410 Gone).
        self.on_removed: Callable[[], None] = lambda: None
        self.cluster_id = cluster_id
        self._on_message = on_message
        self.report_unreachable = report_unreachable
        self._peers: dict[int, _Peer] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._inbound: set[asyncio.Task[None]] = set()

    async def listen(self, urls: list[str]) -> None:
        for url in urls:
            host, port = url_address(url)
            self._servers.append(await asyncio.start_server(self._accept, host, port, reuse_address=True))

    def add_peer(self, member_id: int, urls: list[str]) -> None:
        if member_id == self.member_id or member_id in self._peers:
            return
        self._peers[member_id] = _Peer(self, member_id, urls)

    def remove_peer(self, member_id: int) -> None:
        peer = self._peers.pop(member_id, None)
        if peer is not None:
            peer.task.cancel()

    def connected_for(self, member_id: int) -> float | None:
        """Seconds this member has been connected to ``member_id`` without a break (None: it is not)."""
        peer = self._peers.get(member_id)
        if peer is None or peer.connected_at is None:
            return None
        return asyncio.get_running_loop().time() - peer.connected_at

    def send(self, messages: list[Message]) -> None:
        for m in messages:
            peer = self._peers.get(m.to)
            if peer is None:
                continue
            data = encode_message(m)
            peer.enqueue(_LEN.pack(len(data)) + data)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inbound.add(task)
        try:
            magic, cluster, sender, receiver = _HELLO.unpack(await reader.readexactly(_HELLO.size))
            if magic == _QUERY:
                members = self._members()
                writer.write(_U64.pack(self.cluster_id) + _LEN.pack(len(members)) + members)
                await writer.drain()
                return
            if magic != _MAGIC:
                log.warning("refused a peer connection: not a synod peer")
                return
            if self._is_removed(sender):
                log.info("refused a peer connection from %x: it was removed from the cluster", sender)
                writer.write(_REMOVED)
                await writer.drain()
                return
            if cluster != self.cluster_id or receiver != self.member_id:
                log.warning(
                    "refused a peer connection from %x: cluster %x, to %x (this is %x of cluster %x)",
                    sender,
                    cluster,
                    receiver,
                    self.member_id,
                    self.cluster_id,
                )
                return
            while True:
                (size,) = _LEN.unpack(await reader.readexactly(4))
                if size > MAX_FRAME:
                    log.warning("peer %x sent a %d-byte frame; closing", sender, size)
                    return
                m = decode_message(await reader.readexactly(size))
                if self._is_removed(sender):  # removed while connected: tell it, then hang up
                    writer.write(_REMOVED)
                    await writer.drain()
                    return
                if m.from_ != sender:
                    log.warning("peer %x sent a message from %x; closing", sender, m.from_)
                    return
                self._on_message(m)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except (ValueError, struct.error) as e:
            log.warning("malformed message from a peer: %s", e)
        finally:
            self._inbound.discard(task)
            writer.close()

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        tasks = [p.task for p in self._peers.values()] + list(self._inbound)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._peers.clear()


async def fetch_members(urls: list[str], timeout: float = 5.0) -> tuple[int, bytes]:
    """(cluster ID, encoded MemberListResponse) from the first member at ``urls`` that answers."""
    errors = []
    for url in urls:
        try:
            host, port = url_address(url)
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            try:
                writer.write(_HELLO.pack(_QUERY, 0, 0, 0))
                await writer.drain()
                (cluster,) = _U64.unpack(await asyncio.wait_for(reader.readexactly(8), timeout))
                (size,) = _LEN.unpack(await asyncio.wait_for(reader.readexactly(4), timeout))
                return cluster, await asyncio.wait_for(reader.readexactly(size), timeout)
            finally:
                writer.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            errors.append(f"{url}: {e}")
    raise ConnectionError("could not get the cluster's members from any peer: " + "; ".join(errors))
