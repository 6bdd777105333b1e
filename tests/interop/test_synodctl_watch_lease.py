"""synodctl's ``watch`` and ``lease`` against etcdctl 3.4's, command line by command line.

Each group runs three times, each on a fresh member with the same peer URL
(the same cluster and member IDs), fed the same sequence: etcdctl on etcd,
synodctl on etcd, synodctl on synod. The answers must agree byte for byte
(stdout, stderr less etcd's Go-client JSON log lines, exit code), once lease
IDs are named: they embed the time of the grant, so each run's IDs are
replaced by ``<L0>``, ``<L1>``... in grant order (hex and decimal), and a
lease's remaining TTL by ``<ttl>`` when it is within seconds of the granted
one.

Watchers are processes: one is started, the test waits (on its output, with a
deadline) until it is watching, writes through gRPC, waits until the last
write shows, and stops it with SIGINT (both tools then die of the signal).
A watcher is known to watch when the first write after its start shows:
it starts at ``--rev {rev}`` (the next revision), so it cannot miss that
write, and after it every write is its own response. Groups: ``lease``
(one-shot commands, synodctl in-process), ``watch`` (watchers and
keep-alives, both tools as processes).
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.ctl.main import Streams, run
from tests.support.servers import ServerProcess, free_port, wait_until

WAIT = 10.0  # deadline of one wait on a watcher's output
TTL = 600  # long enough never to expire during a run
_TIMESTAMP = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} ", re.MULTILINE)


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: bytes
    stderr: bytes

    def __str__(self) -> str:
        return f"exit {self.code}\n      stdout: {self.stdout!r}\n      stderr: {self.stderr!r}"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}


def _etcdctl() -> str:
    path = shutil.which("etcdctl")
    assert path is not None, "etcdctl is not installed: run ./dev test, which installs Debian's etcd-client"
    return path


def _synodctl() -> str:
    script = Path(sys.executable).parent / "synodctl"
    assert script.exists(), f"{script} is missing: pip install -e ."
    return str(script)


def _filter_stderr(stderr: bytes) -> bytes:
    lines = [line for line in stderr.split(b"\n") if not line.startswith(b'{"level"')]
    return _TIMESTAMP.sub(b"<time> ", b"\n".join(lines))


# -- the member: writes and lease grants through gRPC -------------------------------------------------


class Member:
    """A server, the leases granted on it in order, and gRPC calls the test makes itself."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.channel = grpc.insecure_channel(server.endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.leases: list[int] = []  # every lease granted in this run, in grant order

    def close(self) -> None:
        self.channel.close()

    def revision(self) -> int:
        return int(self.kv.Range(pb.RangeRequest(key=b"\0rev"), timeout=5).header.revision)

    def live_leases(self) -> set[int]:
        return {s.ID for s in self.lease.LeaseLeases(pb.LeaseLeasesRequest(), timeout=5).leases}

    def note_new_leases(self, before: set[int]) -> None:
        self.leases += sorted(self.live_leases() - before)

    def apply(self, op: tuple[str, ...]) -> None:
        kind, *args = op
        if kind == "put":
            self.kv.Put(pb.PutRequest(key=args[0].encode(), value=args[1].encode()), timeout=5)
        elif kind == "put-lease":
            lease = self.leases[int(args[2])]
            self.kv.Put(pb.PutRequest(key=args[0].encode(), value=args[1].encode(), lease=lease), timeout=5)
        elif kind == "del":
            self.kv.DeleteRange(pb.DeleteRangeRequest(key=args[0].encode()), timeout=5)
        elif kind == "compact":
            self.kv.Compact(
                pb.CompactionRequest(revision=self.revision() - int(args[0]), physical=True), timeout=5
            )
        elif kind == "grant":
            self.leases.append(self.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=int(args[0])), timeout=5).ID)
        elif kind == "revoke":
            self.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=self.leases[int(args[0])]), timeout=5)
        else:
            raise ValueError(op)

    def fill(self, text: str) -> str:
        """``{L0}``... as the hex lease IDs of this run."""
        for i, lease in enumerate(self.leases):
            text = text.replace(f"{{L{i}}}", f"{lease:016x}")
        return text

    def normalise(self, data: bytes) -> bytes:
        for i, lease in enumerate(self.leases):
            name = f"<L{i}>".encode()
            data = data.replace(f"{lease:016x}".encode(), name).replace(str(lease).encode(), name)
        return data.replace(self.server.endpoint.encode(), b"{ep}")


