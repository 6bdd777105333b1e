"""Configuration changes: validate a change and compute the configuration it leads to.

A ``Changer`` reads a ``ProgressTracker`` and returns a new ``Config`` and a new
progress map; it never mutates the tracker, so the caller installs the result
only if no ``ConfChangeError`` was raised. Changes to voters always apply to the
incoming half; the outgoing half is non-empty only in a joint configuration,
where it keeps the voters of the configuration being left.

Invariants checked on input and output: every ID of the config has a progress;
learners are voters of neither half and are marked ``is_learner``; a staged
learner (``learners_next``) is an outgoing voter not yet marked as learner;
outside a joint config there are no staged learners and no ``auto_leave``.
"""

from __future__ import annotations

from collections.abc import Sequence

from synod.raft.quorum import JointConfig, MajorityConfig
from synod.raft.tracker import Config, Progress, ProgressTracker
from synod.raft.types import ConfChangeSingle, ConfChangeType, ConfState


class ConfChangeError(ValueError):
    """A configuration change that must be refused; the active configuration is unchanged."""


Result = tuple[Config, dict[int, Progress]]


class _Draft:
    """A mutable working copy of a configuration and its progress map."""

    __slots__ = ("auto_leave", "incoming", "learners", "learners_next", "outgoing", "progress")

    def __init__(self, tracker: ProgressTracker) -> None:
        cfg = tracker.config
        self.incoming = set(cfg.voters.incoming.ids)
        self.outgoing = set(cfg.voters.outgoing.ids)
        self.learners = set(cfg.learners)
        self.learners_next = set(cfg.learners_next)
        self.auto_leave = cfg.auto_leave
        self.progress = {node_id: pr.clone() for node_id, pr in tracker.progress.items()}

    @property
    def joint(self) -> bool:
        return bool(self.outgoing)

    def check(self) -> None:
        for group in (self.incoming, self.outgoing, self.learners, self.learners_next):
            for node_id in sorted(group):
                if node_id not in self.progress:
                    raise ConfChangeError(f"no progress for {node_id}")
        for node_id in sorted(self.learners_next):
            if node_id not in self.outgoing:
                raise ConfChangeError(f"{node_id} is in learners_next, but not in the outgoing voters")
            if self.progress[node_id].is_learner:
                raise ConfChangeError(f"{node_id} is in learners_next, but is already marked as learner")
        for node_id in sorted(self.learners):
            if node_id in self.outgoing:
                raise ConfChangeError(f"{node_id} is in learners and in the outgoing voters")
            if node_id in self.incoming:
                raise ConfChangeError(f"{node_id} is in learners and in the incoming voters")
            if not self.progress[node_id].is_learner:
                raise ConfChangeError(f"{node_id} is in learners, but is not marked as learner")
        if not self.joint:
            if self.learners_next:
                raise ConfChangeError("learners_next must be empty when not joint")
            if self.auto_leave:
                raise ConfChangeError("auto_leave must be false when not joint")

    def result(self) -> Result:
        self.check()
        config = Config(
            voters=JointConfig(MajorityConfig(self.incoming), MajorityConfig(self.outgoing)),
            learners=frozenset(self.learners),
            learners_next=frozenset(self.learners_next),
            auto_leave=self.auto_leave,
        )
        return config, self.progress


