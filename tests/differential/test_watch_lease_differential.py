"""Differential test: seeded watch and lease sequences, answered alike by a real etcd 3.4 and synod.

A module's pair of servers (a real etcd, the reference, and the other side) get
the same steps; revisions stay in lockstep. A step is materialised per side
(a lease is referred to by its slot, each side substituting the ID it
granted). The steps: puts (with a lease, an unknown lease, ignore_lease),
deletes, txns, compactions; watch creates (key, prefix, range, whole keyspace;
from now, from old revisions, from the compacted revision, below it (answered
with compact_revision), from the future; prev_kv; filters; client-chosen
watch_id, duplicate ids and empty ranges (refused)), cancels (also of unknown
ids, which get no answer), WatchProgressRequests; LeaseGrant with and without a
client-chosen ID (also a duplicate), TTLs below the minimum and too large,
LeaseRevoke (its keys deleted in one revision, which watchers see),
LeaseTimeToLive with and without keys, LeaseLeases, KeepAlive on a stream
(TTL, or 0 for an unknown lease).

After every step both sides settle (condition waits with deadlines, no
sleeps): a whole-keyspace reference watcher reaches the current revision, every
watcher delivers the last revision that concerns it (known from the
reference's events), every create, cancel and progress request is answered.
Then everything is compared field by field: unary answers (headers without
cluster/member IDs; TTLs that depend on time within 1 s; server-chosen lease
IDs normalised to their order of granting, attached keys and lease lists
sorted), and per watcher its created response, every event with the header
revision of its response, its progress notifications and its end (header,
compact_revision, cancel_reason), and per stream its answers to progress
requests. Watch IDs are compared as they are: etcd's choice is deterministic.

The other side is synod, or a second etcd: that etcd-against-etcd run must
pass, and shows the harness compares only what is deterministic.

A failure names its seed, the step and the diverging records, and how to rerun
(``pytest tests/differential/test_watch_lease_differential.py -k "seed-0007 and synod"``).
"""

from __future__ import annotations

import difflib
import os
import queue
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.kvpair import Answer
from tests.support.servers import ServerProcess, wait_until
from tests.support.watch_history import (
    DELETE,
    KV,
    NODELETE,
    NOPUT,
    PROGRESS_ALL,
    Event,
    WatchCreate,
    WatcherRun,
    WatchStream,
    demux,
    effective_start,
)

THIS = "tests/differential/test_watch_lease_differential.py"
SEEDS = range(12)
SLOW_SEEDS = range(1000, 1300)
RPC_TIMEOUT = 10.0
SETTLE = 5.0  # seconds for a side to settle after a step
KEYS = [b"a", b"a1", b"a2", b"b", b"b1", b"c"]
UNKNOWN_LEASE = 0x1234ABCD
MAX_LEASE_TTL = 9_000_000_000
MIN_LEASE_TTL = 2  # etcd's with its default heartbeat and election timeout: ceil(1.5 s)
STREAMS = ("s0", "s1")


def prefix_end(key: bytes) -> bytes:
    return key[:-1] + bytes([key[-1] + 1])


# -- steps ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseRef:
    """A lease by slot (the n-th granted in the sequence) or by a raw ID (unknown, client-chosen)."""

    slot: int | None = None
    raw: int = 0

    def show(self) -> str:
        return f"lease#{self.slot}" if self.slot is not None else f"lease {self.raw:#x}"


@dataclass(frozen=True)
class Put:
    key: bytes
    value: bytes
    lease: LeaseRef | None = None
    ignore_lease: bool = False
    prev_kv: bool = False
    other_value: bytes | None = None  # only for the harness's self-test: the other side's value


@dataclass(frozen=True)
class Delete:
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = True


@dataclass(frozen=True)
class Txn:
    request: pb.TxnRequest


@dataclass(frozen=True)
class Compact:
    revision: int
    physical: bool = False


@dataclass(frozen=True)
class Watch:
    stream: str
    create: WatchCreate
    expect: str  # "live", "compacted" or "refused"


@dataclass(frozen=True)
class Cancel:
    stream: str
    watcher: str | None  # None: an id no watcher has


@dataclass(frozen=True)
class Progress:
    stream: str


@dataclass(frozen=True)
class Grant:
    ttl: int
    id: LeaseRef | None = None  # None: the server chooses
    revoke_at_once: bool = False  # short TTLs: revoked in the same step, before they can expire


@dataclass(frozen=True)
class Revoke:
    lease: LeaseRef


@dataclass(frozen=True)
class TimeToLive:
    lease: LeaseRef
    keys: bool


@dataclass(frozen=True)
class Leases:
    pass


@dataclass(frozen=True)
class KeepAlive:
    lease: LeaseRef


@dataclass(frozen=True)
class Expire:
    """Wait (on each side, by condition) until the lease is gone by itself."""

    lease: LeaseRef


