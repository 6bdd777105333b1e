"""etcd's Lock and Election services (v3lockpb, v3electionpb), on synod.client.concurrency.

As etcd serves them: over the member's own client (``inprocess.py``), each call
with a session on the caller's lease that is not renewed here (the caller keeps
its lease alive; when it expires, what it holds goes). A call without a lease
(0) gets a fresh 60-second lease that nobody renews: the lock or the candidacy
lapses a minute later, as etcd's does (docs/coordination.md).

Where etcd 3.4 is wrong (etcd-io/etcd#11456): a lock request whose lease
expires while it waits, or is gone when its turn comes, fails with
``mutex: session is expired`` instead of answering with a lock the caller
does not hold; a campaign likewise (``election: session is expired``).

Errors are Unknown with their text, as etcd's services answer what its client
or recipes return (plain Go errors by then): ``etcdserver: requested lease not
found``, ``election: no leader``, ``election: not leader``, ...
A call whose caller goes away stops waiting and leaves the queue.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

from grpc import StatusCode

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.v3electionpb import v3election_pb2 as epb
from synod.api.v3lockpb import v3lock_pb2 as lpb
from synod.client.aio import AsyncClient
from synod.client.concurrency import AsyncElection, AsyncMutex, AsyncSession, ConcurrencyError
from synod.client.errors import EtcdError
from synod.rpctypes import ErrorCode, RPCError
from synod.server.api.header import Header
from synod.server.api.methods import StreamHandler, StreamWrite, UnaryHandler

NO_LEASE_TTL = 60  # clientv3/concurrency's default session TTL
MISSING_LEADER_KEY = ErrorCode(StatusCode.UNKNOWN, '"leader" field must be provided')


@contextlib.contextmanager
def _answered_as_etcd() -> Iterator[None]:
    """The client's and the recipes' exceptions as the RPC errors etcd's services answer."""
    try:
        yield
    except EtcdError as e:  # clientv3's errors reach etcd's services as plain Go errors: Unknown
        raise RPCError(ErrorCode(StatusCode.UNKNOWN, e.message)) from None
    except ConcurrencyError as e:
        raise RPCError(ErrorCode(StatusCode.UNKNOWN, str(e))) from None


class CoordinationService:
    def __init__(self, client: AsyncClient, header: Header) -> None:
        self._client = client
        self._header = header

    def handlers(self) -> dict[str, UnaryHandler]:
        return {
            "/v3lockpb.Lock/Lock": self.lock,
            "/v3lockpb.Lock/Unlock": self.unlock,
            "/v3electionpb.Election/Campaign": self.campaign,
            "/v3electionpb.Election/Proclaim": self.proclaim,
            "/v3electionpb.Election/Leader": self.leader,
            "/v3electionpb.Election/Resign": self.resign,
        }

    def streams(self) -> dict[str, StreamHandler]:
        return {"/v3electionpb.Election/Observe": self.observe}

    async def _session(self, lease: int) -> AsyncSession:
        """The caller's lease as a session (not renewed); a fresh 60 s one for lease 0."""
        session = AsyncSession(self._client, NO_LEASE_TTL, lease or None, keep_alive=False)
        return await session.start()

    def _reader(self) -> AsyncSession:
        """A session for calls that write nothing (Leader, Observe): never started, no lease."""
        return AsyncSession(self._client, NO_LEASE_TTL, keep_alive=False)

    # -- Lock -----------------------------------------------------------------------------------------

    async def lock(self, request: lpb.LockRequest) -> lpb.LockResponse:
        with _answered_as_etcd():
            mutex = AsyncMutex(await self._session(request.lease), request.name)
            await mutex.lock()
        resp = lpb.LockResponse(key=mutex.key)
        if mutex.header is not None:
            resp.header.CopyFrom(mutex.header)
        return resp

    async def unlock(self, request: lpb.UnlockRequest) -> lpb.UnlockResponse:
        with _answered_as_etcd():
            deleted = await self._client.delete(request.key)
        resp = lpb.UnlockResponse()
        resp.header.CopyFrom(deleted.header)
        return resp

    # -- Election -------------------------------------------------------------------------------------

    async def campaign(self, request: epb.CampaignRequest) -> epb.CampaignResponse:
        with _answered_as_etcd():
            session = await self._session(request.lease)
            election = AsyncElection(session, request.name)
            await election.campaign(request.value)
        resp = epb.CampaignResponse(
            leader=epb.LeaderKey(
                name=request.name, key=election.key, rev=election.revision, lease=session.lease_id
            )
        )
        if election.header is not None:
            resp.header.CopyFrom(election.header)
        return resp

    def _resumed(self, leader: epb.LeaderKey, session: AsyncSession) -> AsyncElection:
        return AsyncElection.resume(session, leader.name, leader.key, leader.rev)

    async def proclaim(self, request: epb.ProclaimRequest) -> epb.ProclaimResponse:
        if not request.HasField("leader"):
            raise RPCError(MISSING_LEADER_KEY)
        with _answered_as_etcd():
            election = self._resumed(request.leader, await self._session(request.leader.lease))
            await election.proclaim(request.value)
        resp = epb.ProclaimResponse()
        if election.header is not None:
            resp.header.CopyFrom(election.header)
        return resp

    async def resign(self, request: epb.ResignRequest) -> epb.ResignResponse:
        if not request.HasField("leader"):
            raise RPCError(MISSING_LEADER_KEY)
        with _answered_as_etcd():
            election = self._resumed(request.leader, await self._session(request.leader.lease))
            await election.resign()
        resp = epb.ResignResponse()
        if election.header is not None:
            resp.header.CopyFrom(election.header)
        return resp

    async def leader(self, request: epb.LeaderRequest) -> epb.LeaderResponse:
        with _answered_as_etcd():
            election = AsyncElection(self._reader(), request.name)
            resp = await election.leader_at(0)
        if not resp.kvs:
            raise RPCError(ErrorCode(StatusCode.UNKNOWN, "election: no leader"))
        return epb.LeaderResponse(header=resp.header, kv=resp.kvs[0])

    async def observe(self, requests: AsyncIterator[bytes], write: StreamWrite) -> None:
        request = None
        async for raw in requests:
            request = epb.LeaderRequest.FromString(raw)
            break
        if request is None:
            return
        election = AsyncElection(self._reader(), request.name)
        leaders = election.observe()
        try:
            with _answered_as_etcd():
                async for kv in leaders:
                    header = pb.ResponseHeader(revision=kv.mod_revision)
                    self._header.fill(header)
                    await write(epb.LeaderResponse(header=header, kv=kv).SerializeToString())
        finally:
            await leaders.aclose()  # type: ignore[attr-defined]
