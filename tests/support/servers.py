"""Real server processes for tests: synod members and real etcd 3.4 members on 127.0.0.1.

Both are started with the same peer URL and cluster token, so they derive the
same member and cluster IDs: their answers can be compared byte for byte.
A real etcd is never optional: if the binary is missing the test fails (CI
installs Debian's etcd-server and etcd-client through ``./dev test``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc

from synod.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from synod.server import ids
from tests.support.peer_proxy import PeerProxies

CLUSTER_TOKEN = "synod-test"
T = TypeVar("T")
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):
    """Poll ``predicate`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _answers(endpoint: str) -> bool:
    """Whether a KV Range gets an answer (any gRPC status but UNAVAILABLE) from the endpoint."""
    with grpc.insecure_channel(endpoint) as ch:
        try:
            rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"\0health", serializable=True), timeout=1)
        except grpc.RpcError as e:
            return e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        return True


@dataclass
class ServerProcess:
    """One member process; ``start()`` returns once it answers requests."""

    kind: str  # "synod" or "etcd"
    data_dir: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    name: str = "m1"
    initial_cluster: str | None = None  # None: this member alone
    listen_peer_port: int | None = None  # behind a proxy on peer_port (tests/support/peer_proxy.py)
    added_id: int | None = None  # a member added at run time: the ID MemberAdd gave it

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://{self.endpoint}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def command(self) -> list[str]:
        common = [
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster-token", CLUSTER_TOKEN,
        ]  # fmt: skip
        cluster = self.initial_cluster or f"{self.name}={self.peer_url}"
        listen_peer = f"http://127.0.0.1:{self.listen_peer_port}" if self.listen_peer_port else self.peer_url
        if self.kind == "synod":
            if self.initial_cluster is not None:
                common += ["--listen-peer-urls", listen_peer, "--initial-cluster", cluster]
            return [sys.executable, "-m", "synod.server.main", *common, *self.extra_args]
        etcd = shutil.which("etcd")
        if etcd is None:
            raise RuntimeError("etcd is not installed: run ./dev test, which installs Debian's etcd-server")
        return [
            etcd, *common,
            "--listen-peer-urls", listen_peer,
            "--initial-cluster", cluster,
            "--log-level", "error",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        if self.log_path is None:
            self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        env = dict(os.environ, ETCD_UNSUPPORTED_ARCH=os.environ.get("ETCD_UNSUPPORTED_ARCH", ""))
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        try:
            wait_until(lambda: self._exited() or _answers(self.endpoint), timeout, f"{self.kind} to serve")
        except TimeoutError:
            self.kill()
            raise
        if self._exited():
            raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n{self.log_text()}")
        return self

    def _exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()


@dataclass
class ClusterProcesses:
    """N members of one cluster (synod or etcd), started with etcd's clustering flags on 127.0.0.1."""

    kind: str
    root: Path
    size: int = 3
    extra_args: list[str] = field(default_factory=list)
    members: list[ServerProcess] = field(default_factory=list)
    proxied: bool = False  # peer traffic through PeerProxies (synod only), for partitions
    proxies: PeerProxies | None = None
    replacements: int = 0  # members replaced so far (each gets a new data directory)

    def __post_init__(self) -> None:
        names = [f"m{i + 1}" for i in range(self.size)]
        peer_ports = [free_port() for _ in names]
        initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(names, peer_ports, strict=True))
        self.members = [
            ServerProcess(
                self.kind,
                self.root / f"{self.kind}-{n}",
                peer_port=p,
                extra_args=list(self.extra_args),
                name=n,
                initial_cluster=initial,
            )
            for n, p in zip(names, peer_ports, strict=True)
        ]
        if self.proxied:
            for m in self.members:
                m.listen_peer_port = free_port()
            routes = {m.peer_port: m.listen_peer_port for m in self.members if m.listen_peer_port}
            self.proxies = PeerProxies(routes)

    def member_id(self, m: ServerProcess) -> int:
        if m.added_id is not None:
            return m.added_id
        return ids.member_id([m.peer_url], CLUSTER_TOKEN)

    def replace(self, victim: ServerProcess, timeout: float = 60.0) -> ServerProcess:
        """Replace a member by a new one with empty data, as an operator replaces a dead machine.

        The victim is removed through a live member, killed, and a member with a new data
        directory is added on the same addresses (so clients and proxies need no change) and
        started with ``--initial-cluster-state existing``. Each change is retried while the
        cluster refuses it (strict reconfiguration checks: peers connected for 5 s).
        """
        live = [m for m in self.members if m is not victim]
        victim_id = self.member_id(victim)

        def call(what: str, request: Callable[[rpc_pb2_grpc.ClusterStub], T]) -> T:
            def attempt() -> tuple[T] | None:
                for m in live:
                    try:
                        with grpc.insecure_channel(m.endpoint) as ch:
                            return (request(rpc_pb2_grpc.ClusterStub(ch)),)
                    except grpc.RpcError:
                        continue
                return None

            return wait_until(attempt, timeout, what, interval=0.5)[0]

        def remove(stub: rpc_pb2_grpc.ClusterStub) -> None:
            try:
                stub.MemberRemove(rpc_pb2.MemberRemoveRequest(ID=victim_id), timeout=5)
            except grpc.RpcError as e:
                if "member not found" not in (e.details() or ""):  # an earlier attempt got through
                    raise

        call(f"the removal of {victim.name}", remove)
        victim.kill()
        members = call(
            f"the member list without {victim.name}",
            lambda stub: stub.MemberList(rpc_pb2.MemberListRequest(), timeout=5).members,
        )
        added = call(
            f"the addition of {victim.name}'s replacement",
            lambda stub: stub.MemberAdd(rpc_pb2.MemberAddRequest(peerURLs=[victim.peer_url]), timeout=5),
        )
        initial = [f"{m.name}={u}" for m in members if victim_id != m.ID for u in m.peerURLs]
        self.replacements += 1
        replacement = ServerProcess(
            self.kind,
            self.root / f"{self.kind}-{victim.name}-r{self.replacements}",
            client_port=victim.client_port,
            peer_port=victim.peer_port,
            extra_args=[*self.extra_args, "--initial-cluster-state", "existing"],
            name=victim.name,
            initial_cluster=",".join([*initial, f"{victim.name}={victim.peer_url}"]),
            listen_peer_port=victim.listen_peer_port,
            added_id=added.member.ID,
        )
        self.members[self.members.index(victim)] = replacement
        return replacement.start()

    def start(self, timeout: float = START_TIMEOUT) -> ClusterProcesses:
        """Start every member at once (a member waits for a quorum before it answers)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for m in self.members:
            m.log_path = m.data_dir.parent / f"{m.data_dir.name}.log"
            log = open(m.log_path, "ab")  # noqa: SIM115 - handed to the child process
            env = dict(os.environ, ETCD_UNSUPPORTED_ARCH=os.environ.get("ETCD_UNSUPPORTED_ARCH", ""))
            m.proc = subprocess.Popen(m.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
            log.close()
        try:
            for m in self.members:
                wait_until(lambda m=m: m._exited() or _answers(m.endpoint), timeout, f"{m.name} to serve")
                if m._exited():
                    raise RuntimeError(f"{m.name} exited:\n{m.log_text()}")
        except BaseException:
            self.kill()
            raise
        return self

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def kill(self) -> None:
        for m in self.members:
            m.kill()
        if self.proxies is not None:
            self.proxies.close()
            self.proxies = None
