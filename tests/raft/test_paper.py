"""Tests named after the rules of the Raft paper (Ongaro & Ousterhout, "In Search of an Understandable
Consensus Algorithm", extended version), each quoting the sentence it checks."""

from __future__ import annotations

import random

import pytest

from synod.raft.raft import Config, Raft, StateType
from synod.raft.storage import MemoryStorage
from synod.raft.types import NONE, Entry, HardState, Message, MessageType
from tests.raft.cluster import Cluster, bootstrap_storage

MT = MessageType


def new_raft(
    node_id: int, peers: list[int], *, election: int = 10, heartbeat: int = 1, seed: int = 1
) -> Raft:
    return Raft(Config(node_id, bootstrap_storage(peers), random.Random(seed), election, heartbeat))


def take(r: Raft) -> list[Message]:
    msgs, r.msgs = r.msgs, []
    return msgs


def persist(r: Raft) -> None:
    """Do what a driver does with a Ready's entries: write them to storage, then advance."""
    entries = r.raft_log.unstable_entries()
    storage = r.raft_log.storage
    assert isinstance(storage, MemoryStorage)
    storage.append(entries)
    r.advance(entries, [], None)


def elect_alone(r: Raft) -> None:
    """Make ``r`` leader by granting it every vote, and acknowledge its first appends (so the followers
    replicate rather than probe)."""
    r.step(Message(MT.HUP, from_=r.id))
    for m in take(r):
        if m.type == MT.VOTE:
            r.step(Message(MT.VOTE_RESP, from_=m.to, to=r.id, term=m.term))
    assert r.state == StateType.LEADER
    for m in take(r):
        if m.type == MT.APP:
            r.step(Message(MT.APP_RESP, from_=m.to, to=r.id, term=r.term, index=m.index + len(m.entries)))
    take(r)


# -- 5.1 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["follower", "candidate", "leader"])
def test_5_1_a_server_with_a_smaller_term_updates_it_and_reverts_to_follower(role: str) -> None:
    """ "If one server's current term is smaller than the other's, then it updates its current term to
    the larger value. If a candidate or leader discovers that its term is out of date, it immediately
    reverts to follower state." """
    r = new_raft(1, [1, 2, 3])
    if role == "candidate":
        r.step(Message(MT.HUP, from_=1))
    elif role == "leader":
        elect_alone(r)
    newer = r.term + 1
    r.step(Message(MT.APP, from_=2, to=1, term=newer))
    assert r.term == newer
    assert r.state == StateType.FOLLOWER
    assert r.lead == 2


def test_5_1_a_request_with_a_stale_term_is_rejected() -> None:
    """ "If a server receives a request with a stale term number, it rejects the request." """
    r = new_raft(1, [1, 2, 3])
    r.step(Message(MT.APP, from_=2, to=1, term=5))
    take(r)
    r.step(Message(MT.APP, from_=3, to=1, term=4, index=1, log_term=1, entries=(Entry(2, 4, b"x"),)))
    assert take(r) == []
    assert r.raft_log.last_index() == 1


# -- 5.2 -------------------------------------------------------------------------------------------


def test_5_2_servers_start_as_followers() -> None:
    """ "When servers start up, they begin as followers." """
    r = new_raft(1, [1, 2, 3])
    assert r.state == StateType.FOLLOWER
    assert r.lead == NONE


def test_5_2_leaders_send_periodic_heartbeats() -> None:
    """ "Leaders send periodic heartbeats (AppendEntries RPCs that carry no log entries) to all followers
    in order to maintain their authority." """
    r = new_raft(1, [1, 2, 3], heartbeat=1)
    elect_alone(r)
    r.tick()
    beats = take(r)
    assert sorted(m.to for m in beats) == [2, 3]
    assert all(m.type == MT.HEARTBEAT and not m.entries for m in beats)


