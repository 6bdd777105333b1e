"""The Cluster service, and the Maintenance calls built so far (Status, MoveLeader, HashKV)."""

from __future__ import annotations

import os
from typing import Any

from synod import ETCD_API_VERSION
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.server.api.header import Header
from synod.server.api.methods import UnaryHandler
from synod.server.cluster import Member
from synod.server.etcdserver import EtcdServer

SERVER_VERSION = f"{ETCD_API_VERSION}.0"  # the etcd server version whose API synod serves


class ClusterService:
    def __init__(self, server: EtcdServer, header: Header) -> None:
        self._server = server
        self._header = header

    def handlers(self) -> dict[str, UnaryHandler]:
        return {
            "/etcdserverpb.Cluster/MemberList": self.member_list,
            "/etcdserverpb.Cluster/MemberAdd": self.member_add,
            "/etcdserverpb.Cluster/MemberRemove": self.member_remove,
            "/etcdserverpb.Cluster/MemberUpdate": self.member_update,
            "/etcdserverpb.Cluster/MemberPromote": self.member_promote,
            "/etcdserverpb.Maintenance/Status": self.status,
            "/etcdserverpb.Maintenance/MoveLeader": self.move_leader,
            "/etcdserverpb.Maintenance/HashKV": self.hash_kv,
        }

    async def hash_kv(self, request: pb.HashKVRequest) -> pb.HashKVResponse:
        await self._server.check_admin(auth_words=True)
        h, current, compact = self._server.hash_kv(request.revision)
        resp = pb.HashKVResponse(hash=h, compact_revision=compact)
        self._header.fill(resp.header)
        resp.header.revision = current
        return resp

    async def move_leader(self, request: pb.MoveLeaderRequest) -> pb.MoveLeaderResponse:
        await self._server.move_leader(request.targetID)
        resp = pb.MoveLeaderResponse()
        self._header.fill(resp.header)
        return resp

    async def member_list(self, request: pb.MemberListRequest) -> pb.MemberListResponse:
        if request.linearizable:
            await self._server.linearizable_barrier()
        resp = pb.MemberListResponse()
        _add_members(resp.members, self._server.membership.members())
        self._fill(resp.header)
        return resp

    async def member_add(self, request: pb.MemberAddRequest) -> pb.MemberAddResponse:
        member, members = await self._server.member_add(list(request.peerURLs), request.isLearner)
        resp = pb.MemberAddResponse()
        _add_members(resp.members, members)
        resp.member.CopyFrom(_to_pb(member))
        self._fill(resp.header)
        return resp

    async def member_remove(self, request: pb.MemberRemoveRequest) -> pb.MemberRemoveResponse:
        resp = pb.MemberRemoveResponse()
        _add_members(resp.members, await self._server.member_remove(request.ID))
        self._fill(resp.header)
        return resp

    async def member_update(self, request: pb.MemberUpdateRequest) -> pb.MemberUpdateResponse:
        resp = pb.MemberUpdateResponse()
        _add_members(resp.members, await self._server.member_update(request.ID, list(request.peerURLs)))
        self._fill(resp.header)
        return resp

    async def member_promote(self, request: pb.MemberPromoteRequest) -> pb.MemberPromoteResponse:
        resp = pb.MemberPromoteResponse()
        _add_members(resp.members, await self._server.member_promote(request.ID))
        self._fill(resp.header)
        return resp

    async def status(self, request: pb.StatusRequest) -> pb.StatusResponse:
        s = self._server
        resp = pb.StatusResponse(
            version=SERVER_VERSION,
            dbSize=_file_size(os.path.join(s.backend.path, "data.mdb")),
            dbSizeInUse=s.backend.size(),
            leader=s.leader_id,
            raftIndex=s.committed_index,
            raftTerm=s.term,
            raftAppliedIndex=s.applied_index,
            isLearner=s.is_learner,
        )
        self._header.fill(resp.header)
        return resp

    def _fill(self, h: pb.ResponseHeader) -> None:
        """etcd's cluster responses carry no revision."""
        s = self._server
        h.cluster_id = s.cluster_id
        h.member_id = s.member_id
        h.raft_term = s.term


def _to_pb(m: Member) -> pb.Member:
    return pb.Member(
        ID=m.id, name=m.name, peerURLs=m.peer_urls, clientURLs=m.client_urls, isLearner=m.is_learner
    )


def _add_members(field: Any, members: list[Member]) -> None:
    field.extend(_to_pb(m) for m in members)


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
