"""Raft values round-trip through their byte encodings exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synod.raft.codec import (
    decode_conf_change,
    decode_conf_state,
    decode_message,
    encode_conf_change,
    encode_conf_state,
    encode_message,
)
from synod.raft.types import (
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)

u64 = st.integers(min_value=0, max_value=2**64 - 1)
ids = st.lists(u64, max_size=5).map(tuple)
conf_states = st.builds(ConfState, ids, ids, ids, ids, st.booleans())
entries = st.builds(Entry, u64, u64, st.binary(max_size=64), st.integers(min_value=0, max_value=2))
snapshots = st.builds(Snapshot, st.binary(max_size=64), st.builds(SnapshotMetadata, conf_states, u64, u64))
messages = st.builds(
    Message,
    st.sampled_from(list(MessageType)),
    to=u64,
    from_=u64,
    term=u64,
    log_term=u64,
    index=u64,
    entries=st.lists(entries, max_size=4).map(tuple),
    commit=u64,
    snapshot=st.none() | snapshots,
    reject=st.booleans(),
    reject_hint=u64,
    context=st.binary(max_size=32),
)
changes = st.builds(ConfChangeSingle, st.sampled_from(list(ConfChangeType)), u64)
transitions = st.sampled_from(list(ConfChangeTransition))
conf_changes = st.builds(ConfChangeV2, transitions, st.lists(changes, max_size=4).map(tuple), st.binary())


@given(messages)
def test_messages_round_trip(m: Message) -> None:
    assert decode_message(encode_message(m)) == m


@given(conf_states)
def test_conf_states_round_trip(cs: ConfState) -> None:
    data = encode_conf_state(cs)
    assert decode_conf_state(data) == (cs, len(data))


@given(conf_changes)
def test_conf_changes_round_trip(cc: ConfChangeV2) -> None:
    assert decode_conf_change(encode_conf_change(cc)) == cc


def test_the_empty_conf_change_is_empty_bytes() -> None:
    assert encode_conf_change(ConfChangeV2()) == b""
    assert decode_conf_change(b"").leave_joint()


def test_trailing_bytes_are_refused() -> None:
    data = encode_message(Message(MessageType.APP, to=1, from_=2, term=3))
    with pytest.raises(ValueError):
        decode_message(data + b"x")
