"""Watch histories and the validator of etcd's watch guarantees; a recording watch stream over raw gRPC.

A ``History`` holds what concurrent clients did and saw: every write that
was acknowledged (its response revision and the keys it changed), the writes
whose outcome is unknown (their possible changes), and, per watch stream,
every create request in the order sent and every response in the order
received. ``validate`` checks it against etcd's documented watch guarantees
(Documentation/learning/api_guarantees.md, "Watch APIs") and returns the
violations, each naming its check (``CHECKS``), its watcher and what exactly
went wrong. Nothing in here knows which server produced the history.

The truth a watcher is held to is built from the writes: an acknowledged
write with changes is the complete set of events at its revision, in
sub-revision order (its ops in order; the keys of a range delete in key
order). A revision no acknowledged write explains is taken from the events
watchers saw at it, which must all be explained by one write of unknown
outcome; the keys such a write may have touched become uncertain (only their
key, type, value, mod revision and lease are checked from then on).

Response semantics assumed (etcd 3.4's v3rpc): a stream answers create
requests in order, each with one ``created`` response (``canceled`` too if
the create was refused); a response without events that is neither created
nor canceled is a progress notification, for its watcher, or with
``watch_id == -1`` (the answer to a WatchProgressRequest) for every watcher
then active on the stream; a canceled response with ``compact_revision``
ends a watcher whose next revision was compacted; ``fragment`` responses are
joined with the responses that follow them.

A watcher's required interval starts at its start revision; for a watch from
now, after its created response's header revision (or at its first event, if
earlier but after ``known_revision``: newer etcds take that header after
registering the watcher). Watchers must start after the history's initial
revision. Two behaviours of etcd itself are tolerated by option (see
``validate``): answers to WatchProgressRequest that overtake queued events
(etcd < 3.4.25), and a missing prev_kv on events that arrive after their
watcher's cancel was sent (etcd to this day).

The recording client (``WatchStream``) and the converters from protobuf
messages are at the end of the module.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.api.mvccpb import kv_pb2

PUT = "PUT"
DELETE = "DELETE"
NOPUT = "NOPUT"
NODELETE = "NODELETE"
PROGRESS_ALL = -1  # the watch_id of a response to a WatchProgressRequest (etcd's InvalidWatchID)

# Every check validate() makes. tests/unit/test_watch_history.py shows each one catching a violation.
CHECKS = {
    "history": "the writes are inconsistent (two at one revision; a revision nothing explains)",
    "protocol": "created/canceled bookkeeping: responses for watchers not active, ids not honoured",
    "ordered": "event revisions strictly increase per watcher; a revision's events in sub-revision order",
    "unique": "no event (revision, key) delivered twice to a watcher",
    "atomic": "a revision's events all delivered, all in one response",
    "reliable": "no revision skipped between a watcher's start and the last event it got",
    "content": "each event equals what the writes did (kv fields, type); in range; not before the start",
    "prev_kv": "prev_kv is the key's previous kv when asked for (none for a creation), absent otherwise",
    "filter": "NOPUT/NODELETE events never delivered",
    "bookmarkable": "a progress notification at R comes after every event <= R and before none",
    "header": "header revisions never decrease per watcher and are >= the events in their response",
    "resumable": "a watcher resumed at last_seen+1 continues its predecessor with no gap or duplicate",
    "compaction": "a watcher is canceled as compacted only if its next revision was compacted",
}


# -- the history -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KV:
    key: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""
    lease: int = 0

    def show(self) -> str:
        return (
            f"{{key={self.key!r} value={self.value!r} create={self.create_revision} "
            f"mod={self.mod_revision} version={self.version} lease={self.lease}}}"
        )


@dataclass(frozen=True)
class Event:
    type: str  # PUT or DELETE
    kv: KV
    prev_kv: KV | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision

    @property
    def key(self) -> bytes:
        return self.kv.key

    def show(self) -> str:
        prev = "" if self.prev_kv is None else f" prev_kv={self.prev_kv.show()}"
        return f"{self.type} {self.kv.show()}{prev}"


@dataclass(frozen=True)
class Change:
    """A key a write changed, as its client knows it from the request and the response.

    For writes of unknown outcome, the possible changes; there a DELETE may name a
    range (``range_end`` as in a DeleteRangeRequest).
    """

    type: str
    key: bytes
    value: bytes = b""
    lease: int = 0
    range_end: bytes = b""

    def could_be(self, ev: Event) -> bool:
        if self.type != ev.type:
            return False
        if ev.type == PUT:
            return ev.key == self.key and ev.kv.value == self.value and ev.kv.lease == self.lease
        return in_range(ev.key, self.key, self.range_end, empty_key_is_zero=False)


@dataclass(frozen=True)
class Write:
    client: str
    changes: tuple[Change, ...]  # in sub-revision order; empty: the write changed nothing
    revision: int | None  # the response's header revision; None: outcome unknown
    what: str = ""  # for messages


@dataclass(frozen=True)
class WatchCreate:
    name: str  # unique in a history
    key: bytes
    range_end: bytes = b""
    start_revision: int = 0
    prev_kv: bool = False
    filters: frozenset[str] = frozenset()
    progress_notify: bool = False
    watch_id: int = 0  # client-chosen id, 0: the server chooses
    resumes: str | None = None  # the name of the watcher this one continues
    known_revision: int = 0  # the highest revision acknowledged to any client before this was sent

    def matches(self, ev: Event) -> bool:
        """Whether the watcher is to deliver the event (its range and filters)."""
        if (ev.type == PUT and NOPUT in self.filters) or (ev.type == DELETE and NODELETE in self.filters):
            return False
        return in_range(ev.key, self.key, self.range_end)

    def whole_keyspace(self) -> bool:
        return self.key in (b"", b"\x00") and self.range_end == b"\x00" and not self.filters


@dataclass(frozen=True)
class WatchResponse:
    watch_id: int
    header_revision: int
    events: tuple[Event, ...] = ()
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    fragment: bool = False

    @property
    def is_progress(self) -> bool:
        return not (self.events or self.created or self.canceled or self.compact_revision or self.fragment)

    def show(self) -> str:
        flags = [f for f in ("created", "canceled", "fragment") if getattr(self, f)]
        if self.compact_revision:
            flags.append(f"compact_revision={self.compact_revision}")
        if self.cancel_reason:
            flags.append(f"cancel_reason={self.cancel_reason!r}")
        if self.is_progress:
            flags.append("progress")
        evs = "".join(f"\n      {e.show()}" for e in self.events)
        return f"watch_id={self.watch_id} header={self.header_revision} {' '.join(flags)}{evs}"


@dataclass
class StreamLog:
    name: str
    creates: list[WatchCreate] = field(default_factory=list)  # in the order sent
    # (watch id, responses received before the cancel request was sent), in order
    cancels: list[tuple[int, int]] = field(default_factory=list)
    progress_requests: int = 0
    responses: list[WatchResponse] = field(default_factory=list)  # in the order received


@dataclass
class History:
    initial_revision: int  # the store's revision when the history starts
    initial_kvs: tuple[KV, ...]  # every key alive at initial_revision
    writes: list[Write] = field(default_factory=list)
    streams: list[StreamLog] = field(default_factory=list)
    compactions: list[int] = field(default_factory=list)  # revisions compacted during the history


@dataclass(frozen=True)
class Violation:
    check: str
    watcher: str
    message: str

    def __str__(self) -> str:
        who = f" {self.watcher}" if self.watcher else ""
        return f"[{self.check}]{who}: {self.message}"


def in_range(key: bytes, start: bytes, end: bytes, *, empty_key_is_zero: bool = True) -> bool:
    """Whether key is in a watch (or delete) range: end b"" is the key alone, b"\\0" every key >= start."""
    if empty_key_is_zero and start == b"":
        start = b"\x00"  # etcd watches key \0 for an empty key
    if end == b"":
        return key == start
    if end == b"\x00":
        return key >= start
    return start <= key < end


# -- demultiplexing a stream into its watchers --------------------------------------------------


@dataclass
class WatcherRun:
    """One watcher: its create request and the responses it got, in order."""

    stream: str
    create: WatchCreate
    created: WatchResponse
    # (position in the stream's responses, response): events, progress notifications (also
    # the stream-wide ones), and the final cancel if any. Fragments are already joined.
    items: list[tuple[int, WatchResponse]] = field(default_factory=list)
    ended: WatchResponse | None = None
    created_at: int = 0  # the created response's position in the stream
    cancel_sent_at: int | None = None  # responses received before its cancel request was sent

    @property
    def name(self) -> str:
        return self.create.name

    @property
    def watch_id(self) -> int:
        return self.created.watch_id

    @property
    def refused(self) -> bool:
        return self.created.canceled

    def events(self) -> list[Event]:
        return [ev for _, r in self.items for ev in r.events]

    def last_event_revision(self) -> int:
        evs = self.events()
        return max(e.revision for e in evs) if evs else 0


def demux(stream: StreamLog) -> tuple[list[WatcherRun], list[Violation]]:
    """Split a stream's responses among its watchers; violations of the stream protocol on the way."""
    runs: list[WatcherRun] = []
    out: list[Violation] = []
    active: dict[int, WatcherRun] = {}
    pending_creates = iter(stream.creates)
    cancels_left: dict[int, int] = {}
    for wid, _ in stream.cancels:
        cancels_left[wid] = cancels_left.get(wid, 0) + 1
    fragments: dict[int, list[Event]] = {}
    for pos, resp in enumerate(stream.responses):
        where = f"stream {stream.name} response #{pos} ({resp.show()})"
        if resp.created:
            create = next(pending_creates, None)
            if create is None:
                out.append(Violation("protocol", "", f"{where}: more created responses than create requests"))
                continue
            run = WatcherRun(stream.name, create, resp, created_at=pos)
            runs.append(run)
            if resp.events or resp.compact_revision:
                out.append(Violation("protocol", create.name, f"{where}: a created response with events"))
            if resp.canceled:
                continue  # refused; it is never active
            if create.watch_id and resp.watch_id != create.watch_id:
                out.append(
                    Violation(
                        "protocol", create.name, f"{where}: asked for watch_id {create.watch_id}, got another"
                    )
                )
            if resp.watch_id in active:
                out.append(
                    Violation(
                        "protocol",
                        create.name,
                        f"{where}: watch_id {resp.watch_id} is already {active[resp.watch_id].name}'s",
                    )
                )
            active[resp.watch_id] = run
            continue
        if resp.watch_id == PROGRESS_ALL and resp.is_progress:
            for run in active.values():
                run.items.append((pos, resp))
            continue
        run_or_none = active.get(resp.watch_id)
        if run_or_none is None:
            out.append(Violation("protocol", "", f"{where}: no watcher with this id is active"))
            continue
        run = run_or_none
        if resp.fragment:
            fragments.setdefault(resp.watch_id, []).extend(resp.events)
            continue
        if resp.watch_id in fragments:
            resp = replace(resp, events=(*fragments.pop(resp.watch_id), *resp.events))
        run.items.append((pos, resp))
        if resp.compact_revision and not resp.canceled:
            out.append(Violation("protocol", run.name, f"{where}: compact_revision on a live watcher"))
        if resp.canceled:
            run.ended = resp
            del active[resp.watch_id]
            if not resp.compact_revision:
                if cancels_left.get(resp.watch_id, 0) > 0:
                    cancels_left[resp.watch_id] -= 1
                else:
                    out.append(Violation("protocol", run.name, f"{where}: canceled though nobody asked"))
    for run in runs:
        run.cancel_sent_at = next(
            (at for wid, at in stream.cancels if wid == run.watch_id and at > run.created_at), None
        )
    return runs, out


