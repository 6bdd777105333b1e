"""Bytes for the Raft values that travel inside entries: configuration changes.

A ``CONF_CHANGE_V2`` entry's data is ``encode_conf_change(cc)``; empty data is
the empty change that leaves a joint configuration (the leader appends it by
itself when ``auto_leave`` is set). Layout: ``u8 transition | u16 count |
count x (u8 type, u64 node) | context``.
"""

from __future__ import annotations

import struct

from synod.raft.types import ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2

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
