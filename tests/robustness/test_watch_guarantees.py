"""etcd's watch guarantees under concurrent writers, checked by tests/support/watch_history.py.

Each round (one seed) has writers (threads with their own seeded generators)
that put, delete and run txns over a few keys, and a controller that watches
them over raw gRPC: watchers on the whole keyspace, on prefixes, ranges and
single keys, from the round's first revision, from now and from revisions
already passed (they start unsynced and catch up while writes go on), with
prev_kv and NOPUT/NODELETE filters, several on one stream; at seeded moments
it cancels a watcher and resumes it at last_seen+1 on a new stream, closes a
whole stream and resumes its watchers, and sends WatchProgressRequests. The
writers never get more than ``SLACK`` writes ahead of the controller's next
step, so the steps land among the writes (condition waits, no sleeps). At the
end every watcher must catch up with the last revision that concerns it, and
each stream must answer a WatchProgressRequest at the last revision.
Then the recorded history is validated.

The interleaving is up to the threads; what a round does is a function of its
seed. A failure prints the seed, the violations and how to rerun that seed
(``SYNOD_WATCH_SEED=...``), and leaves the history in a file for reading.

Against etcd 3.4.23 the answers to WatchProgressRequest are not held to the
bookmark guarantee: etcd before 3.4.25 sent them ahead of events still queued
(etcd commit 90e4d04c8); synod is held to it.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.servers import ServerProcess
from tests.support.watch_history import (
    NODELETE,
    NOPUT,
    PROGRESS_ALL,
    History,
    StreamLog,
    WatchCreate,
    WatcherRun,
    WatchStream,
    Write,
    build_timeline,
    changes_of,
    demux,
    effective_start,
    format_violations,
    kv_from_pb,
    possible_changes,
    show_run,
    validate,
)

THIS = "tests/robustness/test_watch_guarantees.py"
KEYS = [b"a", b"a1", b"a2", b"b", b"b1", b"c", b"d"]
RANGES = [(b"a", b"b"), (b"a1", b"b1"), (b"b", b"c"), (b"a2", b"\x00"), (b"\x00", b"\x00")]
SLACK = 25  # writes the writers may run ahead of the controller's next step
WAIT = 15.0  # seconds for any one condition
# Whether a server's answers to WatchProgressRequest are bookmarks (see the module docstring).
REQUESTED_PROGRESS_IS_BOOKMARK = {"synod": True, "etcd": False}


@dataclass(frozen=True)
class Config:
    writers: int
    ops: int  # per writer
    steps: int  # controller steps during the writes


FAST = Config(writers=3, ops=70, steps=10)
SLOW = Config(writers=4, ops=500, steps=40)


def prefix_end(key: bytes) -> bytes:
    return key[:-1] + bytes([key[-1] + 1])


# -- writers -----------------------------------------------------------------------------------


class Writers:
    """Threads that write until done, recording every write; paced by the controller."""

    def __init__(self, channel: grpc.Channel, seed: int, cfg: Config, start_revision: int) -> None:
        self.cfg = cfg
        self.writes: list[Write] = []
        self.acked = 0
        self.max_revision = start_revision
        self.released = SLACK  # writers go on while acked < released
        self.stopped = False
        self.cond = threading.Condition()
        self.failure: str | None = None
        stub = rpc_pb2_grpc.KVStub(channel)
        self._threads = [
            threading.Thread(
                target=self._run, args=(stub, random.Random(f"{seed}/w{i}"), f"w{i}"), daemon=True
            )
            for i in range(cfg.writers)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def join(self) -> None:
        self.release_all()
        for t in self._threads:
            t.join(timeout=60)
        if self.failure:
            raise AssertionError(self.failure)

    def release(self, upto: int) -> None:
        with self.cond:
            self.released = max(self.released, upto)
            self.cond.notify_all()

    def release_all(self) -> None:
        self.release(1 << 60)

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def wait_acked(self, n: int) -> None:
        """Until n writes are acknowledged (or every writer is done)."""
        with self.cond:
            ok = self.cond.wait_for(lambda: self.acked >= n or self.failure or not self.alive(), WAIT)
        assert ok, f"writers stuck below {n} acknowledged writes"

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def known_revision(self) -> int:
        with self.cond:
            return self.max_revision

    def _run(self, stub: rpc_pb2_grpc.KVStub, rng: random.Random, client: str) -> None:
        try:
            for n in range(self.cfg.ops):
                with self.cond:
                    if not self.cond.wait_for(lambda: self.acked < self.released or self.stopped, WAIT):
                        self.failure = f"{client}: the controller never released the writers"
                        return
                    if self.stopped:
                        return
                method, request = self._request(rng, f"{client}:{n}".encode())
                what = f"#{n} {method}"
                try:
                    response = getattr(stub, method)(request, timeout=10)
                except grpc.RpcError as e:
                    with self.cond:
                        self.writes.append(
                            Write(client, possible_changes(request), None, f"{what} ({e.code()})")
                        )
                    continue
                changes = changes_of(request, response)
                with self.cond:
                    self.writes.append(Write(client, changes, response.header.revision, what))
                    self.acked += 1
                    self.max_revision = max(self.max_revision, response.header.revision)
                    self.cond.notify_all()
        except Exception as e:  # a bug in the test: report it, don't hang the controller
            with self.cond:
                self.failure = f"{client}: {e!r}"
                self.cond.notify_all()
            raise
        finally:
            with self.cond:
                self.cond.notify_all()

    @staticmethod
    def _request(rng: random.Random, value: bytes) -> tuple[str, Message]:
        kind = rng.choices(["put", "delete", "range-delete", "txn"], [5, 2, 1, 3])[0]
        if kind == "put":
            return "Put", pb.PutRequest(key=rng.choice(KEYS), value=value, prev_kv=rng.random() < 0.3)
        if kind == "delete":
            return "DeleteRange", pb.DeleteRangeRequest(key=rng.choice(KEYS), prev_kv=rng.random() < 0.5)
        if kind == "range-delete":
            key = rng.choice([b"a", b"b", b"a1"])
            return "DeleteRange", pb.DeleteRangeRequest(key=key, range_end=prefix_end(key), prev_kv=True)
        pool = rng.sample(KEYS, len(KEYS))

        def ops(n: int, tag: bytes) -> list[pb.RequestOp]:
            out = []
            for _ in range(n):
                if not pool:
                    break
                key = pool.pop()
                r = rng.random()
                if r < 0.6:
                    out.append(pb.RequestOp(request_put=pb.PutRequest(key=key, value=value + tag)))
                elif r < 0.85:
                    out.append(
                        pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key, prev_kv=True))
                    )
                else:
                    inner = pb.PutRequest(key=key, value=value + tag + b"/nested")
                    out.append(
                        pb.RequestOp(request_txn=pb.TxnRequest(success=[pb.RequestOp(request_put=inner)]))
                    )
                if rng.random() < 0.2:
                    out.append(pb.RequestOp(request_range=pb.RangeRequest(key=key)))
            return out

        compare = pb.Compare(
            key=rng.choice(KEYS),
            target=pb.Compare.VERSION,
            result=rng.choice([pb.Compare.EQUAL, pb.Compare.GREATER, pb.Compare.LESS]),
            version=rng.randint(0, 2),
        )
        return "Txn", pb.TxnRequest(
            compare=[compare], success=ops(rng.randint(1, 3), b"/s"), failure=ops(rng.randint(0, 2), b"/f")
        )


# -- the controller ----------------------------------------------------------------------------------


class Round:
    """One seed's writers and watchers against one server; ``run()`` returns the recorded history."""

    def __init__(self, server: ServerProcess, seed: int, cfg: Config) -> None:
        self.server = server
        self.seed = seed
        self.cfg = cfg
        self.rng = random.Random(f"{seed}/controller")
        self.channel = grpc.insecure_channel(server.endpoint)
        self.streams: list[WatchStream] = []
        self.open: list[WatchStream] = []
        self.live: dict[str, WatchStream] = {}  # watcher name -> its stream, while active
        self.counter = 0
        self.r0 = 0
        self.stats = {"resumed": 0, "closed-streams": 0, "progress-requests": 0, "old-start": 0}

    def close(self) -> None:
        for s in self.open:
            s.close()
        self.channel.close()

    # streams and watchers

    def new_stream(self) -> WatchStream:
        s = WatchStream(self.channel, f"s{len(self.streams)}")
        self.streams.append(s)
        self.open.append(s)
        return s

    def name(self, base: str) -> str:
        self.counter += 1
        return f"{base}#{self.counter}"

    def watch(self, stream: WatchStream, create: WatchCreate) -> None:
        stream.create(create)
        self.live[create.name] = stream
        n = len(stream.log.creates)
        stream.wait(lambda log: sum(r.created for r in log.responses) >= n, WAIT, f"{create.name} created")
        run = self.run_of(create.name)
        assert not run.refused, f"{create.name} refused: {run.created.cancel_reason}"

    def run_of(self, name: str) -> WatcherRun:
        for run in self.live[name].runs():
            if run.name == name:
                return run
        raise KeyError(name)

    def random_create(self, base: str, start: int, known: int) -> WatchCreate:
        rng = self.rng
        kind = rng.choice(["key", "range", "range", "prefix"])
        if kind == "key":
            key, end = rng.choice(KEYS), b""
        elif kind == "prefix":
            key = rng.choice([b"a", b"b", b"a1"])
            end = prefix_end(key)
        else:
            key, end = rng.choice(RANGES)
        filters = rng.choice([frozenset(), frozenset(), frozenset({NOPUT}), frozenset({NODELETE})])
        return WatchCreate(
            self.name(base),
            key,
            end,
            start_revision=start,
            prev_kv=rng.random() < 0.5,
            filters=filters,
            progress_notify=rng.random() < 0.3,
            known_revision=known,
        )

    def resume(self, old: str, stream: WatchStream) -> None:
        run = self.run_of(old)
        events = run.events()
        start = max(e.revision for e in events) + 1 if events else effective_start(run)
        c = run.create
        new = WatchCreate(
            self.name(old.split("#")[0]),
            c.key,
            c.range_end,
            start_revision=start,
            prev_kv=c.prev_kv,
            filters=c.filters,
            progress_notify=c.progress_notify,
            resumes=old,
        )
        del self.live[old]
        self.watch(stream, new)
        self.stats["resumed"] += 1

    # the round

    def run(self) -> History:
        kv = rpc_pb2_grpc.KVStub(self.channel)
        now = kv.Range(pb.RangeRequest(key=b"\x00", range_end=b"\x00"), timeout=10)
        r0 = self.r0 = now.header.revision
        s0, s1 = self.new_stream(), self.new_stream()
        everything = WatchCreate(
            "all", b"\x00", b"\x00", start_revision=r0 + 1, prev_kv=True, known_revision=r0
        )
        self.watch(s0, everything)
        self.watch(
            s0, WatchCreate("a-nodelete", b"a", b"b", filters=frozenset({NODELETE}), known_revision=r0)
        )
        self.watch(s1, WatchCreate("b", b"b", prev_kv=True, progress_notify=True, known_revision=r0))
        self.watch(
            s1, WatchCreate("range-noput", b"a1", b"b1", start_revision=r0 + 1, filters=frozenset({NOPUT}))
        )

        writers = Writers(self.channel, self.seed, self.cfg, r0)
        total = self.cfg.writers * self.cfg.ops
        at = sorted(self.rng.sample(range(1, total), self.cfg.steps))
        writers.release(at[0] + SLACK)
        writers.start()
        try:
            for i, n in enumerate(at):
                writers.wait_acked(n)
                self.step(writers)
                writers.release((at[i + 1] if i + 1 < len(at) else total) + SLACK)
        finally:
            writers.join()
        self.finish(writers)
        return History(r0, tuple(kv_from_pb(k) for k in now.kvs), writers.writes, self.logs())

    def step(self, writers: Writers) -> None:
        rng = self.rng
        action = rng.choices(["old", "now", "progress", "cancel-resume", "close-resume"], [4, 2, 3, 3, 1])[0]
        others = [s for s in self.open if s is not self.streams[0]]
        if action in ("old", "now"):
            known = writers.known_revision()
            start = rng.randint(max(1, known - 40), known) if action == "old" else 0
            if action == "old":
                start = max(start, self.r0 + 1)  # within the round's history
                self.stats["old-start"] += 1
            stream = rng.choice(self.open) if rng.random() < 0.7 else self.new_stream()
            self.watch(stream, self.random_create(action, start, known))
        elif action == "progress":
            rng.choice(self.open).request_progress()
            self.stats["progress-requests"] += 1
        elif action == "cancel-resume":
            names = [n for n in self.live if n != "all"]
            if not names:
                return
            name = rng.choice(sorted(names))
            stream = self.live[name]
            wid = self.run_of(name).watch_id
            seen = len(stream.snapshot().responses)
            stream.cancel(wid)
            stream.wait(
                lambda log: any(r.canceled and r.watch_id == wid for r in log.responses[seen:]),
                WAIT,
                f"{name} canceled",
            )
            self.resume(name, rng.choice([*others, self.new_stream()]))
        elif action == "close-resume" and others:
            stream = rng.choice(others)
            names = sorted(n for n, s in self.live.items() if s is stream)
            stream.close()
            self.open.remove(stream)
            self.stats["closed-streams"] += 1
            target = self.new_stream()
            for name in names:
                self.resume(name, target)

    def finish(self, writers: Writers) -> None:
        """Every watcher catches up with the last revision that concerns it; each stream then
        answers a WatchProgressRequest at the last revision."""
        timeline, _ = build_timeline(History(self.r0, (), writers.writes), {})
        final = writers.known_revision()
        for name, stream in sorted(self.live.items()):
            run = self.run_of(name)
            target = timeline.last_matching_revision(run.create, effective_start(run))

            def caught_up(log: StreamLog, name: str = name, target: int = target) -> bool:
                return self.run_of(name).last_event_revision() >= target

            stream.wait(caught_up, WAIT, f"{name} to deliver revision {target}")
        for stream in self.open:
            seen = len(stream.snapshot().responses)
            stream.request_progress()
            stream.wait(
                lambda log, seen=seen: any(
                    r.watch_id == PROGRESS_ALL and r.is_progress and r.header_revision >= final
                    for r in log.responses[seen:]
                ),
                WAIT,
                f"a progress notification at revision {final}",
            )

    def logs(self) -> list[StreamLog]:
        return [s.snapshot() for s in self.streams]


