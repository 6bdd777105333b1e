"""Revisions and their byte form in the backend.

A revision is ``(main, sub)``: ``main`` is the store revision a write transaction
creates, ``sub`` numbers the changes inside that transaction. Tuples compare in
that order, which is the order of history.

In the backend a revision is 17 bytes: big-endian ``main``, ``b"_"``, big-endian
``sub`` (etcd's layout, so byte order is revision order), plus a trailing ``b"t"``
when the record is a tombstone (a deletion).
"""

from __future__ import annotations

import struct

Revision = tuple[int, int]

REV_BYTES_LEN = 17
TOMBSTONE_MARK = b"t"

_REV = struct.Struct(">Q1sQ")


def rev_to_bytes(main: int, sub: int = 0) -> bytes:
    return _REV.pack(main, b"_", sub)


def bytes_to_rev(data: bytes) -> Revision:
    main, _, sub = _REV.unpack_from(data)
    return main, sub


def is_tombstone(data: bytes) -> bool:
    return len(data) == REV_BYTES_LEN + 1 and data[-1:] == TOMBSTONE_MARK
