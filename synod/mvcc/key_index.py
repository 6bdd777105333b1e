"""The history of one key: its revisions, grouped in generations.

A generation is one life of the key: from the put that created it to the
tombstone (deletion) that ended it. The last generation is the current one and
is empty while the key does not exist. For example
``put(1.0); put(2.0); tombstone(3.0); put(4.0); tombstone(5.0)`` gives::

    generations: [ {1.0, 2.0, 3.0(t)}, {4.0, 5.0(t)}, {} ]

Compacting at revision ``r`` drops every revision ``<= r`` except the largest one
of each generation that is still needed to read at ``r`` or later:

* ``compact(2)`` -> ``[{2.0, 3.0(t)}, {4.0, 5.0(t)}, {}]``
* ``compact(4)`` -> ``[{4.0, 5.0(t)}, {}]`` (the first life ended at 3 <= 4)
* ``compact(5)`` -> ``[{}]``: nothing is left, so the key leaves the index.

Invariants: revisions only grow; every generation but the last ends with a
tombstone; the last generation holds no tombstone.
"""

from __future__ import annotations

from synod.mvcc.revision import Revision


class RevisionNotFound(Exception):
    """The key has no live revision at the requested point in history."""


class Generation:
    __slots__ = ("created", "revs", "ver")

    def __init__(self) -> None:
        self.ver = 0  # version of the key at the last revision of this generation
        self.created: Revision = (0, 0)  # first revision of this life
        self.revs: list[Revision] = []

    def __repr__(self) -> str:
        return f"Generation(ver={self.ver}, created={self.created}, revs={self.revs})"


class KeyIndex:
    __slots__ = ("generations", "key", "modified")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.modified: Revision = (0, 0)
        self.generations: list[Generation] = [Generation()]

    def put(self, rev: Revision) -> None:
        if rev <= self.modified:
            raise AssertionError(f"put of {self.key!r} at {rev} after {self.modified}")
        g = self.generations[-1]
        if not g.revs:
            g.created = rev
        g.revs.append(rev)
        g.ver += 1
        self.modified = rev

    def restore(self, created: Revision, modified: Revision, ver: int) -> None:
        """Start the index of a key read back from the backend (history may be compacted)."""
        g = self.generations[-1]
        g.created = created
        g.revs.append(modified)
        g.ver = ver
        self.modified = modified

    def tombstone(self, rev: Revision) -> None:
        if not self.generations[-1].revs:
            raise RevisionNotFound(self.key)
        self.put(rev)
        self.generations.append(Generation())

    def get(self, at_rev: int) -> tuple[Revision, Revision, int]:
        """(modified, created, version) of the key as of main revision ``at_rev``."""
        g = self._find_generation(at_rev)
        if g is not None:
            revs = g.revs
            for n in range(len(revs) - 1, -1, -1):
                if revs[n][0] <= at_rev:
                    return revs[n], g.created, g.ver - (len(revs) - n - 1)
        raise RevisionNotFound(self.key)

    def _find_generation(self, at_rev: int) -> Generation | None:
        """The generation alive at ``at_rev``, or None if the key did not exist then."""
        gens = self.generations
        last = len(gens) - 1
        for i in range(last, -1, -1):
            g = gens[i]
            if not g.revs:
                continue
            if i != last and g.revs[-1][0] <= at_rev:
                return None  # the generation that covers at_rev ended with a tombstone
            if g.revs[0][0] <= at_rev:
                return g
        return None

    def compact(self, at_rev: int, available: set[Revision]) -> None:
        """Drop history older than ``at_rev``; add the revisions to keep to ``available``."""
        gen_idx, rev_idx = self._do_compact(at_rev, available)
        g = self.generations[gen_idx]
        if g.revs:
            if rev_idx != -1:
                del g.revs[:rev_idx]
            # A generation reduced to its tombstone is of no use any more.
            if len(g.revs) == 1 and gen_idx != len(self.generations) - 1:
                available.discard(g.revs[0])
                gen_idx += 1
        del self.generations[:gen_idx]

    def keep(self, at_rev: int, available: set[Revision]) -> None:
        """Like compact, but only reports what compact would keep."""
        if self.is_empty():
            return
        gen_idx, rev_idx = self._do_compact(at_rev, available)
        g = self.generations[gen_idx]
        if g.revs and rev_idx == len(g.revs) - 1 and gen_idx != len(self.generations) - 1:
            available.discard(g.revs[rev_idx])

    def _do_compact(self, at_rev: int, available: set[Revision]) -> tuple[int, int]:
        gens = self.generations
        gen_idx = 0
        # Skip the generations that ended (with their tombstone) at or before at_rev.
        while gen_idx < len(gens) - 1 and gens[gen_idx].revs[-1][0] <= at_rev:
            gen_idx += 1
        revs = gens[gen_idx].revs
        for n in range(len(revs) - 1, -1, -1):
            if revs[n][0] <= at_rev:
                available.add(revs[n])
                return gen_idx, n
        return gen_idx, -1

    def is_empty(self) -> bool:
        return len(self.generations) == 1 and not self.generations[0].revs

    def __repr__(self) -> str:
        return f"KeyIndex({self.key!r}, modified={self.modified}, generations={self.generations})"
