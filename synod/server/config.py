"""A member's configuration: etcd's flags, with etcd's defaults."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024  # 1.5 MiB, as etcd
DEFAULT_MAX_TXN_OPS = 128
GRPC_OVERHEAD_BYTES = 512 * 1024  # gRPC accepts this much more than max-request-bytes, as etcd


def _split(urls: str) -> list[str]:
    return [u.strip() for u in urls.split(",") if u.strip()]


@dataclass(slots=True)
class ServerConfig:
    name: str = "default"
    data_dir: str = ""  # default: "<name>.synod"
    listen_client_urls: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    advertise_client_urls: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    initial_advertise_peer_urls: list[str] = field(default_factory=lambda: ["http://localhost:2380"])
    initial_cluster_token: str = "etcd-cluster"
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_txn_ops: int = DEFAULT_MAX_TXN_OPS
    log_level: str = "info"
    # How often applied state is committed (fsynced) to the backend, and after how many writes at most.
    backend_batch_interval: float = 0.1
    backend_batch_limit: int = 10_000
    # Clustering, as etcd's flags: --initial-cluster (empty: this member alone, named --name, at
    # --initial-advertise-peer-urls), --initial-cluster-state, --listen-peer-urls.
    initial_cluster: str = ""
    initial_cluster_state: str = "new"
    listen_peer_urls: list[str] = field(default_factory=lambda: ["http://localhost:2380"])
    # Raft timing (seconds; etcd's flags are in milliseconds); they also set the minimum lease TTL.
    heartbeat_interval: float = 0.1
    election_timeout: float = 1.0
    snapshot_count: int = 100_000
    snapshot_catch_up_entries: int = 5000  # etcd 3.5's --experimental-snapshot-catchup-entries
    pre_vote: bool = True
    # etcd's --experimental-enable-lease-checkpoint: the primary logs leases' remaining TTLs
    # every lease_checkpoint_interval, so a restart or new leader does not give them a full TTL.
    lease_checkpoint: bool = False
    lease_checkpoint_interval: float = 300.0
    # etcd's --experimental-watch-progress-notify-interval.
    watch_progress_notify_interval: float = 600.0
    # Under a high write rate, wait this long before each WAL write so that more writers share it
    # (see synod/raft/single.py); 0 disables the window.
    commit_window: float = 0.005
    commit_busy_rate: float = 2000.0
    # gRPC front-end processes sharing the client URLs with the member (0: the member serves alone).
    frontend_procs: int = 0
    # What carries gRPC: "wire" (synod's own, on h2) or "grpcio" (grpc.aio), see api/grpc_server.py.
    grpc_engine: str = "wire"
    # etcd's --enable-grpc-gateway: the JSON gateway on the client URLs, beside gRPC (wire engine only).
    enable_grpc_gateway: bool = True
    # Auth, as etcd's --auth-token ("simple" or "jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…"),
    # --bcrypt-cost and --auth-token-ttl (seconds a simple token lives after its last use).
    auth_token: str = "simple"
    bcrypt_cost: int = 10
    auth_token_ttl: float = 300.0

    def __post_init__(self) -> None:
        if not self.data_dir:
            self.data_dir = f"{self.name}.synod"

    @property
    def election_ticks(self) -> int:
        return max(2, round(self.election_timeout / self.heartbeat_interval))

    @property
    def request_timeout(self) -> float:
        """How long a request waits for its entry to apply (etcd's ReqTimeout: 5 s + 2 elections)."""
        return 5.0 + 2 * self.election_timeout

    @property
    def min_lease_ttl(self) -> int:
        """etcd's minimum lease TTL: 1.5 election timeouts, in whole ticks, rounded up to seconds."""
        election_ticks = max(1, round(self.election_timeout / self.heartbeat_interval))
        return math.ceil((3 * election_ticks // 2) * self.heartbeat_interval)

    @property
    def member_dir(self) -> str:
        return os.path.join(self.data_dir, "member")

    @property
    def wal_dir(self) -> str:
        return os.path.join(self.member_dir, "wal")

    @property
    def backend_dir(self) -> str:
        return os.path.join(self.member_dir, "snap")

    def client_addresses(self) -> list[str]:
        """host:port of each client URL, for binding."""
        return [url_to_address(u) for u in self.listen_client_urls]

    @staticmethod
    def split_urls(urls: str) -> list[str]:
        return _split(urls)


def url_to_address(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme in {url!r}")
    if parts.scheme == "https":
        raise ValueError(f"TLS is not supported yet: {url!r}")
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"URL {url!r} needs a host and a port")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}"
