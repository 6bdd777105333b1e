"""The gateway's Auth paths, differential: the same HTTP requests to synod and to a real etcd 3.4.

Each test gets a fresh synod and a fresh etcd (auth changes state no other test
should see) and runs one script of requests on both; every answer is compared
whole (status, headers, JSON), as tests/differential/test_gateway_differential.py
compares them. Tokens differ by nature: each side authenticates for itself and
sends its own token in the ``Authorization`` header; a token in an answer is
compared by its shape (a simple token is 16 letters, a dot and a log index).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.differential.test_gateway_differential import shown
from tests.support.http_json import Reply, b64, post
from tests.support.servers import ServerProcess

FAST = ["--bcrypt-cost", "4"]
SIMPLE_TOKEN = re.compile(r"^[A-Za-z]{16}\.[0-9]+$")


class Sides:
    """synod and etcd, each with the tokens it issued, by user."""

    def __init__(self, synod: ServerProcess, etcd: ServerProcess) -> None:
        self.servers = {"synod": synod, "etcd": etcd}
        self.tokens: dict[str, dict[str, str]] = {"synod": {}, "etcd": {}}

    def same(self, path: str, body: Any = None, *, user: str | None = None, token: str | None = None) -> Any:
        """Send to both (as ``user``, or with the literal ``token``); answers must agree."""
        answers: dict[str, Any] = {}
        for side, server in self.servers.items():
            headers = {}
            if user is not None:
                headers["Authorization"] = self.tokens[side][user]
            elif token is not None:
                headers["Authorization"] = token
            reply = post(server.endpoint, path, body, headers=headers)
            answers[side] = _comparable(reply, server)
        who = user or token
        assert answers["synod"] == answers["etcd"], (
            f"POST {path} {body!r} as {who}\n  etcd:  {answers['etcd']}\n  synod: {answers['synod']}"
        )
        return answers["etcd"]

    def login(self, user: str, password: str) -> None:
        for side, server in self.servers.items():
            reply = post(server.endpoint, "/v3/auth/authenticate", {"name": user, "password": password})
            assert reply.status == 200, (side, reply.body)
            token = reply.json["token"]
            assert SIMPLE_TOKEN.match(token), (side, token)
            self.tokens[side][user] = token


def _comparable(reply: Reply, server: ServerProcess) -> Any:
    out = shown(reply, server)
    body = out["body"]
    if isinstance(body, dict):
        if isinstance(body.get("token"), str) and SIMPLE_TOKEN.match(body["token"]):
            body["token"] = "<simple token>"
        for key in ("raftIndex", "raftAppliedIndex"):  # etcd's log starts with entries synod's lacks
            if key in body:
                body[key] = "<index>"
    return out


@pytest.fixture
def sides(tmp_path: Path) -> Iterator[Sides]:
    servers = [ServerProcess(kind, tmp_path / kind, extra_args=FAST) for kind in ("synod", "etcd")]
    try:
        for s in servers:
            s.start()
        yield Sides(*servers)
    finally:
        for s in servers:
            s.kill()


def test_users_roles_and_enabling(sides: Sides) -> None:
    s = sides
    s.same("/v3/auth/enable", {})  # no root user yet
    s.same("/v3/auth/authenticate", {"name": "root", "password": "x"})  # auth is off
    s.same("/v3/auth/user/add", {"name": "root", "password": "rootpw"})
    s.same("/v3/auth/user/add", {"name": "root", "password": "again"})  # exists
    s.same("/v3/auth/user/add", {"name": "", "password": "pw"})  # empty name
    s.same("/v3/auth/enable", {})  # root lacks the root role
    s.same("/v3/auth/user/grant", {"user": "root", "role": "root"})  # "root" needs no role entry
    s.same("/v3/auth/user/grant", {"user": "root", "role": "root"})  # a second grant is ignored
    s.same("/v3/auth/user/grant", {"user": "nobody", "role": "root"})
    s.same("/v3/auth/user/add", {"name": "alice", "password": "pw"})
    s.same("/v3/auth/user/add", {"name": "svc", "options": {"no_password": True}})
    s.same("/v3/auth/role/add", {"name": "reader"})
    s.same("/v3/auth/role/add", {"name": "reader"})  # exists
    s.same("/v3/auth/role/add", {"name": ""})
    s.same("/v3/auth/user/grant", {"user": "alice", "role": "nope"})  # no such role
    s.same("/v3/auth/role/add", {"name": "writer"})
    # Permissions sort by key; a grant on the same key and range replaces the type.
    s.same("/v3/auth/role/grant", {"name": "reader", "perm": {"key": b64("m"), "range_end": b64("n")}})
    s.same("/v3/auth/role/grant", {"name": "reader", "perm": {"permType": "READ", "key": b64("b")}})
    s.same(
        "/v3/auth/role/grant",
        {"name": "reader", "perm": {"permType": "READWRITE", "key": b64("m"), "range_end": b64("n")}},
    )
    s.same("/v3/auth/role/grant", {"name": "nope", "perm": {"key": b64("x")}})
    s.same(
        "/v3/auth/role/grant",
        {"name": "writer", "perm": {"permType": "WRITE", "key": b64("w"), "range_end": b64("\0")}},
    )
    s.same("/v3/auth/role/get", {"role": "reader"})
    s.same("/v3/auth/role/get", {"role": "nope"})
    s.same("/v3/auth/role/revoke", {"role": "reader", "key": b64("zz")})  # not granted
    s.same("/v3/auth/role/revoke", {"role": "reader", "key": b64("b")})
    s.same("/v3/auth/role/grant", {"name": "reader", "perm": {"permType": "READ", "key": b64("b")}})
    s.same("/v3/auth/user/grant", {"user": "alice", "role": "writer"})
    s.same("/v3/auth/user/grant", {"user": "alice", "role": "reader"})
    s.same("/v3/auth/user/get", {"name": "alice"})  # roles sorted
    s.same("/v3/auth/user/get", {"name": "nope"})
    s.same("/v3/auth/user/list", {})
    s.same("/v3/auth/role/list", {})
    s.same("/v3/auth/user/revoke", {"name": "alice", "role": "root"})  # not granted
    s.same("/v3/auth/enable", {})
    s.same("/v3/auth/enable", {})  # needs root now: no token
    s.login("root", "rootpw")
    s.same("/v3/auth/enable", {}, user="root")  # already on
    s.same("/v3/auth/authenticate", {"name": "root", "password": "wrong"})
    s.same("/v3/auth/authenticate", {"name": "ghost", "password": "x"})
    s.same("/v3/auth/authenticate", {"name": "svc", "password": "x"})  # a user with no password
    s.same("/v3/auth/authenticate", {"name": "alice", "password": "pw"})
    s.same("/v3/auth/user/delete", {"name": "root"}, user="root")  # not while enabled
    s.same("/v3/auth/user/revoke", {"name": "root", "role": "root"}, user="root")
    s.same("/v3/auth/role/delete", {"role": "root"}, user="root")
    s.login("alice", "pw")
    for path, body in [
        ("/v3/auth/user/list", {}),
        ("/v3/auth/role/list", {}),
        ("/v3/auth/user/add", {"name": "mallory", "password": "pw"}),
        ("/v3/auth/user/get", {"name": "root"}),
        ("/v3/auth/role/get", {"role": "root"}),
        ("/v3/auth/disable", {}),
    ]:
        s.same(path, body, user="alice")  # not root: refused
    s.same("/v3/auth/user/get", {"name": "alice"}, user="alice")  # oneself
    s.same("/v3/auth/role/get", {"role": "reader"}, user="alice")  # one's own role
    s.same("/v3/auth/user/list", {}, token="bogus")
    s.same("/v3/auth/role/delete", {"role": "writer"}, user="root")  # leaves alice's roles
    s.same("/v3/auth/user/get", {"name": "alice"}, user="root")
    s.same("/v3/auth/user/changepw", {"name": "alice", "password": "new"}, user="root")
    s.same("/v3/auth/user/get", {"name": "alice"}, user="alice")  # the old token is gone
    s.same("/v3/auth/authenticate", {"name": "alice", "password": "pw"})
    s.same("/v3/auth/authenticate", {"name": "alice", "password": "new"})
    s.same("/v3/auth/user/delete", {"name": "ghost"}, user="root")
    s.same("/v3/auth/user/delete", {"name": "svc"}, user="root")
    s.same("/v3/auth/disable", {}, user="root")
    s.same("/v3/auth/user/list", {}, user="root")  # auth off, yet the token is refused (as etcd)
    s.same("/v3/auth/user/list", {})
    s.same("/v3/auth/user/delete", {"name": "root"})  # allowed once auth is off
    s.same("/v3/auth/user/list", {})


def test_keys_as_users_may_touch_them(sides: Sides) -> None:
    s = sides
    s.same("/v3/kv/put", {"key": b64("a/1"), "value": b64("x")})
    s.same("/v3/kv/put", {"key": b64("b/1"), "value": b64("y")})
    s.same("/v3/auth/user/add", {"name": "root", "password": "rootpw"})
    s.same("/v3/auth/user/grant", {"user": "root", "role": "root"})
    s.same("/v3/auth/user/add", {"name": "bob", "password": "pw"})
    s.same("/v3/auth/role/add", {"name": "a-rw"})
    s.same("/v3/auth/role/add", {"name": "b-r"})
    s.same(
        "/v3/auth/role/grant",
        {"name": "a-rw", "perm": {"permType": "READWRITE", "key": b64("a/"), "range_end": b64("a0")}},
    )
    s.same("/v3/auth/role/grant", {"name": "b-r", "perm": {"permType": "READ", "key": b64("b/1")}})
    s.same("/v3/auth/user/grant", {"user": "bob", "role": "a-rw"})
    s.same("/v3/auth/user/grant", {"user": "bob", "role": "b-r"})
    s.same("/v3/auth/enable", {})
    s.login("bob", "pw")
    s.login("root", "rootpw")
    s.same("/v3/kv/range", {"key": b64("a/1")})  # no token
    s.same("/v3/kv/range", {"key": b64("a/1")}, token="bogus.1")
    s.same("/v3/kv/range", {"key": b64("a/1")}, token="nodot")
    s.same("/v3/kv/range", {"key": b64("a/1")}, user="bob")
    s.same("/v3/kv/range", {"key": b64("a/"), "range_end": b64("a0")}, user="bob")
    s.same("/v3/kv/range", {"key": b64("a/"), "range_end": b64("b0")}, user="bob")  # a gap
    s.same("/v3/kv/range", {"key": b64("b/1")}, user="bob")
    s.same("/v3/kv/range", {"key": b64("b/1"), "serializable": True}, user="bob")
    s.same("/v3/kv/put", {"key": b64("a/2"), "value": b64("z")}, user="bob")
    s.same("/v3/kv/put", {"key": b64("b/1"), "value": b64("z")}, user="bob")  # read only
    s.same("/v3/kv/put", {"key": b64("a/2"), "value": b64("w"), "prev_kv": True}, user="bob")
    s.same("/v3/kv/deleterange", {"key": b64("b/1")}, user="bob")
    s.same("/v3/kv/deleterange", {"key": b64("a/2"), "prev_kv": True}, user="bob")
    txn = {
        "compare": [{"key": b64("b/1"), "target": "VERSION", "version": "1"}],
        "success": [{"request_put": {"key": b64("a/3"), "value": b64("t")}}],
        "failure": [{"request_range": {"key": b64("a/1")}}],
    }
    s.same("/v3/kv/txn", txn, user="bob")
    denied = {**txn, "failure": [{"request_delete_range": {"key": b64("b/1")}}]}
    s.same("/v3/kv/txn", denied, user="bob")  # a branch not taken is checked too
    s.same("/v3/kv/txn", {"compare": [{"key": b64("c"), "target": "VERSION"}]}, user="bob")
    s.same("/v3/kv/compaction", {"revision": "2"}, user="bob")  # as etcd 3.4: anyone may compact
    # A lease holding a key bob can't write can neither be revoked nor given more keys by him.
    lease = s.same("/v3/lease/grant", {"TTL": 60}, user="root")["body"]["ID"]
    s.same("/v3/kv/put", {"key": b64("b/2"), "value": b64("l"), "lease": lease}, user="root")
    s.same("/v3/kv/put", {"key": b64("a/4"), "value": b64("l"), "lease": lease}, user="bob")
    s.same("/v3/lease/revoke", {"ID": lease}, user="bob")
    s.same("/v3/maintenance/defragment", {}, user="bob")
    s.same("/v3/maintenance/status", {}, user="bob")
    s.same("/v3/cluster/member/list", {}, user="bob")
    s.same("/v3/cluster/member/add", {"peerURLs": ["http://127.0.0.1:1"]}, user="bob")
    # Any auth change makes the tokens before it stale for the calls that check permissions.
    s.same("/v3/auth/role/add", {"name": "later"}, user="root")
    s.same("/v3/kv/put", {"key": b64("a/5"), "value": b64("s")}, user="bob")
    s.same("/v3/kv/range", {"key": b64("a/1")}, user="bob")  # simple tokens take the current revision
    s.same("/v3/lease/revoke", {"ID": lease}, user="root")
    s.same("/v3/kv/range", {"key": b64("a/"), "range_end": b64("c")}, user="root")
