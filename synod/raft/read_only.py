"""Linearizable reads without a log entry (the Raft thesis, section 6.4): ReadIndex.

The leader records the commit index when a read arrives, then confirms it is
still the leader by a round of heartbeats carrying the read's context; once a
quorum has acknowledged that context, every read queued up to it may be
served at its recorded index. Contexts are answered in arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from synod.raft.types import Message


class ReadOnlyOption(IntEnum):
    SAFE = 0  # confirm leadership with a heartbeat round (always correct)
    LEASE_BASED = 1  # trust the leader lease (needs check-quorum and bounded clock drift)


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read that may be served once the applied index reaches ``index``."""

    index: int
    request_ctx: bytes


@dataclass(slots=True)
class ReadIndexStatus:
    req: Message
    index: int
    acks: dict[int, bool] = field(default_factory=dict)


class ReadOnly:
    def __init__(self, option: ReadOnlyOption) -> None:
        self.option = option
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, m: Message) -> None:
        """Queue the read ``m`` (its context is ``m.entries[0].data``) at commit index ``index``."""
        ctx = m.entries[0].data
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(m, index)
        self.queue.append(ctx)

    def recv_ack(self, node: int, ctx: bytes) -> dict[int, bool]:
        """Record ``node``'s heartbeat acknowledgement of ``ctx``; returns the acks so far."""
        status = self.pending.get(ctx)
        if status is None:
            return {}
        status.acks[node] = True
        return status.acks

    def advance(self, m: Message) -> list[ReadIndexStatus]:
        """The reads answered by the quorum-acknowledged context ``m.context`` (and all before it)."""
        try:
            i = self.queue.index(m.context)
        except ValueError:
            return []
        done = self.queue[: i + 1]
        del self.queue[: i + 1]
        return [self.pending.pop(ctx) for ctx in done]

    def last_pending_request_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""
