"""synodctl's watch and lease pieces without a server: arguments, the watch stream's bookkeeping, printers."""

from __future__ import annotations

import io
import json
import os
import queue
import re
from collections.abc import Iterator

import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.mvccpb import kv_pb2
from synod.ctl import watch as watch_module
from synod.ctl.errors import CtlExit
from synod.ctl.flags import parse_flags
from synod.ctl.invocation import CommandSpec, Invocation, Streams
from synod.ctl.printer_lease import LeasePrinter, lease_hex
from synod.ctl.printer_watch import WatchPrinter
from synod.ctl.rpc import Client
from synod.ctl.stream import StreamEnd
from synod.ctl.watch import WatchResponse, WatchSession
from synod.ctl.watch_args import (
    BAD_ARGS,
    BAD_ARGS_ENV,
    BAD_ARGS_SEPARATOR,
    HELP_REQUESTED,
    PREFIX_AND_RANGE,
    WATCH_FLAGS,
    WatchArgsError,
    command_line_spec,
    interactive_spec,
    watch_request,
)
from synod.ctl.watch_cmd import Watcher

HEADER = pb.ResponseHeader(cluster_id=1, member_id=2, revision=7, raft_term=3)

# -- watch arguments ----------------------------------------------------------------------------------


def spec(argv: list[str], key: str = "", range_end: str = ""):
    """``synodctl <argv>`` as etcdctl reads a watch command line (flags parsed as the command's)."""
    parsed = parse_flags(argv[argv.index("watch") + 1 :] if "watch" in argv else argv, WATCH_FLAGS)
    return command_line_spec(["synodctl", *argv], parsed, key, range_end)


def test_watch_arguments_and_command() -> None:
    s = spec(["watch", "foo", "--rev", "3", "bar", "--", "echo", "a", "b"])
    assert (s.args, s.exec_args, s.rev) == (["foo", "bar"], ["echo", "a", "b"], 3)
    s = spec(["--endpoints=x", "watch", "--prefix", "foo", "--", "echo", "foo"])
    assert (s.args, s.exec_args, s.prefix) == (["foo"], ["echo", "foo"], True)
    assert spec(["watch", "a", "b", "c"]).args == ["a", "b", "c"]  # only the first two count later


@pytest.mark.parametrize(
    ("argv", "key", "message"),
    [
        (["watch"], "", BAD_ARGS),
        (["watch", "foo", "--"], "", BAD_ARGS_SEPARATOR),
        (["watch", "foo"], "k", BAD_ARGS_ENV),
        (["watch", "foo", "--", "echo"], "k", BAD_ARGS_ENV),
    ],
)
def test_watch_arguments_etcdctl_refuses(argv: list[str], key: str, message: str) -> None:
    with pytest.raises(WatchArgsError, match=f"^{re.escape(message)}$"):
        spec(argv, key)


def test_watch_key_from_the_environment() -> None:
    s = spec(["watch", "--", "echo", "1"], "k", "l")
    assert (s.args, s.exec_args) == (["k", "l"], ["echo", "1"])
    assert spec(["watch", "--rev", "2"], "k").args == ["k"]


def test_interactive_lines() -> None:
    s = interactive_spec(["watch", "--prefix", "a", "--", "sh", "-c", "x"], "", "")
    assert (s.args, s.exec_args, s.prefix, s.rev) == (["a"], ["sh", "-c", "x"], True, 0)
    assert interactive_spec(["watch", "--rev=5", "--prev-kv", "a", "b"], "", "").rev == 5
    for words, message in [
        (["watch", "a", "--"], BAD_ARGS_SEPARATOR),
        (["watch", "--prefix"], BAD_ARGS),
        (["watch", "-w", "json", "a"], "unknown shorthand flag: 'w' in -w"),
        (["watch", "--rev", "x", "a"], 'invalid argument "x" for "--rev" flag'),
    ]:
        with pytest.raises(WatchArgsError, match=re.escape(message)):
            interactive_spec(words, "", "")
    with pytest.raises(WatchArgsError, match=HELP_REQUESTED) as e:
        interactive_spec(["watch", "--help"], "", "")
    assert e.value.usage.startswith("Usage of watch:\n")