_REMAINING = (
    re.compile(rb"remaining\((\d+)s\)"),
    re.compile(rb'"ttl":(\d+)'),
    re.compile(rb'"TTL" : (\d+)'),
)


def _blank_remaining(data: bytes) -> bytes:
    """timetolive's remaining TTL, which depends on the time since the grant, named when plausible."""
    for pattern in _REMAINING:
        data = pattern.sub(
            lambda m: (
                m.group(0).replace(m.group(1), b"<ttl>") if TTL - 5 <= int(m.group(1)) <= TTL else m.group(0)
            ),
            data,
        )
    return data


# -- group "lease": one-shot command lines --------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    argv: tuple[str, ...]
    usage: bool = False  # both print their own usage on stdout: compare that it is one, not the text

    def __str__(self) -> str:
        return "ctl " + " ".join(self.argv)


def step(*argv: str, usage: bool = False) -> Step:
    return Step(argv, usage)


T = str(TTL)
LEASE_STEPS = [
    step("lease", "grant", T),  # L0
    step("lease", "grant", T, "-w", "json"),  # L1
    step("lease", "grant", T, "-w", "fields"),  # L2
    step("lease", "grant", T, "-w", "protobuf"),  # L3: the header only
    step("lease", "grant", T, "-w", "table"),  # L4, then exit 4
    step("lease", "gr", T),  # L5: a prefix of the name
    step("put", "--lease", "{L0}", "k1", "v1"),
    step("put", "--lease", "{L1}", "k2", "v2", "-w", "json"),
    step("put", "--lease={L1}", "k3", "v3"),
    step("get", "--prefix", "k", "-w", "json"),
    step("get", "k1", "-w", "fields"),
    step("lease", "timetolive", "{L0}"),
    step("lease", "timetolive", "{L0}", "--keys"),
    step("lease", "timetolive", "--keys", "{L0}", "-w", "json"),
    step("lease", "timetolive", "{L0}", "--keys=true", "-w", "fields"),
    step("lease", "timetolive", "{L0}", "-w", "protobuf"),
    step("lease", "timetolive", "{L2}", "-w", "json"),
    step("lease", "timetolive", "1234"),
    step("lease", "timetolive", "1234", "-w", "json"),
    step("lease", "timetolive", "1234", "--keys", "-w", "fields"),
    step("lease", "list"),
    step("lease", "list", "-w", "json"),
    step("lease", "list", "-w", "fields"),
    step("lease", "list", "-w", "protobuf"),
    step("lease", "list", "extra", "args"),
    step("lease", "keep-alive", "--once", "{L0}"),
    step("lease", "keep-alive", "--once", "{L0}", "-w", "json"),
    step("lease", "keep-alive", "--once=true", "{L0}", "-w", "fields"),
    step("lease", "keep-alive", "{L0}", "--once", "-w", "protobuf"),
    step("lease", "keep-alive", "--once", "1234"),
    step("lease", "keep-alive", "--once", "1234", "-w", "json"),
    step("lease", "keep-alive", "1234"),
    step("lease", "keep-alive", "1234", "-w", "json"),
    step("lease", "revoke", "{L1}"),  # takes k2 and k3 with it
    step("get", "--prefix", "k"),
    step("lease", "revoke", "{L2}", "-w", "json"),
    step("lease", "revoke", "{L3}", "-w", "fields"),
    step("lease", "revoke", "{L4}", "-w", "protobuf"),  # revoked, then exit 4
    step("lease", "revoke", "{L4}"),
    step("lease", "revoke", "1234"),
    step("lease", "revoke", "1234", "-w", "json"),
    step("lease", "timetolive", "{L1}"),
    step("lease", "list", "-w", "json"),
    step("lease", "revoke", "{L0}"),
    step("lease", "revoke", "{L5}"),
    step("lease", "list"),
    step("lease", "list", "-w", "json"),
    step("get", "--prefix", "k"),
    # Arguments etcdctl refuses.
    step("lease", "grant"),
    step("lease", "grant", "1", "2"),
    step("lease", "grant", "x"),
    step("lease", "grant", "9223372036854775808"),
    step("lease", "grant", "99999999999"),
    step("lease", "revoke"),
    step("lease", "revoke", "zz"),
    step("lease", "revoke", "1", "2"),
    step("lease", "timetolive"),
    step("lease", "timetolive", "zz"),
    step("lease", "timetolive", "1", "2"),
    step("lease", "keep-alive"),
    step("lease", "keep-alive", "zz"),
    step("lease", "keep-alive", "--once", "1ffffffffffffffff"),
    step("-w", "yaml", "lease", "list"),
    step("lease", "timetolive", "zz", "-w", "yaml"),
    step("lease", "revoke", "zz", "-w", "yaml"),
    step("lease", "grant", "-5", usage=True),
    step("lease", "--foo", usage=True),
    step("lease", "grant", "--bogus", "1", usage=True),
    step("lease", usage=True),
    step("lease", "bogus", usage=True),
    step("lease", "-w", "json", usage=True),
    step("lease", "grant", "--help", usage=True),
    step("help", "lease", usage=True),
    step("help", "lease", "keep-alive", usage=True),
]


