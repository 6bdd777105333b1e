"""EtcdServer: turns requests into log entries and applies what is committed.

Write path: a request becomes an ``InternalRaftRequest`` with a fresh ID; the
caller parks on that ID (``Wait``) and the entry is proposed to the node. The
node makes it durable (and, with Raft, replicated) and hands it back
committed; ``_apply`` runs it against the store and completes the caller.
Reads do not go through the log: a linearizable read waits until everything
committed before it arrived is applied; a serializable read reads at once.

Crash safety: the backend stores the index of the last applied entry (the
consistent index) in the same transaction as its effects, so at start the
entries the WAL holds beyond it are applied again, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import fcntl
import logging
import os
import random
import shutil
import struct
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
import grpc.aio
from grpc import StatusCode

from synod import rpctypes
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb.raft_internal_pb2 import InternalAuthenticateRequest, InternalRaftRequest
from synod.api.membershippb import membership_pb2 as mpb
from synod.auth import passwords
from synod.auth.caller import CALLER_TOKEN
from synod.auth.store import NOBODY, SERVER, AuthInfo, AuthStore, hash_for_log
from synod.auth.tokens import simple_token_index, token_provider
from synod.backend import meta
from synod.backend.backend import Backend
from synod.lease.lessor import Lessor
from synod.mvcc.store import ErrCompacted, ErrFutureRev, KVStore
from synod.mvcc.watchable_store import WatchableStore
from synod.peer.transport import PeerTransport, fetch_members
from synod.raft.codec import decode_conf_change
from synod.raft.driver import (
    BOOTSTRAP_INDEX,
    BOOTSTRAP_TERM,
    DriverConfig,
    NoLeaderError,
    RaftDriver,
    restore_storage,
)
from synod.raft.single import SingleNode
from synod.raft.types import (
    ENTRY_CONF_CHANGE_V2,
    ENTRY_NORMAL,
    ConfChangeSingle,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Message,
    Snapshot,
    SnapshotMetadata,
)
from synod.rpctypes import ErrorCode, RPCError
from synod.server import ids
from synod.server.apply import Applier, LeaseApplier, is_txn_readonly, is_txn_serializable
from synod.server.apply_auth import AuthApplier, auth_request_of
from synod.server.cluster import Member, bootstrap_members, cluster_id_of, parse_initial_cluster
from synod.server.config import ServerConfig, url_to_address
from synod.server.membership import Membership
from synod.server.wait import AppliedWait, Wait
from synod.wal.wal import WAL, Entry, HardState, RaftSnapshotMark, ReadResult, WALCorrupt

log = logging.getLogger("synod.server")
T = TypeVar("T")

# etcd's auth store errors in their own words (what its Maintenance service answers with).
_AUTH_WORDS = {
    rpctypes.USER_EMPTY: "auth: user name is empty",
    rpctypes.USER_NOT_FOUND: "auth: user not found",
    rpctypes.PERMISSION_DENIED: "auth: permission denied",
    rpctypes.INVALID_AUTH_TOKEN: "auth: invalid auth token",
}


def _in_auth_words(e: RPCError) -> RPCError:
    """An auth refusal as etcd answers it where it passes its auth store's error on unmapped."""
    return RPCError(ErrorCode(StatusCode.UNKNOWN, _AUTH_WORDS.get(e.error, e.message)))


_IDENTITY = struct.Struct(">QQ")  # WAL metadata: member ID, cluster ID (then b"raft" for a Raft member)
_RAFT_MODE = b"raft"
LEASE_LOOP_INTERVAL = 0.5  # seconds between looks for expired leases (etcd's)
LEASE_REVOKE_BATCH = 500  # revocations proposed per look (etcd: half its revoke rate of 1000/s)
LEASE_CHECKPOINT_BATCH = 1000
WATCH_SYNC_INTERVAL = 0.1  # seconds between catch-up rounds when no watcher is behind (etcd's)
VICTIM_RETRY_INTERVAL = 0.01
MAX_LEARNERS = 1  # etcd 3.4 allows one learner
HEALTH_INTERVAL = 5.0  # seconds a member must have been connected before it counts as healthy (etcd's)
LEARNER_READY_PERCENT = 0.9  # a learner is promoted only once it has 90% of the leader's log (etcd's)
_CC_REQUEST = struct.Struct(">Q")  # a configuration change's context: the request ID, then the member


class DataDirError(Exception):
    """The data directory can't be used (corrupt WAL, missing files); the member must not start."""


@contextlib.contextmanager
def mvcc_errors() -> Iterator[None]:
    """Answer mvcc's errors as etcd does on the wire."""
    try:
        yield
    except ErrCompacted:
        raise RPCError(rpctypes.COMPACTED) from None
    except ErrFutureRev:
        raise RPCError(rpctypes.FUTURE_REV) from None


def _lock_data_dir(path: str) -> int:
    """Hold an exclusive lock on the data directory for the life of the process."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirError(f"{path}: the data directory is in use by another member") from None
    return fd


def _valid_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port is not None


def _member_of(m: pb.Member) -> Member:
    return Member(m.ID, m.name, list(m.peerURLs), list(m.clientURLs), m.isLearner)


def _write_database(directory: str, data: bytes) -> None:
    """A received backend, durably, as an LMDB environment directory."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    path = os.path.join(directory, "data.mdb")
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    _fsync_path(directory)


def _swap_in(incoming: str, backend_dir: str) -> None:
    """Atomically make ``incoming`` the backend directory (the old one is removed)."""
    old = backend_dir + ".old"
    shutil.rmtree(old, ignore_errors=True)
    os.rename(backend_dir, old)
    os.rename(incoming, backend_dir)
    _fsync_path(os.path.dirname(backend_dir))
    shutil.rmtree(old, ignore_errors=True)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish_install(cfg: ServerConfig) -> None:
    """Complete a snapshot install a crash interrupted: swap in a received backend the WAL records."""
    incoming = cfg.backend_dir + ".incoming"
    if not os.path.isdir(incoming):
        return
    mark = None
    if WAL.exists(cfg.wal_dir):
        wal, read = WAL.open(cfg.wal_dir)
        wal.close()
        mark = read.raft_snapshot
    received = Backend(incoming)
    index = meta.get_int(received, meta.CONSISTENT_INDEX) or 0
    received.close(commit=False)
    current = Backend(cfg.backend_dir)
    applied = meta.get_int(current, meta.CONSISTENT_INDEX) or 0
    current.close(commit=False)
    if mark is not None and index >= mark.index > applied:
        log.warning("finishing the install of the snapshot at index %d", mark.index)
        _swap_in(incoming, cfg.backend_dir)
    else:
        shutil.rmtree(incoming, ignore_errors=True)