# -- the truth: what happened at each revision ---------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """An event as the writes say it happened. ``certain``: its kv and prev kv are fully known."""

    event: Event
    certain: bool
    prev: KV | None  # the key's kv just before (meaningful when certain)


@dataclass
class Timeline:
    initial_revision: int
    revisions: dict[int, list[Expected]] = field(default_factory=dict)  # known (maybe partly) revisions
    complete: set[int] = field(default_factory=set)  # revisions whose every event is known
    last_revision: int = 0
    unexplained_writes: int = 0  # writes of unknown outcome no revision was matched to

    def expected(self, rev: int, create: WatchCreate) -> list[Expected]:
        return [x for x in self.revisions.get(rev, ()) if create.matches(x.event)]

    def last_matching_revision(self, create: WatchCreate, start: int) -> int:
        """The last revision >= start with an event the watcher is to deliver (0 if none)."""
        for rev in sorted(self.revisions, reverse=True):
            if rev < start:
                break
            if self.expected(rev, create):
                return rev
        return 0


def build_timeline(
    history: History, observed: dict[int, list[tuple[str, Event]]]
) -> tuple[Timeline, list[Violation]]:
    out: list[Violation] = []
    tl = Timeline(history.initial_revision)
    acked: dict[int, Write] = {}
    unknown: list[Write] = []
    universe: set[bytes] = {kv.key for kv in history.initial_kvs}
    for w in history.writes:
        universe.update(c.key for c in w.changes if not c.range_end)
        if w.revision is None:
            if w.changes:
                unknown.append(w)
            continue
        if not w.changes:
            continue  # a read, a failed compare with no writes, a delete of nothing
        if w.revision <= history.initial_revision:
            out.append(
                Violation(
                    "history",
                    "",
                    f"{w.client} {w.what}: acknowledged at revision {w.revision}, "
                    f"not after the history's start {history.initial_revision}",
                )
            )
            continue
        if w.revision in acked:
            other = acked[w.revision]
            out.append(
                Violation(
                    "history",
                    "",
                    f"two writes acknowledged at revision {w.revision}: {other.client} {other.what} "
                    f"and {w.client} {w.what}",
                )
            )
            continue
        acked[w.revision] = w
    for evs in observed.values():
        universe.update(ev.key for _, ev in evs)
    last = max([*acked, *observed, history.initial_revision])
    tl.last_revision = last

    # First pass: the revisions no acknowledged write explains but watchers saw, each matched to
    # one write of unknown outcome (the first that could have done all that was seen).
    seen_at: dict[int, list[tuple[str, Event]]] = {}  # revision -> (first watcher, event) per key
    matched: dict[int, int] = {}  # revision -> index into unknown
    used: set[int] = set()
    for rev in sorted(observed):
        if rev in acked or rev <= history.initial_revision:
            continue
        by_key: dict[bytes, tuple[str, Event]] = {}
        for who, ev in observed[rev]:
            if ev.key not in by_key:
                by_key[ev.key] = (who, ev)
                continue
            first_who, first = by_key[ev.key]
            if (first.type, first.kv) != (ev.type, ev.kv):
                out.append(
                    Violation(
                        "content",
                        who,
                        f"revision {rev} (no acknowledged write): {ev.show()}, "
                        f"but {first_who} got {first.show()} for the same key",
                    )
                )
        seen_at[rev] = list(by_key.values())
        candidates = [
            i
            for i, w in enumerate(unknown)
            if i not in used and all(any(c.could_be(ev) for c in w.changes) for _, ev in seen_at[rev])
        ]
        if not candidates:
            shown = "; ".join(f"{who} got {ev.show()}" for who, ev in seen_at[rev])
            out.append(Violation("content", "", f"revision {rev}: events no write can explain: {shown}"))
            continue
        matched[rev] = candidates[0]
        used.add(candidates[0])
    left = [w for i, w in enumerate(unknown) if i not in used]

    # Second pass: replay every revision in order.
    state: dict[bytes, KV] = {kv.key: kv for kv in history.initial_kvs}
    uncertain: set[bytes] = set()

    def possibly_touched(w: Write) -> set[bytes]:
        return {
            k for k in universe for c in w.changes if in_range(k, c.key, c.range_end, empty_key_is_zero=False)
        }

    for rev in range(history.initial_revision + 1, last + 1):
        if rev in acked:
            known: list[Expected] = []
            for c in acked[rev].changes:
                prev = state.get(c.key)
                certain = c.key not in uncertain
                if c.type == PUT:
                    kv = KV(
                        c.key,
                        create_revision=prev.create_revision if prev else rev,
                        mod_revision=rev,
                        version=prev.version + 1 if prev else 1,
                        value=c.value,
                        lease=c.lease,
                    )
                    state[c.key] = kv
                else:
                    kv = KV(c.key, mod_revision=rev)
                    state.pop(c.key, None)
                    uncertain.discard(c.key)  # it is gone, for sure
                known.append(Expected(Event(c.type, kv), certain, prev))
            tl.revisions[rev] = known
            tl.complete.add(rev)
        elif rev in matched:
            # Partly known: what watchers saw. Other keys the write may have changed: uncertain.
            uncertain.update(possibly_touched(unknown[matched[rev]]))
            seen_events: list[Expected] = []
            for _, ev in seen_at[rev]:
                seen_events.append(Expected(Event(ev.type, ev.kv), False, None))
                if ev.type == PUT:
                    state[ev.key] = ev.kv
                    uncertain.add(ev.key)
                else:
                    state.pop(ev.key, None)
            tl.revisions[rev] = seen_events
        elif rev not in seen_at:
            # Nobody saw this revision: one of the unmatched writes of unknown outcome, any of them.
            if not left:
                out.append(
                    Violation(
                        "history",
                        "",
                        f"revision {rev}: no acknowledged write and no write of unknown outcome explains it",
                    )
                )
            for w in left:
                uncertain.update(possibly_touched(w))
    tl.unexplained_writes = len(unknown) - len(used)
    return tl, out