def _run_etcdctl(argv: list[str], env: dict[str, str]) -> Outcome:
    p = subprocess.run(
        [_etcdctl(), *argv], capture_output=True, env=env, timeout=30, stdin=subprocess.DEVNULL
    )
    return Outcome(p.returncode, p.stdout, _filter_stderr(p.stderr))


def _run_synodctl(argv: list[str], env: dict[str, str]) -> Outcome:
    out, err = io.BytesIO(), io.BytesIO()
    code = run(argv, Streams(io.BytesIO(), out, err, env))
    return Outcome(code, out.getvalue(), _filter_stderr(err.getvalue()))


def run_lease_steps(member: Member, tool: str) -> list[Outcome]:
    runner = _run_etcdctl if tool == "etcdctl" else _run_synodctl
    outcomes = []
    for s in LEASE_STEPS:
        argv = [f"--endpoints={member.server.endpoint}", *(member.fill(a) for a in s.argv)]
        before = member.live_leases()
        outcome = runner(argv, _clean_env())
        member.note_new_leases(before)
        stdout, stderr = member.normalise(outcome.stdout), member.normalise(outcome.stderr)
        stderr = stderr.replace(b"etcdctl", b"synodctl")  # cobra names the program
        if "timetolive" in s.argv:
            stdout = _blank_remaining(stdout)
        outcomes.append(Outcome(outcome.code, stdout, stderr))
    return outcomes


# -- group "watch": watchers and keep-alives, as processes ------------------------------------------------


Op = tuple[str, ...]


@dataclass(frozen=True)
class Case:
    """One watcher (or keep-alive) process: writes before it starts, then once it is watching.

    ``{rev}`` in ``argv`` and ``stdin`` is the next revision before the setup writes, ``{Ln}`` a lease of the
    run. ``ready``: text in its output that shows it is watching (default: the first live write's
    value); ``until``: the value whose appearance ends the wait (default: the last live write's, or
    else the last setup write's); ``exits``: it ends by itself.
    """

    name: str
    argv: tuple[str, ...]
    setup: tuple[Op, ...] = ()
    live: tuple[Op, ...] = ()
    stdin: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    ready: str | None = None
    until: str | None = None
    exits: bool = False
    sentinel: bool = False  # no --rev: put s/sentinel until it shows; its events are then dropped
    sync: bool = False  # wait for each live write's value before the next write (several watchers)


def _value(op: Op) -> str | None:
    return op[2] if op[0] in ("put", "put-lease") else None