Step = (
    Put
    | Delete
    | Txn
    | Compact
    | Watch
    | Cancel
    | Progress
    | Grant
    | Revoke
    | TimeToLive
    | Leases
    | KeepAlive
    | Expire
)


def show_step(step: Step) -> str:
    if isinstance(step, Txn):
        return f"Txn({step.request})".replace("\n", " ")
    return repr(step)


# -- one server's side -------------------------------------------------------------------------------


class KeepAliveStream:
    """LeaseKeepAlive over raw gRPC; responses recorded in order."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.responses: list[pb.LeaseKeepAliveResponse] = []
        self.error: str | None = None
        self._closing = False
        self._cond = threading.Condition()
        self._q: queue.SimpleQueue[pb.LeaseKeepAliveRequest | None] = queue.SimpleQueue()
        self._call = rpc_pb2_grpc.LeaseStub(channel).LeaseKeepAlive(iter(self._q.get, None))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for r in self._call:
                with self._cond:
                    self.responses.append(r)
                    self._cond.notify_all()
        except grpc.RpcError as e:
            with self._cond:
                if not self._closing:
                    self.error = f"{e.code()}: {e.details()}"
                self._cond.notify_all()

    def send(self, lease_id: int) -> None:
        self._q.put(pb.LeaseKeepAliveRequest(ID=lease_id))

    def wait_count(self, n: int, timeout: float) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.responses) >= n or self.error is not None, timeout)
            if self.error is not None:
                raise RuntimeError(f"keep-alive stream failed: {self.error}")
            if not ok:
                raise TimeoutError(f"keep-alive: {n - len(self.responses)} answers missing after {timeout}s")

    def close(self) -> None:
        self._closing = True
        self._q.put(None)
        self._call.cancel()
        self._thread.join(timeout=10)


class Side:
    def __init__(self, server: ServerProcess, label: str) -> None:
        self.server = server
        self.label = label
        self.channel = grpc.insecure_channel(server.endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.streams: dict[str, WatchStream] = {}
        self.keepalive: KeepAliveStream | None = None
        self.lease_ids: list[int] = []  # slot -> this side's ID (0: the grant failed)
        self.placeholders: dict[int, int] = {}  # a server-chosen ID -> -(its order of granting)
        self.revision = 0

    def open(self) -> None:
        for name in ("ref", *STREAMS):
            self.streams[name] = WatchStream(self.channel, name)
        self.keepalive = KeepAliveStream(self.channel)

    def close_streams(self) -> None:
        for s in self.streams.values():
            s.close()
        self.streams.clear()
        if self.keepalive is not None:
            self.keepalive.close()
            self.keepalive = None

    def close(self) -> None:
        self.close_streams()
        self.channel.close()

    def lease_id(self, ref: LeaseRef) -> int:
        return self.lease_ids[ref.slot] if ref.slot is not None else ref.raw

    def norm_id(self, lease_id: int) -> int:
        return self.placeholders.get(lease_id, lease_id)

    def norm_kv(self, kv: KV | None) -> KV | None:
        return None if kv is None else replace(kv, lease=self.norm_id(kv.lease))

    def normalise(self, msg: Message) -> Message:
        out = type(msg)()
        out.CopyFrom(msg)
        if out.HasField("header"):  # type: ignore[attr-defined]
            out.header.ClearField("cluster_id")  # type: ignore[attr-defined]
            out.header.ClearField("member_id")  # type: ignore[attr-defined]
        self._map_ids(out)
        if isinstance(out, pb.LeaseTimeToLiveResponse):
            out.keys.sort()
        if isinstance(out, pb.LeaseLeasesResponse):
            ids = sorted(s.ID for s in out.leases)
            del out.leases[:]
            out.leases.extend(pb.LeaseStatus(ID=i) for i in ids)
        return out

    def _map_ids(self, msg: Message) -> None:
        for fd, value in msg.ListFields():
            if fd.message_type is not None:
                for sub in value if fd.is_repeated else [value]:
                    self._map_ids(sub)
            elif fd.name in ("ID", "lease") and not fd.is_repeated:
                setattr(msg, fd.name, self.norm_id(value))


def answer_of(side: Side, result: Message | grpc.RpcError) -> Answer:
    if isinstance(result, grpc.RpcError):
        return Answer(code=result.code(), message=result.details() or "")
    side.revision = max(side.revision, result.header.revision)  # type: ignore[attr-defined]
    return Answer(response=side.normalise(result))


# -- records of a side's watch streams, for comparison --------------------------------------------------


def show_kv(kv: KV | None) -> str:
    return "-" if kv is None else kv.show()


def run_records(side: Side, run: WatcherRun) -> Iterator[str]:
    c = run.created
    yield (
        f"{run.name} created: header={c.header_revision} watch_id={c.watch_id} canceled={c.canceled} "
        f"reason={c.cancel_reason!r}"
    )
    for _, r in run.items:
        if r.watch_id == PROGRESS_ALL:
            continue  # per stream, below
        if r.is_progress:
            yield f"{run.name} progress: header={r.header_revision}"
        for ev in r.events:
            yield (
                f"{run.name} event: header={r.header_revision} {ev.type} {show_kv(side.norm_kv(ev.kv))} "
                f"prev_kv={show_kv(side.norm_kv(ev.prev_kv))}"
            )
        if r.canceled:
            yield (
                f"{run.name} ended: header={r.header_revision} compact_revision={r.compact_revision} "
                f"reason={r.cancel_reason!r}"
            )


def stream_records(side: Side, name: str) -> list[str]:
    log = side.streams[name].snapshot()
    out: list[str] = []
    for run in demux(log)[0]:
        out += run_records(side, run)
    out += [
        f"progress-all: header={r.header_revision}"
        for r in log.responses
        if r.watch_id == PROGRESS_ALL and r.is_progress
    ]
    return out


# -- the sequence ----------------------------------------------------------------------------------------


@dataclass
class Watcher:
    stream: str
    create: WatchCreate
    expect: str  # live, compacted, refused, canceled
    maybe_unsynced: bool  # started at a passed revision and nothing delivered yet: compaction could hit it


@dataclass
class Model:
    base: int = 0
    cur: int = 0
    compacted: int = 0
    watchers: dict[str, Watcher] = field(default_factory=dict)
    progress: dict[str, int] = field(default_factory=dict)  # progress requests per stream
    leases: list[bool] = field(default_factory=list)  # slot -> alive
    keepalives: int = 0
    next_watch_id: int = 50
    next_client_lease: int = 7
    names: int = 0


class Divergence(AssertionError):
    pass


class Sequence:
    """One seed's steps, sent to both sides; after each, both settle and are compared."""

    def __init__(self, ref: Side, other: Side, seed: int, rerun: str) -> None:
        self.ref = ref
        self.other = other
        self.sides = (ref, other)
        self.seed = seed
        self.rerun = rerun
        self.m = Model()
        self.n = 0

    # -- plumbing

    def fail(self, step: Step | None, what: str, detail: str) -> None:
        raise Divergence(
            f"seed {self.seed}, {self.where(step)}: {self.other.label} differs from {self.ref.label} "
            f"in {what}\n{detail}\nrerun: {self.rerun}"
        )

    def unary(
        self,
        step: Step | None,
        method: str,
        make: Callable[[Side], Message],
        before_compare: Callable[[list[Message | grpc.RpcError]], None] | None = None,
    ) -> Answer:
        """The request (made per side) sent to both at once; their answers compared."""
        futures = []
        for side in self.sides:
            stub = side.lease if method.startswith("Lease") else side.kv
            futures.append(getattr(stub, method).future(make(side), timeout=RPC_TIMEOUT))
        results: list[Message | grpc.RpcError] = []
        for f in futures:
            try:
                results.append(f.result())
            except grpc.RpcError as e:
                results.append(e)
        if before_compare is not None:
            before_compare(results)
        want, got = (answer_of(s, r) for s, r in zip(self.sides, results, strict=True))
        if isinstance(step, TimeToLive) and want.ok and got.ok:  # the remaining TTL: time passes
            w, g = want.response, got.response
            if abs(w.TTL - g.TTL) <= 1:  # type: ignore[union-attr]
                g.TTL = w.TTL  # type: ignore[union-attr]
        if want != got:
            diff = difflib.unified_diff(
                want.show().splitlines(),
                got.show().splitlines(),
                self.ref.label,
                self.other.label,
                lineterm="",
            )
            self.fail(step, f"its answer to {method}", "\n".join(diff))
        if want.ok:
            self.m.cur = max(self.m.cur, want.response.header.revision)  # type: ignore[union-attr]
        return want

    def events(self) -> list[Event]:
        """Every event since the sequence's start, as the reference's reference watcher saw them."""
        runs = demux(self.ref.streams["ref"].snapshot())[0]
        return runs[0].events() if runs else []

    def settle(self, side: Side) -> None:
        m = self.m
        for name, s in side.streams.items():
            n_creates = len(s.log.creates)
            s.wait(
                lambda log, n=n_creates: sum(r.created for r in log.responses) >= n,
                SETTLE,
                "created responses",
            )
            want = m.progress.get(name, 0)
            s.wait(
                lambda log, want=want: (
                    sum(r.watch_id == PROGRESS_ALL and r.is_progress for r in log.responses) >= want
                ),
                SETTLE,
                "answers to progress requests",
            )
        cur = side.revision
        if cur > m.base:
            side.streams["ref"].wait(
                lambda log: bool(demux(log)[0]) and demux(log)[0][0].last_event_revision() >= cur,
                SETTLE,
                f"the reference watcher to reach revision {cur}",
            )
        events = self.events()
        for name, w in m.watchers.items():
            stream = side.streams[w.stream]
            if w.expect in ("compacted", "canceled"):
                stream.wait(
                    lambda log, name=name: _run(log, name).ended is not None, SETTLE, f"{name} to end"
                )
            elif w.expect == "live":
                run = _run(stream.snapshot(), name)
                start = effective_start(run)
                target = max(
                    (e.revision for e in events if e.revision >= start and w.create.matches(e)), default=0
                )
                stream.wait(
                    lambda log, name=name, target=target: _run(log, name).last_event_revision() >= target,
                    SETTLE,
                    f"{name} to deliver revision {target}",
                )
        if side.keepalive is not None:
            side.keepalive.wait_count(m.keepalives, SETTLE)

    def where(self, step: Step | None) -> str:
        return f"step #{self.n} {show_step(step)}" if step is not None else "setup"

    def settle_and_compare(self, step: Step | None) -> None:
        try:
            self.settle(self.ref)
        except Exception as e:  # the reference must settle: a fault of the harness or of etcd
            raise AssertionError(
                f"seed {self.seed}, {self.where(step)}: {self.ref.label} (the reference) did not settle: "
                f"{e}\nrerun: {self.rerun}"
            ) from e
        note = ""
        try:
            self.settle(self.other)
        except Exception as e:  # (the comparison shows what is missing)
            note = f"({self.other.label} did not settle: {e})\n"
        for name in self.ref.streams:
            want, got = stream_records(self.ref, name), stream_records(self.other, name)
            if want != got:
                diff = difflib.unified_diff(want, got, self.ref.label, self.other.label, lineterm="", n=3)
                self.fail(step, f"watch stream {name}", note + "\n".join(diff))
        if self.ref.keepalive is not None and self.other.keepalive is not None:
            want_ka = [str(self.ref.normalise(r)) for r in self.ref.keepalive.responses]
            got_ka = [str(self.other.normalise(r)) for r in self.other.keepalive.responses]
            if want_ka != got_ka:
                diff = difflib.unified_diff(want_ka, got_ka, self.ref.label, self.other.label, lineterm="")
                self.fail(step, "keep-alive answers", note + "\n".join(diff))
        if note:
            self.fail(step, "settling", note)
        for w in self.m.watchers.values():
            if w.maybe_unsynced and _run(self.ref.streams[w.stream].snapshot(), w.create.name).events():
                w.maybe_unsynced = False

    # -- running steps

    def do(self, step: Step) -> None:
        self.n += 1
        m = self.m
        if isinstance(step, Put):
            self.unary(
                step,
                "Put",
                lambda s: pb.PutRequest(
                    key=step.key,
                    value=step.other_value
                    if s is self.other and step.other_value is not None
                    else step.value,
                    lease=s.lease_id(step.lease) if step.lease else 0,
                    ignore_lease=step.ignore_lease,
                    prev_kv=step.prev_kv,
                ),
            )
        elif isinstance(step, Delete):
            self.unary(
                step,
                "DeleteRange",
                lambda s: pb.DeleteRangeRequest(key=step.key, range_end=step.range_end, prev_kv=step.prev_kv),
            )
        elif isinstance(step, Txn):
            self.unary(step, "Txn", lambda s: step.request)
        elif isinstance(step, Compact):
            a = self.unary(
                step,
                "Compact",
                lambda s: pb.CompactionRequest(revision=step.revision, physical=step.physical),
            )
            if a.ok:
                m.compacted = step.revision
        elif isinstance(step, Watch):
            for side in self.sides:
                side.streams[step.stream].create(step.create)
            start = step.create.start_revision
            # Refused or not: as the reference answers (the step's expectation is checked by it too).
            ref = self.ref.streams[step.stream]
            ref.wait(
                lambda log: _run(log, step.create.name) is not None, SETTLE, f"{step.create.name} created"
            )
            expect = "refused" if _run(ref.snapshot(), step.create.name).refused else step.expect
            if (expect == "refused") != (step.expect == "refused"):
                raise AssertionError(
                    f"seed {self.seed}, {self.where(step)}: the harness expected {step.expect}, "
                    f"{self.ref.label} answered {expect}\nrerun: {self.rerun}"
                )
            m.watchers[step.create.name] = Watcher(step.stream, step.create, expect, 0 < start <= m.cur)
        elif isinstance(step, Cancel):
            for side in self.sides:
                s = side.streams[step.stream]
                if step.watcher is None:
                    s.send_raw(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=999)))
                else:
                    s.wait(lambda log: _run(log, step.watcher) is not None, SETTLE, "the watcher")
                    s.cancel(_run(s.snapshot(), step.watcher).watch_id)
            if step.watcher is not None:
                m.watchers[step.watcher].expect = "canceled"
        elif isinstance(step, Progress):
            for side in self.sides:
                side.streams[step.stream].request_progress()
            m.progress[step.stream] = m.progress.get(step.stream, 0) + 1
        elif isinstance(step, Grant):
            self.grant(step)
        elif isinstance(step, Revoke):
            a = self.unary(step, "LeaseRevoke", lambda s: pb.LeaseRevokeRequest(ID=s.lease_id(step.lease)))
            if a.ok and step.lease.slot is not None:
                m.leases[step.lease.slot] = False
        elif isinstance(step, TimeToLive):
            self.unary(
                step,
                "LeaseTimeToLive",
                lambda s: pb.LeaseTimeToLiveRequest(ID=s.lease_id(step.lease), keys=step.keys),
            )
        elif isinstance(step, Leases):
            self.unary(step, "LeaseLeases", lambda s: pb.LeaseLeasesRequest())
        elif isinstance(step, Expire):
            for side in self.sides:
                lease_id = side.lease_id(step.lease)
                wait_until(
                    lambda side=side, lease_id=lease_id: (
                        side.lease.LeaseTimeToLive(
                            pb.LeaseTimeToLiveRequest(ID=lease_id), timeout=RPC_TIMEOUT
                        ).TTL
                        == -1
                    ),
                    30,
                    f"{side.label}: lease {lease_id:#x} to expire",
                    interval=0.05,
                )
            m.leases[step.lease.slot or 0] = False
            # Both revisions (the expiry deleted the keys) compared, then watchers settle.
            self.unary(
                step, "Range", lambda s: pb.RangeRequest(key=b"\x00", range_end=b"\x00", count_only=True)
            )
        elif isinstance(step, KeepAlive):
            for side in self.sides:
                assert side.keepalive is not None
                side.keepalive.send(side.lease_id(step.lease))
            m.keepalives += 1
        self.settle_and_compare(step)

    def grant(self, step: Grant) -> None:
        m = self.m

        def register(results: list[Message | grpc.RpcError]) -> None:
            if any(isinstance(r, grpc.RpcError) for r in results):
                return  # (if only one side failed, the comparison reports it)
            for side, r in zip(self.sides, results, strict=True):
                granted = r.ID  # type: ignore[union-attr]
                side.lease_ids.append(granted)
                if step.id is None:
                    side.placeholders[granted] = -(len(side.placeholders) + 1)

        a = self.unary(
            step,
            "LeaseGrant",
            lambda s: pb.LeaseGrantRequest(TTL=step.ttl, ID=s.lease_id(step.id) if step.id else 0),
            register,
        )
        if not a.ok:
            return
        m.leases.append(True)
        if step.revoke_at_once:
            self.do(Revoke(LeaseRef(len(m.leases) - 1)))

    # -- a whole sequence

    def reset(self) -> None:
        """No key, no lease, everything compacted, fresh streams: the same start for every sequence."""
        for side in self.sides:
            side.close_streams()
            for st in side.lease.LeaseLeases(pb.LeaseLeasesRequest(), timeout=RPC_TIMEOUT).leases:
                try:
                    side.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=st.ID), timeout=RPC_TIMEOUT)
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.NOT_FOUND:  # (expired meanwhile)
                        raise
            side.lease_ids.clear()
            side.placeholders.clear()
        self.unary(None, "DeleteRange", lambda s: pb.DeleteRangeRequest(key=b"\x00", range_end=b"\x00"))
        cur = self.m.cur
        self.unary(None, "Compact", lambda s: pb.CompactionRequest(revision=cur))
        self.m = Model(base=cur, cur=cur, compacted=cur)
        for side in self.sides:
            side.revision = cur
            side.open()
            side.streams["ref"].create(
                WatchCreate("ref", b"\x00", b"\x00", start_revision=cur + 1, prev_kv=True)
            )
        self.settle_and_compare(None)

    def run(self, script: Callable[[int], list[Step]] | None = None) -> None:
        """A script (steps made from the base revision), or the seed's random steps."""
        answer = self.unary(
            None, "Range", lambda s: pb.RangeRequest(key=b"\x00", range_end=b"\x00", count_only=True)
        )
        self.m.cur = answer.response.header.revision  # type: ignore[union-attr]
        try:
            self.reset()
            if script is not None:
                for step in script(self.m.base):
                    self.do(step)
                return
            rng = random.Random(self.seed)
            gen = Gen(rng, self)
            for _ in range(rng.randint(15, 30)):
                self.do(gen.step())
        finally:
            for side in self.sides:
                side.close_streams()

    def live_watch_ids(self, stream: str) -> list[int]:
        log = self.ref.streams[stream].snapshot()
        return [r.watch_id for r in demux(log)[0] if not r.refused and r.ended is None and r.watch_id]