def run_round(server: ServerProcess, seed: int, cfg: Config, tmp: Path, test: str) -> dict[str, int]:
    rnd = Round(server, seed, cfg)
    again = f"rerun: SYNOD_WATCH_SEED={seed} pytest {THIS} --run-slow -k '{test} and {server.kind}'"
    try:
        history = rnd.run()
    except Exception as e:
        raise AssertionError(f"seed {seed} on {server.kind}: {e}\n{again}") from e
    finally:
        rnd.close()
    violations = validate(history, requested_progress_is_bookmark=REQUESTED_PROGRESS_IS_BOOKMARK[server.kind])
    if violations:
        dump = tmp / f"watch-history-seed{seed}.txt"
        dump.write_text("\n".join(describe(history)))
        pytest.fail(
            f"seed {seed}: {len(violations)} violations of etcd's watch guarantees on {server.kind}:\n"
            f"{format_violations(violations)}\nhistory: {dump}\n{again}",
            pytrace=False,
        )
    events = sum(len(r.events) for s in history.streams for r in s.responses)
    return {**rnd.stats, "events": events, "writes": len(history.writes), "streams": len(history.streams)}


def describe(history: History) -> Iterator[str]:
    yield f"initial revision {history.initial_revision}, kvs {history.initial_kvs}"
    for w in sorted(history.writes, key=lambda w: w.revision or 0):
        yield f"write {w.revision} {w.client} {w.what}: {w.changes}"
    for s in history.streams:
        for run in demux(s)[0]:
            yield from show_run(run)


