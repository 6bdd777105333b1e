"""Software transactional memory over etcd's transactions, as clientv3/concurrency's ``STM``.

``run_stm(client, apply)`` runs ``apply(stm)``, which reads keys with
``stm.get`` and buffers writes with ``stm.put`` / ``stm.delete``; then commits
the writes in one transaction guarded by compares that fail if what was read
(and, at the strictest level, what is written) changed meanwhile. On a conflict
it runs ``apply`` again, from scratch, until a commit goes through; an exception
raised by ``apply`` aborts (nothing is written) and propagates.

The isolation levels are etcd's:

- ``SerializableSnapshot`` (the default): every read sees the revision of the
  first one (a snapshot); the commit fails if a key read changed, or if a key
  written was modified after that snapshot. Transactions behave as if run one
  at a time.
- ``Serializable``: snapshot reads, conflicts on the keys read only.
- ``RepeatableReads``: reading a key twice answers the same; each key is read
  at its latest revision (serializable, local reads), conflicts on the keys read.
- ``ReadCommitted``: reads of whatever is committed, no conflict check: the
  writes always go through (a read-modify-write may lose a concurrent update).

Values are ``bytes`` (``b""`` for a missing key, as etcd's ``""``).

    async def transfer(stm: AsyncSTM) -> None:
        a, b = int(await stm.get("a")), int(await stm.get("b"))
        stm.put("a", str(a - 10))
        stm.put("b", str(b + 10))

    await run_stm(async_client, transfer)     # asyncio
    run_stm(client, sync_transfer)            # blocking: apply(stm) calls stm.get(...) without await
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, overload

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.client import txn as t
from synod.client.aio import AsyncClient
from synod.client.keys import Key, to_bytes
from synod.client.sync import Client, Portal


class Isolation(enum.Enum):
    SERIALIZABLE_SNAPSHOT = 0
    SERIALIZABLE = 1
    REPEATABLE_READS = 2
    READ_COMMITTED = 3


# etcd's names for them.
SerializableSnapshot = Isolation.SERIALIZABLE_SNAPSHOT
Serializable = Isolation.SERIALIZABLE
RepeatableReads = Isolation.REPEATABLE_READS
ReadCommitted = Isolation.READ_COMMITTED


class AsyncSTM:
    """The handle ``apply`` works with; one attempt's read and write sets."""

    def __init__(self, client: AsyncClient, isolation: Isolation = SerializableSnapshot) -> None:
        self.client = client
        self.isolation = isolation
        self._snapshot = isolation in (SerializableSnapshot, Serializable)
        self.attempts = 0
        # Carried from a failed commit to the next attempt: the keys read, as they are now.
        self._prefetch: dict[bytes, tuple[pb.RangeResponse, int]] = {}
        self._reset()

    def _reset(self) -> None:
        # Each key read: its range response and the revision the read was made at.
        self._reads: dict[bytes, tuple[pb.RangeResponse, int]] = {}
        self._writes: dict[bytes, tuple[bytes, pb.RequestOp]] = {}
        self._revision = 0  # snapshot levels: the revision all reads are at (0: the first is to come)

    async def get(self, *keys: Key) -> bytes:
        """The value of the first of ``keys`` (all are read, at one revision, into the read set).

        A key this attempt wrote answers the value written.
        """
        if not keys:
            raise TypeError("get() needs a key")
        wanted = [to_bytes(k) for k in keys]
        for key in wanted:
            if key in self._writes:
                return self._writes[key][0]
        resp = await self._read(wanted)
        return resp.kvs[0].value if resp.kvs else b""

    async def rev(self, key: Key) -> int:
        """The modification revision of ``key`` as read (0 if it does not exist); reads it if not yet."""
        resp = await self._read([to_bytes(key)])
        return resp.kvs[0].mod_revision if resp.kvs else 0

    def put(self, key: Key, value: Key, *, lease: int = 0) -> None:
        self._writes[to_bytes(key)] = (to_bytes(value), t.put(key, value, lease=lease))

    def delete(self, key: Key) -> None:
        self._writes[to_bytes(key)] = (b"", t.delete(key))

    async def _read(self, keys: list[bytes]) -> pb.RangeResponse:
        first_read = not self._reads
        if self._snapshot:
            for key in keys:
                if key in self._prefetch:
                    self._reads[key] = self._prefetch.pop(key)
            if first_read and self._reads:  # the snapshot is the prefetch's: read the others there too
                self._revision = min(revision for _, revision in self._reads.values())
        missing = [k for k in dict.fromkeys(keys) if k not in self._reads]
        if missing:
            ops = [
                pb.RequestOp(
                    request_range=pb.RangeRequest(
                        key=k, revision=self._revision, serializable=self._serializable_reads()
                    )
                )
                for k in missing
            ]
            resp = await self.client.txn((), ops)
            for key, op in zip(missing, resp.responses, strict=True):
                self._reads[key] = (op.response_range, resp.header.revision)
        if self._snapshot and first_read and self._revision == 0:
            # The first read defines the snapshot every later read of the attempt sees.
            self._revision = self._reads[keys[0]][1]
        return self._reads[keys[0]][0]

    def _serializable_reads(self) -> bool:
        # Reads at a pinned revision need no consensus; the other levels read locally, as etcd's.
        return not self._snapshot or self._revision != 0

    def _conflicts(self) -> list[pb.Compare]:
        if self.isolation is ReadCommitted:
            return []
        compares = [
            t.mod_revision(key) == (resp.kvs[0].mod_revision if resp.kvs else 0)
            for key, (resp, _) in self._reads.items()
        ]
        if self.isolation is SerializableSnapshot and self._reads:
            first = min(revision for _, revision in self._reads.values())
            compares += [t.mod_revision(key) < first + 1 for key in self._writes]
        return compares

    async def _commit(self) -> pb.TxnResponse | None:
        """The commit's answer, or None on a conflict (then the next attempt starts from fresh reads)."""
        puts = [op for _, op in self._writes.values()]
        if not self._snapshot:
            resp = await self.client.txn(self._conflicts(), puts)
            return resp if resp.succeeded else None
        keys = list(self._reads)
        resp = await self.client.txn(self._conflicts(), puts, [t.get(k) for k in keys])
        if resp.succeeded:
            return resp
        # The failure branch read the keys again: the next attempt starts from those.
        self._prefetch = {
            k: (op.response_range, resp.header.revision) for k, op in zip(keys, resp.responses, strict=True)
        }
        return None


