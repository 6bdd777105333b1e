"""Leader election, as clientv3/concurrency's: campaigners queue by create revision, the first leads.

A campaigner writes ``<prefix>/<its session's lease id in hex>`` (its value: what
it proclaims, e.g. its address) with the session's lease and waits, as a
mutex's locker does, for every key created before its own to go; then it leads
until it resigns or its session ends (its key deleted with the lease). The
leader is the key under the prefix with the smallest create revision.

``observe()`` follows the leadership: it yields the leader's key-value when it
changes hands and when the leader proclaims a new value. Unlike clientv3's, it
misses no leader, however briefly one leads: after a leader's key is deleted at
revision R it reads who led at R (a read at that revision, not a read of now),
then follows that key from R + 1. (If that history has been compacted
meanwhile, it goes on from the current leader, which it may yield a second time.)

    election = AsyncElection(session, "/election/service")
    await election.campaign("10.0.0.1:8080")    # returns once leading
    await election.proclaim("10.0.0.1:9090")
    await election.resign()
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import AsyncIterator, Iterator

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.mvccpb import kv_pb2 as mvccpb
from synod.client import txn as t
from synod.client.concurrency._wait import wait_turn
from synod.client.concurrency.errors import (
    ConcurrencyError,
    ElectionNoLeaderError,
    ElectionNotLeaderError,
    SessionExpiredError,
)
from synod.client.concurrency.session import AsyncSession, Session
from synod.client.errors import CompactedError, EtcdError, LeaseNotFoundError
from synod.client.keys import Key, to_bytes


class AsyncElection:
    def __init__(self, session: AsyncSession, prefix: Key) -> None:
        self.session = session
        self.prefix = to_bytes(prefix) + b"/"
        self.key = b""  # this campaigner's key, while it campaigns or leads
        self.revision = -1  # its create revision
        self.header: pb.ResponseHeader | None = None
        self._leading = False

    @classmethod
    def resume(cls, session: AsyncSession, prefix: Key, key: Key, revision: int) -> AsyncElection:
        """The election of a leader that was elected earlier (its key and create revision), as etcd's."""
        election = cls(session, prefix)
        election.key, election.revision, election._leading = to_bytes(key), revision, True
        return election

    async def campaign(self, value: Key, timeout: float | None = None) -> None:
        """Wait until leading, then return (``TimeoutError`` after ``timeout``, leaving the queue).

        Raises ``SessionExpiredError`` if the session ends before this campaigner leads.
        """
        leading = False
        try:
            async with asyncio.timeout(timeout):
                resp = await self._enter(value)
                await wait_turn(self.session, self.prefix, self.key, self.revision, resp.header.revision)
                got = await self.session.client.get(self.key)
                if not got.kvs or got.kvs[0].create_revision != self.revision:
                    raise SessionExpiredError("election: session is expired")
                self.header = resp.header
                leading = True
        finally:
            if not leading and self._leading:
                with contextlib.suppress(EtcdError):  # the error being raised matters more
                    await self.resign()
                self._leading = False

    async def _enter(self, value: Key) -> pb.TxnResponse:
        self.session.check()
        lease = self.session.lease_id
        key = self.prefix + f"{lease:x}".encode()
        try:
            resp = await self.session.client.txn(
                [t.create_revision(key) == 0], [t.put(key, value, lease=lease)], [t.get(key)]
            )
        except LeaseNotFoundError:
            raise SessionExpiredError("election: session is expired") from None
        self.key, self.revision, self._leading = key, resp.header.revision, True
        if not resp.succeeded:  # this session campaigns already: keep its place, take the new value
            kv = resp.responses[0].response_range.kvs[0]
            self.revision = kv.create_revision
            if kv.value != to_bytes(value):
                await self.proclaim(value)
        return resp

    async def proclaim(self, value: Key) -> None:
        """Announce a new value as the leader, without an election (``ElectionNotLeaderError`` if not)."""
        if not self._leading:
            raise ElectionNotLeaderError()
        resp = await self.session.client.txn(
            [self._mine()], [t.put(self.key, value, lease=self.session.lease_id)]
        )
        if not resp.succeeded:
            self.key, self._leading = b"", False
            raise ElectionNotLeaderError()
        self.header = resp.header

    async def resign(self) -> None:
        """Give up leadership (or the place in the queue); the next campaigner leads."""
        if not self._leading:
            return
        try:
            resp = await self.session.client.txn([self._mine()], [t.delete(self.key)])
            self.header = resp.header
        finally:
            self.key, self.revision, self._leading = b"", -1, False

    def _mine(self) -> pb.Compare:
        return t.create_revision(self.key or b"\0") == self.revision

    def is_leader(self) -> list[pb.Compare]:
        """Compares that hold while this campaigner leads, to guard a transaction with.

        Its key is the one it created, and no key under the prefix is older (a range
        compare, etcd 3.3+): so they fail for a campaigner still waiting, too.
        """
        return [
            t.create_revision(self.key or b"\0") == self.revision,
            t.create_revision(self.prefix, prefix=True) > self.revision - 1,
        ]

    async def leader(self) -> mvccpb.KeyValue:
        """The current leader's key-value (``ElectionNoLeaderError`` if nobody leads)."""
        resp = await self.leader_at(0)
        if not resp.kvs:
            raise ElectionNoLeaderError()
        return resp.kvs[0]

    async def leader_at(self, revision: int) -> pb.RangeResponse:
        """The read of the leader: the key under the prefix with the smallest create revision, at
        ``revision`` (0: now); its ``kvs`` are empty when nobody leads."""
        return await self.session.client.get(
            self.prefix, prefix=True, revision=revision, limit=1,
            sort_target=pb.RangeRequest.CREATE, sort_order=pb.RangeRequest.ASCEND,
        )  # fmt: skip

    async def observe(self) -> AsyncIterator[mvccpb.KeyValue]:
        """The leader's key-value now (once there is one), then at every change, in order, forever.

        An async generator: close it (``contextlib.aclosing``) to stop watching.
        """
        client = self.session.client
        revision = 0  # the revision whose leader comes next (0: now)
        while True:
            try:
                resp = await self.leader_at(revision)
            except CompactedError:
                revision = 0
                continue
            at = revision or resp.header.revision
            if resp.kvs:
                kv = resp.kvs[0]
            else:  # nobody leads: the first key put under the prefix is the next leader
                kv = await self._first_put(at + 1)
                at = kv.mod_revision
            yield kv
            deleted = 0
            try:
                async with client.watch(kv.key, start_revision=at + 1) as watch:
                    async for wresp in watch:
                        for event in wresp.events:
                            if event.type == mvccpb.Event.DELETE:
                                deleted = event.kv.mod_revision
                                break
                            yield event.kv  # a proclamation
                        if deleted:
                            break
            except CompactedError:  # the history since that read is gone: go on from the present
                revision = 0
                continue
            if not deleted:
                raise ConcurrencyError("election: lost watcher while observing")
            revision = deleted

    async def _first_put(self, start_revision: int) -> mvccpb.KeyValue:
        async with self.session.client.watch(self.prefix, prefix=True, start_revision=start_revision) as w:
            async for wresp in w:
                for event in wresp.events:
                    if event.type == mvccpb.Event.PUT:
                        return event.kv
        raise ConcurrencyError("election: lost watcher while observing")


