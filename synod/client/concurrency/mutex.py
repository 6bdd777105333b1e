"""A distributed mutex, as clientv3/concurrency's: fair (FIFO), no thundering herd, tied to a session.

A locker writes ``<prefix>/<its session's lease id in hex>`` with the session's
lease, in a transaction that creates it only if it does not exist (so a session
that already holds or waits for the lock keeps its place). The holder is the key
with the smallest create revision; the others wait, each only for the deletion of
the key created just before its own, so the lock passes in the order of the
requests and each release wakes one waiter. When the wait ends, the locker checks
that its key is still there: a locker whose session ended while it waited (its
key deleted with the lease) is told so with ``SessionExpiredError``, at once,
rather than handed a lock it does not own.

One session is one locker: two ``Mutex`` objects on the same session and prefix
share the key (as in etcd). Give each concurrent locker its own session.

``is_owner()`` is a compare to guard a transaction with ("only if I still hold
the lock"), which is what makes the lock safe to rely on after a pause.

    async with AsyncSession(client) as session:
        mutex = AsyncMutex(session, "/locks/job")
        async with mutex:  # lock() ... unlock()
            await client.txn([mutex.is_owner()], [t.put("/job/state", "mine")])
"""

from __future__ import annotations

import asyncio
import contextlib

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.client import txn as t
from synod.client.concurrency._wait import wait_turn
from synod.client.concurrency.errors import SessionExpiredError
from synod.client.concurrency.session import AsyncSession, Session
from synod.client.errors import EtcdError, LeaseNotFoundError
from synod.client.keys import Key, to_bytes

_NO_KEY = b"\0"  # etcd's "no key": a compare on it never holds


class AsyncMutex:
    def __init__(self, session: AsyncSession, prefix: Key) -> None:
        self.session = session
        self.prefix = to_bytes(prefix) + b"/"
        self.key = _NO_KEY  # the locker's key, while it holds or waits for the lock
        self.revision = -1  # its create revision: the locker's place in the queue
        self.header: pb.ResponseHeader | None = None  # the answer at which the lock was acquired

    async def __aenter__(self) -> AsyncMutex:
        await self.lock()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.unlock()

    async def _enqueue(self) -> pb.TxnResponse:
        """Create this session's key (or find it) and read the current holder, in one round trip."""
        self.session.check()
        lease = self.session.lease_id
        key = self.prefix + f"{lease:x}".encode()
        owner = t.get(
            self.prefix, prefix=True, sort_target=pb.RangeRequest.CREATE, sort_order=pb.RangeRequest.ASCEND,
            limit=1,
        )  # fmt: skip
        try:
            resp = await self.session.client.txn(
                [t.create_revision(key) == 0], [t.put(key, "", lease=lease), owner], [t.get(key), owner]
            )
        except LeaseNotFoundError:
            raise SessionExpiredError() from None
        self.key = key
        if resp.succeeded:
            self.revision = resp.header.revision
        else:
            self.revision = resp.responses[0].response_range.kvs[0].create_revision
        return resp

    def _holds(self, resp: pb.TxnResponse) -> bool:
        kvs = resp.responses[1].response_range.kvs
        return not kvs or kvs[0].create_revision == self.revision

    async def lock(self, timeout: float | None = None) -> None:
        """Wait for the lock (``TimeoutError`` after ``timeout`` seconds, leaving the queue).

        Raises ``SessionExpiredError`` if the session ends before the lock is acquired.
        """
        held = False
        try:
            async with asyncio.timeout(timeout):
                resp = await self._enqueue()
                if self._holds(resp):
                    self.header = resp.header
                    held = True
                    return
                await wait_turn(self.session, self.prefix, self.key, self.revision, resp.header.revision)
                # Our turn; but is our key, the session's, still there?
                got = await self.session.client.get(self.key)
                if not got.kvs or got.kvs[0].create_revision != self.revision:
                    raise SessionExpiredError()
                self.header = got.header
                held = True
        finally:
            if not held and self.key != _NO_KEY:
                await self._leave()

    async def try_lock(self) -> bool:
        """Take the lock if nobody holds it (True), else leave the queue at once (False)."""
        resp = await self._enqueue()
        if self._holds(resp):
            self.header = resp.header
            return True
        await self._leave()
        return False

    async def unlock(self) -> None:
        if self.key != _NO_KEY:
            await self.session.client.delete(self.key)
        self.key, self.revision = _NO_KEY, -1

    async def _leave(self) -> None:
        key, self.key, self.revision = self.key, _NO_KEY, -1
        if not self.session.lost.is_set():
            with contextlib.suppress(EtcdError):  # the error being raised matters more
                await self.session.client.delete(key)

    def is_owner(self) -> pb.Compare:
        """A compare that holds while this locker holds the lock (its key, at its create revision)."""
        return t.create_revision(self.key) == self.revision


class Mutex:
    """The blocking mutex over a ``Session``: ``with mutex:``, ``lock()``, ``unlock()``."""

    def __init__(self, session: Session, prefix: Key) -> None:
        self.session = session
        self._portal = session._portal
        self.aio = AsyncMutex(session.aio, prefix)

    def __enter__(self) -> Mutex:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()

    @property
    def key(self) -> bytes:
        return self.aio.key

    @property
    def revision(self) -> int:
        return self.aio.revision

    @property
    def header(self) -> pb.ResponseHeader | None:
        return self.aio.header

    def lock(self, timeout: float | None = None) -> None:
        self._portal.run(self.aio.lock(timeout))

    def try_lock(self) -> bool:
        return self._portal.run(self.aio.try_lock())

    def unlock(self) -> None:
        self._portal.run(self.aio.unlock())

    def is_owner(self) -> pb.Compare:
        return self.aio.is_owner()