def test_watch_requests() -> None:
    def req(args: list[str], prefix: bool = False) -> pb.WatchCreateRequest:
        return watch_request(watch_module_spec(args, prefix))

    assert req(["a", "c"]) == pb.WatchCreateRequest(key=b"a", range_end=b"c")
    assert req(["ab"], prefix=True) == pb.WatchCreateRequest(key=b"ab", range_end=b"ac")
    assert req(["a\udcff"], prefix=True).range_end == b"b"  # the byte 0xff
    assert req([""], prefix=True) == pb.WatchCreateRequest(key=b"\0", range_end=b"\0")
    assert req(["a", "b", "c"]) == pb.WatchCreateRequest(key=b"a")
    with pytest.raises(WatchArgsError, match=PREFIX_AND_RANGE):
        req(["a", "b"], prefix=True)
    with pytest.raises(WatchArgsError, match=BAD_ARGS):
        req([])


def watch_module_spec(args: list[str], prefix: bool):
    from synod.ctl.watch_args import WatchSpec

    return WatchSpec(args, [], prefix, 0, False)


# -- the watch stream's bookkeeping -------------------------------------------------------------------


class FakeStream:
    """Stands in for BidiStream: records what the session sends."""

    opened: list[FakeStream] = []

    def __init__(self, method: object, inbox: object, response_type: object) -> None:
        self.sent: list[pb.WatchRequest] = []
        self.closed = False
        FakeStream.opened.append(self)

    def send(self, req: pb.WatchRequest) -> None:
        self.sent.append(req)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[WatchSession]:
    FakeStream.opened = []
    monkeypatch.setattr(watch_module, "BidiStream", FakeStream)
    monkeypatch.setattr(watch_module.time, "sleep", lambda _: None)
    client = Client(["127.0.0.1:1", "127.0.0.1:2"])
    yield WatchSession(client, queue.Queue())
    client.close()


def created(watch_id: int, revision: int = 7, **kw: object) -> pb.WatchResponse:
    return pb.WatchResponse(
        header=pb.ResponseHeader(revision=revision), watch_id=watch_id, created=True, **kw
    )


def event(key: bytes, mod: int, kind: int = kv_pb2.Event.PUT) -> kv_pb2.Event:
    return kv_pb2.Event(type=kind, kv=kv_pb2.KeyValue(key=key, mod_revision=mod))


def test_watches_are_created_one_at_a_time(session: WatchSession) -> None:
    a = session.add(pb.WatchCreateRequest(key=b"a"))
    b = session.add(pb.WatchCreateRequest(key=b"b", start_revision=3))
    stream = FakeStream.opened[0]
    assert [r.create_request.key for r in stream.sent] == [b"a"]
    assert session.creating
    assert session.handle(stream, created(0)) == []  # created responses are not passed on
    assert [r.create_request.key for r in stream.sent] == [b"a", b"b"]
    session.handle(stream, created(1))
    assert not session.creating
    assert (a.watch_id, b.watch_id, a.request.start_revision, b.request.start_revision) == (0, 1, 8, 3)
    resp = pb.WatchResponse(header=pb.ResponseHeader(revision=9), watch_id=1, events=[event(b"b", 9)])
    [(watch, delivered)] = session.handle(stream, resp)
    assert watch is b and delivered is not None and delivered.events == [event(b"b", 9)]
    assert b.request.start_revision == 10
    # A progress notification goes to every watch.
    progress = pb.WatchResponse(header=pb.ResponseHeader(revision=12), watch_id=-1)
    deliveries = session.handle(stream, progress)
    assert [w for w, _ in deliveries] == [a, b]
    assert all(r is not None and r.is_progress_notify() for _, r in deliveries)
    # Responses from a stream the session left mean nothing.
    assert session.handle(object(), resp) == []