class Election:
    """The blocking election over a ``Session``."""

    def __init__(self, session: Session, prefix: Key) -> None:
        self.session = session
        self._portal = session._portal
        self.aio = AsyncElection(session.aio, prefix)

    @property
    def key(self) -> bytes:
        return self.aio.key

    @property
    def revision(self) -> int:
        return self.aio.revision

    @property
    def header(self) -> pb.ResponseHeader | None:
        return self.aio.header

    def campaign(self, value: Key, timeout: float | None = None) -> None:
        self._portal.run(self.aio.campaign(value, timeout))

    def proclaim(self, value: Key) -> None:
        self._portal.run(self.aio.proclaim(value))

    def resign(self) -> None:
        self._portal.run(self.aio.resign())

    def _mine(self) -> pb.Compare:
        return t.create_revision(self.key or b"\0") == self.revision

    def is_leader(self) -> list[pb.Compare]:
        return self.aio.is_leader()

    def leader(self) -> mvccpb.KeyValue:
        return self._portal.run(self.aio.leader())

    def observe(self) -> Observer:
        """A blocking iterator of leader key-values (``next``, or ``get(timeout)``); ``close()`` it."""
        return Observer(self)


_END = object()


class Observer:
    """``AsyncElection.observe`` run on the client's loop, its key-values handed over a queue."""

    def __init__(self, election: Election) -> None:
        self._portal = election._portal
        self._queue: queue.Queue[object] = queue.Queue()
        self._ended = False

        async def pump() -> None:
            try:
                async for kv in election.aio.observe():
                    self._queue.put(kv)
            except asyncio.CancelledError:
                self._queue.put(_END)
                raise
            except BaseException as e:
                self._queue.put(e)

        async def start() -> asyncio.Task[None]:
            return asyncio.get_running_loop().create_task(pump())

        self._task = self._portal.run(start())

    def __iter__(self) -> Iterator[mvccpb.KeyValue]:
        return self

    def __next__(self) -> mvccpb.KeyValue:
        return self.get()

    def get(self, timeout: float | None = None) -> mvccpb.KeyValue:
        """The next key-value; ``queue.Empty`` after ``timeout``, ``StopIteration`` once closed."""
        if self._ended:
            raise StopIteration
        item = self._queue.get(timeout=timeout)
        if item is _END:
            self._ended = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        assert isinstance(item, mvccpb.KeyValue)
        return item

    def close(self) -> None:
        async def stop() -> None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

        if not self._portal.loop.is_closed():
            self._portal.run(stop())

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