@pytest.mark.parametrize("role", ["follower", "candidate"])
def test_5_2_on_election_timeout_a_server_starts_an_election(role: str) -> None:
    """ "To begin an election, a follower increments its current term and transitions to candidate state.
    It then votes for itself and issues RequestVote RPCs in parallel to each of the other servers." """
    r = new_raft(1, [1, 2, 3])
    if role == "candidate":
        r.step(Message(MT.HUP, from_=1))
        take(r)
    term = r.term
    for _ in range(2 * r.election_timeout):
        r.tick()
    assert r.term == term + 1
    assert r.state == StateType.CANDIDATE
    assert r.vote == 1
    votes = take(r)
    assert sorted(m.to for m in votes) == [2, 3]
    assert all(m.type == MT.VOTE and m.term == term + 1 for m in votes)


@pytest.mark.parametrize(
    ("size", "granted", "want"),
    [
        (1, {}, StateType.LEADER),
        (3, {2: True}, StateType.LEADER),
        (3, {2: True, 3: True}, StateType.LEADER),
        (5, {2: True, 3: True}, StateType.LEADER),
        (3, {}, StateType.CANDIDATE),
        (5, {2: True}, StateType.CANDIDATE),
        (3, {2: False, 3: False}, StateType.FOLLOWER),
        (5, {2: False, 3: False, 4: False}, StateType.FOLLOWER),
    ],
)
def test_5_2_a_candidate_wins_with_a_majority_and_loses_to_one(
    size: int, granted: dict[int, bool], want: StateType
) -> None:
    """ "A candidate wins an election if it receives votes from a majority of the servers in the full
    cluster for the same term." """
    r = new_raft(1, list(range(1, size + 1)))
    r.step(Message(MT.HUP, from_=1))
    for node, vote in granted.items():
        r.step(Message(MT.VOTE_RESP, from_=node, to=1, term=r.term, reject=not vote))
    assert r.state == want
    assert r.term == 1


@pytest.mark.parametrize(
    ("vote", "candidate", "rejected"),
    [(NONE, 2, False), (NONE, 3, False), (2, 2, False), (3, 3, False), (2, 3, True), (3, 2, True)],
)
def test_5_2_each_server_votes_for_at_most_one_candidate_per_term(
    vote: int, candidate: int, rejected: bool
) -> None:
    """ "Each server will vote for at most one candidate in a given term, on a first-come-first-served
    basis." """
    storage = bootstrap_storage([1, 2, 3])
    storage.set_hard_state(HardState(term=1, vote=vote, commit=1))
    r = Raft(Config(1, storage, random.Random(1)))
    r.step(Message(MT.VOTE, from_=candidate, to=1, term=1, index=1, log_term=1))
    (resp,) = take(r)
    assert (resp.type, resp.to, resp.reject) == (MT.VOTE_RESP, candidate, rejected)


def test_5_2_a_candidate_receiving_appendentries_from_a_current_leader_becomes_follower() -> None:
    """ "If the leader's term (included in its RPC) is at least as large as the candidate's current term,
    then the candidate recognizes the leader as legitimate and returns to follower state." """
    for term_delta in (0, 1):
        r = new_raft(1, [1, 2, 3])
        r.step(Message(MT.HUP, from_=1))
        r.step(Message(MT.APP, from_=2, to=1, term=r.term + term_delta))
        assert r.state == StateType.FOLLOWER
        assert r.lead == 2


def test_5_2_election_timeouts_are_randomized() -> None:
    """Election timeouts "are chosen randomly from a fixed interval (e.g., 150-300ms)." """
    seen = set()
    for seed in range(50):
        r = new_raft(1, [1, 2, 3], election=10, seed=seed)
        ticks = 0
        while r.state == StateType.FOLLOWER:
            r.tick()
            ticks += 1
        seen.add(ticks)
    assert min(seen) >= 10 and max(seen) < 20
    assert len(seen) > 5, seen


# -- 5.3 -------------------------------------------------------------------------------------------


