"""``synod``: start a member. Flags are named, and default, as etcd's.

With no flags, synod serves a single-member cluster on 127.0.0.1:2379 with its
data in ./default.synod. SIGTERM or SIGINT stops it cleanly.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time

import click
import uvloop

from synod import __version__
from synod.auth.tokens import token_provider
from synod.duration import parse_duration, to_seconds
from synod.server.api.grpc_server import ENGINES, build_dispatcher, build_server, dispatcher_routes
from synod.server.config import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS, ServerConfig
from synod.server.etcdserver import DataDirError, EtcdServer
from synod.server.frontend import FrontEnds

log = logging.getLogger("synod")

_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def ensure_free(address: str) -> None:
    """Fail if something already listens on ``address``.

    The member's gRPC sockets use SO_REUSEPORT when it has front ends, which
    would silently share the port with another server; a plain bind first
    makes a second server on the same address an error instead.
    """
    host, _, port = address.rpartition(":")
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(
        host.strip("[]"), int(port), type=socket.SOCK_STREAM
    ):
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(sockaddr)
            except OSError as e:
                raise RuntimeError(f"cannot listen on {address}: {e.strerror}") from e


async def serve(cfg: ServerConfig) -> None:
    addresses = cfg.client_addresses()
    for address in addresses:
        ensure_free(address)
    etcd = EtcdServer(cfg)
    await etcd.start()
    # The key index rebuilt at start is long-lived and free of reference cycles: keep the
    # cyclic GC from walking it on every full collection (a pause of ~0.4 s per million keys).
    gc.freeze()
    dispatcher = build_dispatcher(etcd)
    frontends = FrontEnds(
        cfg.frontend_procs, addresses, cfg.max_request_bytes, cfg.grpc_engine, cfg.enable_grpc_gateway
    )
    grpc_server = build_server(
        dispatcher_routes(dispatcher),
        addresses,
        max_request_bytes=cfg.max_request_bytes,
        reuse_port=cfg.frontend_procs > 0,
        engine=cfg.grpc_engine,
        gateway=cfg.enable_grpc_gateway,
    )
    try:
        await frontends.start(dispatcher)
        await grpc_server.start()
    except RuntimeError:
        await frontends.stop()
        await etcd.stop()
        raise
    log.info(
        "serving client requests on %s (%d front-end processes)",
        ", ".join(cfg.listen_client_urls),
        cfg.frontend_procs,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopped = asyncio.ensure_future(stop.wait())
    node_done = asyncio.ensure_future(etcd.wait_stopped())
    removed = asyncio.ensure_future(etcd.wait_removed())
    await asyncio.wait([stopped, node_done, removed], return_when=asyncio.FIRST_COMPLETED)
    removed.cancel()
    log.info("shutting down")
    await frontends.stop()
    await grpc_server.stop(grace=1.0)
    await etcd.stop()
    if node_done.done() and node_done.exception() is not None:
        raise node_done.exception()  # type: ignore[misc]
    stopped.cancel()


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--name", default="default", show_default=True, help="Human-readable name for this member.")
@click.option("--data-dir", default="", help="Path to the data directory.  [default: ${name}.synod]")
@click.option(
    "--listen-client-urls",
    default="http://127.0.0.1:2379",
    show_default=True,
    help="List of URLs to listen on for client traffic.",
)
@click.option(
    "--advertise-client-urls",
    default="http://127.0.0.1:2379",
    show_default=True,
    help="List of this member's client URLs to advertise to the public.",
)
@click.option(
    "--initial-advertise-peer-urls",
    default="http://localhost:2380",
    show_default=True,
    help="List of this member's peer URLs to advertise to the rest of the cluster.",
)
@click.option(
    "--listen-peer-urls",
    default="http://localhost:2380",
    show_default=True,
    help="List of URLs to listen on for peer traffic.",
)
@click.option(
    "--initial-cluster",
    default="",
    help="Initial cluster configuration for bootstrapping (name=peer-url,...).  "
    "[default: ${name}=${initial-advertise-peer-urls}]",
)
@click.option(
    "--initial-cluster-state",
    default="new",
    show_default=True,
    type=click.Choice(["new", "existing"]),
    help="Initial cluster state ('new' or 'existing').",
)
@click.option(
    "--heartbeat-interval",
    default=100,
    show_default=True,
    type=int,
    help="Time (in milliseconds) of a heartbeat interval.",
)
@click.option(
    "--election-timeout",
    default=1000,
    show_default=True,
    type=int,
    help="Time (in milliseconds) for an election to timeout.",
)
@click.option(
    "--snapshot-count",
    default=100_000,
    show_default=True,
    type=int,
    help="Number of committed transactions to trigger a snapshot to disk.",
)
@click.option(
    "--experimental-snapshot-catchup-entries",
    "snapshot_catchup_entries",
    default=5000,
    show_default=True,
    type=int,
    help="Number of entries for a slow follower to catch up after compacting the raft storage entries.",
)
@click.option(
    "--pre-vote",
    default="true",
    show_default=True,
    type=click.Choice(["true", "false"]),
    help="Enable the Raft Pre-Vote algorithm to prevent disruption when a node that has been "
    "partitioned away rejoins the cluster (etcd 3.4's default is false; synod's is true).",
)
@click.option(
    "--initial-cluster-token",
    default="etcd-cluster",
    show_default=True,
    help="Initial cluster token for the cluster during bootstrap.",
)
@click.option(
    "--max-request-bytes",
    default=DEFAULT_MAX_REQUEST_BYTES,
    show_default=True,
    type=int,
    help="Maximum client request size in bytes the server will accept.",
)
@click.option(
    "--max-txn-ops",
    default=DEFAULT_MAX_TXN_OPS,
    show_default=True,
    type=int,
    help="Maximum number of operations permitted in a transaction.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(list(_LOG_LEVELS)),
    help="Configures log level.",
)
@click.option(
    "--experimental-watch-progress-notify-interval",
    "progress_interval",
    default="10m",
    show_default=True,
    help="Duration of periodic watch progress notifications.",
)
@click.option(
    "--experimental-enable-lease-checkpoint",
    "lease_checkpoint",
    is_flag=True,
    default=False,
    help="Enable the primary to persist lease remainingTTL periodically, so that a restart "
    "does not give leases a full TTL again.",
)
@click.option(
    "--frontend-procs",
    default=-1,
    type=int,
    help="gRPC front-end processes sharing the client port with the member (synod only; "
    "-1: one per CPU beyond the first, 0: serve in the member process alone).  [default: -1]",
)
@click.option(
    "--grpc-engine",
    default="wire",
    show_default=True,
    type=click.Choice(ENGINES),
    help="What serves gRPC (synod only): wire, synod's own HTTP/2 server, or grpcio's grpc.aio "
    "(kept for comparison).",
)
@click.option(
    "--enable-grpc-gateway",
    "enable_grpc_gateway",
    default="true",
    type=click.Choice(["true", "false"]),
    hidden=True,
    help="Enable the JSON gateway on the client URLs (with --grpc-engine wire).",
)
@click.option(
    "--auth-token",
    default="simple",
    show_default=True,
    help="Specify auth token specific options: simple, or "
    "jwt,pub-key=<path>,priv-key=<path>,sign-method=<alg>,ttl=<duration>.",
)
@click.option(
    "--bcrypt-cost",
    default=10,
    show_default=True,
    type=int,
    help="Specify bcrypt algorithm cost factor for auth password hashing.",
)
@click.option(
    "--auth-token-ttl",
    default=300,
    show_default=True,
    type=int,
    help="The lifetime in seconds of the auth token.",
)
@click.version_option(__version__, "--version", prog_name="synod", message="synod Version: %(version)s")
def main(
    name: str,
    data_dir: str,
    listen_client_urls: str,
    advertise_client_urls: str,
    initial_advertise_peer_urls: str,
    initial_cluster_token: str,
    listen_peer_urls: str,
    initial_cluster: str,
    initial_cluster_state: str,
    heartbeat_interval: int,
    election_timeout: int,
    snapshot_count: int,
    snapshot_catchup_entries: int,
    pre_vote: str,
    max_request_bytes: int,
    max_txn_ops: int,
    log_level: str,
    progress_interval: str,
    lease_checkpoint: bool,
    frontend_procs: int,
    grpc_engine: str,
    enable_grpc_gateway: str,
    auth_token: str,
    bcrypt_cost: int,
    auth_token_ttl: int,
) -> None:
    """synod: an etcd-compatible, strongly consistent key-value store."""
    logging.basicConfig(
        level=_LOG_LEVELS[log_level],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        cfg = ServerConfig(
            name=name,
            data_dir=data_dir,
            listen_client_urls=ServerConfig.split_urls(listen_client_urls),
            advertise_client_urls=ServerConfig.split_urls(advertise_client_urls),
            initial_advertise_peer_urls=ServerConfig.split_urls(initial_advertise_peer_urls),
            initial_cluster_token=initial_cluster_token,
            listen_peer_urls=ServerConfig.split_urls(listen_peer_urls),
            initial_cluster=initial_cluster,
            initial_cluster_state=initial_cluster_state,
            heartbeat_interval=heartbeat_interval / 1000,
            election_timeout=election_timeout / 1000,
            snapshot_count=snapshot_count,
            snapshot_catch_up_entries=snapshot_catchup_entries,
            pre_vote=pre_vote == "true",
            max_request_bytes=max_request_bytes,
            max_txn_ops=max_txn_ops,
            log_level=log_level,
            frontend_procs=frontend_procs if frontend_procs >= 0 else max(0, (os.cpu_count() or 1) - 1),
            watch_progress_notify_interval=to_seconds(parse_duration(progress_interval)),
            lease_checkpoint=lease_checkpoint,
            grpc_engine=grpc_engine,
            enable_grpc_gateway=enable_grpc_gateway == "true",
            auth_token=auth_token,
            bcrypt_cost=bcrypt_cost,
            auth_token_ttl=auth_token_ttl,
        )
        cfg.client_addresses()
        if heartbeat_interval <= 0 or election_timeout < 5 * heartbeat_interval:
            raise ValueError(
                f"--election-timeout[{election_timeout}ms] should be at least as 5 times as "
                f"--heartbeat-interval[{heartbeat_interval}ms]"
            )
        # A bad --auth-token (unknown kind, unreadable or mismatched keys) stops the start, as etcd's.
        token_provider(cfg.auth_token, ttl=cfg.auth_token_ttl, clock=time.monotonic, now=time.time)
        if cfg.watch_progress_notify_interval <= 0:
            raise ValueError("--experimental-watch-progress-notify-interval must be positive")
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    try:
        uvloop.run(serve(cfg))
    except DataDirError as e:
        log.critical("cannot start: %s", e)
        sys.exit(1)
    except RuntimeError as e:
        log.critical("cannot serve: %s", e)
        sys.exit(1)


if __name__ == "__main__":
    main()