def _run(log: Any, name: str | None) -> Any:
    for run in demux(log)[0]:
        if run.name == name:
            return run
    return None


# -- the random steps -------------------------------------------------------------------------------------


class Gen:
    def __init__(self, rng: random.Random, seq: Sequence) -> None:
        self.rng = rng
        self.seq = seq

    @property
    def m(self) -> Model:
        return self.seq.m

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, weighted: dict[str, float]) -> str:
        return self.rng.choices(list(weighted), weights=list(weighted.values()))[0]

    def live_leases(self) -> list[int]:
        return [i for i, alive in enumerate(self.m.leases) if alive]

    def lease_ref(self, live: float, revoked: float) -> LeaseRef:
        """A live lease, a revoked one, or an unknown one."""
        alive = self.live_leases()
        gone = [i for i, a in enumerate(self.m.leases) if not a]
        r = self.rng.random()
        if r < live and alive:
            return LeaseRef(self.rng.choice(alive))
        if r < live + revoked and gone:
            return LeaseRef(self.rng.choice(gone))
        return LeaseRef(raw=UNKNOWN_LEASE)

    def step(self) -> Step:
        weights = {
            "put": 6, "delete": 2, "txn": 2, "compact": 1, "watch": 4, "cancel": 1.5, "progress": 1,
            "grant": 2, "revoke": 1, "ttl": 1.5, "leases": 0.5, "keepalive": 1,
        }  # fmt: skip
        kind = self.pick(weights)
        step = getattr(self, kind)()
        return step if step is not None else self.put()

    def put(self) -> Step:
        rng = self.rng
        key = rng.choice(KEYS)
        value = b"v%d" % rng.randint(0, 99)
        r = rng.random()
        if r < 0.3 and self.live_leases():
            return Put(key, value, LeaseRef(rng.choice(self.live_leases())), prev_kv=self.chance(0.5))
        if r < 0.36:
            return Put(key, value, self.lease_ref(0.0, 0.5))  # a revoked or unknown lease
        if r < 0.44:
            return Put(key, b"", ignore_lease=True, prev_kv=True)  # keeps its lease; fails on a missing key
        return Put(key, value, prev_kv=self.chance(0.4))

    def delete(self) -> Step:
        key = self.rng.choice(KEYS)
        end = prefix_end(key) if self.chance(0.3) else b""
        return Delete(key, end, prev_kv=self.chance(0.6))

    def txn(self) -> Step | None:
        rng = self.rng
        k1, k2, k3 = rng.sample(KEYS, 3)
        put1 = pb.PutRequest(key=k1, value=b"t%d" % rng.randint(0, 9))
        t = pb.TxnRequest(
            compare=[pb.Compare(key=k3, target=pb.Compare.VERSION, result=pb.Compare.GREATER, version=0)],
            success=[
                pb.RequestOp(request_put=put1),
                pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=k2)),
            ],
            failure=[pb.RequestOp(request_put=pb.PutRequest(key=k3, value=b"f"))],
        )
        return Txn(t)  # (without leases: a txn is the same request on both sides)

    def compact(self) -> Step | None:
        m = self.m
        limit = min(
            [
                m.cur,
                *(
                    w.create.start_revision
                    for w in m.watchers.values()
                    if w.maybe_unsynced and w.expect == "live"
                ),
            ]
        )
        if limit <= m.compacted:
            return None
        return Compact(self.rng.randint(m.compacted + 1, limit), physical=self.chance(0.5))

    def watch(self) -> Step:
        rng, m = self.rng, self.m
        m.names += 1
        name = f"w{m.names}"
        stream = rng.choice(STREAMS)
        kind = rng.choice(["key", "prefix", "range", "all"])
        if kind == "key":
            key, end = rng.choice(KEYS), b""
        elif kind == "prefix":
            key = rng.choice([b"a", b"a1", b"b"])
            end = prefix_end(key)
        elif kind == "range":
            key, end = sorted(rng.sample(KEYS, 2))
        else:
            key, end = b"\x00", b"\x00"
        expect = "live"
        start_kind = self.pick({"now": 4, "old": 4, "at-compacted": 1, "compacted": 1.5, "future": 1})
        first_ok = max(m.base + 1, m.compacted)
        if start_kind == "old" and m.cur >= first_ok:
            start = rng.randint(first_ok, m.cur)
        elif start_kind == "at-compacted" and m.compacted > m.base:
            start = m.compacted
        elif start_kind == "compacted" and m.compacted > m.base:
            start = rng.randint(m.base, m.compacted - 1)
            expect = "compacted"
        elif start_kind == "future":
            start = m.cur + rng.randint(1, 3)
        else:
            start = 0
        if start == m.compacted and any(e.revision == start and e.type == DELETE for e in self.seq.events()):
            start = (
                m.compacted + 1
            )  # etcd 3.4.23 loses a tombstone at the compacted revision (fixed in 3.4.33)
        watch_id = 0
        r = rng.random()
        live_ids = self.seq.live_watch_ids(stream)
        if r < 0.1:
            watch_id = m.next_watch_id
            m.next_watch_id += 1
        elif r < 0.17 and live_ids:
            watch_id = rng.choice(live_ids)
            expect = "refused"  # mvcc: duplicate watch ID provided on the WatchStream
        elif r < 0.2:
            key, end = b"b", b"a"
            expect = "refused"  # mvcc: watcher range is empty
        filters = rng.choice([frozenset(), frozenset(), frozenset({NOPUT}), frozenset({NODELETE})])
        create = WatchCreate(
            name, key, end, start_revision=start, prev_kv=self.chance(0.5), filters=filters,
            progress_notify=self.chance(0.2), watch_id=watch_id,
        )  # fmt: skip
        return Watch(stream, create, expect)

    def cancel(self) -> Step | None:
        live = sorted(n for n, w in self.m.watchers.items() if w.expect == "live")
        if self.chance(0.15) or not live:
            return Cancel(self.rng.choice(STREAMS), None)
        name = self.rng.choice(live)
        return Cancel(self.m.watchers[name].stream, name)

    def progress(self) -> Step:
        return Progress(self.rng.choice(["ref", *STREAMS]))

    def grant(self) -> Step:
        rng = self.rng
        ttl = rng.choice([1, 0, -3, MIN_LEASE_TTL, 30, 60, 3600, MAX_LEASE_TTL, MAX_LEASE_TTL + 1])
        r = rng.random()
        lease_id: LeaseRef | None = None
        if r < 0.2:
            lease_id = LeaseRef(raw=self.m.next_client_lease)
            self.m.next_client_lease += 1
        elif r < 0.3 and self.m.leases:
            lease_id = LeaseRef(
                rng.randrange(len(self.m.leases))
            )  # etcdserver: lease already exists, if alive
        return Grant(ttl, lease_id, revoke_at_once=ttl <= MIN_LEASE_TTL)

    def revoke(self) -> Step:
        return Revoke(self.lease_ref(0.7, 0.15))

    def ttl(self) -> Step:
        return TimeToLive(self.lease_ref(0.7, 0.15), keys=self.chance(0.6))

    def leases(self) -> Step:
        return Leases()

    def keepalive(self) -> Step:
        return KeepAlive(self.lease_ref(0.7, 0.15))


