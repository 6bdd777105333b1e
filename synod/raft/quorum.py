"""Quorums: majority configurations and joint (two-majority) configurations.

Pure functions over sets of voter IDs. A majority config decides by a strict
majority of its members; a joint config decides only when both of its halves
do. By convention an empty majority config agrees to everything (it commits
``INFINITE_INDEX`` and wins every election), so a joint config whose outgoing
half is empty behaves exactly like its incoming half.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum

INFINITE_INDEX: int = 2**64 - 1  # what an empty majority config has committed

AckedIndex = Callable[[int], int | None]  # voter id -> acknowledged index, None if unknown (counts as 0)


class VoteResult(IntEnum):
    PENDING = 1  # neither outcome is decided yet
    LOST = 2  # a winning majority is no longer possible
    WON = 3  # a majority granted the vote

    def __str__(self) -> str:
        return _VOTE_NAMES[self]


_VOTE_NAMES = {VoteResult.PENDING: "VotePending", VoteResult.LOST: "VoteLost", VoteResult.WON: "VoteWon"}


class MajorityConfig:
    """An immutable set of voter IDs deciding by strict majority (``len // 2 + 1`` members)."""

    __slots__ = ("_ids", "_sorted")

    _ids: frozenset[int]
    _sorted: tuple[int, ...]

    def __init__(self, ids: Iterable[int] = ()) -> None:
        self._ids = frozenset(ids)
        self._sorted = tuple(sorted(self._ids))

    @property
    def ids(self) -> frozenset[int]:
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[int]:
        return iter(self._sorted)

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MajorityConfig):
            return NotImplemented
        return self._ids == other._ids

    def __hash__(self) -> int:
        return hash(self._ids)

    def __repr__(self) -> str:
        return f"MajorityConfig({list(self._sorted)!r})"

    def __str__(self) -> str:
        return "(" + " ".join(str(i) for i in self._sorted) + ")"

    def sorted_ids(self) -> tuple[int, ...]:
        return self._sorted

    def committed_index(self, acked: AckedIndex) -> int:
        """The largest index that a majority has acknowledged; ``INFINITE_INDEX`` if empty."""
        n = len(self._sorted)
        if n == 0:
            return INFINITE_INDEX
        indexes = sorted(_acked_or_zero(acked, i) for i in self._sorted)
        # The quorum's member with the smallest index among the n // 2 + 1 largest.
        return indexes[n - (n // 2 + 1)]

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """WON once a majority granted, LOST once a majority is out of reach, else PENDING.

        IDs missing from ``votes`` have not voted yet; votes of non-members are ignored.
        """
        if not self._sorted:
            return VoteResult.WON
        granted = missing = 0
        for i in self._sorted:
            vote = votes.get(i)
            if vote is None:
                missing += 1
            elif vote:
                granted += 1
        quorum = len(self._sorted) // 2 + 1
        if granted >= quorum:
            return VoteResult.WON
        if granted + missing >= quorum:
            return VoteResult.PENDING
        return VoteResult.LOST

    def describe(self, acked: AckedIndex) -> str:
        """A table of each voter's acknowledged index (``?`` if unknown), for debugging.

        The bar of each voter grows with the rank of its index, so the committed
        index is the one of the voter whose bar has length ``n - (n // 2 + 1)``.
        """
        if not self._sorted:
            return "<empty majority quorum>"
        n = len(self._sorted)
        known = {i: acked(i) for i in self._sorted}
        ranked = sorted(self._sorted, key=lambda i: (known[i] or 0, i))
        bars: dict[int, int] = {}
        for rank, i in enumerate(ranked):
            previous = ranked[rank - 1] if rank else None
            if previous is not None and (known[previous] or 0) == (known[i] or 0):
                bars[i] = bars[previous]
            else:
                bars[i] = rank
        lines = [" " * n + "    idx"]
        for i in self._sorted:
            index = known[i]
            head = "?" + " " * n if index is None else "x" * bars[i] + ">" + " " * (n - bars[i])
            lines.append(f"{head} {index or 0:>5}    (id={i})")
        return "\n".join(lines) + "\n"


def _acked_or_zero(acked: AckedIndex, voter: int) -> int:
    index = acked(voter)
    return 0 if index is None else index


EMPTY_MAJORITY = MajorityConfig()


@dataclass(frozen=True, slots=True)
class JointConfig:
    """Two majority configs that must both agree; ``outgoing`` is empty outside a joint change."""

    incoming: MajorityConfig = EMPTY_MAJORITY
    outgoing: MajorityConfig = EMPTY_MAJORITY

    def __str__(self) -> str:
        if self.outgoing:
            return f"{self.incoming}&&{self.outgoing}"
        return str(self.incoming)

    @property
    def is_joint(self) -> bool:
        return len(self.outgoing) > 0

    def ids(self) -> frozenset[int]:
        """Every voter of either half."""
        return self.incoming.ids | self.outgoing.ids

    def committed_index(self, acked: AckedIndex) -> int:
        """The largest index acknowledged by a majority of each half."""
        return min(self.incoming.committed_index(acked), self.outgoing.committed_index(acked))

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """WON if both halves won, LOST if either lost, else PENDING."""
        first = self.incoming.vote_result(votes)
        second = self.outgoing.vote_result(votes)
        if first == second:
            return first
        if VoteResult.LOST in (first, second):
            return VoteResult.LOST
        return VoteResult.PENDING

    def describe(self, acked: AckedIndex) -> str:
        """The incoming half's table, then the outgoing half's if joint (for debugging)."""
        text = self.incoming.describe(acked)
        if self.outgoing:
            text += "&&\n" + self.outgoing.describe(acked)
        return text
