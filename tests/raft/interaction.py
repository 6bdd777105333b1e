"""A scripted environment for data-driven Raft tests: commands in, every effect rendered as text.

The idea is etcd-io/raft's ``rafttest.InteractionEnv``: a test is a script of
commands run against ``RawNode``\\s backed by ``MemoryStorage``; the output of
every command is compared with a golden transcript (see ``test_interaction.py``).
Nothing happens behind the script's back: messages wait in a queue until a
``deliver-msgs`` or ``stabilize`` hands them over, Readies are handled only by
``process-ready`` or ``stabilize``, and time moves only by ``tick-*``.

Commands (``ID`` is a node ID; ``(1,2,3)`` is a list; ``[...]`` is optional)::

    add-nodes N [voters=(1,2,3)] [learners=(4)] [index=I] [content=DATA] [prevote=true]
              [checkquorum=true] [max-inflight=N] [election-tick=10] [heartbeat-tick=1]
        N new nodes, with the next free IDs. With voters/learners, each storage holds
        a snapshot at ``index`` (default 1, term 1) with that configuration and
        ``content`` as its data; without, the storage is empty (a node to be added by a
        configuration change, which the leader will send a snapshot).
    campaign ID                        the node starts an election (MsgHup)
    propose ID DATA                    propose a normal entry (DATA: the rest of the line)
    propose-conf-change ID [transition=auto|implicit|explicit] v2 l3 r4 u5
                                       propose a ConfChangeV2: v=add voter, l=add learner,
                                       r=remove, u=update; no change at all = leave joint
    tick-heartbeat ID                  heartbeat_tick ticks
    tick-election ID                   tick until the election timer fires (a follower campaigns,
                                       a leader checks its quorum), at most 2 x election_tick ticks:
                                       the randomized timeout is below that, and stopping at the
                                       first firing keeps a short timeout from firing twice
    process-ready ID...                handle each node's Ready (see below)
    deliver-msgs [ID...] [drop=(ID...)] [type=MsgApp]
                                       deliver (or drop) the queued messages to those nodes,
                                       oldest first, printing each one
    stabilize [ID...]                  repeat: handle the Ready of every node that has one, then
                                       deliver every queued message to them, until nothing happens
    status ID                          the leader's view of each peer (Progress), one line each
    raft-state                         every node's role, term, vote and leader
    raft-log ID                        the entries in the node's storage (the persisted log)
    transfer-leadership from=ID to=ID
    read-index ID CTX                  a ReadIndex request with context CTX
    report-unreachable ID TO           the transport of ID could not reach TO
    compact ID INDEX                   snapshot the node's applied state at INDEX (its configuration
                                       there, its applied data) and compact its log up to INDEX
    restart ID                         crash and restart: a new RawNode on the same storage; the
                                       in-memory state machine restarts from the storage's snapshot
                                       and re-applies the committed entries after it (as etcd does);
                                       queued messages stay queued
    log-level none|info|debug          which of the core's log lines ("synod.raft") are shown

Handling a Ready (``process-ready``, ``stabilize``): print it, write its
snapshot, entries and hard state to the storage, queue its messages, apply its
committed entries (configuration changes through ``apply_conf_change``, whose
resulting configuration is printed), then ``advance``.

The state machine of a node is the list of the data of the normal entries it
applied; a snapshot's data is that list joined by ``,``.

Rendering (stable: the golden files depend on it):

* entry: ``TERM/INDEX TYPE PAYLOAD``, e.g. ``1/3 EntryNormal "foo"``,
  ``2/5 EntryConfChangeV2 v4 l5``, ``2/6 EntryConfChangeV2 transition=explicit r3``,
  ``2/7 EntryConfChangeV2 <leave-joint>`` (the empty change). Data is quoted,
  with ``\\xNN`` escapes for bytes outside printable ASCII.
* message: ``FROM->TO TYPE Term:T`` then what the type carries:
  ``Log:TERM/INDEX`` (the entry the message follows or the candidate's last entry:
  MsgApp, MsgVote, MsgPreVote), ``Index:I`` (MsgAppResp: the index acknowledged or
  rejected; MsgReadIndexResp), ``Rejected`` and, for MsgAppResp, ``Hint:TERM/INDEX``
  (where the follower guesses its log matches), ``Commit:C`` (MsgApp, MsgHeartbeat),
  ``Ctx:"..."`` (ReadIndex requests and answers), ``Context:"..."`` (the message's
  context: heartbeats confirming a read, a vote forced by a leader transfer),
  ``Entries:[E]`` (one entry inline, several one per line below), ``Snapshot:...``.
* ``HardState Term:T Vote:V Commit:C``; soft state ``Lead:L State:StateLeader``;
  ``ConfState`` as ``Voters:[1 2 3]`` plus ``VotersOutgoing:[...]``, ``Learners:[...]``,
  ``LearnersNext:[...]``, ``AutoLeave:true`` when not empty.
* a Ready: ``Ready MustSync=BOOL:`` then, when present, the soft state, the hard
  state, ``Snapshot ...``, and the sections ``Entries:``, ``CommittedEntries:``,
  ``Messages:``, ``ReadStates:`` with their items indented below them.
* after a Ready, ``ConfState after applying I: ...`` for each configuration change
  applied; ``<no Ready>`` when there was none.
* ``stabilize``: ``> ID handling Ready`` and ``> ID receiving messages`` headers
  with what they did indented below; ``deliver-msgs`` prints each message (``dropped:``
  first if dropped), ``no messages`` if there were none.
* an input the core refuses (a ``RaftError``: proposal dropped, peer not found...):
  ``error: MESSAGE``.
* log lines: ``LEVEL message``, e.g. ``INFO 1 became leader at term 1``, in order
  with the rest and at the indentation of what caused them.

Every command prints at least one line (``ok`` when it has nothing to say);
output never contains blank lines.
"""