class EtcdServer:
    def __init__(
        self,
        cfg: ServerConfig,
        *,
        now: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``now`` is wall time (request IDs); ``clock`` is monotonic time (lease expiry)."""
        self.cfg = cfg
        self._now = now
        self._clock = clock
        self._wait = Wait()
        self._applied = AppliedWait()
        self._tasks: list[asyncio.Task[None]] = []
        self._compactions: asyncio.Queue[tuple[Iterator[None], asyncio.Future[None]]] = asyncio.Queue()
        self._background: set[asyncio.Task[Any]] = set()
        self._watch_kick = asyncio.Event()
        # Called after each round of watcher catch-up (the watch service answers progress requests).
        self.after_watch_sync: list[Callable[[], None]] = []
        self._stopped = True
        self._broken = False  # applying an entry failed: the backend must not be committed again
        self.member_id = 0
        self.cluster_id = 0
        self.raft_mode = False
        self.members: dict[int, Member] = {}
        self._leader_channels: dict[str, grpc.aio.Channel] = {}
        self._snapshot_index = 0
        self._snapshotting = False
        self._removed = asyncio.Event()  # this member was removed from the cluster
        self._joined_members: dict[int, Member] = {}  # the cluster this new member joins
        self.tokens = token_provider(cfg.auth_token, ttl=cfg.auth_token_ttl, clock=clock, now=now)

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.cfg
        if cfg.initial_cluster_state == "existing" and not WAL.exists(cfg.wal_dir):
            await self._fetch_cluster()
        read = self._open_storage()
        self._ids = ids.IDGenerator(self.member_id, int(self._now() * 1000))
        try:
            self.lessor = Lessor(
                self.backend,
                min_ttl=cfg.min_lease_ttl,
                clock=self._clock,
                checkpoint_interval=cfg.lease_checkpoint_interval if cfg.lease_checkpoint else None,
            )
            self.store = KVStore(self.backend, self.lessor)
            self.watchable = WatchableStore(self.store)
            self.applier = Applier(self.store, self.lessor)
            self.lease_applier = LeaseApplier(self.store, self.lessor)
            self.membership = Membership(self.backend)
            self.membership.bootstrap(self.members)
            self._open_auth()
            if read is not None and not self.raft_mode:
                # A single member's WAL holds only committed entries. A Raft member's may hold
                # uncommitted ones: Raft hands back the committed ones once it starts.
                replay = [e for e in read.entries if e.index > self._consistent_index]
                if replay:
                    log.info("replaying %d WAL entries after index %d", len(replay), self._consistent_index)
                    self._apply(replay)
        except BaseException:
            self._close_storage(commit=False)
            raise
        self._applied.advance(self._consistent_index)
        pending = self.store.take_pending_compaction()
        if pending is not None:
            self._compactions.put_nowait((pending, asyncio.get_running_loop().create_future()))
        self.node: SingleNode | RaftDriver
        if self.raft_mode:
            self.node = await self._start_raft(read)
        else:
            self.node = SingleNode(
                self._wal,
                read.hard_state if read else HardState(term=1),
                self.member_id,
                window=cfg.commit_window,
                busy_rate=cfg.commit_busy_rate,
            )
            self.lessor.promote()  # a single member is always the primary
        self._stopped = False
        node_task = asyncio.create_task(self.node.run(self._apply), name="raft-node")
        node_task.add_done_callback(self._node_done)
        self._tasks = [
            node_task,
            asyncio.create_task(self._backend_commit_loop(), name="backend-commit"),
            asyncio.create_task(self._compaction_loop(), name="compaction"),
            asyncio.create_task(self._lease_loop(), name="leases"),
            asyncio.create_task(self._watch_loop(), name="watchers"),
            asyncio.create_task(self._publish(), name="publish"),
        ]
        log.info(
            "member %016x of cluster %016x started at revision %d (data dir %s)",
            self.member_id,
            self.cluster_id,
            self.store.current_rev,
            cfg.data_dir,
        )

    def _node_done(self, task: asyncio.Task[None]) -> None:
        """The log stopped: nothing waiting on it will be applied any more."""
        if not task.cancelled() and task.exception() is not None:
            log.critical("the log failed; stopping: %r", task.exception())
        self._stopped = True
        self._wait.fail_all(RPCError(rpctypes.STOPPED))

    def _open_storage(self) -> ReadResult | None:
        """Lock the data directory, open the backend and the WAL (creating them for a new member).

        Returns what the WAL held (None for a new member). On any failure
        everything opened is closed again and DataDirError says why.
        """
        cfg = self.cfg
        os.makedirs(cfg.member_dir, exist_ok=True)
        self._lock_fd = _lock_data_dir(os.path.join(cfg.member_dir, "lock"))
        try:
            _finish_install(cfg)
        except (WALCorrupt, OSError) as e:
            os.close(self._lock_fd)
            raise DataDirError(f"cannot finish installing a received snapshot: {e}") from e
        self.backend = Backend(cfg.backend_dir)
        wal: WAL | None = None
        try:
            self._consistent_index = meta.get_int(self.backend, meta.CONSISTENT_INDEX) or 0
            self.members = self._joined_members or self._initial_members()
            if not WAL.exists(cfg.wal_dir):
                if self._consistent_index:
                    raise DataDirError(
                        f"{cfg.wal_dir}: the WAL is missing but the backend holds applied entries"
                    )
                if self._joined_members:
                    identity = _IDENTITY.pack(self.member_id, self.cluster_id) + _RAFT_MODE
                    self.raft_mode = True
                    self._wal = WAL.create(cfg.wal_dir, identity)  # its log starts with the leader's snapshot
                    return None
                self.member_id = ids.member_id(cfg.initial_advertise_peer_urls, cfg.initial_cluster_token)
                self.cluster_id = cluster_id_of(self.members)
                self.raft_mode = len(self.members) > 1
                identity = _IDENTITY.pack(self.member_id, self.cluster_id)
                if self.raft_mode:
                    identity += _RAFT_MODE
                    self._wal = WAL.create(cfg.wal_dir, identity, BOOTSTRAP_INDEX, BOOTSTRAP_TERM)
                else:
                    self._wal = WAL.create(cfg.wal_dir, identity)
                return None
            try:
                wal, read = WAL.open(cfg.wal_dir)
            except WALCorrupt as e:
                raise DataDirError(str(e)) from e
            self.member_id, self.cluster_id = _IDENTITY.unpack_from(read.metadata)
            if read.repaired_bytes:
                log.warning("wal: cut off a torn tail of %d bytes", read.repaired_bytes)
            self.raft_mode = read.metadata[_IDENTITY.size :] == _RAFT_MODE
            # A Raft member's log starts after its snapshot mark (or the bootstrap snapshot, which
            # holds no data); everything up to the mark must be in the backend.
            if self.raft_mode:
                start = read.raft_snapshot.index if read.raft_snapshot else BOOTSTRAP_INDEX
                floor = 0 if read.raft_snapshot else BOOTSTRAP_INDEX
            else:
                start, floor = read.snapshot_index, 0
            if start > max(self._consistent_index, floor):
                raise DataDirError(
                    f"{cfg.wal_dir}: the WAL starts after entry {start} "
                    f"but the backend has only applied up to {self._consistent_index}"
                )
            if wal.last_index < self._consistent_index:
                # Entries are applied only once durable, so the WAL lost entries it had synced.
                raise DataDirError(
                    f"{cfg.wal_dir}: the WAL ends at entry {wal.last_index} "
                    f"but the backend has applied entry {self._consistent_index}"
                )
            self._wal = wal
            return read
        except BaseException:
            if wal is not None:
                wal.close()
            self.backend.close(commit=False)
            os.close(self._lock_fd)
            raise

    async def _fetch_cluster(self) -> None:
        """Join a running cluster (etcd's --initial-cluster-state existing): learn its members from a peer.

        The member must have been added already (MemberAdd): it finds its own ID in the list by its
        peer URLs.
        """
        cfg = self.cfg
        try:
            initial = parse_initial_cluster(cfg.initial_cluster) if cfg.initial_cluster else {}
        except ValueError as e:
            raise DataDirError(str(e)) from e
        mine = set(cfg.initial_advertise_peer_urls)
        urls = [u for name, us in initial.items() if name != cfg.name for u in us if u not in mine]
        try:
            cluster_id, raw = await fetch_members(urls)
        except ConnectionError as e:
            raise DataDirError(str(e)) from e
        members = {m.ID: _member_of(m) for m in pb.MemberListResponse.FromString(raw).members}
        me = [m for m in members.values() if set(m.peer_urls) == mine]
        if not me:
            urls_text = ",".join(sorted(mine))
            raise DataDirError(
                f"the cluster has no member with peer URLs {urls_text}: add it first (member add)"
            )
        self.member_id = me[0].id
        self.cluster_id = cluster_id
        me[0].client_urls = list(cfg.advertise_client_urls)
        self._joined_members = members

    def _members_answer(self) -> bytes:
        """What a joining member asks a peer for: the members, as MemberList answers."""
        resp = pb.MemberListResponse()
        for m in self.membership.members():
            resp.members.add(
                ID=m.id, name=m.name, peerURLs=m.peer_urls, clientURLs=m.client_urls, isLearner=m.is_learner
            )
        return resp.SerializeToString()

    def _initial_members(self) -> dict[int, Member]:
        """The members the cluster was started with (this one alone without --initial-cluster)."""
        cfg = self.cfg
        try:
            initial = (
                parse_initial_cluster(cfg.initial_cluster)
                if cfg.initial_cluster
                else {cfg.name: cfg.initial_advertise_peer_urls}
            )
        except ValueError as e:
            raise DataDirError(str(e)) from e
        mine = initial.get(cfg.name)
        if mine is None:
            raise DataDirError(f"--initial-cluster has no member named {cfg.name!r} (--name)")
        if sorted(mine) != sorted(cfg.initial_advertise_peer_urls):
            raise DataDirError(
                f"--initial-cluster has {cfg.name}={','.join(mine)} but --initial-advertise-peer-urls "
                f"is {','.join(cfg.initial_advertise_peer_urls)}"
            )
        try:
            members = bootstrap_members(initial, cfg.initial_cluster_token)
        except ValueError as e:
            raise DataDirError(str(e)) from e
        me = ids.member_id(cfg.initial_advertise_peer_urls, cfg.initial_cluster_token)
        members[me].client_urls = list(cfg.advertise_client_urls)
        return members

    async def _start_raft(self, read: ReadResult | None) -> RaftDriver:
        cfg = self.cfg
        conf_state = ConfState(voters=tuple(sorted(self.members)))
        storage = restore_storage(read, conf_state, joining=bool(self._joined_members))
        self._snapshot_index = storage.first_index() - 1
        self.transport = PeerTransport(
            self.member_id,
            self.cluster_id,
            self._step,
            members=self._members_answer,
            is_removed=lambda member: self.membership.is_removed(member),
        )
        self.transport.on_removed = self._learned_removed
        driver = RaftDriver(
            DriverConfig(
                self.member_id,
                heartbeat_interval=cfg.heartbeat_interval,
                election_ticks=cfg.election_ticks,
                pre_vote=cfg.pre_vote,
            ),
            storage,
            self._wal,
            self.transport,
            # Raft hands back every committed entry after its snapshot: configuration changes are
            # applied to it again, the rest is skipped by the consistent index.
            applied=storage.first_index() - 1,
            rng=random.Random(),
        )
        self.transport.report_unreachable = driver.node.report_unreachable
        driver.on_leader_change.append(self._leader_changed)
        driver.prepare_snapshot = self._prepare_snapshot
        driver.install_snapshot = self._install_snapshot
        try:
            await self.transport.listen(cfg.listen_peer_urls)
        except OSError as e:
            raise DataDirError(f"cannot listen for peers on {', '.join(cfg.listen_peer_urls)}: {e}") from e
        # The recorded members, not --initial-cluster: after a restart the flags still name members
        # that were removed since (a replaced member's successor may now answer at their URLs).
        for member in self.membership.members():
            self.transport.add_peer(member.id, member.peer_urls)
        return driver

    async def _prepare_snapshot(self, m: Message) -> Message:
        """A MsgSnap carries this member's whole backend, at the applied index (etcd's merged snapshot)."""
        assert isinstance(self.node, RaftDriver)
        self._commit_backend()
        index = self._consistent_index
        term = self.node.storage.term(index)
        conf_state = self.node.conf_state
        # The copy may include entries applied after ``index``: its own consistent index says so,
        # and the receiver skips those entries when Raft hands them over again.
        data = await asyncio.to_thread(self.backend.copy_bytes)
        log.info("sending a snapshot at index %d (%d bytes) to %x", index, len(data), m.to)
        return dataclasses.replace(m, snapshot=Snapshot(data, SnapshotMetadata(conf_state, index, term)))

    async def _install_snapshot(self, snap: Snapshot) -> None:
        """Replace the backend with the leader's (etcd's applySnapshot).

        Order, so that a crash anywhere leaves a member that starts: the received database is
        written and synced beside the backend, then the WAL records the snapshot, then the
        database replaces the backend (``_finish_install`` also completes this at start).
        """
        assert isinstance(self.node, RaftDriver)
        md = snap.metadata
        incoming = self.cfg.backend_dir + ".incoming"
        await asyncio.to_thread(_write_database, incoming, snap.data)
        await self.node.write_mark(RaftSnapshotMark(md.index, md.term, md.conf_state))
        self.backend.close(commit=False)
        _swap_in(incoming, self.cfg.backend_dir)
        self._reopen_backend()
        self._snapshot_index = md.index
        for member in self.membership.members():
            self.transport.add_peer(member.id, member.peer_urls)
        log.info(
            "installed a snapshot at index %d; applied index is now %d", md.index, self._consistent_index
        )

    def _reopen_backend(self) -> None:
        """Rebuild everything held over the backend after it was replaced."""
        cfg = self.cfg
        self.backend = Backend(cfg.backend_dir)
        self._consistent_index = meta.get_int(self.backend, meta.CONSISTENT_INDEX) or 0
        self.lessor = Lessor(
            self.backend,
            min_ttl=cfg.min_lease_ttl,
            clock=self._clock,
            checkpoint_interval=cfg.lease_checkpoint_interval if cfg.lease_checkpoint else None,
        )
        self.store = KVStore(self.backend, self.lessor)
        self.watchable.restore(self.store)
        self.applier = Applier(self.store, self.lessor)
        self.lease_applier = LeaseApplier(self.store, self.lessor)
        self.membership = Membership(self.backend)
        self._open_auth()
        if self.node.leader_id == self.member_id:
            self.lessor.promote()
        pending = self.store.take_pending_compaction()
        if pending is not None:
            self._compactions.put_nowait((pending, asyncio.get_running_loop().create_future()))
        self._applied.advance(self._consistent_index)
        self.kick_watchers()

    def _open_auth(self) -> None:
        self.auth = AuthStore(self.backend)
        self.auth_applier = AuthApplier(self.auth, self.tokens, self.lessor)
        if self.auth.enabled:
            self.tokens.enable()
        else:
            self.tokens.disable()

    def _learned_removed(self) -> None:
        if not self._removed.is_set():
            log.warning("a peer says this member was removed from the cluster; stopping")
            self._removed.set()

    def _step(self, m: Any) -> None:
        node = self.node
        if isinstance(node, RaftDriver):
            node.step(m)

    def _leader_changed(self, leader: int, term: int) -> None:
        """Only the leader's lessor expires and renews leases (etcd's primary lessor)."""
        if leader == self.member_id:
            self.lessor.promote()
        else:
            self.lessor.demote()

    def _close_storage(self, *, commit: bool) -> None:
        """Close the backend (committing what was applied, unless told not to), the WAL and the lock."""
        self.backend.close(commit=commit)
        self._wal.close()
        os.close(self._lock_fd)

    async def stop(self) -> None:
        if not self._tasks:
            return
        self._stopped = True
        await self.node.stop()
        if self.raft_mode:
            await self.transport.stop()
        node_task, *others = self._tasks
        (node_result,) = await asyncio.gather(node_task, return_exceptions=True)
        for t in (*others, *self._background):
            t.cancel()
        await asyncio.gather(*others, *self._background, return_exceptions=True)
        self._wait.fail_all(RPCError(rpctypes.STOPPED))
        # If the log failed (a bug, or a disk error), the last batch may be half applied: keep
        # the backend as last committed and let the WAL replay it at the next start.
        self._close_storage(commit=node_result is None and not self._broken)
        self._tasks = []
        log.info("member %016x stopped", self.member_id)

    async def wait_removed(self) -> None:
        """Return when this member has been removed from the cluster (it should then stop)."""
        await self._removed.wait()

    async def wait_stopped(self) -> None:
        """Return when the node stops (it raises if the log failed)."""
        await self._tasks[0]

    # -- state ------------------------------------------------------------------

    @property
    def term(self) -> int:
        return self.node.term

    @property
    def leader_id(self) -> int:
        return self.node.leader_id

    @property
    def committed_index(self) -> int:
        return self.node.committed_index

    @property
    def is_learner(self) -> bool:
        me = self.membership.get(self.member_id)
        return me is not None and me.is_learner

    def refuse_on_learner(self) -> None:
        """A learner serves only serializable reads (etcd's rule): it can't vouch for anything newer."""
        if self.raft_mode and self.is_learner:
            raise RPCError(rpctypes.NOT_SUPPORTED_FOR_LEARNER)

    async def move_leader(self, target: int) -> None:
        """Hand leadership to ``target`` (etcd's MoveLeader: only the leader can, and waits for it)."""
        node = self.node
        if not isinstance(node, RaftDriver):
            if target == self.member_id:
                return  # a member alone leads already
            raise RPCError(rpctypes.BAD_LEADER_TRANSFEREE)
        if node.leader_id != self.member_id:
            raise RPCError(rpctypes.NOT_LEADER)
        if target == self.member_id:
            return  # already the leader
        transferee = self.membership.get(target)
        if transferee is None or transferee.is_learner:  # a learner can't lead (etcd's rule)
            raise RPCError(rpctypes.BAD_LEADER_TRANSFEREE)
        node.transfer_leader(target)
        try:
            async with asyncio.timeout(self.cfg.request_timeout):
                while node.leader_id != target:
                    await node.wait_leader_change()
        except TimeoutError:
            raise RPCError(rpctypes.TIMEOUT_LEADER_TRANSFER) from None

    # -- membership changes -----------------------------------------------------------

    async def member_add(self, peer_urls: list[str], is_learner: bool) -> tuple[Member, list[Member]]:
        """etcd's MemberAdd: a new member's ID from its peer URLs, the token and the time."""
        if not peer_urls or any(not _valid_url(u) for u in peer_urls):
            raise RPCError(rpctypes.MEMBER_BAD_URLS)
        await self.check_admin()
        for m in self.membership.members():
            if set(m.peer_urls) & set(peer_urls):
                raise RPCError(rpctypes.PEER_URL_EXIST)
        if is_learner and sum(m.is_learner for m in self.membership.members()) >= MAX_LEARNERS:
            raise RPCError(rpctypes.TOO_MANY_LEARNERS)
        member = Member(
            ids.member_id(peer_urls, self.cfg.initial_cluster_token, int(self._now())),
            "",
            sorted(peer_urls),
            [],
            is_learner,
        )
        if self.membership.get(member.id) is not None or self.membership.is_removed(member.id):
            raise RPCError(rpctypes.MEMBER_EXIST)
        self._may_add_member(is_learner)
        kind = ConfChangeType.ADD_LEARNER_NODE if is_learner else ConfChangeType.ADD_NODE
        members = await self._conf_change(kind, member)
        return member, members

    # etcd's strict reconfiguration checks (--strict-reconfig-check, on by default in etcd 3.4).

    def _voters(self) -> list[Member]:
        return [m for m in self.membership.members() if not m.is_learner]

    def _connected_voters(self) -> int:
        """Voters this member has been connected to for etcd's health interval, itself included."""
        if not self.raft_mode:
            return len(self._voters())
        return sum(
            1
            for m in self._voters()
            if m.id == self.member_id or (self.transport.connected_for(m.id) or -1.0) >= HEALTH_INTERVAL
        )

    def _may_add_member(self, is_learner: bool) -> None:
        voters = self._voters()
        started = sum(1 for m in voters if m.name)
        members_after = len(voters) + 1
        if not is_learner and not (started == 1 and members_after == 2) and started < members_after // 2 + 1:
            raise RPCError(rpctypes.MEMBER_NOT_ENOUGH_STARTED)
        if self._connected_voters() < len(voters):
            raise RPCError(rpctypes.UNHEALTHY)

    def _may_remove_member(self, member: Member) -> None:
        if member.is_learner:
            return
        voters = self._voters()
        started = sum(1 for m in voters if m.name and m.id != member.id)
        remaining = len(voters) - 1
        if started < remaining // 2 + 1:
            raise RPCError(rpctypes.MEMBER_NOT_ENOUGH_STARTED)
        if self.raft_mode and member.id != self.member_id and self.transport.connected_for(member.id) is None:
            return  # a member that is down is not part of the quorum: removing it is safe
        active = self._connected_voters()
        if active - 1 < 1 + (len(voters) - 1) // 2:
            raise RPCError(rpctypes.UNHEALTHY)

    async def member_remove(self, member_id: int) -> list[Member]:
        await self.check_admin()
        member = self.membership.get(member_id)
        if member is None:
            raise RPCError(rpctypes.MEMBER_NOT_FOUND)
        self._may_remove_member(member)
        return await self._conf_change(ConfChangeType.REMOVE_NODE, member)

    async def member_update(self, member_id: int, peer_urls: list[str]) -> list[Member]:
        await self.check_admin()
        member = self.membership.get(member_id)
        if member is None:
            raise RPCError(rpctypes.MEMBER_NOT_FOUND)
        if not peer_urls or any(not _valid_url(u) for u in peer_urls):
            raise RPCError(rpctypes.MEMBER_BAD_URLS)
        for m in self.membership.members():
            if m.id != member_id and set(m.peer_urls) & set(peer_urls):
                raise RPCError(rpctypes.PEER_URL_EXIST)
        updated = Member(member.id, member.name, sorted(peer_urls), member.client_urls, member.is_learner)
        return await self._conf_change(ConfChangeType.UPDATE_NODE, updated)

    async def member_promote(self, member_id: int) -> list[Member]:
        """Make a learner a voter; only the leader can judge that it has caught up (etcd's rule)."""
        await self.check_admin()
        member = self.membership.get(member_id)
        if member is None:
            raise RPCError(rpctypes.MEMBER_NOT_FOUND)
        if not member.is_learner:
            raise RPCError(rpctypes.MEMBER_NOT_LEARNER)
        node = self.node
        if not isinstance(node, RaftDriver):
            raise RPCError(rpctypes.NOT_LEADER)
        progress = node.progress_of(member_id)
        if progress is None:
            raw = await self._call_leader(
                "/etcdserverpb.Cluster/MemberPromote",
                pb.MemberPromoteRequest(ID=member_id).SerializeToString(),
            )
            resp = pb.MemberPromoteResponse.FromString(raw)
            return [_member_of(m) for m in resp.members]
        match, last = progress
        if match < last * LEARNER_READY_PERCENT:
            raise RPCError(rpctypes.LEARNER_NOT_READY)
        voters = self._voters()
        started = 1 + sum(1 for m in voters if m.name)  # the learner counts as started (etcd's rule)
        if started < (len(voters) + 1) // 2 + 1:
            raise RPCError(rpctypes.MEMBER_NOT_ENOUGH_STARTED)
        promoted = Member(member.id, member.name, member.peer_urls, member.client_urls, False)
        return await self._conf_change(ConfChangeType.ADD_NODE, promoted)

    async def _conf_change(self, kind: ConfChangeType, member: Member) -> list[Member]:
        """Propose one configuration change and wait until this member applied it."""
        if not isinstance(self.node, RaftDriver):
            raise RPCError(rpctypes.NOT_CAPABLE)  # a member started alone has no Raft to change
        request_id = self._ids.next()
        record = mpb.Member(
            ID=member.id,
            raft_attributes=mpb.RaftAttributes(peer_urls=member.peer_urls, is_learner=member.is_learner),
            member_attributes=mpb.Attributes(name=member.name, client_urls=member.client_urls),
        )
        context = _CC_REQUEST.pack(request_id) + record.SerializeToString()
        cc = ConfChangeV2(changes=(ConfChangeSingle(kind, member.id),), context=context)
        fut = self._wait.register(request_id)
        try:
            async with asyncio.timeout(self.cfg.request_timeout):
                while True:
                    try:
                        self.node.propose_conf_change(cc)
                        break
                    except NoLeaderError:
                        await self.node.wait_leader()
                result = await fut
        except TimeoutError:
            raise RPCError(rpctypes.TIMEOUT) from None
        finally:
            self._wait.cancel(request_id)
        if isinstance(result, RPCError):
            raise result
        return self.membership.members()

    def _apply_conf_change(self, e: Entry) -> None:
        """A committed configuration change, applied to the members (Raft already took it)."""
        cc = decode_conf_change(e.data)
        if not cc.changes or len(cc.context) < _CC_REQUEST.size:
            return  # leaving a joint configuration changes no member
        (request_id,) = _CC_REQUEST.unpack_from(cc.context)
        record = mpb.Member.FromString(cc.context[_CC_REQUEST.size :])
        change = cc.changes[0]
        member = Member(
            record.ID,
            record.member_attributes.name,
            list(record.raft_attributes.peer_urls),
            list(record.member_attributes.client_urls),
            record.raft_attributes.is_learner,
        )
        if change.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE):
            known = self.membership.get(member.id)
            if known is not None and change.type == ConfChangeType.ADD_NODE:
                self.membership.promote(member.id)
            else:
                self.membership.add(member)
            if self.raft_mode and member.id != self.member_id:
                self.transport.add_peer(member.id, member.peer_urls)
        elif change.type == ConfChangeType.REMOVE_NODE:
            self.membership.remove(member.id)
            if member.id == self.member_id:
                log.warning("this member has been permanently removed from the cluster; stopping")
                self._removed.set()
            elif self.raft_mode:
                self.transport.remove_peer(member.id)
        elif change.type == ConfChangeType.UPDATE_NODE:
            self.membership.update_peer_urls(member.id, member.peer_urls)
            if self.raft_mode and member.id != self.member_id:
                self.transport.remove_peer(member.id)
                self.transport.add_peer(member.id, member.peer_urls)
        self._wait.trigger(request_id, None)

    async def backend_copy(self) -> bytes:
        """The backend as one consistent database file, everything applied so far in it."""
        self._commit_backend()
        return await asyncio.to_thread(self.backend.copy_bytes)

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        """(hash, current revision, compact revision) of the key history up to ``revision``."""
        with mvcc_errors():
            return self.store.hash_by_rev(revision)

    async def linearizable_barrier(self) -> None:
        """Return once everything committed before the call is applied here."""
        await self._linearizable_read()

    @property
    def revision(self) -> int:
        return self.store.current_rev

    @property
    def applied_index(self) -> int:
        return self._applied.applied

    # -- requests ---------------------------------------------------------------

    async def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        if not r.serializable:
            self.refuse_on_learner()
            await self._linearizable_read()
        if self.auth.enabled or CALLER_TOKEN.get() is not None:
            return await self._authorized_read(
                lambda info: self.auth.check_range(info, r.key, r.range_end), lambda: self.applier.range(r)
            )
        with mvcc_errors():
            return self.applier.range(r)

    async def put(self, r: pb.PutRequest) -> pb.PutResponse:
        resp: pb.PutResponse = await self._propose(InternalRaftRequest(put=r))
        return resp

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        resp: pb.DeleteRangeResponse = await self._propose(InternalRaftRequest(delete_range=r))
        return resp

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        if is_txn_readonly(r):
            if not is_txn_serializable(r):
                await self._linearizable_read()
            if self.auth.enabled or CALLER_TOKEN.get() is not None:
                return await self._authorized_read(
                    lambda info: self.auth_applier.check_txn(info, r), lambda: self.applier.txn(r)
                )
            with mvcc_errors():
                return self.applier.txn(r)
        resp: pb.TxnResponse = await self._propose(InternalRaftRequest(txn=r))
        return resp

    async def compact(self, r: pb.CompactionRequest) -> pb.CompactionResponse:
        resp, done = await self._propose(InternalRaftRequest(compaction=r))
        if r.physical:
            await done
            self._commit_backend()  # so that a finished compaction does not resume after a crash
        resp.header.revision = self.store.current_rev
        return resp  # type: ignore[no-any-return]

    async def lease_grant(self, r: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        while r.ID == 0:
            r.ID = self._ids.next() & ((1 << 63) - 1)  # only positive IDs, as etcd
        resp: pb.LeaseGrantResponse = await self._propose(InternalRaftRequest(lease_grant=r))
        return resp

    async def lease_revoke(self, r: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        resp: pb.LeaseRevokeResponse = await self._propose(InternalRaftRequest(lease_revoke=r))
        return resp

    # -- auth -------------------------------------------------------------------

    async def auth_info(self) -> AuthInfo | None:
        """Who the caller is, by its token (None: it gave none); raises for a token not valid here."""
        token = CALLER_TOKEN.get()
        if token is None:
            return None
        if self.tokens.simple:
            index = simple_token_index(token)
            if index is None:
                raise RPCError(rpctypes.INVALID_AUTH_TOKEN)
            if index > self._applied.applied and self.raft_mode:
                # Issued through another member: wait until this one has applied it too.
                try:
                    async with asyncio.timeout(self.cfg.request_timeout):
                        await self._applied.wait(index)
                except TimeoutError:
                    raise RPCError(rpctypes.INVALID_AUTH_TOKEN) from None
        info = self.tokens.info(token, self.auth.revision)
        if info is None:
            raise RPCError(rpctypes.INVALID_AUTH_TOKEN)
        return info

    async def _authorized_read(self, check: Callable[[AuthInfo], None], read: Callable[[], T]) -> T:
        """etcd's doSerialize: a read the caller's permissions allow, refused afterwards if they
        changed while it was served (it may have used permissions no longer held)."""
        info = await self.auth_info() or NOBODY
        check(info)
        with mvcc_errors():
            result = read()
        if info.revision and self.auth.is_stale(info):
            raise RPCError(rpctypes.AUTH_OLD_REVISION)
        return result

    async def check_token(self) -> None:
        """For a call etcd logs but synod answers without the log (Alarm): a token that is not
        valid is refused as etcd's proposal refuses it, in the auth store's words."""
        if CALLER_TOKEN.get() is not None:
            try:
                await self.auth_info()
            except RPCError as e:
                raise _in_auth_words(e) from None

    async def check_admin(self, *, auth_words: bool = False) -> None:
        """Maintenance and membership calls need the root role once auth is enabled.

        ``auth_words``: refuse as etcd's Maintenance service does, with its auth store's own
        error (code Unknown, "auth: permission denied"), not the gRPC error the others map it to.
        """
        if self.auth.enabled or CALLER_TOKEN.get() is not None:
            try:
                self.auth.check_admin(await self.auth_info())
            except RPCError as e:
                if not auth_words:
                    raise
                raise _in_auth_words(e) from None

    async def watch_denied(self, key: bytes, range_end: bytes) -> str:
        """etcd's cancel reason for a watch the caller may not make ("" if it may).

        A watch from a key (range end "\\0") needs read permission on all keys from
        there; etcd 3.4 checks only the first key (docs/compatibility.md).
        """
        if not (self.auth.enabled or CALLER_TOKEN.get() is not None):
            return ""
        try:
            self.auth.check_range(await self.auth_info() or NOBODY, key or b"\x00", range_end)
        except RPCError as e:
            if e.error in (rpctypes.INVALID_AUTH_TOKEN, rpctypes.AUTH_OLD_REVISION, rpctypes.USER_EMPTY):
                return e.error.go_text()
            return rpctypes.PERMISSION_DENIED.go_text()
        return ""

    async def auth_request(self, irr: InternalRaftRequest) -> Any:
        """An Auth call that goes through the log as etcd's do (permissions are checked at apply)."""
        if irr.HasField("auth_user_add"):
            r = irr.auth_user_add
            if not r.options.no_password:
                r.hashedPassword = await asyncio.to_thread(hash_for_log, r.password, self.cfg.bcrypt_cost)
            r.password = ""  # never in the log
        elif irr.HasField("auth_user_change_password"):
            c = irr.auth_user_change_password
            c.hashedPassword = await asyncio.to_thread(hash_for_log, c.password, self.cfg.bcrypt_cost)
            c.password = ""
        return await self._propose(irr)

    async def authenticate(self, r: pb.AuthenticateRequest) -> pb.AuthenticateResponse:
        await self._linearizable_read()
        while True:
            hashed, revision = self.auth.password_hash(r.name)
            if not await asyncio.to_thread(passwords.matches, hashed, r.password):
                raise RPCError(rpctypes.AUTH_FAILED)
            # The entry carries no password: only the token's random part.
            request = InternalAuthenticateRequest(name=r.name, simple_token=self.tokens.prefix())
            resp: pb.AuthenticateResponse = await self._propose(InternalRaftRequest(authenticate=request))
            if revision == self.auth.revision:
                return resp
            # The user changed while the password was checked: check it again.

    @property
    def is_lease_primary(self) -> bool:
        return self.lessor.is_primary

    def lease_renew(self, lease_id: int) -> int:
        """Keep a lease alive (on the primary, not logged); returns its TTL. Raises LEASE_NOT_FOUND,
        and NotPrimaryError on a member that is not the leader (``forward_keep_alive`` then)."""
        if self._stopped:
            raise RPCError(rpctypes.STOPPED)
        ttl, clear_checkpoint = self.lessor.renew(lease_id)
        if clear_checkpoint:
            # The lease runs a full TTL again: forget the checkpointed remainder everywhere.
            cp = pb.LeaseCheckpointRequest(checkpoints=[pb.LeaseCheckpoint(ID=lease_id, remaining_TTL=0)])
            self._spawn(self._propose(InternalRaftRequest(lease_checkpoint=cp)))
        return ttl

    async def forward_keep_alive(self, lease_id: int) -> int:
        """Renew a lease through the leader (etcd forwards a follower's keep-alives the same way)."""
        req = pb.LeaseKeepAliveRequest(ID=lease_id).SerializeToString()
        raw = await self._call_leader("/etcdserverpb.Lease/LeaseKeepAlive", req, stream=True)
        resp = pb.LeaseKeepAliveResponse.FromString(raw)
        if resp.TTL <= 0:
            raise RPCError(rpctypes.LEASE_NOT_FOUND)
        return resp.TTL

    async def forward_time_to_live(self, r: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        raw = await self._call_leader("/etcdserverpb.Lease/LeaseTimeToLive", r.SerializeToString())
        return pb.LeaseTimeToLiveResponse.FromString(raw)

    async def _call_leader(self, method: str, request: bytes, *, stream: bool = False) -> bytes:
        """One call to the leader's client URL (the first response of a stream)."""
        node = self.node
        try:
            async with asyncio.timeout(self.cfg.request_timeout):
                while True:
                    leader = self.membership.get(node.leader_id) if node.leader_id else None
                    if leader is not None and leader.id != self.member_id and leader.client_urls:
                        break
                    if not isinstance(node, RaftDriver):
                        raise RPCError(rpctypes.NO_LEADER)
                    await node.wait_leader_change()
                channel = self._leader_channel(leader.client_urls[0])
                if not stream:
                    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
                    result: bytes = await call(request)
                    return result
                opener = channel.stream_stream(method, request_serializer=None, response_deserializer=None)
                streaming = opener(None)  # type: ignore[arg-type]  # grpc.aio's write() style
                await streaming.write(request)
                first = await streaming.read()
                streaming.cancel()
                if not isinstance(first, bytes):
                    raise RPCError(rpctypes.NO_LEADER)
                return first
        except TimeoutError:
            raise RPCError(rpctypes.TIMEOUT) from None
        except grpc.aio.AioRpcError as e:
            raise RPCError(ErrorCode(e.code(), e.details() or "")) from None

    def _leader_channel(self, url: str) -> grpc.aio.Channel:
        channel = self._leader_channels.get(url)
        if channel is None:
            channel = grpc.aio.insecure_channel(url_to_address(url))
            self._leader_channels[url] = channel
        return channel

    def lease_time_to_live(self, r: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        lease = self.lessor.lookup(r.ID)
        if lease is None:
            raise RPCError(rpctypes.LEASE_NOT_FOUND)
        resp = pb.LeaseTimeToLiveResponse(
            ID=r.ID,
            TTL=int(lease.remaining(self._clock())),  # truncated toward zero, as Go's int64(seconds)
            grantedTTL=lease.ttl,
        )
        if r.keys:
            resp.keys.extend(sorted(lease.keys))
        return resp

    def lease_leases(self) -> pb.LeaseLeasesResponse:
        return pb.LeaseLeasesResponse(leases=[pb.LeaseStatus(ID=lease.id) for lease in self.lessor.leases()])

    async def _linearizable_read(self) -> None:
        if self._stopped:
            raise RPCError(rpctypes.STOPPED)
        if not self.raft_mode:
            await self._applied.wait(await self.node.read_index())
            return
        try:
            async with asyncio.timeout(self.cfg.request_timeout):
                index = await self.node.read_index()
                await self._applied.wait(index)
        except (TimeoutError, NoLeaderError):
            raise RPCError(rpctypes.TIMEOUT) from None

    async def _propose(self, irr: InternalRaftRequest, *, as_server: bool = False) -> Any:
        """``as_server``: the member's own request (lease expiry), allowed whatever the auth state."""
        if self._stopped:
            raise RPCError(rpctypes.STOPPED)
        if as_server:
            irr.header.username, irr.header.auth_revision = SERVER.username, SERVER.revision
        elif CALLER_TOKEN.get() is not None:
            info = await self.auth_info()
            if info is not None:
                irr.header.username, irr.header.auth_revision = info.username, info.revision
        request_id = self._ids.next()
        irr.header.ID = request_id
        data = irr.SerializeToString()
        if len(data) > self.cfg.max_request_bytes:
            raise RPCError(rpctypes.REQUEST_TOO_LARGE)
        fut = self._wait.register(request_id)
        try:
            if not self.raft_mode:
                self.node.propose(data)
                return await fut
            async with asyncio.timeout(self.cfg.request_timeout):
                while True:
                    try:
                        self.node.propose(data)
                        break
                    except NoLeaderError:
                        assert isinstance(self.node, RaftDriver)
                        await self.node.wait_leader()
                return await fut
        except TimeoutError:
            raise RPCError(rpctypes.TIMEOUT) from None
        finally:
            self._wait.cancel(request_id)

    # -- apply ------------------------------------------------------------------

    def _apply(self, entries: list[Entry]) -> None:
        """Apply committed entries in order; completes the callers waiting for them."""
        try:
            self._apply_entries(entries)
        except BaseException:
            # A bug: the open backend batch may hold half an entry. Never commit it.
            self._broken = True
            raise

    def _apply_entries(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.index <= self._consistent_index or not e.data:
                continue
            if e.type == ENTRY_CONF_CHANGE_V2:
                self._apply_conf_change(e)
                continue
            if e.type != ENTRY_NORMAL:
                continue
            irr = InternalRaftRequest.FromString(e.data)
            self._wait.trigger(irr.header.ID, self._apply_request(irr, e.index))
        last = entries[-1].index
        if last > self._consistent_index:
            self._consistent_index = last
            meta.put_int(self.backend, meta.CONSISTENT_INDEX, last)
        self._applied.advance(self._consistent_index)
        if self.backend.pending >= self.cfg.backend_batch_limit:
            self._commit_backend()
        if (
            self.raft_mode
            and not self._snapshotting
            and self._consistent_index - self._snapshot_index > self.cfg.snapshot_count
        ):
            self._snapshotting = True
            self._spawn(self._take_snapshot())

    async def _take_snapshot(self) -> None:
        """etcd's snapshot every --snapshot-count entries: the backend holds the state, the log is cut."""
        try:
            assert isinstance(self.node, RaftDriver)
            self._commit_backend()
            index = self._consistent_index
            await self.node.snapshot(index, self.cfg.snapshot_catch_up_entries)
            self._snapshot_index = index
        finally:
            self._snapshotting = False

    def _apply_request(self, irr: InternalRaftRequest, index: int) -> Any:
        """The result for the waiting caller: a response, or the RPCError to answer."""
        try:
            if self.auth.enabled:
                self.auth_applier.check(irr)
            with mvcc_errors():
                if irr.HasField("put"):
                    return self.applier.put(irr.put)
                if irr.HasField("delete_range"):
                    return self.applier.delete_range(irr.delete_range)
                if irr.HasField("txn"):
                    return self.applier.txn(irr.txn)
                if irr.HasField("compaction"):
                    return self._apply_compaction(irr.compaction)
                if irr.HasField("lease_grant"):
                    return self.lease_applier.grant(irr.lease_grant)
                if irr.HasField("lease_revoke"):
                    return self.lease_applier.revoke(irr.lease_revoke)
                if irr.HasField("lease_checkpoint"):
                    return self.lease_applier.checkpoint(irr.lease_checkpoint)
                if irr.HasField("cluster_member_attr_set"):
                    attrs = irr.cluster_member_attr_set
                    a = attrs.member_attributes
                    self.membership.set_attributes(attrs.member_ID, a.name, list(a.client_urls))
                    return None
                which = auth_request_of(irr)
                if which is not None:
                    return self.auth_applier.apply(which, irr, index)
        except RPCError as e:
            return e
        log.warning("ignoring an entry with no request this member knows (ID %x)", irr.header.ID)
        return RPCError(rpctypes.NOT_CAPABLE)

    def _apply_compaction(
        self, r: pb.CompactionRequest
    ) -> tuple[pb.CompactionResponse, asyncio.Future[None]]:
        job = self.store.compact(r.revision)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._compactions.put_nowait((job, done))
        return pb.CompactionResponse(), done

    # -- background work --------------------------------------------------------

    def _commit_backend(self) -> None:
        if self._broken:
            return
        self.backend.commit()
        if not self.raft_mode:
            # Entries up to the consistent index are now durable in the backend too. (A Raft
            # member keeps its log for followers that fall behind until snapshots exist.)
            self._wal.release_to(self._consistent_index)

    async def _backend_commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.backend_batch_interval)
            if self.backend.pending:
                self._commit_backend()

    async def _publish(self) -> None:
        """Tell the cluster this member's name and client URLs (etcd's publish), until it is applied."""
        attrs = mpb.Attributes(name=self.cfg.name, client_urls=self.cfg.advertise_client_urls)
        mine = self.membership.get(self.member_id)
        if mine is not None and mine.name == attrs.name and mine.client_urls == list(attrs.client_urls):
            return
        request = mpb.ClusterMemberAttrSetRequest(member_ID=self.member_id, member_attributes=attrs)
        while True:
            try:
                await self._propose(InternalRaftRequest(cluster_member_attr_set=request))
                return
            except RPCError as e:
                if e.error is rpctypes.STOPPED:
                    return
                log.warning("publishing member attributes failed (%s); retrying", e.message)
                await asyncio.sleep(1.0)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a background proposal (with no caller's token); its outcome is only logged."""
        task = asyncio.create_task(coro, context=contextvars.Context())
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("background proposal failed: %s", task.exception())

    async def _lease_loop(self) -> None:
        """Revoke expired leases and log due checkpoints, through the log, as etcd's lessor loop does."""
        while True:
            await asyncio.sleep(LEASE_LOOP_INTERVAL)
            self.revoke_expired_leases()

    def revoke_expired_leases(self) -> int:
        """Propose the revocation of expired leases, and the due checkpoints; returns how many revocations."""
        expired = self.lessor.expired(LEASE_REVOKE_BATCH)
        for lease_id in expired:
            revoke = InternalRaftRequest(lease_revoke=pb.LeaseRevokeRequest(ID=lease_id))
            self._spawn(self._propose(revoke, as_server=True))
        due = self.lessor.due_checkpoints(LEASE_CHECKPOINT_BATCH)
        if due:
            cps = [pb.LeaseCheckpoint(ID=lease_id, remaining_TTL=ttl) for lease_id, ttl in due]
            self._spawn(
                self._propose(
                    InternalRaftRequest(lease_checkpoint=pb.LeaseCheckpointRequest(checkpoints=cps))
                )
            )
        return len(expired)

    def kick_watchers(self) -> None:
        """A watcher needs catching up: run a round now rather than at the next tick."""
        self._watch_kick.set()

    async def _watch_loop(self) -> None:
        """Catch up unsynced watchers and retry victims (etcd's syncWatchersLoop and syncVictimsLoop)."""
        ws = self.watchable
        while True:
            if ws.victims:
                ws.move_victims()
            progressed = ws.sync_watchers() if len(ws.unsynced) else False
            for hook in self.after_watch_sync:
                hook()
            if progressed and len(ws.unsynced):
                delay = 0.0  # catching up: go on, letting writers in between rounds
            elif ws.victims:
                delay = VICTIM_RETRY_INTERVAL
            else:
                delay = WATCH_SYNC_INTERVAL
            self._watch_kick.clear()
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._watch_kick.wait(), delay)
            else:
                await asyncio.sleep(0)

    async def _compaction_loop(self) -> None:
        """Delete compacted revisions from the backend, one batch per loop turn, in order."""
        while True:
            job, done = await self._compactions.get()
            for _ in job:
                await asyncio.sleep(0)
            if not done.done():
                done.set_result(None)