# (stderr first: once the stdout line shows, the command is done.)
SH_ENV = (
    'echo e >&2; printf "%s\\n" "$ETCD_WATCH_REVISION|$ETCD_WATCH_EVENT_TYPE|'
    '$ETCD_WATCH_KEY|$ETCD_WATCH_VALUE"'
)
WATCH_CASES = [
    # Compaction first: later cases start after the compacted revision.
    Case(
        "compacted",
        ("watch", "c/x", "--rev", "2"),
        setup=(("put", "c/x", "1"), ("put", "c/x", "2"), ("compact", "0")),
        exits=True,
    ),
    Case("compacted-json", ("watch", "--prefix", "c/", "--rev", "2", "-w", "json"), exits=True),
    Case("compacted-fields", ("watch", "c/x", "--rev=2", "-w", "fields"), exits=True),
    Case("compacted-protobuf", ("watch", "c/x", "--rev", "1", "-w", "protobuf"), exits=True),
    Case("empty-range", ("watch", "b", "a"), exits=True),
    Case("empty-range-json", ("watch", "b", "a", "-w", "json"), exits=True),
    # History: everything written before the watcher starts comes in one response.
    Case(
        "history",
        ("watch", "--prefix", "h/", "--rev", "{rev}"),
        setup=(
            ("put", "h/a", "1"),
            ("put", "h/b", "2"),
            ("del", "h/a"),
            ("put", "h/a", "3"),
            ("put", "x", "no"),
            ("put", "h/\xe9", "tab\there"),
            ("put", "h/end", "h-end"),
        ),
    ),
    Case(
        "history-json",
        ("watch", "--prefix", "h/", "--rev", "{rev}", "--prev-kv", "-w", "json"),
        setup=(("put", "h/a", "4"), ("del", "h/b"), ("put", "h/end", "h-end2")),
    ),
    Case(
        "history-fields",
        ("watch", "h/a", "h/c", "--rev", "{rev}", "--prev-kv", "-w", "fields"),
        setup=(("put", "h/a", "5"), ("put", "h/b", "6"), ("del", "h/a"), ("put", "h/a", "h-end3")),
    ),
    Case(
        "history-protobuf",
        ("watch", "--rev", "{rev}", "--prefix", "h/", "-w", "protobuf", "--prev-kv"),
        setup=(("put", "h/a", "7"), ("del", "h/a"), ("put", "h/end", "h-end4")),
    ),
    Case(
        "history-hex",
        ("watch", "--prefix", "h/", "--rev", "{rev}", "--hex"),
        setup=(("put", "h/b", "h-end5"),),
    ),
    # Live: each write its own response.
    Case(
        "live",
        ("watch", "--prefix", "l/", "--rev", "{rev}"),
        live=(
            ("put", "l/a", "l-first"),
            ("put", "l/b", "2"),
            ("del", "l/a"),
            ("put", "m", "no"),
            ("put", "l/a", "l-end"),
        ),
    ),
    Case(
        "live-json",
        ("watch", "--prefix", "l/", "--rev", "{rev}", "--prev-kv", "-w", "json"),
        live=(("put", "l/a", "l-first2"), ("put", "l/a", "3"), ("del", "l/b"), ("put", "l/c", "l-end2")),
    ),
    Case(
        "live-fields",
        ("watch", "l/a", "--rev", "{rev}", "-w", "fields"),
        live=(("put", "l/a", "l-first3"), ("del", "l/a"), ("put", "l/a", "l-end3")),
    ),
    Case(
        "live-protobuf",
        ("watch", "l/a", "--rev", "{rev}", "-w", "protobuf", "--prev-kv"),
        live=(("put", "l/a", "l-first4"), ("put", "l/a", "l-end4")),
    ),
    Case(
        "live-failover",
        ("--endpoints={dead},{ep}", "watch", "l/a", "--rev", "{rev}"),
        live=(("put", "l/a", "l-first5"), ("put", "l/a", "l-end5")),
    ),
    Case(
        "leases",
        ("watch", "--prefix", "e/", "--rev", "{rev}", "-w", "fields"),
        setup=(("grant", T),),
        live=(
            ("put-lease", "e/a", "e-first", "0"),
            ("put-lease", "e/b", "2", "0"),
            ("revoke", "0"),
            ("put", "e/end", "e-end"),
        ),
    ),
    Case("table", ("watch", "t", "--rev", "{rev}", "-w", "table"), live=(("put", "t", "1"),), exits=True),
    # A command per event.
    Case(
        "exec",
        ("watch", "--prefix", "x/", "--rev", "{rev}", "--", "sh", "-c", SH_ENV),
        live=(
            ("put", "x/a", "x-first"),
            ("put", 'x/"q"', "tab\tand \xe9"),
            ("del", "x/a"),
            ("put", "x/b", "x-end"),
        ),
        until='"x-end"',
    ),
    Case(
        "exec-json",
        ("watch", "x/a", "--rev", "{rev}", "-w", "json", "--", "sh", "-c", SH_ENV),
        live=(("put", "x/a", "x-first2"), ("put", "x/a", "x-end2")),
        until='"x-end2"',
    ),
    Case(
        "exec-env-key",
        ("watch", "--rev", "{rev}", "--", "sh", "-c", SH_ENV),
        env=(("ETCDCTL_WATCH_KEY", "x/k"),),
        live=(("put", "x/k", "x-first3"), ("put", "x/k", "x-end3")),
        until='"x-end3"',
    ),
    Case(
        "exec-range-env",
        ("watch", "--rev", "{rev}", "-w", "json"),
        env=(("ETCDCTL_WATCH_KEY", "x/k"), ("ETCDCTL_WATCH_RANGE_END", "x/l")),
        live=(("put", "x/k", "x-first4"), ("put", "x/k", "x-end4")),
    ),
    Case(
        "exec-fails",
        ("watch", "x/f", "--rev", "{rev}", "--", "false"),
        live=(("put", "x/f", "1"),),
        exits=True,
    ),
    Case(
        "exec-missing",
        ("watch", "x/f", "--rev", "{rev}", "--", "no-such-command-synod", "arg"),
        live=(("put", "x/f", "2"),),
        exits=True,
    ),
    Case(
        "exec-path",
        ("watch", "x/f", "--rev", "{rev}", "--", "/no/such/command"),
        live=(("put", "x/f", "3"),),
        exits=True,
    ),
    # watch -i: lines from stdin (kept open: etcdctl ends at its end).
    # (Two watchers print from two goroutines in etcdctl: each write waits for the previous one's output.)
    Case(
        "interactive",
        ("watch", "-i"),
        stdin=(
            "watch --rev {rev} --prefix i/\n\nbogus line\nwatch\nwatch i/a i/b --prefix\n"
            'watch --rev={rev} j/a -- sh -c "echo $ETCD_WATCH_KEY"\nprogress\n'
        ),
        ready="progress notify",
        sync=True,
        live=(("put", "i/a", "i-first"), ("del", "i/a"), ("put", "i/b", "i-b"), ("put", "j/a", "i-end")),
        until='"j/a"',  # the command's output
    ),
    Case(
        "interactive-json",
        ("watch", "--interactive", "-w", "json"),
        stdin="watch i/a --rev {rev} --prev-kv\n",
        live=(("put", "i/a", "i-first2"), ("put", "i/a", "i-end2")),
    ),
    Case("interactive-bad-flag", ("watch", "-i"), stdin="watch --prefix i/\nwatch -w json i/a\n", exits=True),
    Case("interactive-bad-rev", ("watch", "-i"), stdin="watch --rev x i/a\n", exits=True),
    Case("interactive-separator", ("watch", "-i"), stdin="watch i/a --\n", exits=True),
    Case("interactive-no-key", ("watch", "-i"), stdin="watch --prefix\n", exits=True),
    Case("interactive-eof", ("watch", "-i"), stdin="watch i/a", exits=True),
    # Arguments etcdctl refuses.
    Case("no-key", ("watch",), exits=True),
    Case("separator-only", ("watch", "a", "--"), exits=True),
    Case("prefix-and-range", ("watch", "a", "b", "--prefix"), exits=True),
    Case("env-conflict", ("watch", "a"), env=(("ETCDCTL_WATCH_KEY", "a"),), exits=True),
    Case("env-conflict-exec", ("watch", "a", "--", "echo"), env=(("ETCDCTL_WATCH_KEY", "a"),), exits=True),
    Case("env-range-only", ("watch", "a"), env=(("ETCDCTL_WATCH_RANGE_END", "b"),), exits=True),
    Case("bad-format", ("watch", "a", "-w", "yaml"), exits=True),
    # Keep-alives: until SIGINT, or until the lease is revoked (the next renewal then ends it).
    Case("keep-alive", ("lease", "keep-alive", "{L1}"), setup=(("grant", T),), ready="keepalived"),
    Case(
        "keep-alive-revoked",
        ("lease", "keep-alive", "{L2}"),
        setup=(("grant", "3"),),
        ready="keepalived",
        live=(("revoke", "2"),),
        exits=True,
    ),
    Case(
        "keep-alive-revoked-json",
        ("lease", "keep-alive", "{L3}", "-w", "json"),
        setup=(("grant", "3"),),
        ready='"TTL":3',
        live=(("revoke", "3"),),
        exits=True,
    ),
    # Last, as it writes a sentinel an unknown number of times: a watch from the next revision.
    Case(
        "no-rev",
        ("watch", "--prefix", "s/"),
        sentinel=True,
        live=(("put", "s/a", "1"), ("put", "s/b", "s-end")),
    ),
]


