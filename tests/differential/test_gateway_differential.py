"""The JSON gateway, differential: the same HTTP requests to synod and to a real etcd 3.4, answers compared.

One synod and one etcd serve the module and get every write alike, so their
revisions stay in lockstep. An answer is compared whole: the HTTP status, the
content type and the JSON body field by field, after naming what must differ
(cluster, member and lease IDs by order of appearance, each server's own URLs,
versions, sizes and hashes).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.http_json import Reply, Stream, b64, post
from tests.support.servers import ServerProcess

_ID_FIELDS = {"cluster_id", "member_id", "ID", "leader", "id", "lease", "IDs"}
_VARYING = {
    "version": "<version>",
    "dbSize": "<size>",
    "dbSizeInUse": "<size>",
    "hash": "<hash>",
    "hash_revision": "<rev>",
}


class Pair:
    def __init__(self, synod: ServerProcess, etcd: ServerProcess) -> None:
        self.synod, self.etcd = synod, etcd

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[Reply, Reply]:
        return post(self.synod.endpoint, path, body, **kw), post(self.etcd.endpoint, path, body, **kw)

    def same(self, path: str, body: Any = None, **kw: Any) -> Any:
        """Both answers, normalised, must be equal; returns etcd's JSON (raw)."""
        got, want = self.post(path, body, **kw)
        assert_same(got, want, self, f"POST {path} {body!r}")
        return want.json if want.content_type.startswith("application/json") else want.body


