"""The watch-history validator (tests/support/watch_history.py) on hand-made histories.

``clean()`` is a small history that breaks no guarantee: three streams, seven
watchers (a whole-keyspace watcher with prev_kv, a filtered watcher from now,
a range watcher, a cancel-and-resume pair, a future start, a compacted start,
a refused duplicate id), acknowledged writes, a write of unknown outcome that
watchers saw, and a write that changed nothing. Every other test breaks it in
one way and asserts that the check for that guarantee reports it; together
they cover every check in ``CHECKS`` (``test_every_check_is_exercised``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.mvccpb import kv_pb2
from tests.support.watch_history import (
    CHECKS,
    DELETE,
    KV,
    NODELETE,
    NOPUT,
    PUT,
    Change,
    Event,
    History,
    StreamLog,
    WatchCreate,
    WatchResponse,
    Write,
    changes_of,
    demux,
    format_violations,
    in_range,
    possible_changes,
    validate,
)

# The keys' kvs through the history (initial revision 2: only b exists).
B0 = KV(b"b", 2, 2, 1, b"b0")
A3 = KV(b"a", 3, 3, 1, b"a1")
A4 = KV(b"a", 3, 4, 2, b"a2")
C4 = KV(b"c", 4, 4, 1, b"c1")
A5_GONE = KV(b"a", mod_revision=5)
B6 = KV(b"b", 2, 6, 2, b"b1")
C7 = KV(b"c", 4, 7, 2, b"c2")


def resp(wid: int, header: int, *events: Event, **kw: object) -> WatchResponse:
    return WatchResponse(wid, header, tuple(events), **kw)  # type: ignore[arg-type]


def put(kv: KV, prev: KV | None = None) -> Event:
    return Event(PUT, kv, prev)


def delete(kv: KV, prev: KV | None = None) -> Event:
    return Event(DELETE, kv, prev)


def clean() -> History:
    writes = [
        Write("w1", (Change(PUT, b"a", b"a1"),), 3, "put a"),
        Write("w2", (Change(PUT, b"a", b"a2"), Change(PUT, b"c", b"c1")), 4, "txn put a, c"),
        Write("w1", (Change(DELETE, b"a"),), 5, "delete a"),
        Write("w2", (Change(PUT, b"b", b"b1"),), 6, "put b"),
        Write("w1", (), 6, "delete of a missing key"),
        Write("w3", (Change(PUT, b"c", b"c2"),), None, "put c, timed out"),  # happened: revision 7
    ]
    everything = WatchCreate("all", b"\x00", b"\x00", start_revision=3, prev_kv=True)
    a_nodelete = WatchCreate("a-nodelete", b"a", filters=frozenset({NODELETE}), known_revision=2)
    refused = WatchCreate("refused", b"x", watch_id=1)
    s1 = StreamLog(
        "s1",
        creates=[everything, a_nodelete, refused],
        progress_requests=1,
        responses=[
            resp(0, 2, created=True),
            resp(1, 2, created=True),
            resp(-1, 2, created=True, canceled=True, cancel_reason="mvcc: duplicate watch ID"),
            resp(0, 3, put(A3)),
            resp(1, 3, put(A3)),
            resp(0, 4, put(A4, A3), put(C4)),
            resp(1, 4, put(A4)),
            resp(-1, 4),  # the answer to a WatchProgressRequest: for both watchers
            resp(0, 5, delete(A5_GONE, A4)),
            resp(0, 6, put(B6, B0)),
            resp(1, 6),  # a-nodelete's own progress notification
            resp(0, 7, put(C7, C4)),
        ],
    )
    s2 = StreamLog(
        "s2",
        creates=[
            WatchCreate("b-range", b"b", b"c", start_revision=3),
            WatchCreate("c1", b"c", start_revision=3),
            WatchCreate("future", b"b", start_revision=10),
            WatchCreate("compacted", b"a", start_revision=2),
        ],
        cancels=[(1, 4)],  # sent once responses #0-#3 had arrived
        responses=[
            resp(0, 2, created=True),
            resp(1, 2, created=True),
            resp(2, 2, created=True),
            resp(1, 4, put(C4)),
            resp(1, 5, canceled=True),
            resp(3, 5, created=True),
            resp(3, 0, canceled=True, compact_revision=3),
            resp(0, 6, put(B6)),
        ],
    )
    s3 = StreamLog(
        "s3",
        creates=[WatchCreate("c2", b"c", start_revision=5, resumes="c1")],
        responses=[resp(0, 6, created=True), resp(0, 7, put(C7))],
    )
    return History(2, (B0,), writes, [s1, s2, s3], compactions=[3])


def checks(history: History, **kw: bool) -> set[str]:
    return {v.check for v in validate(history, **kw)}


def stream(h: History, name: str) -> StreamLog:
    return next(s for s in h.streams if s.name == name)


def test_clean_history_has_no_violation() -> None:
    violations = validate(clean())
    assert not violations, format_violations(violations)


def test_clean_history_demux() -> None:
    runs, violations = demux(stream(clean(), "s1"))
    assert not violations
    assert [r.name for r in runs] == ["all", "a-nodelete", "refused"]
    everything, a_nodelete, refused = runs
    assert refused.refused and not refused.items
    assert [r.header_revision for _, r in everything.items] == [3, 4, 4, 5, 6, 7]
    assert [r.header_revision for _, r in a_nodelete.items] == [3, 4, 4, 6]


# -- one mutation per guarantee ------------------------------------------------------------------


def m_two_writes_one_revision(h: History) -> None:
    h.writes.append(Write("w9", (Change(PUT, b"z", b"z"),), 6, "put z"))


def m_revision_nothing_explains(h: History) -> None:
    # The delete at 5 is gone from the writes and from the only watcher that saw it.
    del h.writes[2]
    s1 = stream(h, "s1")
    s1.responses[8] = resp(0, 5)  # (now a progress notification: all events <= 5 delivered)


def m_response_for_inactive_watcher(h: History) -> None:
    stream(h, "s2").responses.append(resp(1, 7, put(C7)))  # c1 was canceled


def m_unrequested_cancel(h: History) -> None:
    stream(h, "s2").cancels.clear()


def m_watch_id_not_honoured(h: History) -> None:
    s3 = stream(h, "s3")
    s3.creates[0] = replace(s3.creates[0], watch_id=5)


def m_more_created_than_creates(h: History) -> None:
    stream(h, "s3").responses.append(resp(1, 7, created=True))


def m_revisions_out_of_order(h: History) -> None:
    s1 = stream(h, "s1")
    s1.responses[8], s1.responses[9] = s1.responses[9], s1.responses[8]  # 6 before 5


def m_sub_revision_order(h: History) -> None:
    s1 = stream(h, "s1")
    s1.responses[5] = resp(0, 4, put(C4), put(A4, A3))


def m_duplicate_event(h: History) -> None:
    s1 = stream(h, "s1")
    s1.responses.insert(4, s1.responses[3])


def m_revision_split(h: History) -> None:
    s1 = stream(h, "s1")
    s1.responses[5:6] = [resp(0, 4, put(A4, A3)), resp(0, 4, put(C4))]


def m_revision_partial(h: History) -> None:
    stream(h, "s1").responses[5] = resp(0, 4, put(A4, A3))


def m_revision_skipped(h: History) -> None:
    del stream(h, "s1").responses[8]  # the delete of a at 5


def m_wrong_value(h: History) -> None:
    stream(h, "s1").responses[9] = resp(0, 6, put(replace(B6, value=b"zz"), B0))


def m_wrong_version(h: History) -> None:
    stream(h, "s2").responses[7] = resp(0, 6, put(replace(B6, version=7)))


def m_out_of_range(h: History) -> None:
    stream(h, "s2").responses.append(resp(0, 7, put(C7)))  # b-range is [b, c)


def m_before_start(h: History) -> None:
    s3 = stream(h, "s3")
    s3.responses.insert(1, resp(0, 6, put(C4)))  # c2 starts at 5


def m_phantom_event(h: History) -> None:
    stream(h, "s1").responses[9] = resp(0, 6, put(B6, B0), put(KV(b"d", 6, 6, 1, b"d")))


def m_watchers_disagree_on_unknown_write(h: History) -> None:
    stream(h, "s3").responses[1] = resp(0, 7, put(replace(C7, value=b"c3")))


def m_from_now_gets_old_event(h: History) -> None:
    # a-nodelete was requested once revision 3 was acknowledged, yet it delivers revision 3.
    s1 = stream(h, "s1")
    s1.creates[1] = replace(s1.creates[1], known_revision=3)
    s1.responses[1] = resp(1, 3, created=True)


def m_wrong_prev_kv(h: History) -> None:
    stream(h, "s1").responses[9] = resp(0, 6, put(B6, replace(B0, value=b"xx")))


def m_missing_prev_kv(h: History) -> None:
    stream(h, "s1").responses[8] = resp(0, 5, delete(A5_GONE))


def m_prev_kv_on_creation(h: History) -> None:
    stream(h, "s1").responses[3] = resp(0, 3, put(A3, A3))


def m_prev_kv_not_asked(h: History) -> None:
    stream(h, "s2").responses[3] = resp(1, 4, put(C4, B0))


def m_filtered_delete(h: History) -> None:
    s1 = stream(h, "s1")
    s1.responses.insert(9, resp(1, 5, delete(A5_GONE)))


def m_filtered_put(h: History) -> None:
    s1 = stream(h, "s1")
    s1.creates[1] = replace(s1.creates[1], filters=frozenset({NOPUT, NODELETE}))


def m_progress_before_events(h: History) -> None:
    s1 = stream(h, "s1")
    s1.responses.insert(3, s1.responses.pop(7))  # the stream-wide progress at 4 before revisions 3, 4


def m_event_after_progress(h: History) -> None:
    s1 = stream(h, "s1")
    s1.responses.insert(6, s1.responses.pop(10))  # a-nodelete's progress at 6 before its event at 4


def m_progress_beyond_history(h: History) -> None:
    stream(h, "s1").responses.append(resp(1, 9))


def m_header_below_events(h: History) -> None:
    stream(h, "s1").responses[5] = resp(0, 3, put(A4, A3), put(C4))


def m_header_decreases(h: History) -> None:
    stream(h, "s1").responses[10] = resp(1, 3)


def m_resume_overlaps(h: History) -> None:
    s3 = stream(h, "s3")
    s3.creates[0] = replace(s3.creates[0], start_revision=4)
    s3.responses[1:] = [resp(0, 7, put(C4)), resp(0, 7, put(C7))]


def m_resume_leaves_gap(h: History) -> None:
    s3 = stream(h, "s3")
    s3.creates[0] = replace(s3.creates[0], start_revision=8)  # c1 saw through 4: 7 is lost
    del s3.responses[1]


def m_resume_skips_first_event(h: History) -> None:
    s3 = stream(h, "s3")
    s3.creates[0] = replace(s3.creates[0], start_revision=5)
    s3.responses[1] = resp(0, 8, put(KV(b"c", 4, 8, 3, b"c3")))
    h.writes.append(Write("w2", (Change(PUT, b"c", b"c3"),), 8, "put c"))
    # (every other watcher on c stopped before 8; only c2 misses revision 7)


def m_compacted_not_needed(h: History) -> None:
    s2 = stream(h, "s2")
    s2.creates[3] = replace(s2.creates[3], start_revision=3)


def m_compacted_without_compaction(h: History) -> None:
    h.compactions.clear()


MUTATIONS: dict[str, tuple[Callable[[History], None], ...]] = {
    "history": (m_two_writes_one_revision, m_revision_nothing_explains),
    "protocol": (
        m_response_for_inactive_watcher,
        m_unrequested_cancel,
        m_watch_id_not_honoured,
        m_more_created_than_creates,
    ),
    "ordered": (m_revisions_out_of_order, m_sub_revision_order),
    "unique": (m_duplicate_event,),
    "atomic": (m_revision_split, m_revision_partial),
    "reliable": (m_revision_skipped, m_revision_nothing_explains),
    "content": (
        m_wrong_value,
        m_wrong_version,
        m_out_of_range,
        m_before_start,
        m_phantom_event,
        m_watchers_disagree_on_unknown_write,
        m_from_now_gets_old_event,
    ),
    "prev_kv": (m_wrong_prev_kv, m_missing_prev_kv, m_prev_kv_on_creation, m_prev_kv_not_asked),
    "filter": (m_filtered_delete, m_filtered_put),
    "bookmarkable": (m_progress_before_events, m_event_after_progress, m_progress_beyond_history),
    "header": (m_header_below_events, m_header_decreases),
    "resumable": (m_resume_overlaps, m_resume_leaves_gap, m_resume_skips_first_event),
    "compaction": (m_compacted_not_needed, m_compacted_without_compaction),
}

CASES = [(check, m) for check, ms in MUTATIONS.items() for m in ms]


@pytest.mark.parametrize(("check", "mutate"), CASES, ids=[f"{c}-{m.__name__[2:]}" for c, m in CASES])
def test_violation_is_caught(check: str, mutate: Callable[[History], None]) -> None:
    h = clean()
    mutate(h)
    violations = validate(h)
    assert check in {v.check for v in violations}, (
        f"{mutate.__name__} should break {check!r}; got:\n{format_violations(violations) or 'nothing'}"
    )
    for v in violations:  # every violation says which watcher and what, readably
        assert v.check in CHECKS and str(v).startswith(f"[{v.check}]")


def test_every_check_is_exercised() -> None:
    assert set(MUTATIONS) == set(CHECKS)


def test_requested_progress_can_be_untrusted() -> None:
    """etcd before 3.4.25 answers WatchProgressRequest ahead of queued events: the lenient mode."""
    h = clean()
    m_progress_before_events(h)
    assert "bookmarkable" in checks(h)
    assert checks(h, requested_progress_is_bookmark=False) == set()
    # A watcher's own progress notifications are still held to it.
    h = clean()
    m_event_after_progress(h)
    assert "bookmarkable" in checks(h, requested_progress_is_bookmark=False)


def test_prev_kv_race_on_cancel() -> None:
    """An event that arrives after its watcher's cancel was sent may lack prev_kv (etcd's race),
    unless asked to be strict; a wrong prev_kv, or one missing before the cancel, is always caught."""
    h = clean()
    s1 = stream(h, "s1")
    s1.cancels.append((0, 8))  # "all" canceled after response #7: its last events may race
    s1.responses[9] = resp(0, 6, put(B6))  # no prev_kv
    s1.responses.append(resp(0, 7, canceled=True))
    assert checks(h) == set()
    assert checks(h, prev_kv_race_on_cancel=False) == {"prev_kv"}
    s1.responses[9] = resp(0, 6, put(B6, A3))
    assert checks(h) == {"prev_kv"}
    h = clean()
    stream(h, "s1").cancels.append((0, 9))  # sent after the event without prev_kv arrived
    m_missing_prev_kv(h)
    assert "prev_kv" in checks(h)


def test_violation_messages_are_precise() -> None:
    h = clean()
    m_revision_skipped(h)
    (v,) = [v for v in validate(h) if v.check == "reliable"]
    assert v.watcher == "all"
    assert "revision 5" in v.message and "b'a'" in v.message and "start 3" in v.message


def test_unknown_write_never_seen_leaves_keys_uncertain() -> None:
    """A write of unknown outcome at a revision nobody saw: the keys it may have changed are only
    checked for what is certain afterwards (value, mod revision), not version or prev_kv."""
    h = clean()
    h.writes.append(Write("w4", (Change(PUT, b"b", b"bb"),), None, "put b, timed out"))
    h.writes.append(Write("w1", (Change(PUT, b"b", b"b2"),), 9, "put b"))
    s2 = stream(h, "s2")
    # revision 8 (the timed-out put) went unseen by b-range, which only delivers 9: version unknown.
    s2.responses.append(resp(0, 9, put(KV(b"b", 2, 9, 4, b"b2"))))
    assert checks(h) == set()
    # ... but a wrong value is still wrong.
    s2.responses[-1] = resp(0, 9, put(KV(b"b", 2, 9, 4, b"nope")))
    assert "content" in checks(h)


def test_in_range() -> None:
    assert in_range(b"a", b"a", b"")
    assert not in_range(b"ab", b"a", b"")
    assert in_range(b"ab", b"a", b"b") and not in_range(b"b", b"a", b"b")
    assert in_range(b"zz", b"a", b"\x00") and not in_range(b"0", b"a", b"\x00")
    assert in_range(b"\x00", b"", b"")  # etcd watches \0 for an empty key
    assert in_range(b"k", b"", b"\x00")


def test_changes_of_txn() -> None:
    req = pb.TxnRequest(
        compare=[pb.Compare(key=b"a", target=pb.Compare.VERSION, version=0)],
        success=[
            pb.RequestOp(request_put=pb.PutRequest(key=b"x", value=b"1")),
            pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"a", range_end=b"b", prev_kv=True)),
            pb.RequestOp(request_range=pb.RangeRequest(key=b"a")),
            pb.RequestOp(
                request_txn=pb.TxnRequest(
                    success=[pb.RequestOp(request_put=pb.PutRequest(key=b"y", lease=7))]
                )
            ),
        ],
        failure=[pb.RequestOp(request_put=pb.PutRequest(key=b"f"))],
    )
    gone = [kv_pb2.KeyValue(key=b"a"), kv_pb2.KeyValue(key=b"a1")]
    resp_ok = pb.TxnResponse(
        succeeded=True,
        responses=[
            pb.ResponseOp(response_put=pb.PutResponse()),
            pb.ResponseOp(response_delete_range=pb.DeleteRangeResponse(deleted=2, prev_kvs=gone)),
            pb.ResponseOp(response_range=pb.RangeResponse()),
            pb.ResponseOp(
                response_txn=pb.TxnResponse(
                    succeeded=True, responses=[pb.ResponseOp(response_put=pb.PutResponse())]
                )
            ),
        ],
    )
    assert changes_of(req, resp_ok) == (
        Change(PUT, b"x", b"1"),
        Change(DELETE, b"a"),
        Change(DELETE, b"a1"),
        Change(PUT, b"y", b"", 7),
    )
    resp_fail = pb.TxnResponse(succeeded=False, responses=[pb.ResponseOp(response_put=pb.PutResponse())])
    assert changes_of(req, resp_fail) == (Change(PUT, b"f"),)
    assert {c.key for c in possible_changes(req)} == {b"x", b"a", b"y", b"f"}
    nothing = pb.DeleteRangeRequest(key=b"q")
    assert changes_of(nothing, pb.DeleteRangeResponse(deleted=0)) == ()
    with pytest.raises(ValueError):
        changes_of(pb.DeleteRangeRequest(key=b"a", range_end=b"b"), pb.DeleteRangeResponse(deleted=1))