class Watcher:
    """A tool's process, its output in files (no pipe to fill), its stdin kept open."""

    def __init__(
        self, cmd: list[str], env: dict[str, str], stdin: str | None, workdir: Path, keep_stdin: bool = True
    ) -> None:
        self._out = tempfile.TemporaryFile(dir=workdir)  # noqa: SIM115 - closed by finish()
        self._err = tempfile.TemporaryFile(dir=workdir)  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err, env=env, stdin=subprocess.PIPE)
        assert self.proc.stdin is not None
        if stdin is not None:
            self.proc.stdin.write(stdin.encode("utf-8", "surrogateescape"))
            self.proc.stdin.flush()
        if stdin is None or not keep_stdin:
            self.proc.stdin.close()

    def output(self) -> bytes:
        # pread: the child shares this file's offset, which a seek would move under its writes.
        fd = self._out.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0)

    def shows(self, value: str) -> bool:
        data = value.encode("utf-8", "surrogateescape")
        out = self.output()
        hexed = "".join(f"\\x{b:02x}" for b in data).encode()
        return data in out or base64.b64encode(data) in out or hexed in out

    def wait_for(self, value: str, what: str) -> None:
        wait_until(lambda: self.shows(value) or self.proc.poll() is not None, WAIT, what)
        assert self.shows(value), f"{what}: the process ended first"

    def finish(self, interrupt: bool) -> Outcome:
        if interrupt and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            self._err.write(b"<timed out>")
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        fd = self._err.fileno()
        outcome = Outcome(code, self.output(), os.pread(fd, os.fstat(fd).st_size, 0))
        self._out.close()
        self._err.close()
        return outcome