# -- tests ---------------------------------------------------------------------------------------------------


@pytest.fixture(
    scope="module",
    params=[
        "synod",
        "etcd",
    ],
)
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Side, Side]]:
    """(the reference etcd, the other side): synod, or a second etcd (the harness's own check)."""
    kind: str = request.param
    root: Path = tmp_path_factory.mktemp(f"watch-lease-{kind}")
    servers = [ServerProcess("etcd", root / "etcd"), ServerProcess(kind, root / "other")]
    sides: list[Side] = []
    try:
        for s in servers:
            s.start()
        sides = [Side(servers[0], "etcd"), Side(servers[1], kind if kind == "synod" else "etcd#2")]
        yield sides[0], sides[1]
    finally:
        for side in sides:
            side.close()
        for s in servers:
            s.kill()


def sequence(pair: tuple[Side, Side], seed: int, test: str) -> Sequence:
    return Sequence(pair[0], pair[1], seed, f"pytest {THIS} -k '{test} and {pair[1].server.kind}'")


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed-{s:04d}")
def test_sequence(pair: tuple[Side, Side], seed: int) -> None:
    sequence(pair, seed, f"seed-{seed:04d}").run()


@pytest.mark.slow
def test_many_sequences(pair: tuple[Side, Side]) -> None:
    """Seeds 1000-1299, or those of SYNOD_DIFF_SEEDS (e.g. "1234" or "1000-1099")."""
    spec = os.environ.get("SYNOD_DIFF_SEEDS", "")
    first, _, last = spec.partition("-")
    seeds = range(int(first), int(last or first) + 1) if spec else SLOW_SEEDS
    for seed in seeds:
        s = sequence(pair, seed, "many")
        s.rerun = f"SYNOD_DIFF_SEEDS={seed} pytest {THIS} --run-slow -k 'many and {pair[1].server.kind}'"
        s.run()


