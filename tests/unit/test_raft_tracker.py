"""Tracker: the inflights window, progress transitions and the progress tracker's quorum views."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synod.raft.quorum import INFINITE_INDEX, JointConfig, MajorityConfig, VoteResult
from synod.raft.tracker import Config, Inflights, Progress, ProgressState, ProgressTracker
from synod.raft.types import ConfState

# ---- Inflights


def test_inflights_add_until_full_by_count():
    ins = Inflights(3)
    assert ins.count() == 0 and not ins.full()
    for i in (1, 2, 3):
        ins.add(i)
    assert ins.count() == 3 and ins.full()
    with pytest.raises(RuntimeError):
        ins.add(4)
    assert ins.indexes() == [1, 2, 3]


def test_inflights_free_le():
    ins = Inflights(10)
    for i in range(10):
        ins.add(i)
    ins.free_le(-1)  # below everything: nothing freed
    assert ins.count() == 10
    ins.free_le(4)
    assert ins.indexes() == [5, 6, 7, 8, 9]
    ins.free_le(8)
    assert ins.indexes() == [9]
    ins.free_le(8)  # already freed: no-op
    assert ins.count() == 1
    ins.free_le(100)
    assert ins.count() == 0 and ins.indexes() == []


def test_inflights_wrap_around():
    ins = Inflights(10)
    for i in range(5):
        ins.add(i)
    ins.free_le(3)  # start moves to slot 4
    for i in range(5, 14):  # 9 more: fills the ring, wrapping past its end
        ins.add(i)
    assert ins.full() and ins.count() == 10
    assert ins.indexes() == list(range(4, 14))
    ins.free_le(8)
    assert ins.indexes() == list(range(9, 14))
    for i in range(14, 19):
        ins.add(i)
    assert ins.full()
    assert ins.indexes() == list(range(9, 19))
    ins.free_le(18)
    assert ins.count() == 0 and not ins.full()
    ins.add(19)
    assert ins.indexes() == [19]


def test_inflights_free_first_one():
    ins = Inflights(3)
    ins.free_first_one()  # empty: no-op
    for i in (4, 5, 6):
        ins.add(i, 10)
    ins.free_first_one()
    assert ins.indexes() == [5, 6] and ins.total_bytes == 20 and not ins.full()


def test_inflights_byte_limit():
    ins = Inflights(10, max_bytes=100)
    ins.add(1, 40)
    ins.add(2, 40)
    assert not ins.full()
    ins.add(3, 50)  # allowed: the window was not full, the total may overshoot
    assert ins.full() and ins.total_bytes == 130
    with pytest.raises(RuntimeError):
        ins.add(4, 1)
    ins.free_le(1)
    assert ins.total_bytes == 90 and not ins.full()
    ins.add(4, 10)
    assert ins.full()  # exactly at the limit counts as full
    ins.free_le(4)
    assert ins.total_bytes == 0 and ins.count() == 0


def test_inflights_unlimited_bytes_and_zero_size():
    ins = Inflights(2)
    ins.add(1, 10**12)
    assert not ins.full()
    assert Inflights(0).full()
    with pytest.raises(ValueError):
        Inflights(-1)


def test_inflights_rejects_decreasing_index():
    ins = Inflights(5)
    ins.add(5)
    ins.add(5)  # equal is tolerated
    with pytest.raises(ValueError):
        ins.add(4)


def test_inflights_reset_and_clone():
    ins = Inflights(4, max_bytes=1000)
    for i in range(1, 4):
        ins.add(i, 100)
    twin = ins.clone()
    ins.free_le(2)
    assert twin.indexes() == [1, 2, 3] and twin.total_bytes == 300
    twin.add(4, 700)
    assert twin.full() and not ins.full()
    ins.reset()
    assert ins.count() == 0 and ins.total_bytes == 0 and ins.indexes() == []
    assert ins.size == 4 and ins.max_bytes == 1000
    ins.add(1)
    assert ins.indexes() == [1]


ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 3), st.integers(0, 30)),
        st.tuples(st.just("free"), st.integers(-2, 60), st.just(0)),
        st.tuples(st.just("first"), st.just(0), st.just(0)),
        st.tuples(st.just("reset"), st.just(0), st.just(0)),
    ),
    max_size=80,
)


@given(st.integers(1, 8), st.sampled_from([0, 25, 60]), ops_st)
def test_inflights_matches_a_list_model(size, max_bytes, ops):
    ins = Inflights(size, max_bytes)
    model: list[tuple[int, int]] = []
    last = 0
    for op, a, b in ops:
        full = len(model) == size or (max_bytes > 0 and sum(n for _, n in model) >= max_bytes)
        assert ins.full() == full
        if op == "add":
            last += a
            if full:
                with pytest.raises(RuntimeError):
                    ins.add(last, b)
            else:
                ins.add(last, b)
                model.append((last, b))
        elif op == "free":
            ins.free_le(a)
            model = [(i, n) for i, n in model if i > a]
        elif op == "first":
            ins.free_first_one()
            model = model[1:]
        else:
            ins.reset()
            model = []
        assert ins.indexes() == [i for i, _ in model]
        assert ins.count() == len(model)
        assert ins.total_bytes == sum(n for _, n in model)


# ---- Progress


def _progress(state=ProgressState.PROBE, match=0, next=1, pending_snapshot=0, size=256):
    pr = Progress(next, Inflights(size), match=match)
    pr.state = state
    pr.pending_snapshot = pending_snapshot
    return pr


def test_progress_defaults():
    pr = Progress(5, Inflights(4))
    assert (pr.match, pr.next, pr.state, pr.pending_snapshot) == (0, 5, ProgressState.PROBE, 0)
    assert not pr.recent_active and not pr.probe_sent and not pr.is_learner
    learner = Progress(7, Inflights(4), match=3, is_learner=True)
    assert learner.is_learner and learner.match == 3


def test_progress_str():
    ins = Inflights(1)
    ins.add(123)
    pr = Progress(3, ins, match=2, is_learner=True)
    pr.state = ProgressState.SNAPSHOT
    pr.pending_snapshot = 123
    assert str(pr) == "StateSnapshot match=2 next=3 learner paused pendingSnap=123 inactive inflight=1[full]"
    plain = _progress(ProgressState.REPLICATE, match=5, next=6)
    plain.recent_active = True
    assert str(plain) == "StateReplicate match=5 next=6"
    plain.inflights.add(6)
    assert str(plain) == "StateReplicate match=5 next=6 inflight=1"
    assert str(ProgressState.PROBE) == "StateProbe"


@pytest.mark.parametrize(
    ("state", "probe_sent", "full", "paused"),
    [
        (ProgressState.PROBE, False, False, False),
        (ProgressState.PROBE, True, False, True),
        (ProgressState.REPLICATE, True, False, False),  # probe_sent means nothing while replicating
        (ProgressState.REPLICATE, False, True, True),
        (ProgressState.SNAPSHOT, False, False, True),
        (ProgressState.SNAPSHOT, True, False, True),
    ],
)
def test_progress_is_paused(state, probe_sent, full, paused):
    pr = _progress(state, size=1)
    pr.probe_sent = probe_sent
    if full:
        pr.inflights.add(1)
    assert pr.is_paused() == paused


def test_progress_resume():
    pr = _progress(next=2)
    pr.probe_sent = True
    assert pr.maybe_decr_to(1, 1)
    assert not pr.probe_sent
    pr.probe_sent = True
    assert pr.maybe_update(2)
    assert not pr.probe_sent
    pr.probe_sent = True
    pr.probe_acked()
    assert not pr.probe_sent


@pytest.mark.parametrize(
    ("state", "pending", "want_next"),
    [
        (ProgressState.REPLICATE, 0, 2),
        (ProgressState.SNAPSHOT, 10, 11),  # the snapshot was applied: probe after it
        (ProgressState.SNAPSHOT, 0, 2),  # the snapshot failed: probe after match
        (ProgressState.PROBE, 0, 2),
    ],
)
def test_progress_become_probe(state, pending, want_next):
    pr = _progress(state, match=1, next=5, pending_snapshot=pending)
    pr.inflights.add(3)
    pr.probe_sent = True
    pr.become_probe()
    assert pr.state == ProgressState.PROBE
    assert (pr.match, pr.next, pr.pending_snapshot) == (1, want_next, 0)
    assert pr.inflights.count() == 0 and not pr.probe_sent


def test_progress_become_replicate_and_snapshot():
    pr = _progress(match=1, next=5)
    pr.probe_sent = True
    pr.become_replicate()
    assert (pr.state, pr.match, pr.next, pr.probe_sent) == (ProgressState.REPLICATE, 1, 2, False)
    pr.inflights.add(2)
    pr.become_snapshot(10)
    assert (pr.state, pr.match, pr.pending_snapshot) == (ProgressState.SNAPSHOT, 1, 10)
    assert pr.inflights.count() == 0
    pr.reset_state(ProgressState.REPLICATE)
    assert (pr.state, pr.pending_snapshot) == (ProgressState.REPLICATE, 0)


@pytest.mark.parametrize(
    ("update", "want_match", "want_next", "updated"),
    [
        (2, 3, 5, False),  # stale: neither match nor next goes down
        (3, 3, 5, False),
        (4, 4, 5, True),  # match grows, next is already past it
        (5, 5, 6, True),  # both grow
    ],
)
def test_progress_maybe_update(update, want_match, want_next, updated):
    pr = _progress(match=3, next=5)
    assert pr.maybe_update(update) == updated
    assert (pr.match, pr.next) == (want_match, want_next)


def test_progress_stale_update_keeps_the_probe_pending():
    pr = _progress(match=3, next=4)
    pr.probe_sent = True
    assert not pr.maybe_update(3)
    assert pr.probe_sent


def test_progress_optimistic_update():
    pr = _progress(ProgressState.REPLICATE, match=3, next=4)
    pr.optimistic_update(9)
    assert (pr.match, pr.next) == (3, 10)


@pytest.mark.parametrize(
    ("state", "match", "next", "rejected", "hint", "changed", "want_next"),
    [
        # Replicating: a rejection at or below match is stale...
        (ProgressState.REPLICATE, 5, 10, 5, 5, False, 10),
        (ProgressState.REPLICATE, 5, 10, 4, 4, False, 10),
        # ...otherwise go back to just after match, whatever the hint.
        (ProgressState.REPLICATE, 5, 10, 9, 9, True, 6),
        (ProgressState.REPLICATE, 5, 10, 9, 2, True, 6),
        # Probing: only a rejection of the probe at next - 1 counts.
        (ProgressState.PROBE, 0, 0, 0, 0, False, 0),
        (ProgressState.PROBE, 0, 10, 5, 5, False, 10),
        (ProgressState.PROBE, 0, 10, 9, 9, True, 9),  # one step back
        (ProgressState.PROBE, 0, 2, 1, 1, True, 1),
        (ProgressState.PROBE, 0, 1, 0, 0, True, 1),  # never below 1
        (ProgressState.PROBE, 0, 10, 9, 2, True, 3),  # jump to the hint + 1
        (ProgressState.PROBE, 0, 10, 9, 0, True, 1),
        (ProgressState.PROBE, 4, 10, 9, 2, True, 5),  # never at or below match
        # Snapshot state follows the probe rule.
        (ProgressState.SNAPSHOT, 0, 10, 5, 5, False, 10),
    ],
)
def test_progress_maybe_decr_to(state, match, next, rejected, hint, changed, want_next):
    pr = _progress(state, match=match, next=next)
    pr.probe_sent = True
    assert pr.maybe_decr_to(rejected, hint) == changed
    assert (pr.match, pr.next) == (match, want_next)
    if state == ProgressState.PROBE:
        assert pr.probe_sent == (not changed)


def test_progress_clone_is_deep():
    pr = _progress(ProgressState.REPLICATE, match=2, next=5)
    pr.recent_active = True
    pr.inflights.add(4)
    twin = pr.clone()
    assert str(twin) == str(pr)
    twin.inflights.free_le(4)
    twin.match = 4
    assert pr.inflights.count() == 1 and pr.match == 2


# ---- Config and ProgressTracker


def test_config_str():
    cfg = Config(
        voters=JointConfig(MajorityConfig([1, 2, 3]), MajorityConfig([1, 2])),
        learners=frozenset({4}),
        learners_next=frozenset({5}),
        auto_leave=True,
    )
    assert str(cfg) == "voters=(1 2 3)&&(1 2) learners=(4) learners_next=(5) autoleave"
    assert str(Config()) == "voters=()"
    assert str(Config(JointConfig(MajorityConfig([2, 1])))) == "voters=(1 2)"
    assert Config() == Config(JointConfig(), frozenset(), frozenset(), False)


def _tracker(voters, outgoing=(), learners=(), matches=None):
    t = ProgressTracker(max_inflight=8, max_inflight_bytes=0)
    t.config = Config(
        voters=JointConfig(MajorityConfig(voters), MajorityConfig(outgoing)), learners=frozenset(learners)
    )
    for i in {*voters, *outgoing, *learners}:
        pr = Progress(1, t.new_inflights(), match=(matches or {}).get(i, 0), is_learner=i in learners)
        t.progress[i] = pr
    return t


def test_tracker_empty():
    t = ProgressTracker(16)
    assert t.max_inflight == 16 and t.max_inflight_bytes == 0
    assert t.config == Config() and t.progress == {} and t.votes == {}
    assert t.conf_state() == ConfState()
    assert t.committed() == INFINITE_INDEX
    assert not t.is_singleton()
    assert t.voter_nodes() == [] and t.learner_nodes() == []


def test_tracker_conf_state_and_nodes():
    t = _tracker([3, 1, 2], outgoing=[2, 1, 4], learners=[6, 5])
    t.config = Config(t.config.voters, t.config.learners, frozenset({4}), auto_leave=True)
    assert t.conf_state() == ConfState(
        voters=(1, 2, 3), learners=(5, 6), voters_outgoing=(1, 2, 4), learners_next=(4,), auto_leave=True
    )
    assert t.voter_nodes() == [1, 2, 3, 4]
    assert t.learner_nodes() == [5, 6]


def test_tracker_is_singleton():
    assert _tracker([1]).is_singleton()
    assert _tracker([1], learners=[2]).is_singleton()
    assert not _tracker([1, 2]).is_singleton()
    assert not _tracker([1], outgoing=[1, 2]).is_singleton()


def test_tracker_committed():
    t = _tracker([1, 2, 3], learners=[4], matches={1: 10, 2: 7, 3: 2, 4: 100})
    assert t.committed() == 7  # the learner's match does not count
    joint = _tracker([1, 2, 3], outgoing=[3, 4, 5], matches={1: 10, 2: 7, 3: 2, 4: 1, 5: 9})
    assert joint.committed() == 2
    # A voter without progress counts as having acknowledged nothing.
    del t.progress[1]
    assert t.committed() == 2


def test_tracker_visit_in_id_order():
    t = _tracker([5, 1, 3], learners=[2])
    seen: list[int] = []
    t.visit(lambda i, pr: seen.append(i))
    assert seen == [1, 2, 3, 5]


def test_tracker_quorum_active():
    t = _tracker([1, 2, 3], learners=[4])
    assert not t.quorum_active()
    t.progress[1].recent_active = True
    t.progress[4].recent_active = True  # learners don't count
    assert not t.quorum_active()
    t.progress[2].recent_active = True
    assert t.quorum_active()
    joint = _tracker([1, 2, 3], outgoing=[3, 4, 5])
    for i in (1, 2):
        joint.progress[i].recent_active = True
    assert not joint.quorum_active()
    for i in (3, 4):
        joint.progress[i].recent_active = True
    assert joint.quorum_active()


def test_tracker_votes():
    t = _tracker([1, 2, 3], learners=[4])
    assert t.tally_votes() == (0, 0, VoteResult.PENDING)
    t.record_vote(1, True)
    t.record_vote(1, False)  # the first vote of a node stands
    t.record_vote(4, True)  # a learner's vote is ignored
    t.record_vote(9, False)  # and so is a stranger's
    assert t.votes[1] is True
    assert t.tally_votes() == (1, 0, VoteResult.PENDING)
    t.record_vote(2, False)
    assert t.tally_votes() == (1, 1, VoteResult.PENDING)
    t.record_vote(3, True)
    assert t.tally_votes() == (2, 1, VoteResult.WON)
    t.reset_votes()
    assert t.votes == {}
    t.record_vote(2, False)
    t.record_vote(3, False)
    assert t.tally_votes() == (0, 2, VoteResult.LOST)


def test_tracker_new_inflights():
    t = ProgressTracker(2, 100)
    a, b = t.new_inflights(), t.new_inflights()
    assert a is not b
    assert (a.size, a.max_bytes) == (2, 100)


# ---- the sans-IO rule


def test_raft_modules_import_no_io():
    forbidden = {"asyncio", "time", "random", "socket", "os", "io", "pathlib", "threading", "subprocess"}
    for name in ("quorum", "tracker", "confchange"):
        path = Path(__file__).resolve().parents[2] / "synod" / "raft" / f"{name}.py"
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & forbidden, (name, roots)
        assert "open(" not in path.read_text()
