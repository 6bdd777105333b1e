"""Bytes for Raft values: configuration changes inside entries, and messages between peers.

A ``CONF_CHANGE_V2`` entry's data is ``encode_conf_change(cc)``; empty data is
the empty change that leaves a joint configuration (the leader appends it by
itself when ``auto_leave`` is set). Layout: ``u8 transition | u16 count |
count x (u8 type, u64 node) | context``.
"""

from __future__ import annotations

import struct

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

_HEAD = struct.Struct(">BH")
_CHANGE = struct.Struct(">BQ")


def encode_conf_change(cc: ConfChangeV2) -> bytes:
    if not cc.changes and not cc.context and cc.transition == ConfChangeTransition.AUTO:
        return b""
    parts = [_HEAD.pack(cc.transition, len(cc.changes))]
    parts += [_CHANGE.pack(c.type, c.node_id) for c in cc.changes]
    parts.append(cc.context)
    return b"".join(parts)


def decode_conf_change(data: bytes) -> ConfChangeV2:
    if not data:
        return ConfChangeV2()
    transition, count = _HEAD.unpack_from(data)
    pos = _HEAD.size
    changes = []
    for _ in range(count):
        kind, node = _CHANGE.unpack_from(data, pos)
        pos += _CHANGE.size
        changes.append(ConfChangeSingle(ConfChangeType(kind), node))
    return ConfChangeV2(ConfChangeTransition(transition), tuple(changes), bytes(data[pos:]))


# -- messages, for the peer transport --------------------------------------------------------------
#
# A message is its fixed fields, then its context, its entries, and its snapshot (if any):
#   u8 type | u64 to | u64 from | u64 term | u64 log_term | u64 index | u64 commit | u8 flags
#   | u64 reject_hint | u32 len, context | u32 n, n x entry | snapshot
# entry:    u64 index | u64 term | u8 type | u32 len, data
# snapshot: u64 index | u64 term | conf state | u32 len, data     (flags bit 1: present)
# conf state: 4 x (u32 n, n x u64) for voters, learners, voters_outgoing, learners_next | u8 auto_leave

_MSG = struct.Struct(">BQQQQQQBQI")
_ENT = struct.Struct(">QQBI")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_SNAP = struct.Struct(">QQ")
_REJECT = 1
_HAS_SNAPSHOT = 2


def _ids(ids: tuple[int, ...]) -> bytes:
    return _U32.pack(len(ids)) + b"".join(_U64.pack(i) for i in ids)


def encode_conf_state(cs: ConfState) -> bytes:
    parts = [_ids(cs.voters), _ids(cs.learners), _ids(cs.voters_outgoing), _ids(cs.learners_next)]
    return b"".join(parts) + (b"\x01" if cs.auto_leave else b"\x00")


def _read_ids(data: bytes | memoryview, pos: int) -> tuple[tuple[int, ...], int]:
    (n,) = _U32.unpack_from(data, pos)
    pos += 4
    ids = tuple(_U64.unpack_from(data, pos + 8 * i)[0] for i in range(n))
    return ids, pos + 8 * n


def decode_conf_state(data: bytes | memoryview, pos: int = 0) -> tuple[ConfState, int]:
    voters, pos = _read_ids(data, pos)
    learners, pos = _read_ids(data, pos)
    outgoing, pos = _read_ids(data, pos)
    learners_next, pos = _read_ids(data, pos)
    auto_leave = data[pos] == 1
    return ConfState(voters, learners, outgoing, learners_next, auto_leave), pos + 1


def encode_message(m: Message) -> bytes:
    flags = (_REJECT if m.reject else 0) | (_HAS_SNAPSHOT if m.snapshot is not None else 0)
    parts = [
        _MSG.pack(
            m.type, m.to, m.from_, m.term, m.log_term, m.index, m.commit, flags, m.reject_hint, len(m.context)
        ),
        m.context,
        _U32.pack(len(m.entries)),
    ]
    for e in m.entries:
        parts.append(_ENT.pack(e.index, e.term, e.type, len(e.data)))
        parts.append(e.data)
    if m.snapshot is not None:
        md = m.snapshot.metadata
        parts += [_SNAP.pack(md.index, md.term), encode_conf_state(md.conf_state)]
        parts += [_U32.pack(len(m.snapshot.data)), m.snapshot.data]
    return b"".join(parts)


def decode_message(data: bytes | memoryview) -> Message:
    """The inverse of ``encode_message``; raises ValueError (or struct.error) on malformed bytes."""
    mtype, to, from_, term, log_term, index, commit, flags, hint, ctx_len = _MSG.unpack_from(data)
    pos = _MSG.size
    context = bytes(data[pos : pos + ctx_len])
    pos += ctx_len
    (n,) = _U32.unpack_from(data, pos)
    pos += 4
    entries = []
    for _ in range(n):
        e_index, e_term, e_type, size = _ENT.unpack_from(data, pos)
        pos += _ENT.size
        entries.append(Entry(e_index, e_term, bytes(data[pos : pos + size]), e_type))
        pos += size
    snapshot = None
    if flags & _HAS_SNAPSHOT:
        s_index, s_term = _SNAP.unpack_from(data, pos)
        cs, pos = decode_conf_state(data, pos + _SNAP.size)
        (size,) = _U32.unpack_from(data, pos)
        pos += 4
        snapshot = Snapshot(bytes(data[pos : pos + size]), SnapshotMetadata(cs, s_index, s_term))
        pos += size
    if pos != len(data):
        raise ValueError(f"raft message: {len(data) - pos} bytes after the message")
    return Message(
        MessageType(mtype),
        to=to,
        from_=from_,
        term=term,
        log_term=log_term,
        index=index,
        entries=tuple(entries),
        commit=commit,
        snapshot=snapshot,
        reject=bool(flags & _REJECT),
        reject_hint=hint,
        context=context,
    )
