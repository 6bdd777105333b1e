"""synodctl's Cluster and Maintenance calls (connections, failover and error wording are rpc.py's).

As clientv3 3.4: member list, Status, HashKV and MoveLeader are retried on
Unavailable, the membership changes are not; Status and HashKV ask one given
endpoint, the others any endpoint that answers.
"""

from __future__ import annotations

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.ctl.rpc import Client


class ClusterClient(Client):
    """Cluster and Maintenance RPCs."""

    def member_list(self, timeout: float | None) -> pb.MemberListResponse:
        return self.call(
            rpc_pb2_grpc.ClusterStub,
            "MemberList",
            pb.MemberListRequest(),
            pb.MemberListResponse,
            timeout,
            retry_unavailable=True,
        )

    def member_add(self, peer_urls: list[str], learner: bool, timeout: float | None) -> pb.MemberAddResponse:
        req = pb.MemberAddRequest(peerURLs=peer_urls, isLearner=learner)
        return self.call(
            rpc_pb2_grpc.ClusterStub, "MemberAdd", req, pb.MemberAddResponse, timeout, retry_unavailable=False
        )

    def member_remove(self, member_id: int, timeout: float | None) -> pb.MemberRemoveResponse:
        return self.call(
            rpc_pb2_grpc.ClusterStub,
            "MemberRemove",
            pb.MemberRemoveRequest(ID=member_id),
            pb.MemberRemoveResponse,
            timeout,
            retry_unavailable=False,
        )

    def member_update(
        self, member_id: int, peer_urls: list[str], timeout: float | None
    ) -> pb.MemberUpdateResponse:
        return self.call(
            rpc_pb2_grpc.ClusterStub,
            "MemberUpdate",
            pb.MemberUpdateRequest(ID=member_id, peerURLs=peer_urls),
            pb.MemberUpdateResponse,
            timeout,
            retry_unavailable=False,
        )

    def member_promote(self, member_id: int, timeout: float | None) -> pb.MemberPromoteResponse:
        return self.call(
            rpc_pb2_grpc.ClusterStub,
            "MemberPromote",
            pb.MemberPromoteRequest(ID=member_id),
            pb.MemberPromoteResponse,
            timeout,
            retry_unavailable=False,
        )

    def status(self, endpoint: str, timeout: float | None) -> pb.StatusResponse:
        return self.call(
            rpc_pb2_grpc.MaintenanceStub,
            "Status",
            pb.StatusRequest(),
            pb.StatusResponse,
            timeout,
            retry_unavailable=True,
            endpoints=[endpoint],
        )

    def hash_kv(self, endpoint: str, revision: int, timeout: float | None) -> pb.HashKVResponse:
        return self.call(
            rpc_pb2_grpc.MaintenanceStub,
            "HashKV",
            pb.HashKVRequest(revision=revision),
            pb.HashKVResponse,
            timeout,
            retry_unavailable=True,
            endpoints=[endpoint],
        )

    def move_leader(self, endpoint: str, target: int, timeout: float | None) -> pb.MoveLeaderResponse:
        return self.call(
            rpc_pb2_grpc.MaintenanceStub,
            "MoveLeader",
            pb.MoveLeaderRequest(targetID=target),
            pb.MoveLeaderResponse,
            timeout,
            retry_unavailable=True,
            endpoints=[endpoint],
        )