from __future__ import annotations

import logging
import random
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

from synod.raft.codec import decode_conf_change
from synod.raft.confchange import ConfChangeError
from synod.raft.raft import Config, RaftError, StateType
from synod.raft.rawnode import RawNode, Ready
from synod.raft.read_only import ReadState
from synod.raft.storage import MemoryStorage, StorageError
from synod.raft.types import (
    ENTRY_CONF_CHANGE,
    ENTRY_CONF_CHANGE_V2,
    ENTRY_NORMAL,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)

MT = MessageType
LOGGER = "synod.raft"

# -- rendering ----------------------------------------------------------------------------------

_ENTRY_TYPES = {
    ENTRY_NORMAL: "EntryNormal",
    ENTRY_CONF_CHANGE: "EntryConfChange",
    ENTRY_CONF_CHANGE_V2: "EntryConfChangeV2",
}
_CHANGE_LETTERS = {
    ConfChangeType.ADD_NODE: "v",
    ConfChangeType.ADD_LEARNER_NODE: "l",
    ConfChangeType.REMOVE_NODE: "r",
    ConfChangeType.UPDATE_NODE: "u",
}
_LETTER_CHANGES = {letter: kind for kind, letter in _CHANGE_LETTERS.items()}
_TRANSITIONS = {
    "auto": ConfChangeTransition.AUTO,
    "implicit": ConfChangeTransition.JOINT_IMPLICIT,
    "explicit": ConfChangeTransition.JOINT_EXPLICIT,
}
_TRANSITION_NAMES = {t: name for name, t in _TRANSITIONS.items()}


def message_type_name(t: MessageType) -> str:
    """``APP_RESP`` -> ``MsgAppResp``."""
    return "Msg" + "".join(part.capitalize() for part in t.name.split("_"))


_TYPES_BY_NAME = {message_type_name(t): t for t in MessageType}


def fmt_data(data: bytes) -> str:
    out = []
    for b in data:
        if b in (0x22, 0x5C):  # " and \
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return '"' + "".join(out) + '"'


def fmt_ids(ids: Sequence[int]) -> str:
    return "[" + " ".join(str(i) for i in ids) + "]"


def fmt_conf_change(cc: ConfChangeV2) -> str:
    if cc.leave_joint():
        return "<leave-joint>"
    parts = []
    if cc.transition != ConfChangeTransition.AUTO:
        parts.append(f"transition={_TRANSITION_NAMES[cc.transition]}")
    parts += [f"{_CHANGE_LETTERS[c.type]}{c.node_id}" for c in cc.changes]
    if cc.context:
        parts.append(f"context={fmt_data(cc.context)}")
    return " ".join(parts)


