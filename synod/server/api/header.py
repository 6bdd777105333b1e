"""The response header every service fills, as etcd's v3rpc does."""

from __future__ import annotations

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.server.etcdserver import EtcdServer


class Header:
    """Cluster, member and term of this member, and the current revision if the response has none."""

    def __init__(self, server: EtcdServer) -> None:
        self._server = server

    def fill(self, h: pb.ResponseHeader) -> None:
        s = self._server
        h.cluster_id = s.cluster_id
        h.member_id = s.member_id
        h.raft_term = s.term
        if not h.revision:
            h.revision = s.revision