# -- the checks ------------------------------------------------------------------------------------


def validate(
    history: History, *, requested_progress_is_bookmark: bool = True, prev_kv_race_on_cancel: bool = True
) -> list[Violation]:
    """Every violation of etcd's watch guarantees in the history.

    ``requested_progress_is_bookmark=False`` does not hold answers to WatchProgressRequest
    (watch_id -1) to the bookmark and header checks: etcd before 3.4.25 sent them ahead of
    events still queued for the stream (fixed by etcd commit 90e4d04c8).

    ``prev_kv_race_on_cancel`` (the default) lets an event that arrives after its watcher's
    cancel request was sent lack its prev_kv: etcd (3.4 to this day) forgets the watcher's
    prev_kv option when it handles the cancel, before it sends the events already queued.
    A wrong prev_kv is still a violation.
    """
    out: list[Violation] = []
    runs: list[WatcherRun] = []
    for stream in history.streams:
        r, v = demux(stream)
        runs += r
        out += v
    observed: dict[int, list[tuple[str, Event]]] = {}
    for run in runs:
        for ev in run.events():
            observed.setdefault(ev.revision, []).append((run.name, ev))
    tl, v = build_timeline(history, observed)
    out += v
    by_name = {run.name: run for run in runs}
    for run in runs:
        if not run.refused:
            out += _check_run(run, tl, history, requested_progress_is_bookmark, prev_kv_race_on_cancel)
    for run in runs:
        if run.create.resumes is not None:
            out += _check_resume(run, by_name, tl, requested_progress_is_bookmark)
    return out