def fmt_entry(e: Entry) -> str:
    head = f"{e.term}/{e.index} {_ENTRY_TYPES.get(e.type, f'EntryType({e.type})')}"
    if e.type == ENTRY_CONF_CHANGE_V2:
        return f"{head} {fmt_conf_change(decode_conf_change(e.data))}"
    return f"{head} {fmt_data(e.data)}"


def fmt_conf_state(cs: ConfState) -> str:
    parts = [f"Voters:{fmt_ids(cs.voters)}"]
    if cs.voters_outgoing:
        parts.append(f"VotersOutgoing:{fmt_ids(cs.voters_outgoing)}")
    if cs.learners:
        parts.append(f"Learners:{fmt_ids(cs.learners)}")
    if cs.learners_next:
        parts.append(f"LearnersNext:{fmt_ids(cs.learners_next)}")
    if cs.auto_leave:
        parts.append("AutoLeave:true")
    return " ".join(parts)


def fmt_hard_state(hs: HardState) -> str:
    return f"HardState Term:{hs.term} Vote:{hs.vote} Commit:{hs.commit}"


def fmt_snapshot(s: Snapshot) -> str:
    md = s.metadata
    cs = fmt_conf_state(md.conf_state)
    return f"Index:{md.index} Term:{md.term} ConfState:{{{cs}}} Data:{fmt_data(s.data)}"


def fmt_read_state(rs: ReadState) -> str:
    return f"Index:{rs.index} Ctx:{fmt_data(rs.request_ctx)}"


def fmt_message(m: Message) -> list[str]:
    """One line, or several when the message carries more than one entry."""
    t = m.type
    parts = [f"{m.from_}->{m.to} {message_type_name(t)} Term:{m.term}"]
    if t in (MT.APP, MT.VOTE, MT.PRE_VOTE):
        parts.append(f"Log:{m.log_term}/{m.index}")
    elif t == MT.APP_RESP:
        parts.append(f"Index:{m.index}")
    else:
        if m.index:
            parts.append(f"Index:{m.index}")
        if m.log_term:
            parts.append(f"LogTerm:{m.log_term}")
    if m.reject:
        parts.append("Rejected")
        if t == MT.APP_RESP:
            parts.append(f"Hint:{m.log_term}/{m.reject_hint}")
    if t != MT.APP_RESP and m.reject_hint:
        parts.append(f"Hint:{m.reject_hint}")
    if m.commit or t in (MT.APP, MT.HEARTBEAT):
        parts.append(f"Commit:{m.commit}")
    if m.context:
        parts.append(f"Context:{fmt_data(m.context)}")
    tail: list[str] = []
    if t in (MT.READ_INDEX, MT.READ_INDEX_RESP) and len(m.entries) == 1:
        parts.append(f"Ctx:{fmt_data(m.entries[0].data)}")
    elif len(m.entries) == 1:
        parts.append(f"Entries:[{fmt_entry(m.entries[0])}]")
    elif m.entries:
        parts.append("Entries:[")
        tail = [f"  {fmt_entry(e)}" for e in m.entries] + ["]"]
    if m.snapshot is not None:
        parts.append(f"Snapshot:{{{fmt_snapshot(m.snapshot)}}}")
    return [" ".join(parts), *tail]


def fmt_ready(rd: Ready) -> list[str]:
    lines = [f"Ready MustSync={'true' if rd.must_sync else 'false'}:"]
    if rd.soft_state is not None:
        lines.append(f"Lead:{rd.soft_state.lead} State:{rd.soft_state.raft_state}")
    if rd.hard_state is not None:
        lines.append(fmt_hard_state(rd.hard_state))
    if rd.snapshot is not None:
        lines.append(f"Snapshot {fmt_snapshot(rd.snapshot)}")
    if rd.entries:
        lines.append("Entries:")
        lines += [f"  {fmt_entry(e)}" for e in rd.entries]
    if rd.committed_entries:
        lines.append("CommittedEntries:")
        lines += [f"  {fmt_entry(e)}" for e in rd.committed_entries]
    if rd.messages:
        lines.append("Messages:")
        lines += [f"  {line}" for m in rd.messages for line in fmt_message(m)]
    if rd.read_states:
        lines.append("ReadStates:")
        lines += [f"  {fmt_read_state(rs)}" for rs in rd.read_states]
    return lines


# -- commands -----------------------------------------------------------------------------------


class CommandError(Exception):
    """A malformed command: a mistake in the script, not in Raft."""