def seeds(default: range) -> range:
    spec = os.environ.get("SYNOD_WATCH_SEED", "")
    if not spec:
        return default
    first, _, last = spec.partition("-")
    return range(int(first), int(last or first) + 1)


# -- tests -----------------------------------------------------------------------------------------


def test_watch_guarantees(any_server: ServerProcess, tmp_path: Path) -> None:
    """Three seeded rounds (seeds 1-3, or SYNOD_WATCH_SEED's), a second or two in all."""
    totals: dict[str, int] = {}
    for seed in seeds(range(1, 4)):
        for k, v in run_round(any_server, seed, FAST, tmp_path, "test_watch_guarantees[").items():
            totals[k] = totals.get(k, 0) + v
    # The rounds did what they are for.
    if not os.environ.get("SYNOD_WATCH_SEED"):
        assert totals["events"] > 800 and totals["resumed"] >= 3 and totals["old-start"] >= 3, totals


@pytest.mark.slow
def test_watch_guarantees_long(any_server: ServerProcess, tmp_path: Path) -> None:
    """Seeds 100-119 with bigger rounds, or those of SYNOD_WATCH_SEED ("7" or "100-150")."""
    for seed in seeds(range(100, 120)):
        run_round(any_server, seed, SLOW, tmp_path, "long")