def effective_start(run: WatcherRun) -> int:
    """The first revision the watcher must deliver: its start revision, or for a watch from now,
    the revision after its created response's header (or its first event, if earlier)."""
    if run.create.start_revision > 0:
        return run.create.start_revision
    start = run.created.header_revision + 1
    evs = run.events()
    if evs:
        first = min(e.revision for e in evs)
        if run.create.known_revision < first < start:
            start = first
    return start


def _trusted_progress(run: WatcherRun, trust_requested: bool) -> list[tuple[int, int]]:
    """(item index, revision) of the progress notifications the watcher may rely on."""
    return [
        (i, r.header_revision)
        for i, (_, r) in enumerate(run.items)
        if r.is_progress and (r.watch_id != PROGRESS_ALL or trust_requested)
    ]


def _check_run(
    run: WatcherRun, tl: Timeline, history: History, trust_requested: bool, prev_kv_race: bool
) -> list[Violation]:
    out: list[Violation] = []
    name = run.name
    c = run.create

    def bad(check: str, message: str) -> None:
        out.append(Violation(check, name, message))

    start = effective_start(run)
    # (item index, event) in delivery order
    delivered = [(i, ev) for i, (_, r) in enumerate(run.items) for ev in r.events]
    cancel_at = run.cancel_sent_at if prev_kv_race and run.cancel_sent_at is not None else 1 << 62
    after_cancel = {id(ev) for _, r in run.items if _ >= cancel_at for ev in r.events}

    # content, filter, range, before-start, prev_kv
    for _, ev in delivered:
        rev = ev.revision
        if rev < start:
            if c.start_revision > 0:
                bad("content", f"{ev.show()} is before the start revision {start}")
            else:
                bad(
                    "content",
                    f"watch from now got {ev.show()}, acknowledged before the watch was requested "
                    f"(revision {c.known_revision} was)",
                )
        if (ev.type == PUT and NOPUT in c.filters) or (ev.type == DELETE and NODELETE in c.filters):
            bad("filter", f"{ev.show()} delivered despite filter {sorted(c.filters)}")
        if not in_range(ev.key, c.key, c.range_end):
            bad("content", f"{ev.show()} is outside the range [{c.key!r}, {c.range_end!r})")
        truth = {x.event.key: x for x in tl.revisions.get(rev, ())}
        exp = truth.get(ev.key)
        if exp is None:
            if rev in tl.complete or rev <= history.initial_revision:
                bad("content", f"{ev.show()}: no write changed {ev.key!r} at revision {rev}")
            continue
        want = exp.event
        if exp.certain:
            same = (ev.type, ev.kv) == (want.type, want.kv)
        else:
            same = (ev.type, ev.key, ev.revision) == (want.type, want.key, want.revision) and (
                ev.type == DELETE or (ev.kv.value, ev.kv.lease) == (want.kv.value, want.kv.lease)
            )
        if not same:
            bad("content", f"got {ev.show()} at revision {rev}, the writes say {want.show()}")
        if not exp.certain:
            continue
        if not c.prev_kv:
            if ev.prev_kv is not None:
                bad("prev_kv", f"{ev.show()}: prev_kv without asking for it")
        elif exp.prev is None:
            if ev.prev_kv is not None:
                bad("prev_kv", f"{ev.show()}: the key did not exist before, yet a prev_kv")
        elif ev.prev_kv is None and id(ev) in after_cancel:
            pass  # etcd's race: the cancel handled before the queued event was sent
        elif ev.prev_kv != exp.prev:
            got = "none" if ev.prev_kv is None else ev.prev_kv.show()
            bad("prev_kv", f"{ev.show()}: prev_kv {got}, the key was {exp.prev.show()}")

    # unique
    seen: set[tuple[int, bytes]] = set()
    for _, ev in delivered:
        if (ev.revision, ev.key) in seen:
            bad("unique", f"{ev.show()} delivered twice")
        seen.add((ev.revision, ev.key))

    # ordered, atomic (one response per revision); duplicates are the unique check's
    last_rev, last_item = 0, -1
    firsts: set[tuple[int, bytes]] = set()
    for i, ev in delivered:
        if (ev.revision, ev.key) in firsts:
            continue
        firsts.add((ev.revision, ev.key))
        if ev.revision < last_rev:
            bad("ordered", f"{ev.show()} after an event of revision {last_rev}")
        elif ev.revision == last_rev and i != last_item:
            bad("atomic", f"revision {ev.revision} split over two responses (at {ev.show()})")
        if ev.revision >= last_rev:
            last_rev, last_item = ev.revision, i
    by_rev: dict[int, list[bytes]] = {}
    for _, ev in delivered:
        by_rev.setdefault(ev.revision, []).append(ev.key)
    for rev, keys in by_rev.items():
        want_order = [x.event.key for x in tl.expected(rev, c) if x.event.key in keys]
        got_order = [k for k in keys if k in want_order]
        if len(set(got_order)) == len(got_order) and got_order != want_order:
            bad("ordered", f"revision {rev}: keys in order {got_order}, the writes' order is {want_order}")

    # reliable: every revision from the start to the last event delivered, whole
    last = max(by_rev, default=0)
    for rev in range(start, last + 1):
        want_keys = {x.event.key for x in tl.expected(rev, c)}
        got_keys = set(by_rev.get(rev, ()))
        if want_keys and not got_keys:
            bad(
                "reliable",
                f"revision {rev} (keys {sorted(want_keys)}) skipped: it is between the start {start} "
                f"and revision {last}, which was delivered",
            )
        elif want_keys - got_keys:
            bad(
                "atomic",
                f"revision {rev} delivered in part: got {sorted(got_keys)}, "
                f"missing {sorted(want_keys - got_keys)}",
            )
        elif not want_keys and not got_keys and c.whole_keyspace() and rev not in tl.revisions:
            bad("reliable", f"revision {rev} has no event at all, though the watcher saw revision {last}")

    # bookmarkable
    for idx, prog in _trusted_progress(run, trust_requested):
        before = {(ev.revision, ev.key) for i, ev in delivered if i < idx}
        missing = [
            x.event
            for rev in range(start, prog + 1)
            for x in tl.expected(rev, c)
            if (x.event.revision, x.event.key) not in before
        ]
        if missing:
            bad(
                "bookmarkable",
                f"progress notification at revision {prog} came before "
                + ", ".join(f"{e.type} {e.key!r}@{e.revision}" for e in missing),
            )
        late = [ev for i, ev in delivered if i > idx and ev.revision <= prog]
        if late:
            bad(
                "bookmarkable",
                f"{late[0].show()} came after a progress notification at revision {prog}",
            )
        if prog > tl.last_revision and not tl.unexplained_writes:
            bad(
                "bookmarkable",
                f"progress notification at revision {prog}, beyond the last {tl.last_revision}",
            )

    # header
    prev_header, prev_what = run.created.header_revision, "the created response"
    for _, r in run.items:
        if r.compact_revision:
            continue  # etcd answers a compacted watcher with header revision 0
        if r.watch_id == PROGRESS_ALL and not trust_requested:
            continue
        what = "a progress notification" if r.is_progress else "a response"
        if r.header_revision < prev_header:
            bad(
                "header", f"{what} with header revision {r.header_revision} after {prev_what}'s {prev_header}"
            )
        if r.events and r.header_revision < max(e.revision for e in r.events):
            bad("header", f"a response with header revision {r.header_revision} carries later events")
        prev_header, prev_what = r.header_revision, what

    # compaction
    ended = run.ended
    if ended is not None and ended.compact_revision:
        comp = ended.compact_revision
        needed = last + 1 if by_rev else start
        if needed >= comp:
            bad(
                "compaction",
                f"canceled as compacted at {comp}, but its next revision {needed} was not compacted",
            )
        if not history.compactions or comp > max(history.compactions):
            bad(
                "compaction",
                f"canceled as compacted at {comp}; the compactions were {history.compactions or 'none'}",
            )
    return out


