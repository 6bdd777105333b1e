"""Watch responses assembled from bytes, so that an event is serialized once.

A ``WatchResponse`` is its header, its watch ID and flags, then its events;
the same event goes to every watcher that receives it, under a different
watch ID. Protobuf lets a message be written as the concatenation of its
fields, so each event is encoded once (cached on the store's ``Change``) and
copied into every response that carries it. Field numbers are etcd's
(``rpc.proto``: WatchResponse; ``kv.proto``: Event); fields are written in
number order and zero values omitted, as protobuf itself writes them, which
``tests/unit/test_watch_codec.py`` checks against the protobuf library.
"""

from __future__ import annotations

from collections.abc import Sequence

from synod.mvcc.store import DELETE, Change

_MASK64 = (1 << 64) - 1


def varint(n: int) -> bytes:
    """A protobuf varint; negative int64 values as their 64-bit two's complement (10 bytes)."""
    n &= _MASK64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, data: bytes) -> bytes:
    """A length-delimited field (``tag`` already holds the field number and wire type 2)."""
    return bytes((tag,)) + varint(len(data)) + data


def encode_event(change: Change, prev_kv: bytes | None = None) -> bytes:
    """``mvccpb.Event``: type (1, PUT omitted), kv (2), prev_kv (3)."""
    out = b"\x08\x01" if change.type == DELETE else b""
    out += _field(0x12, change.kv_bytes)
    if prev_kv is not None:
        out += _field(0x1A, prev_kv)
    return out


def encode_watch_response(
    header: bytes,
    watch_id: int,
    events: Sequence[bytes] = (),
    *,
    created: bool = False,
    canceled: bool = False,
    compact_revision: int = 0,
    cancel_reason: str = "",
    fragment: bool = False,
) -> bytes:
    """``etcdserverpb.WatchResponse`` from an encoded ``ResponseHeader`` and encoded events."""
    parts = [_field(0x0A, header)]
    if watch_id:
        parts.append(b"\x10" + varint(watch_id))
    if created:
        parts.append(b"\x18\x01")
    if canceled:
        parts.append(b"\x20\x01")
    if compact_revision:
        parts.append(b"\x28" + varint(compact_revision))
    if cancel_reason:
        parts.append(_field(0x32, cancel_reason.encode()))
    if fragment:
        parts.append(b"\x38\x01")
    for event in events:
        parts.append(b"\x5a" + varint(len(event)))
        parts.append(event)
    return b"".join(parts)
