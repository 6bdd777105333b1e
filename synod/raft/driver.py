"""The asyncio driver around RawNode: ticks, persists Readies to the WAL, sends, applies, reads.

The only asyncio around the core (``synod.raft.raft`` is pure). One task runs
the Ready loop:

1. take a Ready;
2. a leader hands its messages to the transport at once, in parallel with
   its disk write (its own copy counts towards a quorum only once written,
   see ``Raft._self_ack``); a follower sends only after the write, since its
   answers promise what it has stored;
3. write hard state and entries to the WAL in a thread (fsync releases the
   GIL); proposals and messages arriving meanwhile go to the core and leave in
   the next Ready: group commit;
4. apply committed entries in order (configuration changes are applied to the
   core first), answer read states, ``advance``.

Proposals made while there is no leader wait for one (etcd blocks them the
same way) until their caller gives up. Linearizable reads are batched: every
read that arrives while a ReadIndex round is out waits for the next round.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from synod.raft.codec import decode_conf_change
from synod.raft.node import ApplyFn
from synod.raft.raft import Config, ProposalDroppedError, Rng, StateType
from synod.raft.rawnode import RawNode, Ready
from synod.raft.storage import MemoryStorage
from synod.raft.types import (
    ENTRY_CONF_CHANGE_V2,
    NONE,
    ConfChangeV2,
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from synod.wal.wal import WAL, RaftSnapshotMark

log = logging.getLogger("synod.raft.driver")

_CTX = struct.Struct(">Q")
SNAPSHOT_PREPARE_TIMEOUT = 60.0


class ReadResultLike(Protocol):
    """What ``WAL.open`` read: the snapshot point, entries and hard state."""

    snapshot_index: int
    snapshot_term: int
    entries: list[Entry]
    hard_state: HardState
    raft_snapshot: RaftSnapshotMark | None


class Transport(Protocol):
    def send(self, messages: list[Message]) -> None:
        """Queue messages for their peers; never blocks, may drop (Raft retries)."""


@dataclass(slots=True)
class DriverConfig:
    member_id: int
    heartbeat_interval: float = 0.1  # seconds per tick
    election_ticks: int = 10
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 512
    read_retry: float = 0.5  # resend a ReadIndex that got no answer after this long


class NoLeaderError(Exception):
    """There is no leader to take the request."""


class RaftDriver:
    def __init__(
        self,
        cfg: DriverConfig,
        storage: MemoryStorage,
        wal: WAL,
        transport: Transport,
        *,
        applied: int,
        rng: Rng,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.storage = storage
        self._wal = wal
        self._transport = transport
        self._clock = clock
        self.node = RawNode(
            Config(
                id=cfg.member_id,
                storage=storage,
                rng=rng,
                election_tick=cfg.election_ticks,
                heartbeat_tick=1,
                applied=applied,
                max_size_per_msg=cfg.max_size_per_msg,
                max_inflight_msgs=cfg.max_inflight_msgs,
                check_quorum=cfg.check_quorum,
                pre_vote=cfg.pre_vote,
            )
        )
        self.conf_state: ConfState = storage.initial_state()[1]
        self._wakeup = asyncio.Event()
        self._wakeup.set()
        self._has_leader = asyncio.Event()
        self._stopping = False
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal")
        self.on_leader_change: list[Callable[[int, int], None]] = []  # (leader, term)
        self._leader_waiters: list[asyncio.Future[tuple[int, int]]] = []
        self._background: set[asyncio.Future[None]] = set()
        # The application's side of snapshots: fill an outgoing MsgSnap with its state, and install
        # one received from the leader (then the WAL mark is written through ``write_mark``).
        self.prepare_snapshot: Callable[[Message], Awaitable[Message]] | None = None
        self.install_snapshot: Callable[[Snapshot], Awaitable[None]] | None = None
        # ReadIndex batching: the round in flight, and the reads waiting for the next one.
        self._read_seq = 0
        self._read_inflight: tuple[bytes, list[asyncio.Future[int]], float] | None = None
        self._read_next: list[asyncio.Future[int]] = []

    # -- RaftNode ---------------------------------------------------------------

    @property
    def term(self) -> int:
        return self.node.raft.term

    @property
    def leader_id(self) -> int:
        return self.node.raft.lead

    @property
    def committed_index(self) -> int:
        return self.node.raft.raft_log.committed

    @property
    def is_leader(self) -> bool:
        return self.node.raft.state == StateType.LEADER

    def propose(self, data: bytes) -> None:
        """Hand ``data`` to Raft now; raises NoLeaderError if nobody could take it (see ``wait_leader``)."""
        try:
            self.node.propose(data)
        except ProposalDroppedError as e:
            raise NoLeaderError(str(e)) from e
        self._wakeup.set()

    def propose_conf_change(self, cc: ConfChangeV2) -> None:
        """Propose a configuration change; raises NoLeaderError if nobody could take it."""
        try:
            self.node.propose_conf_change(cc)
        except ProposalDroppedError as e:
            raise NoLeaderError(str(e)) from e
        self._wakeup.set()

    def progress_of(self, member: int) -> tuple[int, int] | None:
        """(its match, the leader's last index) if this member leads and tracks ``member``."""
        raft = self.node.raft
        pr = raft.prs.progress.get(member)
        if raft.state != StateType.LEADER or pr is None:
            return None
        return pr.match, raft.raft_log.last_index()

    async def wait_leader(self) -> None:
        await self._has_leader.wait()

    def transfer_leader(self, transferee: int) -> None:
        self.node.transfer_leader(transferee)
        self._wakeup.set()

    async def wait_leader_change(self) -> tuple[int, int]:
        """The next (leader, term) this member learns of."""
        fut: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._leader_waiters.append(fut)
        return await fut

    def step(self, m: Message) -> None:
        """A message from a peer (the transport calls this)."""
        try:
            self.node.step(m)
        except Exception as e:  # a message from a peer must never stop this member
            log.debug("dropped %s from %x: %s", m.type.name, m.from_, e)
            return
        self._wakeup.set()

    async def read_index(self) -> int:
        """An index such that a read served once it is applied is linearizable."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._read_next.append(fut)
        if self._read_inflight is None:
            self._start_read_round()
        return await fut

    def _start_read_round(self) -> None:
        if not self._read_next:
            self._read_inflight = None
            return
        self._read_seq += 1
        ctx = _CTX.pack(self._read_seq)
        waiters, self._read_next = self._read_next, []
        self._read_inflight = (ctx, waiters, self._clock())
        self.node.read_index(ctx)
        self._wakeup.set()

    def _retry_read_round(self) -> None:
        """A round that got no answer (lost message, leader change) is asked again."""
        if self._read_inflight is None:
            return
        ctx, waiters, started = self._read_inflight
        if self._clock() - started >= self.cfg.read_retry:
            self._read_inflight = (ctx, waiters, self._clock())
            self.node.read_index(ctx)
            self._wakeup.set()

    def _answer_reads(self, rd: Ready) -> None:
        for rs in rd.read_states:
            if self._read_inflight is not None and rs.request_ctx == self._read_inflight[0]:
                for fut in self._read_inflight[1]:
                    if not fut.done():
                        fut.set_result(rs.index)
                self._start_read_round()

    # -- loops ------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.heartbeat_interval)
            self.node.tick()
            self._retry_read_round()
            self._wakeup.set()

    async def run(self, apply: ApplyFn) -> None:
        ticker = asyncio.create_task(self._ticker(), name="raft-ticker")
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self.node.has_ready() and not self._stopping:
                    rd = self.node.ready()
                    await self._handle(rd, apply, loop)
        finally:
            ticker.cancel()
            self._io.shutdown(wait=True)

    async def _handle(self, rd: Ready, apply: ApplyFn, loop: asyncio.AbstractEventLoop) -> None:
        if rd.soft_state is not None:
            self._leader_changed(rd.soft_state.lead)
        leader = self.is_leader
        if any(m.type == MessageType.SNAP for m in rd.messages):
            for m in rd.messages:
                if m.type == MessageType.SNAP:
                    self._spawn(self._send_snapshot(m))
            rd.messages = [m for m in rd.messages if m.type != MessageType.SNAP]
        if rd.snapshot is not None and not rd.snapshot.empty:
            # A snapshot from the leader: the application takes its data before anything after it.
            if self.install_snapshot is None:
                raise RuntimeError("received a snapshot but nothing can install it")
            await self.install_snapshot(rd.snapshot)
            md = rd.snapshot.metadata
            self.storage.apply_snapshot(Snapshot(b"", md))
            self.conf_state = md.conf_state
        if leader and rd.messages:
            self._transport.send(rd.messages)
        if rd.entries or rd.hard_state is not None:
            sync = rd.must_sync
            await loop.run_in_executor(self._io, self._persist, rd, sync)
        if rd.entries:
            self.storage.append(rd.entries)
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)
        if not leader and rd.messages:
            self._transport.send(rd.messages)
        if rd.committed_entries:
            for e in rd.committed_entries:
                if e.type == ENTRY_CONF_CHANGE_V2:
                    self.conf_state = self.node.apply_conf_change(decode_conf_change(e.data))
            apply(rd.committed_entries)
        if rd.read_states:
            self._answer_reads(rd)
        self.node.advance(rd)

    async def _send_snapshot(self, m: Message) -> None:
        """Fill a snapshot message with the application's state (etcd's merged snapshot) and send it."""
        try:
            if self.prepare_snapshot is None:
                raise RuntimeError("no snapshot data to send")
            # A snapshot that can't be prepared in time is reported failed, so the follower is
            # probed (and offered a snapshot) again rather than left waiting.
            full = await asyncio.wait_for(self.prepare_snapshot(m), SNAPSHOT_PREPARE_TIMEOUT)
            self._transport.send([full])
        except Exception:
            log.exception("member %x: sending a snapshot to %x failed", self.cfg.member_id, m.to)
            self.node.report_snapshot(m.to, failed=True)
        else:
            self.node.report_snapshot(m.to, failed=False)
        self._wakeup.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def write_mark(self, mark: RaftSnapshotMark) -> None:
        """Record a snapshot mark in the WAL (in the I/O thread, after writes already queued)."""
        await asyncio.get_running_loop().run_in_executor(self._io, self._wal.save_snapshot, mark)

    def _persist(self, rd: Ready, sync: bool) -> None:
        self._wal.save(rd.hard_state, rd.entries)
        if sync:
            self._wal.sync()

    def _leader_changed(self, lead: int) -> None:
        if lead == NONE:
            self._has_leader.clear()
        else:
            self._has_leader.set()
            if self._read_inflight is not None:
                # The round may have been dropped for want of a leader: ask the new one.
                ctx, waiters, _ = self._read_inflight
                self._read_inflight = (ctx, waiters, self._clock())
                self.node.read_index(ctx)
        log.info("member %x: leader is now %x at term %d", self.cfg.member_id, lead, self.term)
        for callback in self.on_leader_change:
            callback(lead, self.term)
        changed, self._leader_waiters = self._leader_waiters, []
        for waiter in changed:
            if not waiter.done():
                waiter.set_result((lead, self.term))

    async def snapshot(self, index: int, catch_up: int) -> None:
        """Record that the state up to ``index`` (applied, and committed to the backend) is a snapshot.

        The in-memory log keeps ``catch_up`` entries before it for followers a little behind (further
        behind, they get the backend); the WAL keeps only what follows it. The WAL is written in the
        driver's I/O thread, after any write already queued there.
        """
        storage = self.storage
        if index <= storage.snapshot().metadata.index:
            return
        term = storage.term(index)
        storage.create_snapshot(index, self.conf_state, b"")
        mark = RaftSnapshotMark(index, term, self.conf_state)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._io, self._wal.save_snapshot, mark)
        await loop.run_in_executor(self._io, self._wal.release_to, index)
        compact_to = index - catch_up
        if compact_to > storage.first_index():
            storage.compact(compact_to)
        log.info(
            "member %x: snapshot at index %d (log kept from %d)",
            self.cfg.member_id,
            index,
            storage.first_index(),
        )

    async def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()
        for task in list(self._background):
            task.cancel()
        for fut in [*self._read_next, *(self._read_inflight[1] if self._read_inflight else [])]:
            if not fut.done():
                fut.set_exception(NoLeaderError("stopped"))


BOOTSTRAP_INDEX = 1  # every member of a new cluster starts from the same snapshot: index 1, term 1
BOOTSTRAP_TERM = 1


def restore_storage(
    wal_read: ReadResultLike | None, conf_state: ConfState, *, joining: bool = False
) -> MemoryStorage:
    """The in-memory Raft log of a member: its snapshot point, then what its WAL holds after it.

    A new member (``wal_read`` None) starts from the bootstrap snapshot, which holds the
    initial configuration (or, joining a running cluster, from nothing); a member that took or
    installed a snapshot starts from its mark.
    """
    storage = MemoryStorage()
    if wal_read is None and joining:
        return storage  # a member added to a running cluster starts empty: its leader sends a snapshot
    if wal_read is None:
        index, term = BOOTSTRAP_INDEX, BOOTSTRAP_TERM
    elif wal_read.raft_snapshot is not None:
        mark = wal_read.raft_snapshot
        index, term, conf_state = mark.index, mark.term, mark.conf_state
    else:
        index, term = wal_read.snapshot_index, wal_read.snapshot_term
    if index > 0:  # (a member that joined and never got its first snapshot has none)
        storage.apply_snapshot(Snapshot(b"", SnapshotMetadata(conf_state, index=index, term=term)))
    if wal_read is None:
        # As if the bootstrap entries were committed in term 1: the first leader is elected in
        # term 2, the term etcd's first leader has.
        storage.set_hard_state(HardState(term=term, commit=index))
    else:
        entries = [e for e in wal_read.entries if e.index > index]
        if entries:
            storage.append(entries)
        if wal_read.hard_state != HardState():
            storage.set_hard_state(wal_read.hard_state)
    return storage
