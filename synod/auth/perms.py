"""Key-range permissions merged per user, as etcd's ``unifiedRangePermissions``.

Ranges follow etcd's "affine" byte order, in which an empty byte string is
greater than every other: an empty end means "to the end of the keyspace", and
an empty begin sorts after every key (so a permission on key ``""`` with range
end ``"\\0"`` covers nothing, as in etcd 3.4). A permission with no range end is
the single key ``[key, key + "\\0")``.

A single key is permitted when some interval holds it; a range when the union
of the intervals covers it without a gap.
"""

from __future__ import annotations

from collections.abc import Iterable

from synod.api.authpb.auth_pb2 import Permission

# An endpoint in affine order: (0, key) for a key, (1, b"") for the end of the keyspace.
Endpoint = tuple[int, bytes]
Interval = tuple[Endpoint, Endpoint]


def endpoint(key: bytes) -> Endpoint:
    return (0, key) if key else (1, b"")


def key_interval(key: bytes, range_end: bytes) -> Interval:
    """A request's keys: one key, or ``[key, range_end)`` with ``"\\0"`` meaning every key >= key."""
    if not range_end:
        return endpoint(key), endpoint(key + b"\x00")
    if range_end == b"\x00":
        range_end = b""
    return endpoint(key), endpoint(range_end)


def permission_interval(p: Permission) -> Interval:
    if not p.range_end:
        return endpoint(p.key), endpoint(p.key + b"\x00")
    return key_interval(p.key, p.range_end)


def _overlaps(a: Interval, b: Interval) -> bool:
    """etcd's interval comparison: neither wholly left nor wholly right of the other."""
    if a[0] < b[0] and a[1] <= b[0]:
        return False
    return not a[0] >= b[1]


class Intervals:
    """A set of intervals, sorted by begin."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Interval] = ()) -> None:
        self._items = sorted(items, key=lambda iv: iv[0])

    def __bool__(self) -> bool:
        return bool(self._items)

    def holds(self, ivl: Interval) -> bool:
        """Whether some interval overlaps ``ivl`` (used for single keys)."""
        return any(_overlaps(ivl, iv) for iv in self._items)

    def covers(self, ivl: Interval) -> bool:
        """Whether the intervals overlapping ``ivl`` are contiguous and span all of it."""
        begin: Endpoint | None = None
        end: Endpoint | None = None
        for iv in self._items:
            if not _overlaps(ivl, iv):
                continue
            if begin is None or end is None:
                begin, end = iv
                continue
            if end < iv[0]:
                return False
            end = max(end, iv[1])
        return begin is not None and end is not None and end >= ivl[1] and begin <= ivl[0]


class RangePermissions:
    """What one user may read and write, from the permissions of all its roles."""

    __slots__ = ("read", "write")

    def __init__(self, permissions: Iterable[Permission]) -> None:
        read: list[Interval] = []
        write: list[Interval] = []
        for p in permissions:
            ivl = permission_interval(p)
            if p.permType in (Permission.READ, Permission.READWRITE):
                read.append(ivl)
            if p.permType in (Permission.WRITE, Permission.READWRITE):
                write.append(ivl)
        self.read = Intervals(read)
        self.write = Intervals(write)

    def permits(self, key: bytes, range_end: bytes, *, write: bool) -> bool:
        intervals = self.write if write else self.read
        if not range_end:
            return intervals.holds(key_interval(key, b""))
        return intervals.covers(key_interval(key, range_end))