def run_case(case: Case, member: Member, tool: str, dead: str, workdir: Path) -> Outcome:
    rev = str(member.revision() + 1)
    for op in case.setup:
        member.apply(op)

    def fill(text: str) -> str:
        text = text.replace("{rev}", rev).replace("{ep}", member.server.endpoint).replace("{dead}", dead)
        return member.fill(text)

    argv = [fill(a) for a in case.argv]
    if not any(a.startswith("--endpoints") for a in argv):
        argv.insert(0, f"--endpoints={member.server.endpoint}")
    env = _clean_env()
    env.update(case.env)
    cmd = [_etcdctl() if tool == "etcdctl" else _synodctl(), *argv]
    stdin = None if case.stdin is None else fill(case.stdin)
    watcher = Watcher(cmd, env, stdin, workdir, keep_stdin=not case.exits)
    try:
        live = list(case.live)
        if case.sentinel:
            while not watcher.shows("s/sentinel"):
                member.apply(("put", "s/sentinel", "sentinel"))
                try:
                    wait_until(lambda: watcher.shows("s/sentinel"), 0.5, "the sentinel")
                except TimeoutError:
                    continue
        elif case.ready is not None:
            watcher.wait_for(case.ready, f"{case.name}: {case.ready!r}")
        elif live and not case.exits:
            member.apply(live.pop(0))
            watcher.wait_for(_value(case.live[0]) or "", f"{case.name}: the first write")
        for op in live:
            member.apply(op)
            if case.sync and (value := _value(op)) is not None:
                watcher.wait_for(value, f"{case.name}: {value!r}")
        values = [v for op in (*case.setup, *case.live) if (v := _value(op)) is not None]
        until = case.until or (values[-1] if values else None)
        if not case.exits and until is not None:
            watcher.wait_for(until, f"{case.name}: {until!r}")
    finally:
        outcome = watcher.finish(interrupt=not case.exits)
    stdout, stderr = outcome.stdout, _filter_stderr(outcome.stderr)
    if case.sentinel:
        stdout = stdout.replace(b"PUT\ns/sentinel\nsentinel\n", b"")
    stdout, stderr = member.normalise(stdout), member.normalise(stderr).replace(dead.encode(), b"{dead}")
    return Outcome(outcome.code, stdout, stderr.replace(b"etcdctl", b"synodctl"))


