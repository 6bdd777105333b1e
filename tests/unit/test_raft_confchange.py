"""Configuration changes: simple and joint changes, learners, refused changes, restore from a ConfState."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synod.raft.confchange import Changer, ConfChangeError, restore
from synod.raft.quorum import JointConfig, MajorityConfig
from synod.raft.tracker import Config, Progress, ProgressTracker
from synod.raft.types import ConfChangeSingle, ConfChangeType, ConfState

ADD, REMOVE, UPDATE, LEARNER = (
    ConfChangeType.ADD_NODE,
    ConfChangeType.REMOVE_NODE,
    ConfChangeType.UPDATE_NODE,
    ConfChangeType.ADD_LEARNER_NODE,
)


def cc(kind: ConfChangeType, node_id: int) -> ConfChangeSingle:
    return ConfChangeSingle(kind, node_id)


def install(tracker: ProgressTracker, result: tuple[Config, dict[int, Progress]]) -> ProgressTracker:
    tracker.config, tracker.progress = result
    return tracker


def tracker_of(cs: ConfState, last_index: int = 10) -> ProgressTracker:
    t = ProgressTracker(max_inflight=4, max_inflight_bytes=1000)
    return install(t, restore(Changer(t, last_index), cs))


def check_invariants(t: ProgressTracker) -> None:
    """The invariants of a tracked configuration, restated independently of confchange."""
    cfg = t.config
    incoming, outgoing = cfg.voters.incoming.ids, cfg.voters.outgoing.ids
    everyone = incoming | outgoing | cfg.learners | cfg.learners_next
    assert set(t.progress) == everyone
    assert not cfg.learners & (incoming | outgoing)
    assert cfg.learners_next <= outgoing - incoming
    for i, pr in t.progress.items():
        assert pr.is_learner == (i in cfg.learners), i
        assert 0 <= pr.match < pr.next
    if not outgoing:
        assert not cfg.learners_next and not cfg.auto_leave


# ---- simple changes


def test_simple_bootstrap_from_empty():
    t = ProgressTracker(4, 1000)
    install(t, Changer(t, 0).simple([cc(ADD, 1)]))
    assert str(t.config) == "voters=(1)"
    pr = t.progress[1]
    assert (pr.match, pr.next, pr.recent_active, pr.is_learner) == (0, 1, True, False)
    assert (pr.inflights.size, pr.inflights.max_bytes) == (4, 1000)


def test_new_progress_starts_at_last_index():
    t = tracker_of(ConfState(voters=(1,)))
    install(t, Changer(t, 42).simple([cc(ADD, 2)]))
    assert str(t.progress[2]) == "StateProbe match=0 next=42"


def test_simple_add_remove_voters():
    t = tracker_of(ConfState(voters=(1,)))
    install(t, Changer(t, 10).simple([cc(ADD, 2)]))
    install(t, Changer(t, 10).simple([cc(ADD, 3)]))
    assert t.conf_state() == ConfState(voters=(1, 2, 3))
    install(t, Changer(t, 10).simple([cc(REMOVE, 2)]))
    assert t.conf_state() == ConfState(voters=(1, 3))
    assert sorted(t.progress) == [1, 3]
    check_invariants(t)


def test_simple_idempotent_and_ignored_changes():
    t = tracker_of(ConfState(voters=(1, 2), learners=(3,)))
    before = t.conf_state()
    for change in (cc(ADD, 1), cc(LEARNER, 3), cc(REMOVE, 9), cc(UPDATE, 1), cc(ADD, 0), cc(REMOVE, 0)):
        install(t, Changer(t, 10).simple([change]))
        assert t.conf_state() == before
    # Several changes are fine as long as at most one voter changes overall.
    install(t, Changer(t, 10).simple([cc(ADD, 4), cc(REMOVE, 4), cc(ADD, 5), cc(LEARNER, 6)]))
    assert t.conf_state() == ConfState(voters=(1, 2, 5), learners=(3, 6))


def test_simple_promote_and_demote():
    t = tracker_of(ConfState(voters=(1, 2)))
    install(t, Changer(t, 10).simple([cc(LEARNER, 3)]))
    t.progress[3].match = 7
    install(t, Changer(t, 20).simple([cc(ADD, 3)]))  # promote: the progress is kept
    assert t.conf_state() == ConfState(voters=(1, 2, 3))
    assert not t.progress[3].is_learner and t.progress[3].match == 7
    install(t, Changer(t, 20).simple([cc(LEARNER, 2)]))  # demote: outside a joint config, directly
    assert t.conf_state() == ConfState(voters=(1, 3), learners=(2,))
    assert t.progress[2].is_learner
    install(t, Changer(t, 20).simple([cc(REMOVE, 2)]))
    assert t.conf_state() == ConfState(voters=(1, 3)) and 2 not in t.progress
    check_invariants(t)


def test_simple_refuses_two_voter_changes():
    t = tracker_of(ConfState(voters=(1, 2, 3)))
    for changes in ([cc(ADD, 4), cc(ADD, 5)], [cc(REMOVE, 1), cc(ADD, 4)], [cc(LEARNER, 1), cc(LEARNER, 2)]):
        with pytest.raises(
            ConfChangeError, match="more than one voter changed without entering joint config"
        ):
            Changer(t, 10).simple(changes)
    assert t.conf_state() == ConfState(voters=(1, 2, 3))


def test_simple_refuses_removing_all_voters():
    t = tracker_of(ConfState(voters=(1,), learners=(2,)))
    for change in (cc(REMOVE, 1), cc(LEARNER, 1)):
        with pytest.raises(ConfChangeError, match="removed all voters"):
            Changer(t, 10).simple([change])
    empty = ProgressTracker(4)
    with pytest.raises(ConfChangeError, match="removed all voters"):
        Changer(empty, 1).simple([cc(LEARNER, 1)])  # a learner alone is not a configuration


def test_simple_refused_in_joint_config():
    t = tracker_of(ConfState(voters=(1, 2), voters_outgoing=(1,)))
    with pytest.raises(ConfChangeError, match="can't apply simple config change in joint config"):
        Changer(t, 10).simple([cc(ADD, 3)])


def test_changer_never_mutates_the_tracker_and_returns_copies():
    t = tracker_of(ConfState(voters=(1, 2), learners=(3,)))
    t.progress[1].match = 5
    original = {i: str(pr) for i, pr in t.progress.items()}
    originals = dict(t.progress)
    config = t.config
    cfg, progress = Changer(t, 10).simple([cc(ADD, 3)])
    cfg2, progress2 = Changer(t, 10).enter_joint(False, [cc(REMOVE, 1), cc(ADD, 4)])
    assert t.config is config and t.progress == originals
    assert {i: str(pr) for i, pr in t.progress.items()} == original
    assert t.progress[3].is_learner  # still a learner in the tracker
    for result in (progress, progress2):
        assert result is not t.progress
        for i, pr in result.items():
            assert pr is not t.progress.get(i)
            if i in t.progress:
                assert pr.inflights is not t.progress[i].inflights
    assert progress[1].match == 5
    assert cfg != config and cfg2 != config


def test_invalid_tracker_is_refused():
    t = ProgressTracker(4)
    t.config = Config(JointConfig(MajorityConfig([1, 2])))
    t.progress = {1: Progress(1, t.new_inflights())}
    with pytest.raises(ConfChangeError, match="no progress for 2"):
        Changer(t, 1).simple([cc(ADD, 3)])
    t.progress[2] = Progress(1, t.new_inflights())
    t.config = Config(JointConfig(MajorityConfig([1, 2])), learners=frozenset({2}))
    with pytest.raises(ConfChangeError, match="2 is in learners and in the incoming voters"):
        Changer(t, 1).simple([])
    t.config = Config(JointConfig(MajorityConfig([1])), learners=frozenset({2}))
    with pytest.raises(ConfChangeError, match="2 is in learners, but is not marked as learner"):
        Changer(t, 1).simple([])
    t.config = Config(JointConfig(MajorityConfig([1, 2])), auto_leave=True)
    with pytest.raises(ConfChangeError, match="auto_leave must be false when not joint"):
        Changer(t, 1).simple([])


# ---- joint changes


def test_joint_replace_a_voter():
    t = tracker_of(ConfState(voters=(1, 2, 3)))
    install(t, Changer(t, 10).enter_joint(True, [cc(REMOVE, 3), cc(ADD, 4)]))
    assert str(t.config) == "voters=(1 2 4)&&(1 2 3) autoleave"
    assert sorted(t.progress) == [1, 2, 3, 4]  # 3 still votes in the outgoing config
    check_invariants(t)
    install(t, Changer(t, 10).leave_joint())
    assert str(t.config) == "voters=(1 2 4)"
    assert sorted(t.progress) == [1, 2, 4]
    check_invariants(t)


def test_joint_demotion_goes_through_learners_next():
    t = tracker_of(ConfState(voters=(1, 2, 3)))
    t.progress[3].match = 9
    install(t, Changer(t, 10).enter_joint(False, [cc(LEARNER, 3), cc(LEARNER, 4)]))
    # 3 votes in the outgoing config, so it can't be a learner yet; 4 is new, so it can.
    assert str(t.config) == "voters=(1 2)&&(1 2 3) learners=(4) learners_next=(3)"
    assert not t.progress[3].is_learner and t.progress[4].is_learner
    check_invariants(t)
    install(t, Changer(t, 10).leave_joint())
    assert str(t.config) == "voters=(1 2) learners=(3 4)"
    assert t.progress[3].is_learner and t.progress[3].match == 9
    check_invariants(t)


def test_joint_staged_learner_can_be_promoted_or_removed_again():
    t = tracker_of(ConfState(voters=(1, 2, 3), voters_outgoing=(1, 2, 3, 4), learners_next=(4,)))
    install(t, Changer(t, 10).leave_joint())
    assert str(t.config) == "voters=(1 2 3) learners=(4)"
    # Removing a staged learner while joint: its progress stays until leaving (it is an outgoing voter).
    base = tracker_of(ConfState(voters=(1, 2, 3)))
    install(base, Changer(base, 10).enter_joint(False, [cc(LEARNER, 3), cc(REMOVE, 3)]))
    assert str(base.config) == "voters=(1 2)&&(1 2 3)"
    assert 3 in base.progress
    install(base, Changer(base, 10).leave_joint())
    assert str(base.config) == "voters=(1 2)" and 3 not in base.progress
    # Demoting then re-adding as a voter undoes the demotion.
    again = tracker_of(ConfState(voters=(1, 2, 3)))
    install(again, Changer(again, 10).enter_joint(False, [cc(LEARNER, 3), cc(ADD, 3)]))
    assert str(again.config) == "voters=(1 2 3)&&(1 2 3)"


def test_joint_learner_promoted_while_joint():
    t = tracker_of(ConfState(voters=(1, 2), learners=(3,)))
    install(t, Changer(t, 10).enter_joint(True, [cc(ADD, 3), cc(REMOVE, 1)]))
    assert str(t.config) == "voters=(2 3)&&(1 2) autoleave"
    assert not t.progress[3].is_learner
    install(t, Changer(t, 10).leave_joint())
    assert str(t.config) == "voters=(2 3)" and sorted(t.progress) == [2, 3]


def test_joint_errors():
    joint = tracker_of(ConfState(voters=(1, 2), voters_outgoing=(1,), auto_leave=True))
    with pytest.raises(ConfChangeError, match="config is already joint"):
        Changer(joint, 10).enter_joint(False, [cc(ADD, 3)])
    plain = tracker_of(ConfState(voters=(1, 2)))
    with pytest.raises(ConfChangeError, match="can't leave a non-joint config"):
        Changer(plain, 10).leave_joint()
    with pytest.raises(ConfChangeError, match="can't make a zero-voter config joint"):
        Changer(ProgressTracker(4), 10).enter_joint(False, [cc(ADD, 1)])
    with pytest.raises(ConfChangeError, match="removed all voters"):
        Changer(plain, 10).enter_joint(False, [cc(REMOVE, 1), cc(LEARNER, 2)])


def test_joint_auto_leave_flag():
    t = tracker_of(ConfState(voters=(1,)))
    cfg, _ = Changer(t, 10).enter_joint(True, [])
    assert cfg.auto_leave and str(cfg) == "voters=(1)&&(1) autoleave"
    cfg, _ = Changer(t, 10).enter_joint(False, [])
    assert not cfg.auto_leave
    install(t, Changer(t, 10).enter_joint(True, [cc(ADD, 2)]))
    install(t, Changer(t, 10).leave_joint())
    assert not t.config.auto_leave and t.conf_state() == ConfState(voters=(1, 2))


# ---- restore


def test_restore_examples():
    cs = ConfState(voters=(1, 2, 3), learners=(5,), voters_outgoing=(1, 2, 4, 6), learners_next=(4,))
    t = tracker_of(cs, last_index=7)
    assert str(t.config) == "voters=(1 2 3)&&(1 2 4 6) learners=(5) learners_next=(4)"
    assert sorted(t.progress) == [1, 2, 3, 4, 5, 6]
    assert all(pr.next == 7 and pr.match == 0 and pr.recent_active for pr in t.progress.values())
    assert t.conf_state() == cs
    assert tracker_of(ConfState()).conf_state() == ConfState()
    with pytest.raises(ConfChangeError):
        tracker_of(ConfState(learners=(1,)))  # learners without voters
    # As in etcd, auto_leave means nothing outside a joint config and is dropped.
    assert tracker_of(ConfState(voters=(1,), auto_leave=True)).conf_state() == ConfState(voters=(1,))


def test_restore_ignores_and_keeps_the_changer_tracker():
    t = tracker_of(ConfState(voters=(1, 2, 3), learners=(4,)))
    before = (t.config, dict(t.progress))
    cfg, progress = restore(Changer(t, 10), ConfState(voters=(7,)))
    assert str(cfg) == "voters=(7)" and sorted(progress) == [7]
    assert (t.config, t.progress) == before


@st.composite
def conf_states(draw):
    nodes = st.integers(1, 12)
    voters = draw(st.frozensets(nodes, min_size=1, max_size=6))
    joint = draw(st.booleans())
    outgoing = draw(st.frozensets(nodes, min_size=1, max_size=6)) if joint else frozenset()
    learners_next = (
        draw(st.frozensets(st.sampled_from(sorted(outgoing - voters)))) if outgoing - voters else set()
    )
    learners = draw(st.frozensets(nodes, max_size=4)) - voters - outgoing
    return ConfState(
        voters=tuple(sorted(voters)),
        learners=tuple(sorted(learners)),
        voters_outgoing=tuple(sorted(outgoing)),
        learners_next=tuple(sorted(learners_next)),
        auto_leave=joint and draw(st.booleans()),
    )


@given(conf_states(), st.integers(0, 100))
def test_restore_round_trip(cs, last_index):
    t = tracker_of(cs, last_index)
    assert t.conf_state() == cs
    check_invariants(t)
    assert all(pr.next == max(last_index, 1) for pr in t.progress.values())


# ---- random sequences of changes


changes_st = st.lists(
    st.builds(cc, st.sampled_from([ADD, REMOVE, LEARNER, UPDATE]), st.integers(0, 6)), max_size=5
)
operations_st = st.lists(
    st.tuples(st.sampled_from(["simple", "enter", "leave"]), st.booleans(), changes_st), max_size=12
)


@given(conf_states(), operations_st)
def test_random_changes_keep_invariants(cs, operations):
    t = tracker_of(cs)
    for kind, auto_leave, changes in operations:
        changer = Changer(t, 10)
        try:
            if kind == "simple":
                result = changer.simple(changes)
            elif kind == "enter":
                result = changer.enter_joint(auto_leave, changes)
            else:
                result = changer.leave_joint()
        except ConfChangeError:
            continue
        install(t, result)
        check_invariants(t)
        assert t.config.voters.incoming  # never an empty incoming config
        assert tracker_of(t.conf_state()).conf_state() == t.conf_state()


@given(st.frozensets(st.integers(1, 6), min_size=1, max_size=4), changes_st)
def test_joint_then_leave_equals_one_change_at_a_time(voters, changes):
    base = ConfState(voters=tuple(sorted(voters)))
    joint = tracker_of(base)
    try:
        install(joint, Changer(joint, 10).enter_joint(False, changes))
    except ConfChangeError:
        return
    install(joint, Changer(joint, 10).leave_joint())
    one_by_one = tracker_of(base)
    try:
        for change in changes:
            install(one_by_one, Changer(one_by_one, 10).simple([change]))
    except ConfChangeError:
        return  # an intermediate config had no voter
    assert joint.config == one_by_one.config
    assert sorted(joint.progress) == sorted(one_by_one.progress)
