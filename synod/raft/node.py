"""The seam between EtcdServer and consensus.

EtcdServer proposes opaque entry data and applies what comes back committed,
in log order. A single member commits an entry once it is durable in its WAL
(``SingleNode``); the Raft driver (a later issue) commits it once a quorum has
it. Either way the server's write path is propose -> log -> apply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from synod.wal.wal import Entry

ApplyFn = Callable[[list[Entry]], None]


class RaftNode(Protocol):
    @property
    def term(self) -> int: ...

    @property
    def leader_id(self) -> int: ...

    @property
    def committed_index(self) -> int: ...

    def propose(self, data: bytes) -> None:
        """Queue ``data`` for the log; it comes back through the apply function once committed."""

    async def read_index(self) -> int:
        """An index such that a read after it is applied is linearizable."""

    async def run(self, apply: ApplyFn) -> None:
        """Persist and commit proposals, calling ``apply`` with committed entries, until stopped."""

    async def stop(self) -> None: ...
