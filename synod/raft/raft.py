"""The Raft state machine, sans-IO (etcd-io/raft's ``raft.go`` design).

Rules of this module:

* Nothing here reads a clock, draws randomness of its own, or touches a
  socket or a file: time arrives as ``tick()``, messages as ``step()``, and
  randomness from the injected ``Config.rng``. The same inputs always give
  the same outputs.
* Output accumulates in ``msgs`` (and ``read_states``); the caller takes it
  through ``RawNode.ready()`` and must persist the log's unstable entries and
  the hard state before sending messages that depend on them.
* The role decides the step and tick functions: ``_become_*`` swaps them.
  Term handling common to every role is in ``step`` before the dispatch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Protocol

from synod.raft import confchange
from synod.raft.codec import decode_conf_change, encode_conf_change
from synod.raft.log import RaftLog
from synod.raft.quorum import VoteResult
from synod.raft.read_only import ReadOnly, ReadOnlyOption, ReadState
from synod.raft.storage import (
    NO_LIMIT,
    ErrCompacted,
    ErrSnapshotTemporarilyUnavailable,
    ErrUnavailable,
    Storage,
)
from synod.raft.tracker import Config as TrackerConfig
from synod.raft.tracker import Progress, ProgressState, ProgressTracker
from synod.raft.types import (
    ENTRY_CONF_CHANGE,
    ENTRY_CONF_CHANGE_V2,
    ENTRY_NORMAL,
    NONE,
    ConfChangeV2,
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    Snapshot,
    vote_response_type,
)

log = logging.getLogger("synod.raft")

MT = MessageType
_CAMPAIGN_TRANSFER = b"CampaignTransfer"  # the context of a vote forced by a leader transfer


class StateType(IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3

    def __str__(self) -> str:
        return _STATE_NAMES[self]


_STATE_NAMES = {
    StateType.FOLLOWER: "StateFollower",
    StateType.CANDIDATE: "StateCandidate",
    StateType.LEADER: "StateLeader",
    StateType.PRE_CANDIDATE: "StatePreCandidate",
}


class CampaignType(IntEnum):
    PRE_ELECTION = 0
    ELECTION = 1
    TRANSFER = 2


class RaftError(Exception):
    """A request the state machine refuses (not a bug)."""


class ProposalDroppedError(RaftError):
    def __init__(self) -> None:
        super().__init__("raft proposal dropped")


class Rng(Protocol):
    """The randomness the core needs: ``random.Random`` satisfies it."""

    def randrange(self, stop: int, /) -> int: ...


@dataclass(slots=True)
class Config:
    id: int
    storage: Storage
    rng: Rng
    election_tick: int = 10
    heartbeat_tick: int = 1
    applied: int = 0
    max_size_per_msg: int = 1 << 20
    max_committed_size_per_ready: int = NO_LIMIT
    max_uncommitted_entries_size: int = 0  # 0: no limit
    max_inflight_msgs: int = 256
    max_inflight_bytes: int = 0
    check_quorum: bool = False
    pre_vote: bool = False
    read_only_option: ReadOnlyOption = ReadOnlyOption.SAFE
    disable_proposal_forwarding: bool = False

    def validate(self) -> None:
        if self.id == NONE:
            raise ValueError("cannot use none as id")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election tick must be greater than heartbeat tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max inflight messages must be greater than 0")
        if self.read_only_option == ReadOnlyOption.LEASE_BASED and not self.check_quorum:
            raise ValueError("CheckQuorum must be enabled when ReadOnlyOption is ReadOnlyLeaseBased")


def _payload_size(entries: Sequence[Entry]) -> int:
    return sum(len(e.data) for e in entries)


def is_conf_change(e: Entry) -> bool:
    return e.type in (ENTRY_CONF_CHANGE, ENTRY_CONF_CHANGE_V2)


class Raft:
    def __init__(self, cfg: Config) -> None:
        cfg.validate()
        self.id = cfg.id
        self.rng = cfg.rng
        self.raft_log = RaftLog(cfg.storage, cfg.max_committed_size_per_ready)
        hs, cs = cfg.storage.initial_state()
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = StateType.FOLLOWER
        self.is_learner = False
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.max_msg_size = cfg.max_size_per_msg
        self.max_uncommitted_size = cfg.max_uncommitted_entries_size
        self.uncommitted_size = 0
        self.prs = ProgressTracker(cfg.max_inflight_msgs, cfg.max_inflight_bytes)
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.read_only = ReadOnly(cfg.read_only_option)
        self.pending_read_index_messages: list[Message] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.check_quorum = cfg.check_quorum
        self.pre_vote = cfg.pre_vote
        self.heartbeat_timeout = cfg.heartbeat_tick
        self.election_timeout = cfg.election_tick
        self.randomized_election_timeout = 0
        self.disable_proposal_forwarding = cfg.disable_proposal_forwarding
        self._step: Callable[[Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election

        config, progress = confchange.restore(confchange.Changer(self.prs, self.raft_log.last_index()), cs)
        restored = self._switch_to_config(config, progress)
        if restored != cs:
            raise AssertionError(f"restored configuration {restored} differs from the stored {cs}")
        if hs != HardState():
            self._load_state(hs)
        if cfg.applied > 0:
            self.raft_log.applied_to(cfg.applied)
        self._become_follower(self.term, NONE)
        log.debug(
            "newRaft %x [peers: %s, term: %d, commit: %d, applied: %d, lastindex: %d, lastterm: %d]",
            self.id,
            self.prs.voter_nodes(),
            self.term,
            self.raft_log.committed,
            self.raft_log.applied,
            self.raft_log.last_index(),
            self.raft_log.last_term(),
        )

    # -- state ------------------------------------------------------------------

    def has_leader(self) -> bool:
        return self.lead != NONE

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def _load_state(self, hs: HardState) -> None:
        if hs.commit < self.raft_log.committed or hs.commit > self.raft_log.last_index():
            raise AssertionError(
                f"{self.id:x} state.commit {hs.commit} is out of range "
                f"[{self.raft_log.committed}, {self.raft_log.last_index()}]"
            )
        self.raft_log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    def promotable(self) -> bool:
        """Whether this node may campaign: a voter with no snapshot waiting to be applied."""
        pr = self.prs.progress.get(self.id)
        return pr is not None and not pr.is_learner and not self.raft_log.has_pending_snapshot()

    def _past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def _reset_randomized_election_timeout(self) -> None:
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(self.election_timeout)

    # -- sending ----------------------------------------------------------------

    def _send(self, m: Message) -> None:
        """Queue ``m`` from this node; its term is filled in unless it is a vote or a proposal."""
        if m.type in (MT.VOTE, MT.VOTE_RESP, MT.PRE_VOTE, MT.PRE_VOTE_RESP):
            if m.term == 0:
                raise AssertionError(f"term should be set when sending {m.type.name}")
        elif m.term != 0:
            raise AssertionError(f"term should not be set when sending {m.type.name} (was {m.term})")
        elif m.type not in (MT.PROP, MT.READ_INDEX):
            m = replace(m, term=self.term)
        if m.from_ == NONE:
            m = replace(m, from_=self.id)
        self.msgs.append(m)

    def _send_append(self, to: int) -> None:
        self._maybe_send_append(to, send_if_empty=True)

    def _maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        """Send ``to`` the entries it lacks (or a snapshot); returns whether a message was sent."""
        pr = self.prs.progress[to]
        if pr.is_paused():
            return False
        rl = self.raft_log
        try:
            term = rl.term(pr.next - 1)
            ents = rl.entries(pr.next, self.max_msg_size)
        except (ErrCompacted, ErrUnavailable):
            return self._maybe_send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        self._send(
            Message(MT.APP, to=to, index=pr.next - 1, log_term=term, entries=tuple(ents), commit=rl.committed)
        )
        if ents:
            if pr.state == ProgressState.REPLICATE:
                last = ents[-1].index
                pr.optimistic_update(last)
                pr.inflights.add(last, _payload_size(ents))
            elif pr.state == ProgressState.PROBE:
                pr.probe_sent = True
            else:
                raise AssertionError(f"{self.id:x} is sending append in unhandled state {pr.state}")
        return True

    def _maybe_send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            log.debug("ignore sending snapshot to %x since it is not recently active", to)
            return False
        try:
            snapshot = self.raft_log.snapshot()
        except ErrSnapshotTemporarilyUnavailable:
            log.debug(
                "%x failed to send snapshot to %x because snapshot is temporarily unavailable", self.id, to
            )
            return False
        if snapshot.empty:
            raise AssertionError("need non-empty snapshot")
        pr.become_snapshot(snapshot.metadata.index)
        self._send(Message(MT.SNAP, to=to, snapshot=snapshot))
        return True

    def _send_heartbeat(self, to: int, ctx: bytes) -> None:
        # Never advance a follower's commit beyond what it is known to have.
        commit = min(self.prs.progress[to].match, self.raft_log.committed)
        self._send(Message(MT.HEARTBEAT, to=to, commit=commit, context=ctx))

    def _bcast_append(self) -> None:
        for node in sorted(self.prs.progress):
            if node != self.id:
                self._send_append(node)

    def _bcast_heartbeat(self) -> None:
        self._bcast_heartbeat_with_ctx(self.read_only.last_pending_request_ctx())

    def _bcast_heartbeat_with_ctx(self, ctx: bytes) -> None:
        for node in sorted(self.prs.progress):
            if node != self.id:
                self._send_heartbeat(node, ctx)

    # -- after the caller persisted and applied a Ready -----------------------------

    def advance(
        self, entries: Sequence[Entry], committed: Sequence[Entry], snapshot: Snapshot | None
    ) -> None:
        """``entries`` were persisted, ``committed`` applied (or handed off), ``snapshot`` restored."""
        self._reduce_uncommitted_size(committed)
        new_applied = committed[-1].index if committed else snapshot.metadata.index if snapshot else 0
        if new_applied > 0:
            old_applied = self.raft_log.applied
            self.raft_log.applied_to(new_applied)
            if (
                self.prs.config.auto_leave
                and old_applied <= self.pending_conf_index <= new_applied
                and self.state == StateType.LEADER
            ):
                # The joint configuration is applied: leave it with an empty change.
                if not self._append_entry([Entry(0, 0, b"", ENTRY_CONF_CHANGE_V2)]):
                    raise AssertionError("refused un-refusable auto-leaving ConfChangeV2")
                self.pending_conf_index = self.raft_log.last_index()
                self._bcast_append()
                log.info("initiating automatic transition out of joint configuration %s", self.prs.config)
        if entries:
            last = entries[-1]
            self.raft_log.stable_to(last.index, last.term)
            self._self_ack(last)
        if snapshot is not None and not snapshot.empty:
            self.raft_log.stable_snap_to(snapshot.metadata.index)

    def _self_ack(self, last: Entry) -> None:
        """The leader's own entries count towards a quorum only once they are durable.

        So the leader may send entries before writing them (the thesis, 10.2.1):
        an entry is committed only when a majority has it on disk.
        """
        if self.state != StateType.LEADER or not self.raft_log.match_term(last.index, last.term):
            return
        pr = self.prs.progress.get(self.id)
        if pr is not None and pr.maybe_update(last.index) and self._maybe_commit():
            self._release_pending_read_index_messages()
            self._bcast_append()

    def _stable_last_index(self) -> int:
        """The last index known to be durable (entries below the unstable part are in storage)."""
        unstable = self.raft_log.unstable
        return unstable.offset - 1 if unstable.entries else self.raft_log.last_index()

    # -- roles ------------------------------------------------------------------

    def _maybe_commit(self) -> bool:
        return self.raft_log.maybe_commit(self.prs.committed(), self.term)

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self._abort_leader_transfer()
        self.prs.reset_votes()
        last = self.raft_log.last_index()
        for node, pr in list(self.prs.progress.items()):
            fresh = Progress(last + 1, self.prs.new_inflights(), is_learner=pr.is_learner)
            if node == self.id:
                fresh.match = self._stable_last_index()
            self.prs.progress[node] = fresh
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly(self.read_only.option)

    def _append_entry(self, entries: Sequence[Entry]) -> bool:
        li = self.raft_log.last_index()
        ents = [Entry(li + 1 + i, self.term, e.data, e.type) for i, e in enumerate(entries)]
        if not self._increase_uncommitted_size(ents):
            log.debug("%x appending new entries to log would exceed uncommitted entry size limit", self.id)
            return False
        self.raft_log.append(ents)
        # The leader acknowledges its own entries once they are durable (advance -> _self_ack).
        return True

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self._past_election_timeout():
            self.election_elapsed = 0
            self.step(Message(MT.HUP, from_=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(MT.CHECK_QUORUM, from_=self.id))
            # A transfer that did not finish within an election timeout is abandoned.
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self._abort_leader_transfer()
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(MT.BEAT, from_=self.id))

    def tick(self) -> None:
        self._tick()

    def _become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self._reset(term)
        self._tick = self._tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER
        log.info("%x became follower at term %d", self.id, self.term)

    def _become_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self._step = self._step_candidate
        self._reset(self.term + 1)
        self._tick = self._tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE
        log.info("%x became candidate at term %d", self.id, self.term)

    def _become_pre_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # A pre-candidate changes neither its term nor its vote.
        self._step = self._step_candidate
        self.prs.reset_votes()
        self._tick = self._tick_election
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE
        log.info("%x became pre-candidate at term %d", self.id, self.term)

    def _become_leader(self) -> None:
        if self.state == StateType.FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self._step = self._step_leader
        self._reset(self.term)
        self._tick = self._tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        # The leader's own progress is always replicating (it has every entry it appends) and active.
        own = self.prs.progress[self.id]
        own.become_replicate()
        own.recent_active = True
        # Conservatively treat every entry up to the last as a possible pending conf change.
        self.pending_conf_index = self.raft_log.last_index()
        if not self._append_entry([Entry(0, 0, b"")]):
            raise AssertionError("empty entry was dropped")
        # The empty entry has no payload: it does not count towards the uncommitted size.
        log.info("%x became leader at term %d", self.id, self.term)

    def _hup(self, t: CampaignType) -> None:
        if self.state == StateType.LEADER:
            log.debug("%x ignoring MsgHup because already leader", self.id)
            return
        if not self.promotable():
            log.warning("%x is unpromotable and can not campaign", self.id)
            return
        pending = self.raft_log.slice(self.raft_log.applied + 1, self.raft_log.committed + 1)
        if any(is_conf_change(e) for e in pending) and self.raft_log.committed > self.raft_log.applied:
            log.warning("%x cannot campaign at term %d: there are unapplied conf changes", self.id, self.term)
            return
        log.info("%x is starting a new election at term %d", self.id, self.term)
        self._campaign(t)

    def _campaign(self, t: CampaignType) -> None:
        if t == CampaignType.PRE_ELECTION:
            self._become_pre_candidate()
            vote_msg = MT.PRE_VOTE
            # Pre-votes are asked for the term the real election would have.
            term = self.term + 1
        else:
            self._become_candidate()
            vote_msg = MT.VOTE
            term = self.term
        if self._poll(self.id, vote_response_type(vote_msg), True) == VoteResult.WON:
            # Alone in the configuration: won at once.
            if t == CampaignType.PRE_ELECTION:
                self._campaign(CampaignType.ELECTION)
            else:
                self._become_leader()
            return
        ctx = _CAMPAIGN_TRANSFER if t == CampaignType.TRANSFER else b""
        last_index, last_term = self.raft_log.last_index(), self.raft_log.last_term()
        for node in sorted(self.prs.config.voters.ids()):
            if node == self.id:
                continue
            log.info(
                "%x [logterm: %d, index: %d] sent %s request to %x at term %d",
                self.id,
                last_term,
                last_index,
                vote_msg.name,
                node,
                self.term,
            )
            self._send(
                Message(vote_msg, to=node, term=term, index=last_index, log_term=last_term, context=ctx)
            )

    def _poll(self, node: int, t: MessageType, granted: bool) -> VoteResult:
        self.prs.record_vote(node, granted)
        return self.prs.tally_votes()[2]

    # -- step -------------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Feed one message (local or from a peer). Raises ProposalDroppedError for a refused proposal."""
        if m.term == 0:
            pass  # a local message
        elif m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                force = m.context == _CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum and self.lead != NONE and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    # We heard from a leader within the minimum election timeout: keep it (thesis 4.2.3).
                    log.info(
                        "%x [term: %d] ignored %s from %x [term: %d]: lease is not expired",
                        self.id,
                        self.term,
                        m.type.name,
                        m.from_,
                        m.term,
                    )
                    return
            if m.type == MT.PRE_VOTE:
                pass  # never change the term for a pre-vote request
            elif m.type == MT.PRE_VOTE_RESP and not m.reject:
                pass  # the term is raised only once the pre-vote is won
            else:
                log.info(
                    "%x [term: %d] received a %s message with higher term from %x [term: %d]",
                    self.id,
                    self.term,
                    m.type.name,
                    m.from_,
                    m.term,
                )
                leader = m.from_ if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP) else NONE
                self._become_follower(m.term, leader)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
                # A stale leader (e.g. healed from a partition) learns our term and steps down,
                # instead of disrupting us later with its higher-term campaigns.
                self._send(Message(MT.APP_RESP, to=m.from_))
            elif m.type == MT.PRE_VOTE:
                self._send(Message(MT.PRE_VOTE_RESP, to=m.from_, term=self.term, reject=True))
            else:
                log.info(
                    "%x [term: %d] ignored a %s message with lower term from %x [term: %d]",
                    self.id,
                    self.term,
                    m.type.name,
                    m.from_,
                    m.term,
                )
            return

        if m.type == MT.HUP:
            self._hup(CampaignType.PRE_ELECTION if self.pre_vote else CampaignType.ELECTION)
        elif m.type in (MT.VOTE, MT.PRE_VOTE):
            can_vote = (
                self.vote == m.from_
                or (self.vote == NONE and self.lead == NONE)
                or (m.type == MT.PRE_VOTE and m.term > self.term)
            )
            if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
                log.info(
                    "%x [logterm: %d, index: %d, vote: %x] cast %s for %x [logterm: %d, index: %d] "
                    "at term %d",
                    self.id,
                    self.raft_log.last_term(),
                    self.raft_log.last_index(),
                    self.vote,
                    m.type.name,
                    m.from_,
                    m.log_term,
                    m.index,
                    self.term,
                )
                # The response carries the request's term: a pre-vote's is ahead of ours.
                self._send(Message(vote_response_type(m.type), to=m.from_, term=m.term))
                if m.type == MT.VOTE:
                    self.election_elapsed = 0
                    self.vote = m.from_
            else:
                log.info(
                    "%x [logterm: %d, index: %d, vote: %x] rejected %s from %x [logterm: %d, index: %d] "
                    "at term %d",
                    self.id,
                    self.raft_log.last_term(),
                    self.raft_log.last_index(),
                    self.vote,
                    m.type.name,
                    m.from_,
                    m.log_term,
                    m.index,
                    self.term,
                )
                self._send(Message(vote_response_type(m.type), to=m.from_, term=self.term, reject=True))
        else:
            self._step(m)

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MT.BEAT:
            self._bcast_heartbeat()
            return
        if t == MT.CHECK_QUORUM:
            own = self.prs.progress.get(self.id)
            if own is not None:
                own.recent_active = True
            if not self.prs.quorum_active():
                log.warning("%x stepped down to follower since quorum is not active", self.id)
                self._become_follower(self.term, NONE)
            for node, other in self.prs.progress.items():
                if node != self.id:
                    other.recent_active = False
            return
        if t == MT.PROP:
            self._propose(m)
            return
        if t == MT.READ_INDEX:
            if self.prs.is_singleton():
                resp = self._response_to_read_index_req(m, self.raft_log.committed)
                if resp is not None:
                    self._send(resp)
                return
            # Until an entry of this term is committed the leader's commit index may be stale.
            if not self._committed_entry_in_current_term():
                self.pending_read_index_messages.append(m)
                return
            self._send_read_index_response(m)
            return

        pr = self.prs.progress.get(m.from_)
        if pr is None:
            log.debug("%x no progress available for %x", self.id, m.from_)
            return
        if t == MT.APP_RESP:
            self._handle_append_response(m, pr)
        elif t == MT.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_acked()
            if pr.state == ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()
            # A probing follower gets an append even when caught up, so it can return to replicating.
            if pr.match < self.raft_log.last_index() or pr.state == ProgressState.PROBE:
                self._send_append(m.from_)
            if self.read_only.option != ReadOnlyOption.SAFE or not m.context:
                return
            if (
                self.prs.config.voters.vote_result(self.read_only.recv_ack(m.from_, m.context))
                != VoteResult.WON
            ):
                return
            for rs in self.read_only.advance(m):
                resp = self._response_to_read_index_req(rs.req, rs.index)
                if resp is not None:
                    self._send(resp)
        elif t == MT.SNAP_STATUS:
            if pr.state != ProgressState.SNAPSHOT:
                return
            if m.reject:
                # The snapshot did not arrive: forget it and probe again from what the follower has.
                pr.pending_snapshot = 0
            pr.become_probe()
            # Wait for the next heartbeat response before probing (the snapshot may still be applying).
            pr.probe_sent = True
        elif t == MT.UNREACHABLE:
            # Optimistic appends were probably lost: probe from what is known to have arrived.
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
        elif t == MT.TRANSFER_LEADER:
            self._handle_transfer_leader(m, pr)

    def _propose(self, m: Message) -> None:
        if not m.entries:
            raise AssertionError(f"{self.id:x} stepped empty MsgProp")
        if self.id not in self.prs.progress:
            # Removed from the configuration while still leader: don't take new entries.
            raise ProposalDroppedError
        if self.lead_transferee != NONE:
            log.debug(
                "%x [term %d] transfer leadership to %x is in progress",
                self.id,
                self.term,
                self.lead_transferee,
            )
            raise ProposalDroppedError
        entries = list(m.entries)
        for i, e in enumerate(entries):
            if e.type == ENTRY_CONF_CHANGE_V2:
                cc: ConfChangeV2 | None = decode_conf_change(e.data)
            elif e.type == ENTRY_CONF_CHANGE:
                raise AssertionError("synod proposes configuration changes as ConfChangeV2 only")
            else:
                cc = None
            if cc is None:
                continue
            already_pending = self.pending_conf_index > self.raft_log.applied
            already_joint = self.prs.config.voters.is_joint
            wants_leave = cc.leave_joint()
            refused = ""
            if already_pending:
                refused = (
                    f"possible unapplied conf change at index {self.pending_conf_index} "
                    f"(applied to {self.raft_log.applied})"
                )
            elif already_joint and not wants_leave:
                refused = "must transition out of joint config first"
            elif not already_joint and wants_leave:
                refused = "not in joint state; refusing empty conf change"
            if refused:
                log.info("%x ignoring conf change %s at config %s: %s", self.id, cc, self.prs.config, refused)
                entries[i] = Entry(0, 0, b"", ENTRY_NORMAL)
            else:
                self.pending_conf_index = self.raft_log.last_index() + i + 1
        if not self._append_entry(entries):
            raise ProposalDroppedError
        self._bcast_append()

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            log.debug(
                "%x received MsgAppResp(rejected, hint: (index %d, term %d)) from %x for index %d",
                self.id,
                m.reject_hint,
                m.log_term,
                m.from_,
                m.index,
            )
            next_probe = m.reject_hint
            if m.log_term > 0:
                # Skip every entry of the follower's conflicting term at once (thesis 5.3's optimisation).
                next_probe, _ = self.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.from_)
            return
        old_paused = pr.is_paused()
        # A probed follower that already had everything answers with its match: it replicates again.
        if not pr.maybe_update(m.index) and not (pr.match == m.index and pr.state == ProgressState.PROBE):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            # The follower caught up past the snapshot (from it or otherwise): replicate normally.
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._release_pending_read_index_messages()
            self._bcast_append()
        elif old_paused:
            # The follower was paused: tell it the commit index now, even with nothing new to send.
            self._send_append(m.from_)
        while self._maybe_send_append(m.from_, send_if_empty=False):
            pass
        if m.from_ == self.lead_transferee and pr.match == self.raft_log.last_index():
            log.info("%x sent MsgTimeoutNow to %x after received MsgAppResp", self.id, m.from_)
            self._send_timeout_now(m.from_)

    def _handle_transfer_leader(self, m: Message, pr: Progress) -> None:
        if pr.is_learner:
            log.debug("%x is learner. Ignored transferring leadership", m.from_)
            return
        transferee = m.from_
        last = self.lead_transferee
        if last != NONE:
            if last == transferee:
                return  # already under way
            self._abort_leader_transfer()
        if transferee == self.id:
            return  # already the leader
        # The transfer should end within one election timeout.
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.raft_log.last_index():
            self._send_timeout_now(transferee)
        else:
            self._send_append(transferee)

    def _step_candidate(self, m: Message) -> None:
        my_vote_resp = MT.PRE_VOTE_RESP if self.state == StateType.PRE_CANDIDATE else MT.VOTE_RESP
        t = m.type
        if t == MT.PROP:
            raise ProposalDroppedError
        if t == MT.APP:
            self._become_follower(m.term, m.from_)  # always m.term == self.term here
            self._handle_append_entries(m)
        elif t == MT.HEARTBEAT:
            self._become_follower(m.term, m.from_)
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self._become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif t == my_vote_resp:
            result = self._poll(m.from_, t, not m.reject)
            if result == VoteResult.WON:
                if self.state == StateType.PRE_CANDIDATE:
                    self._campaign(CampaignType.ELECTION)
                else:
                    self._become_leader()
                    self._bcast_append()
            elif result == VoteResult.LOST:
                # A pre-candidate's term never changed; a candidate stays in its new term.
                self._become_follower(self.term, NONE)

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MT.PROP:
            if self.lead == NONE:
                log.info("%x no leader at term %d; dropping proposal", self.id, self.term)
                raise ProposalDroppedError
            if self.disable_proposal_forwarding:
                raise ProposalDroppedError
            self._send(replace(m, to=self.lead))
        elif t == MT.APP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_append_entries(m)
        elif t == MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_snapshot(m)
        elif t == MT.TRANSFER_LEADER:
            if self.lead != NONE:
                self._send(replace(m, to=self.lead))
        elif t == MT.TIMEOUT_NOW:
            log.info(
                "%x [term %d] received MsgTimeoutNow from %x and starts an election",
                self.id,
                self.term,
                m.from_,
            )
            # Leadership transfers never use pre-vote: the leader itself asked for this election.
            self._hup(CampaignType.TRANSFER)
        elif t == MT.READ_INDEX:
            if self.lead != NONE:
                self._send(replace(m, to=self.lead))
        elif t == MT.READ_INDEX_RESP:
            if len(m.entries) != 1:
                log.error("%x invalid format of MsgReadIndexResp from %x", self.id, m.from_)
                return
            self.read_states.append(ReadState(m.index, m.entries[0].data))

    def _handle_append_entries(self, m: Message) -> None:
        rl = self.raft_log
        if m.index < rl.committed:
            self._send(Message(MT.APP_RESP, to=m.from_, index=rl.committed))
            return
        last_new, ok = rl.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if ok:
            self._send(Message(MT.APP_RESP, to=m.from_, index=last_new))
            return
        # Reject with a hint: the last index at or before m.index whose term is <= m.log_term, so the
        # leader can skip a whole conflicting term in one round trip.
        hint_index = min(m.index, rl.last_index())
        hint_index, hint_term = rl.find_conflict_by_term(hint_index, m.log_term)
        log.debug(
            "%x [logterm: %d, index: %d] rejected MsgApp [logterm: %d, index: %d] from %x",
            self.id,
            rl.zero_term_on_err_compacted(m.index),
            m.index,
            m.log_term,
            m.index,
            m.from_,
        )
        self._send(
            Message(
                MT.APP_RESP,
                to=m.from_,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.raft_log.commit_to(m.commit)
        self._send(Message(MT.HEARTBEAT_RESP, to=m.from_, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        assert m.snapshot is not None
        if self._restore(m.snapshot):
            self._send(Message(MT.APP_RESP, to=m.from_, index=self.raft_log.last_index()))
        else:
            self._send(Message(MT.APP_RESP, to=m.from_, index=self.raft_log.committed))

    def _restore(self, s: Snapshot) -> bool:
        """Reset the log and configuration to the snapshot; False if it is not newer than what we have."""
        md = s.metadata
        if md.index <= self.raft_log.committed:
            return False
        if self.state != StateType.FOLLOWER:
            # Only a follower should receive a snapshot; be safe and step down into a new term.
            log.warning("%x attempted to restore snapshot as leader; should never happen", self.id)
            self._become_follower(self.term + 1, NONE)
            return False
        cs = md.conf_state
        if self.id not in (*cs.voters, *cs.learners, *cs.voters_outgoing):
            log.warning("%x attempted to restore snapshot but it is not in the ConfState %s", self.id, cs)
            return False
        if self.raft_log.match_term(md.index, md.term):
            # We already have the snapshot's entries: just commit up to it.
            self.raft_log.commit_to(md.index)
            return False
        self.raft_log.restore(s)
        self.prs = ProgressTracker(self.prs.max_inflight, self.prs.max_inflight_bytes)
        config, progress = confchange.restore(confchange.Changer(self.prs, self.raft_log.last_index()), cs)
        restored = self._switch_to_config(config, progress)
        if restored != cs:
            raise AssertionError(f"restored configuration {restored} differs from the snapshot's {cs}")
        pr = self.prs.progress[self.id]
        pr.maybe_update(pr.next - 1)
        log.info("%x restored snapshot [index: %d, term: %d]", self.id, md.index, md.term)
        return True

    # -- configuration ----------------------------------------------------------

    def apply_conf_change(self, cc: ConfChangeV2) -> ConfState:
        changer = confchange.Changer(self.prs, self.raft_log.last_index())
        if cc.leave_joint():
            config, progress = changer.leave_joint()
        else:
            joint, auto_leave = cc.enter_joint()
            if joint:
                config, progress = changer.enter_joint(auto_leave, cc.changes)
            else:
                config, progress = changer.simple(cc.changes)
        return self._switch_to_config(config, progress)

    def _switch_to_config(self, config: TrackerConfig, progress: dict[int, Progress]) -> ConfState:
        self.prs.config = config
        self.prs.progress = progress
        cs = self.prs.conf_state()
        pr = self.prs.progress.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if (pr is None or self.is_learner) and self.state == StateType.LEADER:
            # Removed or demoted while leader: it stops taking proposals and steps down when
            # check-quorum (or a new leader's term) says so.
            return cs
        if self.state != StateType.LEADER or not cs.voters:
            return cs
        if self._maybe_commit():
            # The new configuration may commit entries the old one could not.
            self._bcast_append()
        else:
            for node in sorted(self.prs.progress):
                if node != self.id:
                    self._maybe_send_append(node, send_if_empty=False)
        if self.lead_transferee != NONE and self.lead_transferee not in self.prs.config.voters.ids():
            self._abort_leader_transfer()
        return cs

    # -- leader transfer and reads ---------------------------------------------

    def _send_timeout_now(self, to: int) -> None:
        self._send(Message(MT.TIMEOUT_NOW, to=to))

    def _abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    def _committed_entry_in_current_term(self) -> bool:
        return self.raft_log.zero_term_on_err_compacted(self.raft_log.committed) == self.term

    def _response_to_read_index_req(self, req: Message, read_index: int) -> Message | None:
        """A read answered at ``read_index``: a ReadState if it is ours, else a message to send."""
        if req.from_ in (NONE, self.id):
            self.read_states.append(ReadState(read_index, req.entries[0].data))
            return None
        return Message(MT.READ_INDEX_RESP, to=req.from_, index=read_index, entries=req.entries)

    def _send_read_index_response(self, m: Message) -> None:
        if self.read_only.option == ReadOnlyOption.SAFE:
            ctx = m.entries[0].data
            self.read_only.add_request(self.raft_log.committed, m)
            # The leader acknowledges its own read at once.
            self.read_only.recv_ack(self.id, ctx)
            self._bcast_heartbeat_with_ctx(ctx)
        else:
            resp = self._response_to_read_index_req(m, self.raft_log.committed)
            if resp is not None:
                self._send(resp)

    def _release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages:
            return
        if not self._committed_entry_in_current_term():
            log.error("pending MsgReadIndex should be released only after first commit in current term")
            return
        pending, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in pending:
            self._send_read_index_response(m)

    # -- uncommitted size -------------------------------------------------------

    def _increase_uncommitted_size(self, ents: Sequence[Entry]) -> bool:
        s = _payload_size(ents)
        if self.uncommitted_size > 0 and s > 0 and self.uncommitted_size + s > self.max_uncommitted_size > 0:
            # Refuse: too much is in flight. An entry is always taken when nothing is uncommitted,
            # so a single large entry can't wedge the log.
            return False
        self.uncommitted_size += s
        return True

    def _reduce_uncommitted_size(self, ents: Sequence[Entry]) -> None:
        if self.uncommitted_size == 0:
            return  # followers don't track it; the leader resets it on election
        self.uncommitted_size = max(0, self.uncommitted_size - _payload_size(ents))


def conf_change_entry(cc: ConfChangeV2) -> Entry:
    """The entry that proposes ``cc``."""
    return Entry(0, 0, encode_conf_change(cc), ENTRY_CONF_CHANGE_V2)