@dataclass
class Command:
    name: str
    args: list[str]  # every token after the name, as written (quotes removed)
    positional: list[str]
    kwargs: dict[str, list[str]]

    @classmethod
    def parse(cls, line: str) -> Command:
        tokens = shlex.split(line)
        if not tokens:
            raise CommandError("empty command")
        positional: list[str] = []
        kwargs: dict[str, list[str]] = {}
        for tok in tokens[1:]:
            key, eq, value = tok.partition("=")
            if not eq:
                positional.append(tok)
                continue
            if value.startswith("(") and value.endswith(")"):
                values = [v.strip() for v in value[1:-1].split(",") if v.strip()]
            else:
                values = [value]
            kwargs.setdefault(key, []).extend(values)
        return cls(tokens[0], tokens[1:], positional, kwargs)

    def check_keys(self, *allowed: str) -> None:
        unknown = sorted(set(self.kwargs) - set(allowed))
        if unknown:
            raise CommandError(f"{self.name}: unknown arguments {unknown}")

    def ints(self, key: str) -> list[int]:
        try:
            return [int(v) for v in self.kwargs.get(key, [])]
        except ValueError as e:
            raise CommandError(f"{self.name}: {key} must be integers: {e}") from e

    def integer(self, key: str, default: int) -> int:
        values = self.ints(key)
        if len(values) > 1:
            raise CommandError(f"{self.name}: {key} given more than once")
        return values[0] if values else default

    def flag(self, key: str) -> bool:
        values = self.kwargs.get(key, [])
        if not values:
            return False
        if values[-1] not in ("true", "false"):
            raise CommandError(f"{self.name}: {key} must be true or false")
        return values[-1] == "true"

    def one(self, key: str) -> str:
        values = self.kwargs.get(key, [])
        if len(values) != 1:
            raise CommandError(f"{self.name}: needs exactly one {key}=")
        return values[0]

    def ids(self, min_count: int = 0, max_count: int | None = None) -> list[int]:
        try:
            ids = [int(p) for p in self.positional]
        except ValueError as e:
            raise CommandError(f"{self.name}: expected node IDs, got {self.positional}") from e
        if len(ids) < min_count or (max_count is not None and len(ids) > max_count):
            raise CommandError(f"{self.name}: wrong number of node IDs: {self.positional}")
        return ids


# -- the environment ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeOptions:
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = False
    check_quorum: bool = False
    max_inflight: int = 256


@dataclass
class Node:
    id: int
    storage: MemoryStorage
    options: NodeOptions
    raw: RawNode
    # The state machine: (index, data) of every applied normal entry, the snapshot's data first.
    app: list[tuple[int, bytes]] = field(default_factory=list)
    applied: int = 0
    # (index, configuration from that index on), to snapshot the configuration at a given index.
    conf_history: list[tuple[int, ConfState]] = field(default_factory=list)

    def reset_state_machine(self) -> None:
        """Restart the state machine from the storage's snapshot."""
        snap = self.storage.snapshot()
        md = snap.metadata
        self.app = [(md.index, d) for d in snap.data.split(b",")] if snap.data else []
        self.applied = md.index
        self.conf_history = [(md.index, md.conf_state)]

    def conf_state_at(self, index: int) -> ConfState:
        cs = ConfState()
        for i, c in self.conf_history:
            if i <= index:
                cs = c
        return cs

    def app_data_at(self, index: int) -> bytes:
        return b",".join(d for i, d in self.app if i <= index)


class _Capture(logging.Handler):
    """Sends the core's log records into the environment's output, at its current indentation."""

    def __init__(self, env: InteractionEnv) -> None:
        super().__init__(logging.DEBUG)
        self.env = env

    def emit(self, record: logging.LogRecord) -> None:
        self.env.out.write(f"{record.levelname} {record.getMessage()}")


_LEVELS = {"none": logging.CRITICAL + 10, "info": logging.INFO, "debug": logging.DEBUG}


