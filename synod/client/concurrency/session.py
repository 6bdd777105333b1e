"""A session: a lease kept alive for as long as its owner lives, the liveness of locks and leaders.

As clientv3/concurrency's ``Session``: it grants a lease (TTL 60 s unless told
otherwise), or takes over an existing one (``lease_id``: "session resuming", so
a restarted process keeps the locks and leadership its lease holds), and renews
it in the background (``synod.client.lease.KeepAlive``). Keys written with the
session's lease (a mutex's, a campaigner's) disappear when the session ends.

``done`` is set when the session ends: lost (the lease expired or was revoked,
or the client closed: then ``lost`` is set too, ``error`` says why and the
``on_lost`` callback runs), orphaned or closed. ``close()`` revokes the lease,
deleting its keys at once; ``orphan()`` only stops renewing it, leaving it to
expire after its TTL (or to be resumed by another session).

    session = await AsyncSession(client, ttl=10)      # asyncio
    async with AsyncSession(client) as session: ...   # closed (revoked) at the end

    with Session(client, ttl=10) as session: ...      # blocking, over a ``Client``
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Generator
from typing import Any

import grpc

from synod.client.aio import AsyncClient
from synod.client.concurrency.errors import SessionExpiredError
from synod.client.errors import EtcdError, LeaseNotFoundError
from synod.client.lease import KeepAlive
from synod.client.sync import Client
from synod.rpctypes import LEASE_NOT_FOUND

DEFAULT_TTL = 60


class AsyncSession:
    """``await AsyncSession(client, ttl=..., lease_id=...)`` (or ``async with``) starts it."""

    def __init__(
        self,
        client: AsyncClient,
        ttl: int = DEFAULT_TTL,
        lease_id: int | None = None,
        *,
        on_lost: Callable[[EtcdError], None] | None = None,
        keep_alive: bool = True,
    ) -> None:
        """``keep_alive=False``: the lease is not renewed, its owner keeps it alive (or lets it expire);
        the session ends only when closed (as etcd's lock and election services use sessions)."""
        if ttl <= 0:
            raise ValueError("a session's TTL is a positive number of seconds")
        self.client = client
        self._keep_alive = keep_alive
        self._started = False
        self.ttl = ttl
        self.lease_id = lease_id or 0
        self._resume = lease_id is not None and lease_id != 0
        self._on_lost = on_lost
        self.keepalive: KeepAlive | None = None
        self.done = asyncio.Event()
        self.lost = asyncio.Event()
        self.error: EtcdError | None = None
        self._start_lock = asyncio.Lock()

    def __await__(self) -> Generator[Any, None, AsyncSession]:
        return self.start().__await__()

    async def __aenter__(self) -> AsyncSession:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> AsyncSession:
        """Grant the lease (or check that the one to resume exists) and start renewing it."""
        async with self._start_lock:
            if self._started:
                return self
            if self._resume and not self._keep_alive:
                ttl = await self.client.lease_time_to_live(self.lease_id)  # looks, renews nothing
                if ttl.TTL == -1:
                    raise LeaseNotFoundError(grpc.StatusCode.NOT_FOUND, LEASE_NOT_FOUND.message)
                self.ttl = int(ttl.grantedTTL)
            elif self._resume:
                # Raises LeaseNotFoundError if the lease is gone; answers the TTL it was granted.
                resp = await self.client.lease_keep_alive_once(self.lease_id)
                self.ttl = int(resp.TTL)
            else:
                grant = await self.client.lease_grant(self.ttl)
                self.lease_id, self.ttl = int(grant.ID), int(grant.TTL)
            if self._keep_alive:
                self.keepalive = self.client.keep_alive(self.lease_id, self.ttl, on_lost=self._lost)
            self._started = True
            return self

    def _lost(self, error: EtcdError) -> None:
        self.error = error
        self.lost.set()
        self.done.set()
        if self._on_lost is not None:
            self._on_lost(error)

    @property
    def alive(self) -> bool:
        """Started and not ended (as far as the client knows: a revoke is seen at the next renewal)."""
        return self._started and not self.done.is_set()

    def check(self) -> None:
        """Raise ``SessionExpiredError`` if the session has ended."""
        if not self._started:
            raise RuntimeError("the session was not started (await it)")
        if self.done.is_set():
            raise SessionExpiredError()

    async def wait_done(self) -> None:
        await self.done.wait()

    async def orphan(self) -> None:
        """Stop renewing the lease without revoking it: it expires after its TTL, unless resumed."""
        if self.keepalive is not None:
            await self.keepalive.close()
        self.done.set()

    async def close(self) -> None:
        """End the session and revoke its lease, deleting the keys written with it."""
        await self.orphan()
        if self.lease_id and not self.lost.is_set():
            try:
                await self.client.lease_revoke(self.lease_id)
            except LeaseNotFoundError:  # expired meanwhile: as good as revoked
                pass


class Session:
    """The blocking session over a ``Client``: ``AsyncSession`` run on the client's loop.

    ``done`` and ``lost`` are ``threading.Event``s; ``on_lost`` runs on the client's
    thread (keep it short).
    """

    def __init__(
        self,
        client: Client,
        ttl: int = DEFAULT_TTL,
        lease_id: int | None = None,
        *,
        on_lost: Callable[[EtcdError], None] | None = None,
    ) -> None:
        self.client = client
        self._portal = client._portal
        self.done = threading.Event()
        self.lost = threading.Event()

        def lost(error: EtcdError) -> None:
            self.lost.set()
            self.done.set()
            if on_lost is not None:
                on_lost(error)

        async def start() -> AsyncSession:
            return await AsyncSession(client.aio, ttl, lease_id, on_lost=lost)

        self.aio: AsyncSession = self._portal.run(start())

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def lease_id(self) -> int:
        return self.aio.lease_id

    @property
    def ttl(self) -> int:
        return self.aio.ttl

    @property
    def error(self) -> EtcdError | None:
        return self.aio.error

    @property
    def alive(self) -> bool:
        return self.aio.alive

    def check(self) -> None:
        self.aio.check()

    def wait_done(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def orphan(self) -> None:
        if not self._portal.loop.is_closed():
            self._portal.run(self.aio.orphan())
        self.done.set()

    def close(self) -> None:
        if not self._portal.loop.is_closed():
            self._portal.run(self.aio.close())
        self.done.set()
