"""The Lease service: grant, revoke, time-to-live, list, and the keep-alive stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

from synod import rpctypes
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.lease.lessor import NotPrimaryError
from synod.rpctypes import RPCError
from synod.server.api.header import Header
from synod.server.api.methods import StreamHandler, StreamWrite, UnaryHandler
from synod.server.etcdserver import EtcdServer


class LeaseService:
    def __init__(self, server: EtcdServer, header: Header) -> None:
        self._server = server
        self._header = header

    def handlers(self) -> dict[str, UnaryHandler]:
        return {
            "/etcdserverpb.Lease/LeaseGrant": self.grant,
            "/etcdserverpb.Lease/LeaseRevoke": self.revoke,
            "/etcdserverpb.Lease/LeaseTimeToLive": self.time_to_live,
            "/etcdserverpb.Lease/LeaseLeases": self.leases,
        }

    async def grant(self, request: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        resp = await self._server.lease_grant(request)
        self._header.fill(resp.header)
        return resp

    async def revoke(self, request: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        resp = await self._server.lease_revoke(request)
        self._header.fill(resp.header)
        return resp

    async def time_to_live(self, request: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        if not self._server.is_lease_primary:
            # Only the leader knows how long a lease has left: ask it (as etcd does).
            return await self._server.forward_time_to_live(request)
        try:
            resp = self._server.lease_time_to_live(request)
        except RPCError as e:
            if e.error is not rpctypes.LEASE_NOT_FOUND:
                raise
            resp = pb.LeaseTimeToLiveResponse(ID=request.ID, TTL=-1)  # etcd answers, not fails
        self._header.fill(resp.header)
        return resp

    async def leases(self, request: pb.LeaseLeasesRequest) -> pb.LeaseLeasesResponse:
        resp = self._server.lease_leases()
        self._header.fill(resp.header)
        return resp

    def streams(self) -> dict[str, StreamHandler]:
        return {"/etcdserverpb.Lease/LeaseKeepAlive": self.keep_alive}

    async def keep_alive(self, requests: AsyncIterator[bytes], write: StreamWrite) -> None:
        """One response per request, in order, until the client closes its side."""
        async for raw in requests:
            response = await self.keep_alive_response(pb.LeaseKeepAliveRequest.FromString(raw))
            await write(response.SerializeToString())

    async def keep_alive_response(self, request: pb.LeaseKeepAliveRequest) -> pb.LeaseKeepAliveResponse:
        """Renew one lease: TTL 0 if it is unknown or expired, as etcd answers. A follower asks the leader."""
        resp = pb.LeaseKeepAliveResponse(ID=request.ID)
        # The header is taken before the renewal, as etcd does: a keep-alive that succeeded
        # is then never reported at a revision after the lease's revocation.
        self._header.fill(resp.header)
        try:
            try:
                resp.TTL = self._server.lease_renew(request.ID)
            except NotPrimaryError:
                resp.TTL = await self._server.forward_keep_alive(request.ID)
        except RPCError as e:
            if e.error is not rpctypes.LEASE_NOT_FOUND:
                raise
        return resp