class Output:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def write(self, text: str) -> None:
        for line in text.split("\n"):
            self.lines.append("  " * self.depth + line)

    @contextmanager
    def indent(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def take(self) -> str:
        lines, self.lines = self.lines, []
        self.depth = 0
        return "\n".join(lines) if lines else "ok"


class InteractionEnv:
    """Runs commands against a group of RawNodes; use it as a context manager (it hooks the logger)."""

    STABILIZE_LIMIT = 1000

    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.messages: list[Message] = []
        self.out = Output()
        self._handler = _Capture(self)
        self._handler.setLevel(_LEVELS["info"])
        self._logger = logging.getLogger(LOGGER)
        self._saved_level = self._logger.level
        self._handlers: dict[str, Callable[[Command], None]] = {
            "add-nodes": self._add_nodes,
            "campaign": self._campaign,
            "propose": self._propose,
            "propose-conf-change": self._propose_conf_change,
            "tick-heartbeat": self._tick_heartbeat,
            "tick-election": self._tick_election,
            "process-ready": self._process_ready_cmd,
            "deliver-msgs": self._deliver_msgs_cmd,
            "stabilize": self._stabilize_cmd,
            "status": self._status,
            "raft-state": self._raft_state,
            "raft-log": self._raft_log,
            "transfer-leadership": self._transfer_leadership,
            "read-index": self._read_index,
            "report-unreachable": self._report_unreachable,
            "compact": self._compact,
            "restart": self._restart,
            "log-level": self._log_level,
        }

    def __enter__(self) -> InteractionEnv:
        self._logger.addHandler(self._handler)
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._saved_level)

    def run(self, line: str) -> str:
        """Run one command and return its output."""
        cmd = Command.parse(line)
        handler = self._handlers.get(cmd.name)
        if handler is None:
            raise CommandError(f"unknown command {cmd.name!r}")
        handler(cmd)
        return self.out.take()

    # -- helpers --------------------------------------------------------------------------------

    def _node(self, node_id: int) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise CommandError(f"no node {node_id}") from None

    def _id_arg(self, cmd: Command) -> Node:
        return self._node(cmd.ids(1, 1)[0])

    def _new_raw(self, node_id: int, storage: MemoryStorage, opts: NodeOptions) -> RawNode:
        cfg = Config(
            id=node_id,
            storage=storage,
            rng=random.Random(node_id),
            election_tick=opts.election_tick,
            heartbeat_tick=opts.heartbeat_tick,
            max_inflight_msgs=opts.max_inflight,
            check_quorum=opts.check_quorum,
            pre_vote=opts.pre_vote,
        )
        return RawNode(cfg)

    def _try(self, fn: Callable[[], object]) -> None:
        """Run an input of the core, printing a refusal (RaftError) instead of raising it."""
        try:
            fn()
        except RaftError as e:
            self.out.write(f"error: {e}")

    # -- node lifecycle -------------------------------------------------------------------------

    def _add_nodes(self, cmd: Command) -> None:
        cmd.check_keys(
            "voters", "learners", "index", "content", "prevote", "checkquorum", "max-inflight",
            "election-tick", "heartbeat-tick",
        )  # fmt: skip
        if len(cmd.positional) != 1:
            raise CommandError("add-nodes N ...")
        count = int(cmd.positional[0])
        voters, learners = cmd.ints("voters"), cmd.ints("learners")
        index = cmd.integer("index", 1)
        content = cmd.kwargs.get("content", [""])[-1].encode()
        opts = NodeOptions(
            election_tick=cmd.integer("election-tick", 10),
            heartbeat_tick=cmd.integer("heartbeat-tick", 1),
            pre_vote=cmd.flag("prevote"),
            check_quorum=cmd.flag("checkquorum"),
            max_inflight=cmd.integer("max-inflight", 256),
        )
        for _ in range(count):
            node_id = max(self.nodes, default=0) + 1
            storage = MemoryStorage()
            if voters or learners:
                cs = ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))
                storage.apply_snapshot(Snapshot(content, SnapshotMetadata(cs, index=index, term=1)))
            node = Node(node_id, storage, opts, self._new_raw(node_id, storage, opts))
            node.reset_state_machine()
            self.nodes[node_id] = node

    def _restart(self, cmd: Command) -> None:
        cmd.check_keys()
        node = self._id_arg(cmd)
        node.raw = self._new_raw(node.id, node.storage, node.options)
        node.reset_state_machine()
        r = node.raw.raft
        self.out.write(
            f"restarted {node.id}: {fmt_hard_state(r.hard_state())} applied:{r.raft_log.applied} "
            f"last:{r.raft_log.last_index()}"
        )

    # -- inputs ---------------------------------------------------------------------------------

    def _campaign(self, cmd: Command) -> None:
        cmd.check_keys()
        node = self._id_arg(cmd)
        self._try(node.raw.campaign)

    def _propose(self, cmd: Command) -> None:
        if len(cmd.args) < 2:
            raise CommandError("propose ID DATA")
        node = self._node(int(cmd.args[0]))
        data = " ".join(cmd.args[1:]).encode()
        self._try(lambda: node.raw.propose(data))

    def _propose_conf_change(self, cmd: Command) -> None:
        cmd.check_keys("transition")
        if not cmd.positional:
            raise CommandError("propose-conf-change ID [transition=...] CHANGES...")
        node = self._node(int(cmd.positional[0]))
        transition = _TRANSITIONS.get(cmd.kwargs.get("transition", ["auto"])[-1])
        if transition is None:
            raise CommandError(f"unknown transition {cmd.kwargs['transition']}")
        changes = []
        for tok in cmd.positional[1:]:
            kind = _LETTER_CHANGES.get(tok[:1])
            if kind is None or not tok[1:].isdigit():
                raise CommandError(f"bad change {tok!r}: expected v|l|r|u followed by a node ID")
            changes.append(ConfChangeSingle(kind, int(tok[1:])))
        cc = ConfChangeV2(transition=transition, changes=tuple(changes))
        self._try(lambda: node.raw.propose_conf_change(cc))

    def _tick_heartbeat(self, cmd: Command) -> None:
        cmd.check_keys()
        node = self._id_arg(cmd)
        for _ in range(node.options.heartbeat_tick):
            node.raw.tick()

    def _tick_election(self, cmd: Command) -> None:
        cmd.check_keys()
        node = self._id_arg(cmd)
        for _ in range(2 * node.options.election_tick):
            node.raw.tick()
            if node.raw.raft.election_elapsed == 0:
                break  # the election timer fired (it restarts from 0 when it does)

    def _transfer_leadership(self, cmd: Command) -> None:
        cmd.check_keys("from", "to")
        node = self._node(int(cmd.one("from")))
        to = int(cmd.one("to"))
        self._try(lambda: node.raw.transfer_leader(to))

    def _read_index(self, cmd: Command) -> None:
        cmd.check_keys()
        if len(cmd.positional) != 2:
            raise CommandError("read-index ID CTX")
        node = self._node(int(cmd.positional[0]))
        ctx = cmd.positional[1].encode()
        self._try(lambda: node.raw.read_index(ctx))

    def _report_unreachable(self, cmd: Command) -> None:
        cmd.check_keys()
        node_id, to = cmd.ids(2, 2)
        node = self._node(node_id)
        self._try(lambda: node.raw.report_unreachable(to))

    def _compact(self, cmd: Command) -> None:
        cmd.check_keys()
        node_id, index = cmd.ids(2, 2)
        node = self._node(node_id)
        if index > node.applied:
            raise CommandError(f"compact {node_id} {index}: only {node.applied} is applied")
        try:
            snap = node.storage.create_snapshot(index, node.conf_state_at(index), node.app_data_at(index))
            node.storage.compact(index)
        except (StorageError, ValueError) as e:
            self.out.write(f"error: {e}")
            return
        self.out.write(f"Snapshot {fmt_snapshot(snap)}")
        self._write_log(node)

    def _log_level(self, cmd: Command) -> None:
        cmd.check_keys()
        if len(cmd.positional) != 1 or cmd.positional[0] not in _LEVELS:
            raise CommandError(f"log-level {'|'.join(_LEVELS)}")
        self._handler.setLevel(_LEVELS[cmd.positional[0]])

    # -- Ready handling and the network ---------------------------------------------------------

    def _process_ready_cmd(self, cmd: Command) -> None:
        cmd.check_keys()
        ids = cmd.ids(1)
        for node_id in ids:
            node = self._node(node_id)
            if len(ids) == 1:
                self.process_ready(node)
                continue
            self.out.write(f"> {node_id} handling Ready")
            with self.out.indent():
                self.process_ready(node)

    def process_ready(self, node: Node) -> None:
        raw = node.raw
        if not raw.has_ready():
            self.out.write("<no Ready>")
            return
        rd = raw.ready()
        self.out.write("\n".join(fmt_ready(rd)))
        if rd.snapshot is not None and not rd.snapshot.empty:
            node.storage.apply_snapshot(rd.snapshot)
            node.reset_state_machine()
        if rd.entries:
            node.storage.append(rd.entries)
        if rd.hard_state is not None:
            node.storage.set_hard_state(rd.hard_state)
        self.messages.extend(rd.messages)
        for e in rd.committed_entries:
            if e.type == ENTRY_CONF_CHANGE_V2:
                try:
                    cs = raw.apply_conf_change(decode_conf_change(e.data))
                except ConfChangeError as err:
                    self.out.write(f"error applying the conf change at {e.index}: {err}")
                else:
                    node.conf_history.append((e.index, cs))
                    self.out.write(f"ConfState after applying {e.index}: {fmt_conf_state(cs)}")
            elif e.data:
                node.app.append((e.index, e.data))
            node.applied = e.index
        raw.advance(rd)

    def _deliver_msgs_cmd(self, cmd: Command) -> None:
        cmd.check_keys("drop", "type")
        deliver = cmd.ids()
        drop = cmd.ints("drop")
        typ: MessageType | None = None
        if "type" in cmd.kwargs:
            typ = _TYPES_BY_NAME.get(cmd.one("type"))
            if typ is None:
                raise CommandError(f"unknown message type {cmd.one('type')}")
        if set(deliver) & set(drop):
            raise CommandError("can't both deliver and drop messages to the same node")
        n = sum(self.deliver_msgs(i, typ) for i in deliver) + sum(
            self.deliver_msgs(i, typ, drop=True) for i in drop
        )
        if n == 0:
            self.out.write("no messages")

    def _take_msgs(self, to: int, typ: MessageType | None = None) -> list[Message]:
        taken = [m for m in self.messages if m.to == to and (typ is None or m.type == typ)]
        self.messages = [m for m in self.messages if not (m.to == to and (typ is None or m.type == typ))]
        return taken

    def deliver_msgs(self, to: int, typ: MessageType | None = None, drop: bool = False) -> int:
        msgs = self._take_msgs(to, typ)
        for m in msgs:
            lines = fmt_message(m)
            if drop:
                lines[0] = "dropped: " + lines[0]
            self.out.write("\n".join(lines))
            if drop:
                continue
            node = self.nodes.get(to)
            if node is None:
                self.out.write(f"no node {to}: message lost")
                continue
            self._try(partial(node.raw.step, m))
        return len(msgs)

    def _stabilize_cmd(self, cmd: Command) -> None:
        cmd.check_keys()
        ids = cmd.ids() or sorted(self.nodes)
        self.stabilize([self._node(i) for i in ids])

    def stabilize(self, nodes: list[Node]) -> None:
        for _ in range(self.STABILIZE_LIMIT):
            done = True
            for node in nodes:
                if node.raw.has_ready():
                    done = False
                    self.out.write(f"> {node.id} handling Ready")
                    with self.out.indent():
                        self.process_ready(node)
            for node in nodes:
                if any(m.to == node.id for m in self.messages):
                    done = False
                    self.out.write(f"> {node.id} receiving messages")
                    with self.out.indent():
                        self.deliver_msgs(node.id)
            if done:
                return
        raise AssertionError(f"no fixed point after {self.STABILIZE_LIMIT} rounds")

    # -- inspection -----------------------------------------------------------------------------

    def _status(self, cmd: Command) -> None:
        cmd.check_keys()
        node = self._id_arg(cmd)
        st = node.raw.status()
        if not st.progress:
            self.out.write(f"{node.id} is {st.soft_state.raft_state}: no progress to show")
            return
        for peer in sorted(st.progress):
            self.out.write(f"{peer}: {st.progress[peer]}")

    def _raft_state(self, cmd: Command) -> None:
        cmd.check_keys()
        for node_id in sorted(self.nodes):
            r = self.nodes[node_id].raw.raft
            role = "Learner" if r.is_learner else "Voter" if r.id in r.prs.progress else "NotMember"
            self.out.write(
                f"{node_id}: {StateType(r.state)} ({role}) Term:{r.term} Vote:{r.vote} Lead:{r.lead}"
            )

    def _raft_log(self, cmd: Command) -> None:
        cmd.check_keys()
        self._write_log(self._id_arg(cmd))

    def _write_log(self, node: Node) -> None:
        st = node.storage
        first, last = st.first_index(), st.last_index()
        if last < first:
            self.out.write(f"log is empty: first index={first}, last index={last}")
            return
        for e in st.entries(first, last + 1):
            self.out.write(fmt_entry(e))
