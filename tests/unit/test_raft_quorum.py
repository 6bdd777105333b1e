"""Quorums: committed indexes and vote results against brute force, for majority and joint configs."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from synod.raft.quorum import INFINITE_INDEX, JointConfig, MajorityConfig, VoteResult

ids_st = st.frozensets(st.integers(1, 9), max_size=7)
# None: the index of that voter is unknown.
acks_st = st.dictionaries(st.integers(1, 9), st.none() | st.integers(0, 20))
votes_st = st.dictionaries(st.integers(1, 12), st.booleans())


def _lookup(acks: dict[int, int | None]):
    return lambda voter: acks.get(voter)


def _naive_committed(ids: frozenset[int], acks: dict[int, int | None]) -> int:
    """The largest candidate index that more than half of the voters have reached."""
    if not ids:
        return INFINITE_INDEX
    reached = [acks.get(i) or 0 for i in ids]
    candidates = {0, *reached}
    return max(c for c in candidates if 2 * sum(r >= c for r in reached) > len(ids))


def _wins(ids: frozenset[int], votes: dict[int, bool]) -> bool:
    if not ids:
        return True  # by convention an empty config wins every election
    return 2 * sum(votes.get(i, False) for i in ids) > len(ids)


def _naive_result(halves: list[frozenset[int]], votes: dict[int, bool]) -> VoteResult:
    """Try every way the missing voters could still vote: all win -> WON, none -> LOST."""
    voters = sorted(frozenset().union(*halves))
    missing = [i for i in voters if i not in votes]
    outcomes = set()
    for choice in itertools.product((False, True), repeat=len(missing)):
        complete = {**votes, **dict(zip(missing, choice, strict=True))}
        outcomes.add(all(_wins(half, complete) for half in halves))
    if outcomes == {True}:
        return VoteResult.WON
    if outcomes == {False}:
        return VoteResult.LOST
    return VoteResult.PENDING


# ---- MajorityConfig basics


def test_majority_config_is_an_immutable_sorted_set():
    c = MajorityConfig([3, 1, 2, 3])
    assert len(c) == 3
    assert list(c) == [1, 2, 3]
    assert 2 in c and 4 not in c
    assert c.ids == frozenset({1, 2, 3})
    assert c == MajorityConfig({1, 2, 3})
    assert c != MajorityConfig({1, 2})
    assert hash(c) == hash(MajorityConfig([2, 3, 1]))
    assert {c, MajorityConfig([1, 2, 3])} == {c}
    assert str(c) == "(1 2 3)"
    assert str(MajorityConfig()) == "()"
    assert not MajorityConfig()


def test_majority_committed_index_examples():
    c = MajorityConfig([1, 2, 3])
    assert c.committed_index(_lookup({1: 10, 2: 5, 3: 7})) == 7
    assert c.committed_index(_lookup({1: 10, 2: 5})) == 5  # 3 unknown counts as 0
    assert c.committed_index(_lookup({1: 10})) == 0
    assert MajorityConfig([1]).committed_index(_lookup({1: 4})) == 4
    assert MajorityConfig([1, 2]).committed_index(_lookup({1: 4, 2: 9})) == 4
    assert MajorityConfig([1, 2, 3, 4]).committed_index(_lookup({1: 1, 2: 2, 3: 3, 4: 4})) == 2
    assert MajorityConfig().committed_index(_lookup({})) == INFINITE_INDEX


def test_majority_vote_result_examples():
    c = MajorityConfig([1, 2, 3])
    assert c.vote_result({}) == VoteResult.PENDING
    assert c.vote_result({1: True}) == VoteResult.PENDING
    assert c.vote_result({1: True, 2: True}) == VoteResult.WON
    assert c.vote_result({1: False, 2: True}) == VoteResult.PENDING
    assert c.vote_result({1: False, 2: False}) == VoteResult.LOST
    assert c.vote_result({4: True, 5: True}) == VoteResult.PENDING  # non-members don't count
    assert MajorityConfig([1, 2]).vote_result({1: True, 2: False}) == VoteResult.LOST
    assert MajorityConfig().vote_result({}) == VoteResult.WON
    assert str(VoteResult.WON) == "VoteWon"


@given(ids_st, acks_st)
def test_majority_committed_index_matches_brute_force(ids, acks):
    c = MajorityConfig(ids)
    assert c.committed_index(_lookup(acks)) == _naive_committed(ids, acks)
    # Equivalently: the (n // 2 + 1)-th largest acknowledged index.
    if ids:
        ordered = sorted((acks.get(i) or 0 for i in ids), reverse=True)
        assert c.committed_index(_lookup(acks)) == ordered[len(ids) // 2]


@given(ids_st, votes_st)
def test_majority_vote_result_matches_brute_force(ids, votes):
    assert MajorityConfig(ids).vote_result(votes) == _naive_result([ids], votes)


def test_majority_describe():
    c = MajorityConfig([1, 2, 3])
    text = c.describe(_lookup({1: 10, 2: 5}))
    lines = text.splitlines()
    assert lines[0].endswith("idx")
    assert "(id=1)" in lines[1] and "10" in lines[1]
    assert lines[3].startswith("?")  # 3 is unknown
    assert MajorityConfig().describe(_lookup({})) == "<empty majority quorum>"


# ---- JointConfig


def test_joint_config_basics():
    j = JointConfig(MajorityConfig([1, 2, 3]), MajorityConfig([3, 4]))
    assert j.is_joint
    assert j.ids() == frozenset({1, 2, 3, 4})
    assert str(j) == "(1 2 3)&&(3 4)"
    plain = JointConfig(MajorityConfig([1, 2]))
    assert not plain.is_joint
    assert str(plain) == "(1 2)"
    assert JointConfig() == JointConfig(incoming=MajorityConfig(), outgoing=MajorityConfig())
    assert hash(j) == hash(JointConfig(MajorityConfig([3, 2, 1]), MajorityConfig([4, 3])))
    assert "&&" in j.describe(_lookup({1: 1}))


def test_joint_committed_index_examples():
    j = JointConfig(MajorityConfig([1, 2, 3]), MajorityConfig([4, 5, 6]))
    acks = {1: 10, 2: 10, 3: 0, 4: 3, 5: 3, 6: 100}
    assert j.committed_index(_lookup(acks)) == 3
    # An empty half behaves as if absent.
    assert JointConfig(MajorityConfig([1, 2, 3])).committed_index(_lookup(acks)) == 10
    assert JointConfig(MajorityConfig(), MajorityConfig([4, 5, 6])).committed_index(_lookup(acks)) == 3
    assert JointConfig().committed_index(_lookup(acks)) == INFINITE_INDEX


def test_joint_vote_result_examples():
    j = JointConfig(MajorityConfig([1, 2, 3]), MajorityConfig([3, 4, 5]))
    assert j.vote_result({1: True, 2: True}) == VoteResult.PENDING  # incoming won, outgoing pending
    assert j.vote_result({1: True, 2: True, 3: True, 4: True}) == VoteResult.WON
    assert j.vote_result({1: True, 2: True, 4: False, 5: False}) == VoteResult.LOST  # outgoing lost
    assert j.vote_result({1: False, 2: False, 4: True, 5: True}) == VoteResult.LOST
    assert JointConfig().vote_result({}) == VoteResult.WON


@given(ids_st, ids_st, acks_st)
def test_joint_committed_index_matches_brute_force(incoming, outgoing, acks):
    j = JointConfig(MajorityConfig(incoming), MajorityConfig(outgoing))
    got = j.committed_index(_lookup(acks))
    assert got == min(_naive_committed(incoming, acks), _naive_committed(outgoing, acks))
    if incoming or outgoing:
        # Largest index that is committed by a majority of each non-empty half.
        values = {0} | {acks.get(i) or 0 for i in incoming | outgoing}
        halves = [h for h in (incoming, outgoing) if h]
        expected = max(
            v for v in values if all(2 * sum((acks.get(i) or 0) >= v for i in h) > len(h) for h in halves)
        )
        assert got == expected


@given(ids_st, ids_st, votes_st)
def test_joint_vote_result_matches_brute_force(incoming, outgoing, votes):
    j = JointConfig(MajorityConfig(incoming), MajorityConfig(outgoing))
    assert j.vote_result(votes) == _naive_result([incoming, outgoing], votes)