def coverage(run: WatcherRun, trust_requested: bool = True) -> int:
    """The revision through which the watcher is known to have everything: its last event or bookmark."""
    prog = [rev for _, rev in _trusted_progress(run, trust_requested)]
    return max([run.last_event_revision(), *prog, effective_start(run) - 1])


def _check_resume(
    run: WatcherRun, by_name: dict[str, WatcherRun], tl: Timeline, trust_requested: bool
) -> list[Violation]:
    out: list[Violation] = []
    prev = by_name.get(run.create.resumes or "")
    if prev is None:
        return [
            Violation("resumable", run.name, f"resumes {run.create.resumes!r}, which is not in the history")
        ]
    start = run.create.start_revision
    last_event = prev.last_event_revision()
    covered = coverage(prev, trust_requested)
    if start <= last_event:
        out.append(
            Violation(
                "resumable",
                run.name,
                f"resumed at {start}, but {prev.name} had delivered revision {last_event}: duplicates",
            )
        )
    else:
        lost = [x.event for rev in range(covered + 1, start) for x in tl.expected(rev, run.create)]
        if lost:
            out.append(
                Violation(
                    "resumable",
                    run.name,
                    f"resumed at {start}, but {prev.name} was known complete only through {covered}: "
                    + ", ".join(f"{e.type} {e.key!r}@{e.revision}" for e in lost)
                    + " lost",
                )
            )
    # The chain as one watcher: no event twice; the resumed watch's first event is the first
    # event at or after its start (etcd's definition of resumable).
    mine = {(e.revision, e.key) for e in run.events()}
    for e in prev.events():
        if (e.revision, e.key) in mine:
            out.append(Violation("resumable", run.name, f"{e.show()} delivered again after the resume"))
    evs = run.events()
    if evs:
        first = min(e.revision for e in evs)
        want = next((rev for rev in range(start, first + 1) if tl.expected(rev, run.create)), None)
        if want is not None and want != first:
            shown = ", ".join(f"{x.event.type} {x.event.key!r}" for x in tl.expected(want, run.create))
            out.append(
                Violation(
                    "resumable",
                    run.name,
                    f"resumed at {start}: the first event is at {first}, but revision {want} ({shown}) "
                    "came first",
                )
            )
    return out