def test_watch_requests(pair: tuple[Side, Side]) -> None:
    """Each kind of watch request once, whatever the seeds draw."""
    w = WatchCreate

    def script(base: int) -> list[Step]:
        return [
            Put(b"a", b"1"), Put(b"a1", b"2"), Put(b"b", b"3"), Delete(b"a1"), Put(b"a", b"4"),  # base+1..5
            Watch("s0", w("from-now", b"a", b"b", prev_kv=True), "live"),
            Watch("s0", w("from-old", b"\x00", b"\x00", start_revision=base + 2, prev_kv=True), "live"),
            Compact(base + 3, physical=True),
            Watch("s1", w("below-compacted", b"a", start_revision=base + 2), "compacted"),
            Watch("s1", w("at-compacted", b"\x00", b"\x00", start_revision=base + 3, prev_kv=True), "live"),
            Watch("s1", w("future", b"a", start_revision=base + 8, prev_kv=True), "live"),
            Watch("s1", w("client-id", b"b", watch_id=77, filters=frozenset({NOPUT})), "live"),
            Watch("s1", w("duplicate-id", b"c", watch_id=77), "refused"),
            Watch("s1", w("empty-range", b"b", b"a"), "refused"),
            Cancel("s1", None),  # an unknown id: no answer
            Progress("s0"),
            Put(b"a", b"5"), Delete(b"a", b"b"), Put(b"a", b"6"), Put(b"a", b"7"), Delete(b"b"),  # ..base+10
            Cancel("s0", "from-now"),
            Progress("s1"),
            Put(b"a2", b"8"),
        ]  # fmt: skip

    seq = sequence(pair, -1, "test_watch_requests")
    seq.run(script)