def run_watch_cases(member: Member, tool: str, workdir: Path) -> list[Outcome]:
    dead = f"127.0.0.1:{free_port()}"
    outcomes: list[Outcome] = []
    stuck = False  # on synod (expected to fail for now), cases after one that got stuck are not run
    for case in WATCH_CASES:
        if stuck:
            outcomes.append(Outcome(-1, b"", b"<not run: an earlier case got stuck>"))
            continue
        try:
            outcomes.append(run_case(case, member, tool, dead, workdir))
        except (TimeoutError, AssertionError, grpc.RpcError) as e:
            if member.server.kind != "synod":
                raise
            outcomes.append(Outcome(-1, b"", f"<stuck: {e}>".encode()))
        stuck = stuck or b"<timed out>" in outcomes[-1].stderr or outcomes[-1].stderr.startswith(b"<stuck")
    return outcomes


# -- the runs -----------------------------------------------------------------------------------------


RUNS = (("etcd", "etcdctl"), ("etcd", "synodctl"), ("synod", "synodctl"))


@dataclass
class GroupRuns:
    outcomes: dict[tuple[str, str], list[Outcome] | BaseException] = field(default_factory=dict)

    def get(self, kind: str, tool: str) -> list[Outcome]:
        result = self.outcomes[(kind, tool)]
        if isinstance(result, BaseException):
            raise result
        return result


def _run_group(group: str, workdir: Path) -> GroupRuns:
    peer_port = free_port()  # one peer URL for every member: the same cluster and member IDs

    def one(kind: str, tool: str) -> list[Outcome]:
        server = ServerProcess(kind, workdir / f"{group}-{kind}-{tool}", peer_port=peer_port)
        server.start()
        member = Member(server)
        try:
            if group == "lease":
                return run_lease_steps(member, tool)
            return run_watch_cases(member, tool, workdir)
        finally:
            member.close()
            server.kill()

    def record(kinds: tuple[str, ...]) -> None:
        for kind, tool in RUNS:
            if kind in kinds:
                try:
                    runs.outcomes[(kind, tool)] = one(kind, tool)
                except Exception as e:  # reported by the tests that compare this run
                    runs.outcomes[(kind, tool)] = e

    runs = GroupRuns()
    # Two etcds can't share the peer URL at once (they listen on it); synod's run goes alongside.
    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(record, ("etcd",)), pool.submit(record, ("synod",))]:
            future.result()
    return runs


@pytest.fixture(scope="module")
def group_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], GroupRuns]]:
    cache: dict[str, GroupRuns] = {}

    def get(group: str) -> GroupRuns:
        if group not in cache:
            cache[group] = _run_group(group, tmp_path_factory.mktemp(group))
        return cache[group]

    yield get


def _labels(group: str) -> list[str]:
    return [str(s) for s in LEASE_STEPS] if group == "lease" else [c.name for c in WATCH_CASES]


def _same(group: str, i: int, want: Outcome, got: Outcome) -> bool:
    if group == "lease" and LEASE_STEPS[i].usage:
        return (want.code, want.stderr, want.stdout[:5]) == (got.code, got.stderr, got.stdout[:5])
    return want == got


def assert_same(group: str, want: list[Outcome], got: list[Outcome]) -> None:
    problems = [
        f"{label}\n    want: {w}\n    got:  {g}"
        for i, (label, w, g) in enumerate(zip(_labels(group), want, got, strict=True))
        if not _same(group, i, w, g)
    ]
    assert not problems, f"{len(problems)} of {len(want)} differ:\n" + "\n".join(problems)


GROUPS = ["lease", "watch"]


@pytest.mark.parametrize("group", GROUPS)
def test_synodctl_answers_as_etcdctl(group: str, group_runs: Callable[[str], GroupRuns]) -> None:
    """On real etcds, synodctl prints what etcdctl prints, and exits as it does."""
    runs = group_runs(group)
    assert_same(group, runs.get("etcd", "etcdctl"), runs.get("etcd", "synodctl"))


@pytest.mark.parametrize("group", GROUPS)
def test_synodctl_on_synod_answers_as_etcdctl_on_etcd(
    group: str, group_runs: Callable[[str], GroupRuns]
) -> None:
    """synodctl on synod prints what etcdctl prints on etcd."""
    runs = group_runs(group)
    assert_same(group, runs.get("etcd", "etcdctl"), runs.get("synod", "synodctl"))


