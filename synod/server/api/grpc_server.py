"""The client-facing gRPC server: every etcd service registered from the start.

Services not built yet are registered with the generated base servicers, so
their RPCs answer ``UNIMPLEMENTED`` instead of "unknown service".
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health_pb2_grpc

from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.api.v3electionpb import v3election_pb2_grpc
from synod.api.v3lockpb import v3lock_pb2_grpc
from synod.server.api.header import Header
from synod.server.api.kv import KVService
from synod.server.config import GRPC_OVERHEAD_BYTES
from synod.server.etcdserver import EtcdServer


def server_options(max_request_bytes: int, *, reuse_port: bool) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_request_bytes + GRPC_OVERHEAD_BYTES),
        ("grpc.max_send_message_length", 2**31 - 1),
        # Only front-end worker processes share a port; otherwise a second member
        # on the same address must fail to bind rather than split the traffic.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        # etcd lets clients ping every 5 s; etcdctl's keepalive is 2 s, so be lenient.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
        ("grpc.http2.max_ping_strikes", 0),
    ]


def build_server(etcd: EtcdServer, addresses: list[str], *, reuse_port: bool = False) -> grpc.aio.Server:
    server = grpc.aio.server(options=server_options(etcd.cfg.max_request_bytes, reuse_port=reuse_port))
    header = Header(etcd)
    rpc_pb2_grpc.add_KVServicer_to_server(KVService(etcd, header), server)
    rpc_pb2_grpc.add_WatchServicer_to_server(rpc_pb2_grpc.WatchServicer(), server)
    rpc_pb2_grpc.add_LeaseServicer_to_server(rpc_pb2_grpc.LeaseServicer(), server)
    rpc_pb2_grpc.add_ClusterServicer_to_server(rpc_pb2_grpc.ClusterServicer(), server)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(rpc_pb2_grpc.MaintenanceServicer(), server)
    rpc_pb2_grpc.add_AuthServicer_to_server(rpc_pb2_grpc.AuthServicer(), server)
    v3lock_pb2_grpc.add_LockServicer_to_server(v3lock_pb2_grpc.LockServicer(), server)
    v3election_pb2_grpc.add_ElectionServicer_to_server(v3election_pb2_grpc.ElectionServicer(), server)
    health = health_async.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for address in addresses:
        server.add_insecure_port(address)
    return server