class Changer:
    """Computes the result of configuration changes against a tracker, which it never mutates.

    A node added by a change gets a fresh ``Progress`` with ``match=0``,
    ``next=max(last_index, 1)`` and ``recent_active=True`` (so that a quorum
    check right after the change does not count it as silent).
    """

    __slots__ = ("last_index", "tracker")

    def __init__(self, tracker: ProgressTracker, last_index: int) -> None:
        self.tracker = tracker
        self.last_index = last_index

    def _draft(self) -> _Draft:
        draft = _Draft(self.tracker)
        draft.check()
        return draft

    def enter_joint(self, auto_leave: bool, changes: Sequence[ConfChangeSingle]) -> Result:
        """Copy the voters into the outgoing half, then apply ``changes`` to the incoming half."""
        draft = self._draft()
        if draft.joint:
            raise ConfChangeError("config is already joint")
        if not draft.incoming:
            # An empty config may grow by simple changes (bootstrap) but can't be made joint.
            raise ConfChangeError("can't make a zero-voter config joint")
        draft.outgoing = set(draft.incoming)
        self._apply(draft, changes)
        draft.auto_leave = auto_leave
        return draft.result()

    def leave_joint(self) -> Result:
        """Drop the outgoing half: staged learners become learners, departed voters lose their progress."""
        draft = self._draft()
        if not draft.joint:
            raise ConfChangeError("can't leave a non-joint config")
        for node_id in draft.learners_next:
            draft.learners.add(node_id)
            draft.progress[node_id].is_learner = True
        draft.learners_next = set()
        for node_id in draft.outgoing:
            if node_id not in draft.incoming and node_id not in draft.learners:
                del draft.progress[node_id]
        draft.outgoing = set()
        draft.auto_leave = False
        return draft.result()

    def simple(self, changes: Sequence[ConfChangeSingle]) -> Result:
        """Apply ``changes`` outside a joint config; together they may change at most one voter."""
        draft = self._draft()
        if draft.joint:
            raise ConfChangeError("can't apply simple config change in joint config")
        self._apply(draft, changes)
        before = self.tracker.config.voters.incoming.ids
        if len(before.symmetric_difference(draft.incoming)) > 1:
            raise ConfChangeError("more than one voter changed without entering joint config")
        return draft.result()

    def _apply(self, draft: _Draft, changes: Sequence[ConfChangeSingle]) -> None:
        for change in changes:
            if change.node_id == 0:
                continue  # a change the application chose not to apply (etcd zeroes its node ID)
            if change.type == ConfChangeType.ADD_NODE:
                self._make_voter(draft, change.node_id)
            elif change.type == ConfChangeType.ADD_LEARNER_NODE:
                self._make_learner(draft, change.node_id)
            elif change.type == ConfChangeType.REMOVE_NODE:
                self._remove(draft, change.node_id)
            elif change.type == ConfChangeType.UPDATE_NODE:
                pass  # the configuration is not affected
            else:
                raise ConfChangeError(f"unexpected conf type {int(change.type)}")
        if not draft.incoming:
            raise ConfChangeError("removed all voters")

    def _new_progress(self, draft: _Draft, node_id: int, is_learner: bool) -> None:
        if is_learner:
            draft.learners.add(node_id)
        else:
            draft.incoming.add(node_id)
        pr = Progress(max(self.last_index, 1), self.tracker.new_inflights(), match=0, is_learner=is_learner)
        pr.recent_active = True
        draft.progress[node_id] = pr

    def _make_voter(self, draft: _Draft, node_id: int) -> None:
        pr = draft.progress.get(node_id)
        if pr is None:
            self._new_progress(draft, node_id, is_learner=False)
            return
        pr.is_learner = False
        draft.learners.discard(node_id)
        draft.learners_next.discard(node_id)
        draft.incoming.add(node_id)

    def _make_learner(self, draft: _Draft, node_id: int) -> None:
        """Make ``node_id`` a learner, or stage it in ``learners_next`` while it is an outgoing voter."""
        pr = draft.progress.get(node_id)
        if pr is None:
            self._new_progress(draft, node_id, is_learner=True)
            return
        if pr.is_learner:
            return
        self._remove(draft, node_id)
        draft.progress[node_id] = pr  # a demoted voter keeps its progress
        if node_id in draft.outgoing:
            # It can't be a learner and a voter at once: it becomes a learner on leaving the joint config.
            draft.learners_next.add(node_id)
        else:
            pr.is_learner = True
            draft.learners.add(node_id)

    def _remove(self, draft: _Draft, node_id: int) -> None:
        """Remove ``node_id`` from the incoming config; its progress stays while it is an outgoing voter."""
        if node_id not in draft.progress:
            return
        draft.incoming.discard(node_id)
        draft.learners.discard(node_id)
        draft.learners_next.discard(node_id)
        if node_id not in draft.outgoing:
            del draft.progress[node_id]


def _change(kind: ConfChangeType, node_id: int) -> ConfChangeSingle:
    return ConfChangeSingle(kind, node_id)


def restore(changer: Changer, cs: ConfState) -> Result:
    """The configuration and progress map described by ``cs``, built from an empty configuration.

    The current configuration of ``changer.tracker`` is ignored (only its
    inflight limits and ``changer.last_index`` are used) and not mutated. A
    joint ``cs`` is built as its outgoing voters added one by one, then a joint
    change that removes them, adds the incoming voters and the learners, and
    stages ``learners_next``; a non-joint one as simple changes one by one.
    """
    outgoing = [_change(ConfChangeType.ADD_NODE, i) for i in cs.voters_outgoing]
    incoming = [_change(ConfChangeType.REMOVE_NODE, i) for i in cs.voters_outgoing]
    incoming += [_change(ConfChangeType.ADD_NODE, i) for i in cs.voters]
    incoming += [_change(ConfChangeType.ADD_LEARNER_NODE, i) for i in cs.learners]
    incoming += [_change(ConfChangeType.ADD_LEARNER_NODE, i) for i in cs.learners_next]

    scratch = ProgressTracker(changer.tracker.max_inflight, changer.tracker.max_inflight_bytes)

    def install(result: Result) -> None:
        scratch.config, scratch.progress = result

    for change in outgoing or incoming:
        install(Changer(scratch, changer.last_index).simple([change]))
    if outgoing:
        install(Changer(scratch, changer.last_index).enter_joint(cs.auto_leave, incoming))
    # The scratch tracker is private, but return fresh objects all the same.
    return scratch.config, {node_id: pr.clone() for node_id, pr in scratch.progress.items()}