def test_compaction_ends_the_watch_after_its_response(session: WatchSession) -> None:
    w = session.add(pb.WatchCreateRequest(key=b"a", start_revision=1))
    stream = FakeStream.opened[0]
    session.handle(stream, created(4))
    resp = pb.WatchResponse(header=pb.ResponseHeader(), watch_id=4, compact_revision=5, canceled=True)
    (first, delivered), (second, end) = session.handle(stream, resp)
    assert first is second is w and end is None
    assert (
        delivered is not None and delivered.err() == "etcdserver: mvcc: required revision has been compacted"
    )
    assert delivered.events == []
    assert stream.sent[-1] == pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=4))
    assert stream.closed and not session.watching


def test_server_cancel_ends_the_watch_silently(session: WatchSession) -> None:
    w = session.add(pb.WatchCreateRequest(key=b"a"))
    stream = FakeStream.opened[0]
    session.handle(stream, created(2))
    assert session.handle(stream, pb.WatchResponse(watch_id=2, canceled=True)) == [(w, None)]


def test_creation_refused(session: WatchSession) -> None:
    w = session.add(pb.WatchCreateRequest(key=b"b", range_end=b"a"))
    stream = FakeStream.opened[0]
    refused = created(-1, canceled=True, cancel_reason="mvcc: watcher range is empty")
    (_, resp), (_, end) = session.handle(stream, refused)
    assert resp is not None and end is None
    assert (resp.err(), resp.events, resp.canceled) == ("mvcc: watcher range is empty", None, True)
    assert not session.watching and w.watch_id == -1


def test_unknown_watch_is_canceled_once(session: WatchSession) -> None:
    session.add(pb.WatchCreateRequest(key=b"a"))
    stream = FakeStream.opened[0]
    session.handle(stream, created(0))
    stray = pb.WatchResponse(header=HEADER, watch_id=9, events=[event(b"x", 7)])
    assert session.handle(stream, stray) == session.handle(stream, stray) == []
    cancels = [r for r in stream.sent if r.HasField("cancel_request")]
    assert cancels == [pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=9))]


def test_fragments_are_joined(session: WatchSession) -> None:
    session.add(pb.WatchCreateRequest(key=b"a", fragment=True))
    stream = FakeStream.opened[0]
    session.handle(stream, created(0))
    part = pb.WatchResponse(header=HEADER, watch_id=0, events=[event(b"a", 3)], fragment=True)
    assert session.handle(stream, part) == []
    last = pb.WatchResponse(header=HEADER, watch_id=0, events=[event(b"a", 4)])
    [(_, resp)] = session.handle(stream, last)
    assert resp is not None and [e.kv.mod_revision for e in resp.events or []] == [3, 4]


class FakeError(Exception):
    def __init__(self, code: object, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> object:
        return self._code

    def details(self) -> str:
        return self._details


def test_unavailable_stream_resumes_every_watch(
    session: WatchSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grpc

    monkeypatch.setattr(grpc, "Call", FakeError)  # what the session checks errors against
    a = session.add(pb.WatchCreateRequest(key=b"a"))
    first = FakeStream.opened[0]
    session.handle(first, created(0, revision=5))
    session.handle(first, pb.WatchResponse(header=HEADER, watch_id=0, events=[event(b"a", 6)]))
    assert session.handle(first, StreamEnd(FakeError(grpc.StatusCode.UNAVAILABLE, "gone"))) == []  # type: ignore[arg-type]
    second = FakeStream.opened[1]
    assert second.sent == [pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"a", start_revision=7))]
    session.handle(second, created(3))
    assert a.watch_id == 3
    # Any other end ends every watch, with the error.
    error = FakeError(grpc.StatusCode.UNIMPLEMENTED, "no watch here")
    (w, resp), (_, end) = session.handle(second, StreamEnd(error))  # type: ignore[arg-type]
    assert w is a and end is None and resp is not None
    assert resp.err() == "rpc error: code = Unimplemented desc = no watch here"
    assert resp.events is None and resp.canceled


def test_clean_end_is_eof(session: WatchSession) -> None:
    session.add(pb.WatchCreateRequest(key=b"a"))
    (_, resp), _ = session.handle(FakeStream.opened[0], StreamEnd(None))
    assert resp is not None and resp.err() == "EOF"


# -- printers -----------------------------------------------------------------------------------------


