"""Raft's vocabulary: entries, hard state, configurations, snapshots and messages.

Pure data, shared by the sans-IO core (``synod.raft``), the WAL and the peer
transport. The names and meanings are etcd-io/raft's (``raftpb``) so that its
source can be read beside this code; node IDs are non-zero 64-bit integers
and 0 means "none".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

NONE = 0  # no node: no leader, no vote


class EntryType(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1  # data: an encoded ConfChange (one change, the Raft paper's way)
    CONF_CHANGE_V2 = 2  # data: an encoded ConfChangeV2 (joint consensus)


# Kept as plain ints for the WAL's record format.
ENTRY_NORMAL = int(EntryType.NORMAL)
ENTRY_CONF_CHANGE = int(EntryType.CONF_CHANGE)
ENTRY_CONF_CHANGE_V2 = int(EntryType.CONF_CHANGE_V2)


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    data: bytes
    type: int = ENTRY_NORMAL


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before any message that depends on it is sent."""

    term: int = 0
    vote: int = 0
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """A configuration: voters (and, during a joint change, the outgoing voters) and learners."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    voters_outgoing: tuple[int, ...] = ()  # non-empty only in a joint configuration
    learners_next: tuple[int, ...] = ()  # voters of the outgoing config that become learners on leaving
    auto_leave: bool = False


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    conf_state: ConfState = field(default_factory=ConfState)
    index: int = 0
    term: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    data: bytes = b""
    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)

    @property
    def empty(self) -> bool:
        return self.metadata.index == 0


EMPTY_SNAPSHOT = Snapshot()


class ConfChangeType(IntEnum):
    ADD_NODE = 0
    REMOVE_NODE = 1
    UPDATE_NODE = 2
    ADD_LEARNER_NODE = 3


class ConfChangeTransition(IntEnum):
    AUTO = 0  # joint only when more than one voter changes; leave automatically
    JOINT_IMPLICIT = 1  # always joint; leave automatically
    JOINT_EXPLICIT = 2  # always joint; stay until an empty ConfChangeV2 leaves


@dataclass(frozen=True, slots=True)
class ConfChangeSingle:
    type: ConfChangeType
    node_id: int


@dataclass(frozen=True, slots=True)
class ConfChangeV2:
    transition: ConfChangeTransition = ConfChangeTransition.AUTO
    changes: tuple[ConfChangeSingle, ...] = ()
    context: bytes = b""

    def enter_joint(self) -> tuple[bool, bool]:
        """(use joint consensus, leave it automatically), as etcd's ``EnterJoint``."""
        if self.transition != ConfChangeTransition.AUTO or len(self.changes) > 1:
            return True, self.transition in (ConfChangeTransition.AUTO, ConfChangeTransition.JOINT_IMPLICIT)
        return False, False

    def leave_joint(self) -> bool:
        """An empty change leaves a joint configuration."""
        return not self.changes and not self.context and self.transition == ConfChangeTransition.AUTO


class MessageType(IntEnum):
    HUP = 0  # local: start an election
    BEAT = 1  # local: the leader should send heartbeats
    PROP = 2  # a proposal (local, or forwarded by a follower)
    APP = 3
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10  # local: the transport could not reach a peer
    SNAP_STATUS = 11  # local: how sending a snapshot ended (reject = failed)
    CHECK_QUORUM = 12  # local: the leader should check it still hears from a quorum
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18


LOCAL_MESSAGES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.CHECK_QUORUM,
    }
)
RESPONSE_MESSAGES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.UNREACHABLE,
        MessageType.READ_INDEX_RESP,
        MessageType.PRE_VOTE_RESP,
    }
)


def vote_response_type(t: MessageType) -> MessageType:
    if t == MessageType.VOTE:
        return MessageType.VOTE_RESP
    if t == MessageType.PRE_VOTE:
        return MessageType.PRE_VOTE_RESP
    raise ValueError(f"not a vote message: {t!r}")


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: int = NONE
    from_: int = NONE
    term: int = 0
    log_term: int = 0  # the term of the entry at ``index`` (appends, votes), or of the rejection hint
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