async def _run_async(
    client: AsyncClient,
    apply: Callable[[AsyncSTM], Awaitable[None]],
    isolation: Isolation,
    prefetch: Sequence[Key],
) -> pb.TxnResponse:
    stm = AsyncSTM(client, isolation)
    while True:
        stm._reset()
        stm.attempts += 1
        if prefetch:
            await stm.get(*prefetch)
        await apply(stm)
        resp = await stm._commit()
        if resp is not None:
            return resp


class STM:
    """The blocking handle: ``get`` and ``rev`` block, on the client's loop."""

    def __init__(self, portal: Portal, stm: AsyncSTM) -> None:
        self._portal = portal
        self.aio = stm

    @property
    def attempts(self) -> int:
        return self.aio.attempts

    def get(self, *keys: Key) -> bytes:
        return self._portal.run(self.aio.get(*keys))

    def rev(self, key: Key) -> int:
        return self._portal.run(self.aio.rev(key))

    def put(self, key: Key, value: Key, *, lease: int = 0) -> None:
        self.aio.put(key, value, lease=lease)

    def delete(self, key: Key) -> None:
        self.aio.delete(key)


def _run_sync(
    client: Client, apply: Callable[[STM], None], isolation: Isolation, prefetch: Sequence[Key]
) -> pb.TxnResponse:
    stm = STM(client._portal, AsyncSTM(client.aio, isolation))
    while True:
        stm.aio._reset()
        stm.aio.attempts += 1
        if prefetch:
            stm.get(*prefetch)
        apply(stm)
        resp = client._portal.run(stm.aio._commit())
        if resp is not None:
            return resp


@overload
def run_stm(
    client: AsyncClient,
    apply: Callable[[AsyncSTM], Awaitable[None]],
    *,
    isolation: Isolation = ...,
    prefetch: Sequence[Key] = ...,
) -> Coroutine[Any, Any, pb.TxnResponse]: ...


@overload
def run_stm(
    client: Client,
    apply: Callable[[STM], None],
    *,
    isolation: Isolation = ...,
    prefetch: Sequence[Key] = ...,
) -> pb.TxnResponse: ...


def run_stm(
    client: AsyncClient | Client,
    apply: Callable[[Any], Any],
    *,
    isolation: Isolation = SerializableSnapshot,
    prefetch: Sequence[Key] = (),
) -> Coroutine[Any, Any, pb.TxnResponse] | pb.TxnResponse:
    """Run ``apply`` until its writes commit without conflict; the commit's ``TxnResponse``.

    With an ``AsyncClient``, a coroutine (``apply`` is ``async``, ``await stm.get(...)``);
    with a ``Client``, it blocks (``apply`` is a plain function, run in the caller's
    thread). ``prefetch``: keys read at the start of every attempt, in one request.
    """
    if isinstance(client, AsyncClient):
        return _run_async(client, apply, isolation, prefetch)
    return _run_sync(client, apply, isolation, prefetch)