def normalise(value: Any, server: ServerProcess, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in _VARYING:
                out[k] = _VARYING[k]
            elif k in _ID_FIELDS and isinstance(v, str | list):
                out[k] = [_alias(x, ids) for x in v] if isinstance(v, list) else _alias(v, ids)
            else:
                out[k] = normalise(v, server, ids)
        return out
    if isinstance(value, list):
        return [normalise(v, server, ids) for v in value]
    if isinstance(value, str):
        value = value.replace(f"127.0.0.1:{server.client_port}", "<client>")
        return value.replace(f"127.0.0.1:{server.peer_port}", "<peer>")
    return value


def _alias(value: str, ids: dict[str, str]) -> str:
    if value not in ids:
        ids[value] = f"<id{len(ids)}>"
    return ids[value]


def shown(reply: Reply, server: ServerProcess) -> Any:
    if reply.content_type.startswith("application/json"):
        try:
            body: Any = json.loads(reply.body)
        except ValueError:
            body = reply.body
        else:
            body = normalise(body, server, {})
    else:
        body = reply.body
    return {"status": reply.status, "headers": reply.headers, "body": body}


def assert_same(got: Reply, want: Reply, pair: Pair, what: str) -> None:
    g, w = shown(got, pair.synod), shown(want, pair.etcd)
    assert g == w, f"{what}\n  etcd:  {w}\n  synod: {g}"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root: Path = tmp_path_factory.mktemp("gateway")
    servers = [ServerProcess(kind, root / kind) for kind in ("synod", "etcd")]
    try:
        for s in servers:
            s.start()
        yield Pair(*servers)
    finally:
        for s in servers:
            s.kill()


# -- KV -------------------------------------------------------------------------------------------------


def test_put_and_range(pair: Pair) -> None:
    pair.same("/v3/kv/put", {"key": b64("gw/a"), "value": b64("1")})
    pair.same("/v3/kv/put", {"key": b64("gw/b"), "value": b64("2"), "prev_kv": True})
    pair.same("/v3/kv/put", {"key": b64("gw/b"), "value": b64("3"), "prevKv": True})  # camelCase in
    pair.same("/v3/kv/range", {"key": b64("gw/a")})
    pair.same("/v3/kv/range", {"key": b64("gw/"), "range_end": b64("gw0")})
    pair.same("/v3/kv/range", {"key": b64("gw/"), "rangeEnd": b64("gw0"), "countOnly": True})
    pair.same(
        "/v3/kv/range",
        {
            "key": b64("gw/"),
            "range_end": b64("gw0"),
            "sort_order": "DESCEND",
            "sort_target": "MOD",
            "limit": "1",
        },
    )
    pair.same(
        "/v3/kv/range",
        {"key": b64("gw/"), "range_end": b64("gw0"), "sort_order": 2, "limit": 1, "keys_only": True},
    )
    pair.same("/v3/kv/range", {"key": b64("nothing")})


def test_delete_range(pair: Pair) -> None:
    pair.same("/v3/kv/put", {"key": b64("del/a"), "value": b64("1")})
    pair.same("/v3/kv/put", {"key": b64("del/b"), "value": b64("2")})
    pair.same("/v3/kv/deleterange", {"key": b64("del/"), "range_end": b64("del0"), "prev_kv": True})
    pair.same("/v3/kv/deleterange", {"key": b64("del/a")})


def test_txn(pair: Pair) -> None:
    pair.same("/v3/kv/put", {"key": b64("txn/k"), "value": b64("v1")})
    body = {
        "compare": [{"key": b64("txn/k"), "target": "VALUE", "result": "EQUAL", "value": b64("v1")}],
        "success": [
            {"request_put": {"key": b64("txn/k"), "value": b64("v2")}},
            {"request_range": {"key": b64("txn/k")}},
        ],
        "failure": [{"request_delete_range": {"key": b64("txn/k")}}],
    }
    pair.same("/v3/kv/txn", body)
    pair.same("/v3/kv/txn", body)  # now the compare fails
    nested = {
        "compare": [{"key": b64("txn/k"), "target": "VERSION", "result": "GREATER", "version": "0"}],
        "success": [{"request_txn": {"success": [{"request_range": {"key": b64("txn/k")}}]}}],
    }
    pair.same("/v3/kv/txn", nested)


def test_compaction(pair: Pair) -> None:
    rev = pair.same("/v3/kv/put", {"key": b64("compact/a"), "value": b64("1")})["header"]["revision"]
    pair.same("/v3/kv/compaction", {"revision": rev, "physical": True})
    pair.same("/v3/kv/range", {"key": b64("compact/a"), "revision": str(int(rev) - 1)})  # compacted


# -- lease ----------------------------------------------------------------------------------------------


def test_lease_calls(pair: Pair) -> None:
    got, want = pair.post("/v3/lease/grant", {"TTL": 60})
    assert_same(got, want, pair, "grant")
    ids = (got.json["ID"], want.json["ID"])
    for server, lease in zip((pair.synod, pair.etcd), ids, strict=True):
        post(server.endpoint, "/v3/kv/put", {"key": b64("lease/k"), "value": b64("v"), "lease": lease})
    for path in ("/v3/lease/timetolive", "/v3/kv/lease/timetolive"):
        s = post(pair.synod.endpoint, path, {"ID": ids[0], "keys": True})
        e = post(pair.etcd.endpoint, path, {"ID": ids[1], "keys": True})
        assert s.json.get("grantedTTL") == e.json.get("grantedTTL") == "60"
        assert s.json["keys"] == e.json["keys"] == [b64("lease/k")]
        assert set(s.json) == set(e.json)
    for path in ("/v3/lease/leases", "/v3/kv/lease/leases"):
        s, e = pair.post(path, {})
        assert s.status == e.status == 200
        assert {"ID": ids[0]} in s.json["leases"] and {"ID": ids[1]} in e.json["leases"]
    s = post(pair.synod.endpoint, "/v3/kv/lease/revoke", {"ID": ids[0]})
    e = post(pair.etcd.endpoint, "/v3/kv/lease/revoke", {"ID": ids[1]})
    assert_same(s, e, pair, "revoke")
    s = post(pair.synod.endpoint, "/v3/lease/revoke", {"ID": ids[0]})
    e = post(pair.etcd.endpoint, "/v3/lease/revoke", {"ID": ids[1]})
    assert_same(s, e, pair, "revoke again")  # lease not found


def test_lease_keepalive_stream(pair: Pair) -> None:
    """Two keep-alives in one request body: two answers, and the stream ends with the body."""
    answers = []
    for server in (pair.synod, pair.etcd):
        lease = post(server.endpoint, "/v3/lease/grant", {"TTL": 30}).json["ID"]
        with Stream(server.endpoint, "/v3/lease/keepalive", {"ID": lease}) as s:
            s.send({"ID": lease})
            s.end_body()
            lines = [s.line(), s.line()]
            rest = s.read_raw(timeout=10)
        answers.append((s.status, s.headers.get("content-type"), normalise(lines, server, {}), rest))
    assert answers[0] == answers[1]


# -- watch ----------------------------------------------------------------------------------------------
#
# etcd 3.4's HTTP server sends no response before the request body has ended (Go's net/http reads
# what is left of a body before it writes the headers), so these bodies are complete up front;
# synod answers as the body's requests arrive (tests/integration/test_gateway.py).


def test_watch_stream(pair: Pair) -> None:
    create = {"create_request": {"key": b64("w/"), "range_end": b64("w0"), "prev_kv": True}}
    streams = [Stream(s.endpoint, "/v3/watch", create) for s in (pair.synod, pair.etcd)]
    try:
        for st in streams:
            st.end_body()
        created = [st.line() for st in streams]
        pair.same("/v3/kv/put", {"key": b64("w/1"), "value": b64("a")})
        pair.same("/v3/kv/put", {"key": b64("w/1"), "value": b64("b")})
        pair.same("/v3/kv/deleterange", {"key": b64("w/1")})
        events = [[st.line(), st.line(), st.line()] for st in streams]
        got = [
            normalise([c, *e], srv, {})
            for c, e, srv in zip(created, events, (pair.synod, pair.etcd), strict=True)
        ]
        assert got[0] == got[1]
        assert [st.status for st in streams] == [200, 200]
        assert streams[0].headers.get("content-type") == streams[1].headers.get("content-type")
    finally:
        for st in streams:
            st.close()


def test_watch_create_and_cancel_in_one_body(pair: Pair) -> None:
    answers = []
    for server in (pair.synod, pair.etcd):
        with Stream(server.endpoint, "/v3/watch", {"create_request": {"key": b64("wc")}}) as st:
            st.send({"cancel_request": {"watch_id": "0"}})
            st.send({"create_request": {"key": b64("wd"), "watch_id": "7"}})
            st.end_body()
            answers.append(normalise([st.line(), st.line(), st.line()], server, {}))
    assert answers[0] == answers[1]


def test_watch_of_a_compacted_revision(pair: Pair) -> None:
    rev = pair.same("/v3/kv/put", {"key": b64("wcomp"), "value": b64("1")})["header"]["revision"]
    pair.same("/v3/kv/put", {"key": b64("wcomp"), "value": b64("2")})
    pair.same("/v3/kv/compaction", {"revision": str(int(rev) + 1)})
    answers = []
    for server in (pair.synod, pair.etcd):
        body = {"create_request": {"key": b64("wcomp"), "start_revision": rev}}
        with Stream(server.endpoint, "/v3/watch", body) as st:
            st.end_body()
            answers.append(normalise(st.line(), server, {}))
    assert answers[0] == answers[1]


# -- cluster and maintenance ----------------------------------------------------------------------------


def test_member_list(pair: Pair) -> None:
    pair.same("/v3/cluster/member/list", {})


def test_status(pair: Pair) -> None:
    got, want = pair.post("/v3/maintenance/status", {})
    assert got.status == want.status == 200
    assert set(got.json) == set(want.json)


def test_version_and_health(pair: Pair) -> None:
    for server in (pair.synod, pair.etcd):
        reply = post(server.endpoint, "/version", method="GET")
        assert reply.status == 200 and set(reply.json) >= {"etcdserver", "etcdcluster"}
        assert reply.json["etcdcluster"] == "3.4.0"
    pair.same("/health", method="GET")


def test_unknown_path(pair: Pair) -> None:
    pair.same("/v3/kv/nothing", {})
    pair.same("/nothing", method="GET")


@pytest.mark.parametrize("prefix", ["/v3beta", "/v3"])
def test_prefixes(pair: Pair, prefix: str) -> None:
    pair.same(prefix + "/kv/range", {"key": b64("gw/a")})


def test_v3alpha_is_served(pair: Pair) -> None:
    """etcd 3.4 answers 404; synod serves etcd 3.2's prefix too (the 3.2 release's examples use it)."""
    assert post(pair.etcd.endpoint, "/v3alpha/kv/range", {"key": b64("gw/a")}).status == 404
    reply = post(pair.synod.endpoint, "/v3alpha/kv/range", {"key": b64("gw/a")})
    assert reply.status == 200 and reply.json["kvs"][0]["key"] == b64("gw/a")


BAD_PUTS = [
    "{",
    '{"key": ',
    '{"key": "YmFkL2E=", "value": ',
    '{"key" "YmFkL2E="}',
    '{"key": "YmFkL2E=",}',
    '{"key": "YmFkL2E=" "value": "YQ=="}',
    "not json",
    "nul",
    "[1, 2",
    '["key"]',
    '"key"',
    "5",
    '{"key": 5}',
    '{"key": true}',
    '{"key": {"a": 1}}',
    '{"key": "Y$Q"}',
    '{"key": "YQ"}',
    '{"key": "YQ=x"}',
    '{"key": "YmFkL2E=", "value": "YQ==", "lease": "abc"}',
    '{"key": "YmFkL2E=", "value": "YQ==", "lease": 1.5}',
    '{"key": "YmFkL2E=", "value": "YQ==", "lease": -1}',
    '{"key": "YmFkL2E=", "value": "YQ==", "lease": "99999999999999999999"}',
    '{"key": "YmFkL2E=", "value": "YQ==", "lease": true}',
    '{"key": "YmFkL2E=", "value": "YQ==", "lease": ""}',
    '{"key": "YmFkL2E=", "value": "YQ==", "prev_kv": "yes"}',
    '{"key": "YmFkL2E=", "value": "YQ==", "prev_kv": 1}',
    '{"key": "YmFkL2E=", "value": "YQ==", "lease": "7"}',  # lease not found
    '{"key": "", "value": "YQ=="}',  # key is not provided
]
BAD_RANGES = [
    '{"key": "YQ==", "sort_order": "UP"}',
    '{"key": "YQ==", "sort_order": 1.5}',
    '{"key": "YQ==", "sort_order": "1"}',
    '{"key": "YQ==", "limit": "1e3"}',
    '{"key": "YQ==", "limit": " 5"}',
    '{"key": "YQ==", "revision": "99999"}',  # a future revision
    '{"key": "YQ==", "limit": [1]}',
]


@pytest.mark.parametrize("body", BAD_PUTS)
def test_bad_put_stores_nothing(pair: Pair, body: str) -> None:
    count = {"key": b64("bad/"), "range_end": b64("bad0"), "count_only": True}
    before = pair.same("/v3/kv/range", count)
    pair.same("/v3/kv/put", body)
    after = pair.same("/v3/kv/range", count)
    assert before == after, "a refused put changed the store"


@pytest.mark.parametrize("body", BAD_RANGES)
def test_bad_range(pair: Pair, body: str) -> None:
    pair.same("/v3/kv/range", body)


def test_unknown_fields_are_ignored(pair: Pair) -> None:
    """As etcd's grpc-gateway is configured: the request goes through without them."""
    pair.same("/v3/kv/put", '{"key": "dW5rbm93bg==", "value": "YQ==", "bogus": 1, "prevKV": true}')
    pair.same("/v3/kv/range", '{"key": "dW5rbm93bg==", "nothing": {"deep": [1]}}')


def test_methods_and_preflight(pair: Pair) -> None:
    pair.same("/v3/kv/range", method="GET")
    pair.same("/v3/kv/range", method="PUT")
    pair.same("/v3/kv/range", method="OPTIONS")
    pair.same("/version", method="POST")
    pair.same("/health", method="POST")
    pair.same("/nothing", method="OPTIONS")


def test_member_calls_refused(pair: Pair) -> None:
    """Membership changes refused alike: unknown IDs, bad URLs. (A one-member synod can't change its
    membership yet, docs/compatibility.md; tests/interop covers changes on clusters over gRPC.)"""
    pair.same("/v3/cluster/member/remove", {"ID": "12345"})
    pair.same("/v3/cluster/member/update", {"ID": "12345", "peerURLs": ["http://127.0.0.1:1"]})
    pair.same("/v3/cluster/member/promote", {"ID": "12345"})
    pair.same("/v3/cluster/member/add", {"peerURLs": ["not a url"]})
    pair.same("/v3/cluster/member/add", {})


def test_maintenance_calls(pair: Pair) -> None:
    pair.same("/v3/maintenance/alarm", {"action": "GET"})
    pair.same("/v3/maintenance/alarm", {})
    pair.same("/v3/maintenance/defragment", {})
    pair.same("/v3/maintenance/hash", {})  # Hash in etcd 3.4, though HashKV is bound here too
    got, want = pair.post("/v3/maintenance/status", {})
    assert set(got.json) == set(want.json) and got.headers == want.headers
    # Moving the leadership of a one-member cluster to itself.
    answers = []
    for server in (pair.synod, pair.etcd):
        me = post(server.endpoint, "/v3/maintenance/status", {}).json["header"]["member_id"]
        to_self = post(server.endpoint, "/v3/maintenance/transfer-leadership", {"targetID": me})
        to_nobody = post(server.endpoint, "/v3/maintenance/transfer-leadership", {"targetID": "12345"})
        answers.append([shown(to_self, server), shown(to_nobody, server)])
    # synod's MoveLeaderResponse has the header etcd 3.4 leaves empty (test_synodctl_cluster says so).
    assert isinstance(answers[0][0]["body"], dict) and answers[0][0]["body"].pop("header")
    assert answers[0] == answers[1]


def test_hashkv_has_a_path_of_its_own(pair: Pair) -> None:
    """etcd 3.4 has none (its HashKV shares /v3/maintenance/hash with Hash); synod serves etcd 3.5.10's."""
    assert post(pair.etcd.endpoint, "/v3/maintenance/hashkv", {}).status == 404
    reply = post(pair.synod.endpoint, "/v3/maintenance/hashkv", {"revision": "0"})
    assert reply.status == 200 and {"header", "hash", "compact_revision"} >= set(reply.json) >= {"header"}


def test_snapshot_stream(pair: Pair) -> None:
    """Both stream the backend as base64 blobs in {"result"} lines, remaining_bytes counting down to
    0 (left out), then the SHA-256 of the whole."""
    for server in (pair.synod, pair.etcd):
        with Stream(server.endpoint, "/v3/maintenance/snapshot", {}) as st:
            st.end_body()
            body = st.read_raw(timeout=30)
            assert st.status == 200
        lines = [json.loads(x)["result"] for x in body.splitlines()]
        assert all(set(x) <= {"remaining_bytes", "blob"} for x in lines), server.kind
        remaining = [int(x.get("remaining_bytes", "0")) for x in lines]
        assert remaining == sorted(remaining, reverse=True) and remaining[-2:] == [0, 0], server.kind
        data = b"".join(base64.b64decode(x["blob"]) for x in lines[:-1])
        assert hashlib.sha256(data).digest() == base64.b64decode(lines[-1]["blob"]), server.kind


@pytest.mark.parametrize("size", [1_400_000, 1_600_000, 2 << 20, 10 << 20])
def test_oversized_puts(pair: Pair, size: int) -> None:
    """Stored under etcd's --max-request-bytes (1.5 MiB); "request is too large" over it; over the
    gRPC receive limit (2 MiB), grpc-go's words; nothing stored when refused."""
    key = f"big/{size}"
    pair.same("/v3/kv/put", {"key": b64(key), "value": b64(b"x" * size)})
    pair.same("/v3/kv/range", {"key": b64(key), "count_only": True})


def test_lock_and_election_over_json(pair: Pair) -> None:
    """The seed's JSON lock, unlock, and the election calls; errors are etcd's Unknown (HTTP 500)."""
    answers = []
    for server in (pair.synod, pair.etcd):
        ep = server.endpoint
        lease = post(ep, "/v3/lease/grant", {"TTL": 30}).json["ID"]
        steps = [post(ep, "/v3/lock/lock", f'{{"name":"{b64("gwlock")}", "lease" : {lease} }}')]
        steps.append(post(ep, "/v3/lock/unlock", {"key": steps[0].json["key"]}))
        steps.append(post(ep, "/v3/lock/lock", {"name": b64("gwlock"), "lease": "12345"}))
        steps.append(post(ep, "/v3/election/leader", {"name": b64("gwelect")}))
        won = post(ep, "/v3/election/campaign", {"name": b64("gwelect"), "lease": lease, "value": b64("v")})
        steps += [won, post(ep, "/v3/election/leader", {"name": b64("gwelect")})]
        steps.append(post(ep, "/v3/election/proclaim", {"leader": won.json["leader"], "value": b64("w")}))
        steps.append(post(ep, "/v3/election/proclaim", {"value": b64("w")}))
        steps.append(post(ep, "/v3/election/resign", {"leader": won.json["leader"]}))
        ids: dict[str, str] = {}
        lease_hex = f"{int(lease):x}"
        shown_steps = []
        for r in steps:
            body = json.loads(r.body.replace(b64(f"gwlock/{lease_hex}").encode(), b"<lock key>"))
            body = json.loads(json.dumps(body).replace(b64(f"gwelect/{lease_hex}"), "<leader key>"))
            shown_steps.append((r.status, r.headers, normalise(body, server, ids)))
        answers.append(shown_steps)
    for got, want in zip(answers[0], answers[1], strict=True):
        assert got == want