# -- building a history from protobuf messages -------------------------------------------------------


def kv_from_pb(kv: kv_pb2.KeyValue) -> KV:
    return KV(kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.value, kv.lease)


def event_from_pb(ev: kv_pb2.Event) -> Event:
    return Event(
        PUT if ev.type == kv_pb2.Event.PUT else DELETE,
        kv_from_pb(ev.kv),
        kv_from_pb(ev.prev_kv) if ev.HasField("prev_kv") else None,
    )


def response_from_pb(r: pb.WatchResponse) -> WatchResponse:
    return WatchResponse(
        watch_id=r.watch_id,
        header_revision=r.header.revision,
        events=tuple(event_from_pb(e) for e in r.events),
        created=r.created,
        canceled=r.canceled,
        compact_revision=r.compact_revision,
        cancel_reason=r.cancel_reason,
        fragment=r.fragment,
    )


def create_request(c: WatchCreate) -> pb.WatchRequest:
    filters = [
        pb.WatchCreateRequest.NOPUT if f == NOPUT else pb.WatchCreateRequest.NODELETE for f in c.filters
    ]
    return pb.WatchRequest(
        create_request=pb.WatchCreateRequest(
            key=c.key,
            range_end=c.range_end,
            start_revision=c.start_revision,
            progress_notify=c.progress_notify,
            filters=sorted(filters),
            prev_kv=c.prev_kv,
            watch_id=c.watch_id,
        )
    )


