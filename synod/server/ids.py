"""Member, cluster and request IDs, derived as etcd derives them.

A member's ID is the first 8 bytes (big endian) of the SHA-1 of its sorted
peer URLs joined, followed by the cluster token (and, for a member added at
runtime, the time it was added). The cluster's ID is the same hash over the
sorted member IDs, each as 8 big-endian bytes. So a synod started with etcd's
flags reports the IDs etcd would.
"""

from __future__ import annotations

import hashlib
import struct


def _sha1_u64(data: bytes) -> int:
    value: int = struct.unpack(">Q", hashlib.sha1(data).digest()[:8])[0]
    return value


def member_id(peer_urls: list[str], cluster_token: str, added_at: int | None = None) -> int:
    data = "".join(sorted(peer_urls)) + cluster_token
    if added_at is not None:
        data += str(added_at)
    return _sha1_u64(data.encode())


def cluster_id(member_ids: list[int]) -> int:
    return _sha1_u64(b"".join(struct.pack(">Q", m) for m in sorted(member_ids)))


class IDGenerator:
    """Unique request IDs: 2 bytes of the member ID, 5 of time in ms, then a counter.

    The time prefix keeps IDs from repeating across restarts of the member.
    """

    _SUFFIX_BITS = 48
    _SUFFIX_MASK = (1 << _SUFFIX_BITS) - 1

    def __init__(self, member: int, now_ms: int) -> None:
        self._prefix = (member & 0xFFFF) << self._SUFFIX_BITS
        self._suffix = (now_ms << 8) & self._SUFFIX_MASK

    def next(self) -> int:
        self._suffix = (self._suffix + 1) & self._SUFFIX_MASK
        return self._prefix | self._suffix