def test_lease_requests(pair: tuple[Side, Side]) -> None:
    """Each kind of lease request once, whatever the seeds draw."""
    L = LeaseRef

    def script(base: int) -> list[Step]:
        return [
            Watch("s0", WatchCreate("leased", b"a", b"c", prev_kv=True), "live"),
            Watch("s1", WatchCreate("deletes-only", b"\x00", b"\x00", filters=frozenset({NOPUT})), "live"),
            Grant(60),  # lease#0: the server chooses the ID
            Grant(30, L(raw=4242)),  # lease#1: the client does
            Grant(30, L(raw=4242)),  # etcdserver: lease already exists
            Grant(1, revoke_at_once=True),  # below the minimum: TTL 2 (lease#2)
            Grant(0, revoke_at_once=True),  # lease#3
            Grant(-5, revoke_at_once=True),  # lease#4
            Grant(MAX_LEASE_TTL),  # lease#5
            Grant(MAX_LEASE_TTL + 1),  # etcdserver: too large lease TTL
            Put(b"a", b"1", L(0)), Put(b"b", b"2", L(0)), Put(b"c", b"3", L(1)),
            Put(b"c", b"", ignore_lease=True, prev_kv=True),  # keeps lease#1
            Put(b"zz", b"", ignore_lease=True),  # etcdserver: key not found
            Put(b"d", b"4", L(raw=UNKNOWN_LEASE)),  # etcdserver: requested lease not found
            TimeToLive(L(0), keys=True), TimeToLive(L(1), keys=False), TimeToLive(L(5), keys=True),
            TimeToLive(L(raw=UNKNOWN_LEASE), keys=True),  # TTL -1
            Leases(),
            KeepAlive(L(0)), KeepAlive(L(raw=UNKNOWN_LEASE)), KeepAlive(L(1)),
            Revoke(L(0)),  # a and b deleted in one revision
            Revoke(L(0)),  # etcdserver: requested lease not found
            Revoke(L(raw=UNKNOWN_LEASE)),
            TimeToLive(L(0), keys=True), KeepAlive(L(0)), Leases(),
            Put(b"e", b"5", L(0)),  # a revoked lease
        ]  # fmt: skip

    sequence(pair, -2, "test_lease_requests").run(script)