def changes_of(request: object, response: object) -> tuple[Change, ...]:
    """What an acknowledged Put, DeleteRange or Txn changed, in sub-revision order.

    Deletes of ranges must have asked for prev_kv (the response names the deleted keys);
    puts must not use ignore_value/ignore_lease.
    """
    if isinstance(request, pb.PutRequest):
        if request.ignore_value or request.ignore_lease:
            raise ValueError("a put with ignore_value/ignore_lease: its value is not known")
        return (Change(PUT, request.key, request.value, request.lease),)
    if isinstance(request, pb.DeleteRangeRequest):
        assert isinstance(response, pb.DeleteRangeResponse)
        if response.deleted == 0:
            return ()
        if request.prev_kv:
            return tuple(Change(DELETE, kv.key) for kv in response.prev_kvs)
        if request.range_end == b"":
            return (Change(DELETE, request.key),)
        raise ValueError("a range delete without prev_kv: which keys it deleted is not known")
    if isinstance(request, pb.TxnRequest):
        assert isinstance(response, pb.TxnResponse)
        ops = request.success if response.succeeded else request.failure
        out: list[Change] = []
        for op, op_resp in zip(ops, response.responses, strict=True):
            which = op.WhichOneof("request")
            if which == "request_put":
                out += changes_of(op.request_put, op_resp.response_put)
            elif which == "request_delete_range":
                out += changes_of(op.request_delete_range, op_resp.response_delete_range)
            elif which == "request_txn":
                out += changes_of(op.request_txn, op_resp.response_txn)
        return tuple(out)
    raise TypeError(f"not a write: {type(request).__name__}")