def printed(printer_type, fmt: str, call) -> bytes:
    out = io.BytesIO()
    call(printer_type(out, fmt))
    return out.getvalue()


def test_lease_ids_print_as_go_prints_them() -> None:
    assert lease_hex(0x694D7B6BD2A1F10D) == "694d7b6bd2a1f10d"
    assert lease_hex(0x1234) == "0000000000001234"
    assert lease_hex(-1) == "-000000000000001"


def test_lease_grant_formats() -> None:
    resp = pb.LeaseGrantResponse(header=HEADER, ID=0x1234, TTL=60)
    assert (
        printed(LeasePrinter, "simple", lambda p: p.grant(resp))
        == b"lease 0000000000001234 granted with TTL(60s)\n"
    )
    assert json.loads(printed(LeasePrinter, "json", lambda p: p.grant(resp))) == {
        "cluster_id": 1, "member_id": 2, "revision": 7, "raft_term": 3, "ID": 4660, "TTL": 60, "Error": "",
    }  # fmt: skip
    fields = printed(LeasePrinter, "fields", lambda p: p.grant(resp))
    assert fields.endswith(b'"RaftTerm" : 3\n"ID" : 4660\n"TTL" : 60\n')
    # protobuf: only the header (clientv3's wrapper inherits its Marshal).
    assert printed(LeasePrinter, "protobuf", lambda p: p.grant(resp)) == HEADER.SerializeToString()


def test_lease_time_to_live_formats() -> None:
    resp = pb.LeaseTimeToLiveResponse(header=HEADER, ID=5, TTL=50, grantedTTL=60, keys=[b"k1", b"k\x00"])
    simple = printed(LeasePrinter, "simple", lambda p: p.time_to_live(resp, True))
    assert (
        simple == b"lease 0000000000000005 granted with TTL(60s), remaining(50s), attached keys([k1 k\x00])\n"
    )
    assert b'"keys":["azE=","awA="]' in printed(LeasePrinter, "json", lambda p: p.time_to_live(resp, True))
    assert b'"Key" : "k\\x00"\n' in printed(LeasePrinter, "fields", lambda p: p.time_to_live(resp, True))
    gone = pb.LeaseTimeToLiveResponse(header=HEADER, ID=5, TTL=-1)
    assert printed(LeasePrinter, "simple", lambda p: p.time_to_live(gone, True)) == (
        b"lease 0000000000000005 already expired\n"
    )
    assert b'"ttl":-1,"granted-ttl":0,"keys":null}' in printed(
        LeasePrinter, "json", lambda p: p.time_to_live(gone, False)
    )


def test_lease_list_and_revoke_formats() -> None:
    empty = pb.LeaseLeasesResponse(header=HEADER)
    assert printed(LeasePrinter, "json", lambda p: p.leases(empty)).endswith(b',"leases":[]}\n')
    assert printed(LeasePrinter, "simple", lambda p: p.leases(empty)) == b"found 0 leases\n"
    revoked = pb.LeaseRevokeResponse(header=HEADER)
    assert (
        printed(LeasePrinter, "simple", lambda p: p.revoke(16, revoked))
        == b"lease 0000000000000010 revoked\n"
    )
    assert json.loads(printed(LeasePrinter, "json", lambda p: p.revoke(16, revoked))) == {
        "header": {"cluster_id": 1, "member_id": 2, "revision": 7, "raft_term": 3}
    }
    with pytest.raises(CtlExit) as e:
        printed(LeasePrinter, "protobuf", lambda p: p.revoke(16, revoked))
    assert (e.value.code, e.value.message) == (
        4,
        "marshal unsupported for type clientv3.LeaseRevokeResponse "
        "({cluster_id:1 member_id:2 revision:7 raft_term:3 })",
    )
    with pytest.raises(CtlExit, match="table not supported as output format"):
        printed(LeasePrinter, "table", lambda p: p.leases(empty))