def test_lease_expiry(pair: tuple[Side, Side]) -> None:
    """A lease of the minimum TTL expires on both: its keys deleted in one revision, watchers see it."""
    L = LeaseRef

    def script(base: int) -> list[Step]:
        return [
            Watch("s0", WatchCreate("leased", b"k", b"l", prev_kv=True), "live"),
            Grant(1),  # TTL 2
            Put(b"k1", b"1", L(0)),
            Put(b"k2", b"2", L(0)),
            Put(b"k3", b"3"),
            TimeToLive(L(0), keys=True),
            Expire(L(0)),
            TimeToLive(L(0), keys=True),
            Leases(),
        ]

    sequence(pair, -3, "test_lease_expiry").run(script)


def test_harness_sees_a_difference(pair: tuple[Side, Side]) -> None:
    """The comparison is not vacuous: a value that differs only in watch events is caught."""

    def script(base: int) -> list[Step]:
        return [
            Watch("s0", WatchCreate("w", b"a", prev_kv=True), "live"),
            Put(b"a", b"1"),
            Put(b"a", b"2", other_value=b"3"),  # the answers are alike (no prev_kv); the events are not
        ]

    with pytest.raises(Divergence, match="in watch stream ref") as e:
        sequence(pair, -4, "test_harness_sees_a_difference").run(script)
    assert "value=b'3'" in str(e.value)