def possible_changes(request: object) -> tuple[Change, ...]:
    """Everything a write of unknown outcome may have changed (both branches of a txn)."""
    if isinstance(request, pb.PutRequest):
        return (Change(PUT, request.key, request.value, request.lease),)
    if isinstance(request, pb.DeleteRangeRequest):
        return (Change(DELETE, request.key, range_end=request.range_end),)
    if isinstance(request, pb.TxnRequest):
        out: list[Change] = []
        for op in (*request.success, *request.failure):
            which = op.WhichOneof("request")
            if which is not None and which != "request_range":
                out += possible_changes(getattr(op, which))
        return tuple(out)
    raise TypeError(f"not a write: {type(request).__name__}")


# -- a recording watch stream ----------------------------------------------------------------------


class StreamFailed(Exception):
    pass


class WatchStream:
    """One Watch RPC over raw gRPC; every request and response recorded in ``log``.

    A thread reads the responses. ``wait`` blocks on a condition over the log (with a
    deadline) and fails at once if the stream fails (e.g. UNIMPLEMENTED).
    """

    def __init__(self, channel: grpc.Channel, name: str) -> None:
        self.log = StreamLog(name)
        self.name = name
        self.error: str | None = None
        self.done = False
        self._closing = False
        self._cond = threading.Condition()
        self._requests: queue.SimpleQueue[pb.WatchRequest | None] = queue.SimpleQueue()
        self._call = rpc_pb2_grpc.WatchStub(channel).Watch(iter(self._requests.get, None))
        self._thread = threading.Thread(target=self._read, name=f"watch-{name}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for resp in self._call:
                with self._cond:
                    self.log.responses.append(response_from_pb(resp))
                    self._cond.notify_all()
        except grpc.RpcError as e:
            with self._cond:
                if not self._closing:
                    self.error = f"{e.code()}: {e.details()}"
        finally:
            with self._cond:
                self.done = True
                self._cond.notify_all()

    def create(self, create: WatchCreate) -> None:
        with self._cond:
            self.log.creates.append(create)
        self._requests.put(create_request(create))

    def cancel(self, watch_id: int) -> None:
        with self._cond:
            self.log.cancels.append((watch_id, len(self.log.responses)))
        self._requests.put(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=watch_id)))

    def request_progress(self) -> None:
        with self._cond:
            self.log.progress_requests += 1
        self._requests.put(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    def send_raw(self, request: pb.WatchRequest) -> None:
        """A request the log does not model (it must get no response)."""
        self._requests.put(request)

    def wait(self, predicate: Callable[[StreamLog], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.log):
                if self.error is not None:
                    raise StreamFailed(f"watch stream {self.name} failed ({self.error}) waiting for {what}")
                if self.done:
                    raise StreamFailed(f"watch stream {self.name} ended waiting for {what}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"watch stream {self.name}: timed out after {timeout}s waiting for {what}"
                    )
                self._cond.wait(remaining)

    def runs(self) -> list[WatcherRun]:
        with self._cond:
            return demux(self.snapshot())[0]

    def snapshot(self) -> StreamLog:
        with self._cond:
            return StreamLog(
                self.name,
                list(self.log.creates),
                list(self.log.cancels),
                self.log.progress_requests,
                list(self.log.responses),
            )

    def close(self) -> None:
        """End the RPC (as a client that goes away does); the log is kept."""
        with self._cond:
            self._closing = True
        self._requests.put(None)
        self._call.cancel()
        self._thread.join(timeout=10)


def run_named(streams: Iterable[WatchStream], name: str) -> WatcherRun | None:
    for s in streams:
        for run in s.runs():
            if run.name == name:
                return run
    return None


def show_run(run: WatcherRun) -> Iterator[str]:
    yield f"{run.name} on {run.stream}: {run.create}"
    yield f"  {run.created.show()}"
    for pos, r in run.items:
        yield f"  #{pos} {r.show()}"


def format_violations(violations: Sequence[Violation], limit: int = 30) -> str:
    lines = [str(v) for v in violations[:limit]]
    if len(violations) > limit:
        lines.append(f"... and {len(violations) - limit} more")
    return "\n".join(lines)