def test_watch_formats() -> None:
    put = kv_pb2.Event(kv=kv_pb2.KeyValue(key=b"k", value=b"v", mod_revision=7, create_revision=7, version=1))
    deleted = kv_pb2.Event(
        type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=b"k", mod_revision=8), prev_kv=put.kv
    )
    resp = WatchResponse(header=HEADER, events=[put, deleted])
    assert printed(WatchPrinter, "simple", lambda p: p.watch(resp)) == b"PUT\nk\nv\nDELETE\nk\nv\nk\n\n"
    line = printed(WatchPrinter, "json", lambda p: p.watch(resp))
    assert line.startswith(
        b'{"Header":{"cluster_id":1,"member_id":2,"revision":7,"raft_term":3},"Events":[{"kv"'
    )
    assert b'{"type":1,"kv":{"key":"aw==","mod_revision":8},"prev_kv":' in line
    assert line.endswith(b'"CompactRevision":0,"Canceled":false,"Created":false}\n')
    fields = printed(WatchPrinter, "fields", lambda p: p.watch(resp))
    assert fields.count(b'"Type" : ') == 2 and b'"PrevKey" : "k"\n' in fields
    closed = WatchResponse(canceled=True, close_error="EOF")
    assert printed(WatchPrinter, "json", lambda p: p.watch(closed)) == (
        b'{"Header":{},"Events":null,"CompactRevision":0,"Canceled":true,"Created":false}\n'
    )
    # protobuf: the header is always there, even empty.
    assert printed(WatchPrinter, "protobuf", lambda p: p.watch(closed)) == b"\n\x00 \x01"


# -- the per-event command ----------------------------------------------------------------------------


def _watcher(environ: dict[str, str]) -> tuple[Watcher, io.BytesIO, io.BytesIO]:
    out, err = io.BytesIO(), io.BytesIO()
    streams = Streams(io.BytesIO(), out, err, environ)
    inv = Invocation(streams, [], {"watch": CommandSpec(None, ())}, lambda _: "")  # type: ignore[arg-type]
    return Watcher(inv, WatchPrinter(out, "simple")), out, err


def test_command_environment_and_errors() -> None:
    watcher, out, _ = _watcher({"PATH": os.environ["PATH"], "ETCD_WATCH_KEY": "overridden"})
    resp = WatchResponse(header=HEADER, events=[kv_pb2.Event(kv=kv_pb2.KeyValue(key=b'a"b', value=b"x\ty"))])
    watcher.show(
        resp,
        [
            "sh",
            "-c",
            'printf "%s\\n" "$ETCD_WATCH_REVISION $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE"',
        ],
    )
    assert out.getvalue() == b'PUT\na"b\nx\ty\n7 "PUT" "a\\"b" "x\\ty"\n'
    for args, message in [
        (["false"], 'command ["false"] error (exit status 1)\n'),
        (["sh", "-c", "kill -9 $$"], 'command ["sh" "-c" "kill -9 $$"] error (signal: killed)\n'),
        (["no-such-program-x"], 'command ["no-such-program-x"] error '
         '(exec: "no-such-program-x": executable file not found in $PATH)\n'),
        (["/no/such"], 'command ["/no/such"] error (fork/exec /no/such: no such file or directory)\n'),
    ]:  # fmt: skip
        with pytest.raises(CtlExit) as e:
            watcher.show(resp, args)
        assert (e.value.code, e.value.stderr_text()) == (1, message)


def test_lease_usage_lists_its_subcommands() -> None:
    from synod.ctl.main import run

    out, err = io.BytesIO(), io.BytesIO()
    assert run(["lease"], Streams(io.BytesIO(), out, err, {})) == 0
    text = out.getvalue().decode()
    assert text.startswith("NAME:\n\tlease - ") and "\tsynodctl lease <subcommand> [flags]\n" in text
    assert "\nAPI VERSION:\n\t3.4\n\n\nCOMMANDS:\n\tgrant\t" in text and "\tkeep-alive\t" in text
    out = io.BytesIO()
    assert run(["help", "lease", "keep-alive"], Streams(io.BytesIO(), out, err, {})) == 0
    assert out.getvalue().startswith(b"NAME:\n\tlease keep-alive - ")
    assert b"--once[=false]" in out.getvalue() and err.getvalue() == b""
