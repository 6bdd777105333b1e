"""Named values in the backend's ``meta`` bucket."""

from __future__ import annotations

import struct

from synod.backend.backend import META, Backend

CONSISTENT_INDEX = b"consistent_index"  # index of the last WAL entry applied to the backend
TERM = b"term"  # term of that entry
SCHEDULED_COMPACT_REV = b"scheduledCompactRev"
FINISHED_COMPACT_REV = b"finishedCompactRev"

_U64 = struct.Struct(">Q")


def get_int(backend: Backend, name: bytes) -> int | None:
    raw = backend.get(META, name)
    if raw is None:
        return None
    value: int = _U64.unpack(raw[:8])[0]
    return value


def put_int(backend: Backend, name: bytes, value: int) -> None:
    backend.put(META, name, _U64.pack(value))