def test_5_3_the_leader_appends_the_command_then_issues_appendentries_in_parallel() -> None:
    """ "The leader appends the command to its log as a new entry, then issues AppendEntries RPCs in
    parallel to each of the other servers to replicate the entry." """
    r = new_raft(1, [1, 2, 3])
    elect_alone(r)
    last = r.raft_log.last_index()
    r.step(Message(MT.PROP, from_=1, entries=(Entry(0, 0, b"cmd"),)))
    assert r.raft_log.last_index() == last + 1
    apps = take(r)
    assert sorted(m.to for m in apps) == [2, 3]
    for m in apps:
        assert m.type == MT.APP and [e.data for e in m.entries][-1] == b"cmd"


def test_5_3_an_entry_is_committed_once_a_majority_has_it_and_then_applied() -> None:
    """ "A log entry is committed once the leader that created the entry has replicated it on a majority
    of the servers ... Once a follower learns that a log entry is committed, it applies the entry to
    its local state machine (in log order)." """
    c = Cluster([1, 2, 3, 4, 5])
    c.elect(1)
    c.isolate(4)
    c.isolate(5)
    c.propose(1, b"x")
    c.stabilize()
    for n in (1, 2, 3):
        assert c.nodes[n].data == [b"x"]
    assert c.nodes[4].data == [] and c.nodes[5].data == []
    c.heal()
    c.tick(1)  # a heartbeat brings the others up to date
    c.stabilize()
    for n in (4, 5):
        assert c.nodes[n].data == [b"x"]


def test_5_3_no_commit_without_a_majority() -> None:
    c = Cluster([1, 2, 3, 4, 5])
    c.elect(1)
    for n in (3, 4, 5):
        c.isolate(n)
    c.propose(1, b"x")
    c.stabilize()
    assert all(node.data == [] for node in c.nodes.values())


def test_5_3_the_consistency_check_rejects_a_gap_or_a_term_mismatch() -> None:
    """ "If the follower does not find an entry in its log with the same index and term, then it refuses
    the new entries." """
    storage = bootstrap_storage([1, 2, 3])
    storage.append([Entry(2, 1, b"a"), Entry(3, 2, b"b")])
    storage.set_hard_state(HardState(term=2, commit=1))
    cases = [(3, 2, False), (3, 1, True), (4, 2, True), (2, 1, False)]
    for index, log_term, rejected in cases:
        r = Raft(Config(1, storage, random.Random(1)))
        r.step(Message(MT.APP, from_=2, to=1, term=2, index=index, log_term=log_term, commit=1))
        (resp,) = take(r)
        assert (resp.type, resp.reject) == (MT.APP_RESP, rejected), (index, log_term)


def test_5_3_conflicting_entries_are_deleted_with_all_that_follow() -> None:
    """ "If an existing entry conflicts with a new one (same index but different terms), delete the
    existing entry and all that follow it; append any new entries not already in the log." """
    storage = bootstrap_storage([1, 2, 3])
    storage.append([Entry(2, 1, b"a"), Entry(3, 2, b"b"), Entry(4, 2, b"c")])
    storage.set_hard_state(HardState(term=3, commit=1))
    r = Raft(Config(1, storage, random.Random(1)))
    r.step(Message(MT.APP, from_=2, to=1, term=3, index=2, log_term=1, entries=(Entry(3, 3, b"B"),)))
    assert [(e.index, e.term, e.data) for e in r.raft_log.all_entries()] == [(2, 1, b"a"), (3, 3, b"B")]


def test_5_3_the_leader_brings_divergent_follower_logs_in_line() -> None:
    """ "The leader handles inconsistencies by forcing the followers' logs to duplicate its own." (Figure 7:
    a follower missing entries, and one with extra uncommitted entries from older terms.)"""
    c = Cluster([1, 2, 3])
    c.elect(1)
    for i in range(3):
        c.propose(1, b"a%d" % i)
    c.stabilize()
    # Node 3 falls behind; node 1 then writes entries only it gets before losing leadership.
    c.isolate(3)
    c.propose(1, b"b")
    c.stabilize()
    c.isolate(2)
    c.propose(1, b"lost-1")
    c.propose(1, b"lost-2")
    c.stabilize()
    c.heal()
    c.isolate(1)
    c.elect(2)
    c.propose(2, b"c")
    c.stabilize()
    c.heal()
    c.tick(2)
    c.stabilize()
    logs = {n: [(e.term, e.data) for e in c.nodes[n].raw.raft.raft_log.all_entries()] for n in c.nodes}
    assert logs[1] == logs[2] == logs[3]
    assert (b"lost-1" not in c.nodes[1].data) and c.nodes[1].data == c.nodes[2].data == c.nodes[3].data
    assert c.nodes[3].data[-2:] == [b"b", b"c"]


