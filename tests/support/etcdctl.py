"""Run etcd's own ``etcdctl`` (3.4) against a synod and a real etcd in lockstep.

``CtlPair.run`` sends one command to both members at once and asserts that the
answers are the same: stdout byte for byte, the ``Error: ...`` line(s) on stderr
and the exit code. The only thing normalised is what must differ between two
members with different peer URLs: their cluster and member IDs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.servers import ServerProcess

CTL_TIMEOUT = 30.0
CLUSTER_ID = "<CLUSTER_ID>"
MEMBER_ID = "<MEMBER_ID>"


def server_ids(server: ServerProcess) -> tuple[int, int]:
    """(cluster ID, member ID) as the member puts them in response headers."""
    with grpc.insecure_channel(server.endpoint) as ch:
        h = rpc_pb2_grpc.KVStub(ch).Range(pb.RangeRequest(key=b"\0ids", serializable=True), timeout=5).header
    return h.cluster_id, h.member_id


# -- protobuf wire format (for ``-w protobuf``) ----------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _fields(data: bytes) -> list[tuple[int, int, bytes]]:
    """(field number, wire type, raw bytes of the whole field) of a message, in order."""
    out = []
    pos = 0
    while pos < len(data):
        start = pos
        tag, pos = _varint(data, pos)
        wire = tag & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            n, pos = _varint(data, pos)
            pos += n
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unexpected wire type {wire} at {start} in {data!r}")
        out.append((tag >> 3, wire, data[start:pos]))
    if pos != len(data):
        raise ValueError(f"truncated protobuf message {data!r}")
    return out


def normalise_protobuf(data: bytes) -> bytes:
    """Drop cluster_id (1) and member_id (2) from the top-level header (field 1) of a response."""
    out = bytearray()
    for number, wire, raw in _fields(data):
        if number == 1 and wire == 2:
            _, pos = _varint(raw, 0)  # tag
            n, pos = _varint(raw, pos)
            header = b"".join(r for num, _, r in _fields(raw[pos : pos + n]) if num not in (1, 2))
            raw = b"\x0a" + _encode_varint(len(header)) + header
        out += raw
    return bytes(out)


# -- running etcdctl --------------------------------------------------------------


@dataclass(frozen=True)
class CtlResult:
    stdout: bytes
    errors: tuple[str, ...]  # the "Error: ..." (and "panic: ...") lines of stderr
    rc: int

    def text(self) -> str:
        return self.stdout.decode(errors="replace")


def etcdctl_binary() -> str:
    ctl = shutil.which("etcdctl")
    if ctl is None:
        raise RuntimeError("etcdctl is not installed: run ./dev test, which installs Debian's etcd-client")
    return ctl


class Ctl:
    """etcdctl bound to one member, with that member's IDs normalised out of its answers."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.cluster_id, self.member_id = server_ids(server)
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        self._env["ETCDCTL_API"] = "3"

    def run(self, args: list[str], stdin: bytes = b"") -> CtlResult:
        cmd = [etcdctl_binary(), "--endpoints", self.server.endpoint, "--dial-timeout", "5s", *args]
        p = subprocess.run(cmd, input=stdin, capture_output=True, env=self._env, timeout=CTL_TIMEOUT)
        errors = tuple(
            line
            for line in p.stderr.decode(errors="replace").splitlines()
            if line.startswith(("Error:", "panic:"))
        )
        return CtlResult(self._normalise(p.stdout, args), errors, p.returncode)

    def _normalise(self, out: bytes, args: list[str]) -> bytes:
        if _output_format(args) == "protobuf":
            return normalise_protobuf(out) if out else out
        for value, name in ((self.cluster_id, CLUSTER_ID), (self.member_id, MEMBER_ID)):
            out = out.replace(str(value).encode(), name.encode())
        return out


def _output_format(args: list[str]) -> str:
    fmt = "simple"
    for i, a in enumerate(args):
        if a in ("-w", "--write-out") and i + 1 < len(args):
            fmt = args[i + 1]
        elif a.startswith("--write-out="):
            fmt = a.split("=", 1)[1]
    return fmt


class CtlPair:
    """The same etcdctl command against synod and a real etcd, which must answer alike."""

    def __init__(self, synod: ServerProcess, etcd: ServerProcess, workers: int = 8) -> None:
        self.synod = Ctl(synod)
        self.etcd = Ctl(etcd)
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self.commands = 0

    def close(self) -> None:
        self._pool.shutdown()

    def run(self, *args: str, stdin: bytes | str = b"") -> CtlResult:
        """One command on both members at once (the next one starts after both answered)."""
        return self.run_all([[*args]], stdin=stdin)[0]

    def run_all(self, commands: list[list[str]], stdin: bytes | str = b"") -> list[CtlResult]:
        """Commands that change nothing, run concurrently; returns etcd's answers, in order."""
        data = stdin.encode() if isinstance(stdin, str) else stdin
        futures = [
            (
                args,
                self._pool.submit(self.synod.run, args, data),
                self._pool.submit(self.etcd.run, args, data),
            )
            for args in commands
        ]
        out = []
        for args, fs, fe in futures:
            got, want = fs.result(), fe.result()
            self.commands += 1
            _assert_same(args, data, got, want)
            out.append(want)
        return out


def _assert_same(args: list[str], stdin: bytes, got: CtlResult, want: CtlResult) -> None:
    shown = " ".join(repr(a) if not a or " " in a else a for a in args)
    if stdin:
        shown += f" <<< {stdin[:200]!r}"
    assert got.stdout == want.stdout, (
        f"etcdctl {shown}: stdout differs\n--- synod\n{got.text()}\n--- etcd\n{want.text()}"
    )
    assert got.errors == want.errors, (
        f"etcdctl {shown}: errors differ: synod {got.errors}, etcd {want.errors}"
    )
    assert got.rc == want.rc, f"etcdctl {shown}: exit code synod {got.rc}, etcd {want.rc}"


def run_ctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    """etcdctl against one endpoint, its answer as text (never raises for a failed command)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    cmd = [etcdctl_binary(), f"--endpoints={endpoint}", "--dial-timeout", "5s", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=CTL_TIMEOUT)