@pytest.mark.parametrize(
    "kind",
    ["synod", "etcd"],
)
def test_periodic_progress_notifications(kind: str, start_server: Callable[..., ServerProcess]) -> None:
    """progress_notify watchers get notifications (100 ms interval) that are bookmarks, amid writes.

    Writers write all the time over keys a..d. A quiet watcher (its key never written) gets a
    notification at every tick; a busy one none (a tick after events is skipped); a rare one's
    key is written after every second notification of the quiet watcher, so it gets events
    and notifications in turn. All validated, strictly for the watchers' own notifications.
    """
    server = start_server(kind, "--experimental-watch-progress-notify-interval", "100ms")
    channel = grpc.insecure_channel(server.endpoint)
    s: WatchStream | None = None
    try:
        kv = rpc_pb2_grpc.KVStub(channel)
        r0 = kv.Range(pb.RangeRequest(key=b"\x00", range_end=b"\x00"), timeout=10).header.revision
        s = WatchStream(channel, "s0")
        creates = [
            WatchCreate("quiet", b"zz-never", progress_notify=True, known_revision=r0),
            WatchCreate("rare", b"r", prev_kv=True, progress_notify=True, known_revision=r0),
            WatchCreate("busy", b"a", b"b", start_revision=r0 + 1, progress_notify=True, prev_kv=True),
            WatchCreate("all", b"\x00", b"\x00", start_revision=r0 + 1, progress_notify=True),
        ]
        for c in creates:
            s.create(c)
        s.wait(lambda log: sum(r.created for r in log.responses) == len(creates), WAIT, "created")
        writers = Writers(channel, 7, Config(writers=2, ops=100_000, steps=0), r0)
        writers.release_all()
        writers.start()

        def notifications(name: str) -> Callable[[StreamLog], int]:
            def count(log: StreamLog) -> int:
                run = next(r for r in demux(log)[0] if r.name == name)
                return sum(1 for _, r in run.items if r.is_progress)

            return count

        quiet = notifications("quiet")

        def rare_events(log: StreamLog) -> int:
            return len(next(r for r in demux(log)[0] if r.name == "rare").events())

        try:
            for tick in range(1, 9):
                s.wait(lambda log, t=tick: quiet(log) >= t, WAIT, f"notification {tick} of the quiet watcher")
                if tick % 2 == 0:
                    put = pb.PutRequest(key=b"r", value=b"tick%d" % tick)
                    resp = kv.Put(put, timeout=10)
                    with writers.cond:
                        writers.writes.append(Write("main", changes_of(put, resp), resp.header.revision, "r"))
            s.wait(lambda log: rare_events(log) >= 4, WAIT, "the rare watcher's fourth event")
        finally:
            writers.stop()
            writers.join()
        s.close()
        log = s.snapshot()
        history = History(r0, (), writers.writes, [log])
        violations = validate(history, requested_progress_is_bookmark=REQUESTED_PROGRESS_IS_BOOKMARK[kind])
        assert not violations, format_violations(violations)
        rare = next(r for r in demux(log)[0] if r.name == "rare")
        assert len(rare.events()) == 4 and notifications("rare")(log) >= 1, list(show_run(rare))
        assert len(writers.writes) > 100, "the writers hardly wrote"
    finally:
        if s is not None:
            s.close()
        channel.close()