# -- 5.4 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("voter_last", "candidate_last", "granted"),
    [
        ((1, 2), (1, 2), True),  # (term, index): equal logs
        ((1, 2), (1, 3), True),  # same term, longer
        ((1, 2), (2, 1), True),  # later term wins even if shorter
        ((2, 2), (1, 5), False),  # older last term loses even if longer
        ((1, 3), (1, 2), False),  # same term, shorter
    ],
)
def test_5_4_1_a_voter_denies_a_candidate_whose_log_is_less_up_to_date(
    voter_last: tuple[int, int], candidate_last: tuple[int, int], granted: bool
) -> None:
    """ "The voter denies its vote if its own log is more up-to-date than that of the candidate." """
    term, index = voter_last
    storage = bootstrap_storage([1, 2, 3])
    storage.append([Entry(i, term if i == index else 1, b"") for i in range(2, index + 1)])
    r = Raft(Config(1, storage, random.Random(1)))
    cterm, cindex = candidate_last
    r.step(Message(MT.VOTE, from_=2, to=1, term=5, index=cindex, log_term=cterm))
    (resp,) = take(r)
    assert resp.reject is not granted


def test_5_4_2_a_leader_never_commits_entries_from_previous_terms_by_counting_replicas() -> None:
    """ "Raft never commits log entries from previous terms by counting replicas. Only log entries from
    the leader's current term are committed by counting replicas." """
    storage = bootstrap_storage([1, 2, 3])
    storage.append([Entry(2, 1, b"old")])
    storage.set_hard_state(HardState(term=2, commit=1))
    r = Raft(Config(1, storage, random.Random(1)))
    r.step(Message(MT.HUP, from_=1))
    assert r.term == 3
    r.step(Message(MT.VOTE_RESP, from_=2, to=1, term=3))
    assert r.state == StateType.LEADER
    take(r)
    persist(r)  # the leader's own entries are durable
    # A follower acknowledges the old entry only: still not committed.
    r.step(Message(MT.APP_RESP, from_=2, to=1, term=3, index=2))
    assert r.raft_log.committed == 1
    # Once the new term's empty entry is acknowledged, both commit.
    r.step(Message(MT.APP_RESP, from_=2, to=1, term=3, index=3))
    assert r.raft_log.committed == 3


def test_a_leader_counts_its_own_entries_only_once_they_are_durable() -> None:
    """The leader may send entries before writing them (thesis 10.2.1), so its unwritten copy must not
    count towards the majority that commits them."""
    r = new_raft(1, [1, 2, 3])
    elect_alone(r)
    persist(r)
    r.step(Message(MT.PROP, from_=1, entries=(Entry(0, 0, b"x"),)))
    index = r.raft_log.last_index()
    take(r)
    r.step(Message(MT.APP_RESP, from_=2, to=1, term=r.term, index=index))
    assert r.raft_log.committed < index  # one durable copy of three
    persist(r)
    assert r.raft_log.committed == index  # the leader's own is durable now: two of three


def test_storage_is_untouched_by_the_core() -> None:
    """The core never writes its storage: the driver persists what a Ready holds."""
    storage = bootstrap_storage([1])
    r = Raft(Config(1, storage, random.Random(1)))
    r.step(Message(MT.HUP, from_=1))
    assert r.state == StateType.LEADER
    assert storage.last_index() == 1
    assert r.raft_log.committed == 1  # even alone, nothing commits before the driver persists it
    assert isinstance(storage, MemoryStorage)