def test_watch_outputs_are_what_they_should_be(group_runs: Callable[[str], GroupRuns]) -> None:
    """The reference itself, spot-checked: the comparisons above compare something."""
    outcomes = dict(
        zip([c.name for c in WATCH_CASES], group_runs("watch").get("etcd", "etcdctl"), strict=True)
    )
    compacted = outcomes["compacted"]
    assert compacted.code == 5
    assert compacted.stderr == (
        b"watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"
        b"Error: watch is canceled by the server\n"
    )
    assert outcomes["live"].code == -signal.SIGINT
    assert outcomes["live"].stdout == b"PUT\nl/a\nl-first\nPUT\nl/b\n2\nDELETE\nl/a\n\nPUT\nl/a\nl-end\n"
    assert outcomes["exec"].stdout.count(b"|") == 12 and b'|"DELETE"|"x/a"|""\n' in outcomes["exec"].stdout
    assert outcomes["exec-fails"].stderr == b'command ["false"] error (exit status 1)\n'
    assert outcomes["interactive"].stdout.startswith(b"progress notify: ")
    assert outcomes["keep-alive-revoked"].stdout.endswith(b"lease <L2> expired or revoked.\n")
    assert outcomes["no-rev"].stdout == b"PUT\ns/a\n1\nPUT\ns/b\ns-end\n"
    leases = dict(zip(_labels("lease"), group_runs("lease").get("etcd", "etcdctl"), strict=True))
    assert leases["ctl lease grant 600"].stdout == b"lease <L0> granted with TTL(600s)\n"
    assert (
        leases["ctl lease timetolive {L0}"].stdout
        == b"lease <L0> granted with TTL(600s), remaining(<ttl>s)\n"
    )
    assert leases["ctl lease timetolive 1234"].stdout == b"lease 0000000000001234 already expired\n"
    assert leases["ctl lease revoke 1234"].code == 1


def test_put_with_a_lease_attaches_it(etcd: ServerProcess) -> None:
    """``put --lease`` end to end: the key carries the lease, and goes with it."""
    member = Member(etcd)
    try:
        member.apply(("grant", T))
        lease = member.leases[0]
        env = _clean_env()
        ep = f"--endpoints={etcd.endpoint}"
        assert _run_synodctl([ep, "put", "--lease", f"{lease:x}", "held", "v"], env) == Outcome(
            0, b"OK\n", b""
        )
        got = _run_synodctl([ep, "get", "held", "-w", "fields"], env)
        assert f'"Lease" : {lease}\n'.encode() in got.stdout
        keys = _run_synodctl([ep, "lease", "timetolive", f"{lease:x}", "--keys"], env)
        assert keys.stdout.endswith(b", attached keys([held])\n"), keys
        assert _run_synodctl([ep, "lease", "revoke", f"{lease:x}"], env).code == 0
        assert _run_synodctl([ep, "get", "held"], env) == Outcome(0, b"", b"")
    finally:
        member.close()


def test_watch_resumes_after_its_member_restarts(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A watcher whose member goes away and comes back resumes where it was, as etcdctl's does."""
    etcd = start_server("etcd")
    member = Member(etcd)
    try:
        outputs = []
        for tool in ("etcdctl", "synodctl"):
            member.apply(("put", f"r/{tool}", "before"))
            rev = member.revision() + 1
            cmd = [_etcdctl() if tool == "etcdctl" else _synodctl(), f"--endpoints={etcd.endpoint}"]
            watcher = Watcher(
                [*cmd, "watch", "--prefix", "r/", "--rev", str(rev)], _clean_env(), None, tmp_path
            )
            try:
                member.apply(("put", f"r/{tool}", "first"))
                watcher.wait_for("first", "the first event")
                etcd.restart()
                member.apply(("put", f"r/{tool}", "after"))
                watcher.wait_for("after", "the event after the restart")
            finally:
                outputs.append(watcher.finish(interrupt=True))
        for tool, outcome in zip(("etcdctl", "synodctl"), outputs, strict=True):
            assert outcome.stdout == f"PUT\nr/{tool}\nfirst\nPUT\nr/{tool}\nafter\n".encode(), outcome
            assert outcome.code == -signal.SIGINT
    finally:
        member.close()
