"""etcd's etcdctl 3.4 auth commands against synod and a real etcd 3.4, output compared byte for byte.

Every `user`, `role` and `auth` command in each output format, their errors, and
the KV, watch, lease and lock commands of a user with `--user` once auth is on.
Each test has a fresh pair of members.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.etcdctl import CtlPair
from tests.support.servers import ServerProcess

FAST = ["--bcrypt-cost", "4"]
FORMATS = ("simple", "json", "fields", "protobuf", "table")
ROOT = "--user=root:rootpw"


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[CtlPair]:
    servers = [ServerProcess(kind, tmp_path / kind, extra_args=FAST) for kind in ("synod", "etcd")]
    pair = None
    try:
        for s in servers:
            s.start()
        pair = CtlPair(*servers)
        yield pair
    finally:
        if pair is not None:
            pair.close()
        for s in servers:
            s.kill()


def test_users_roles_and_auth_in_every_format(ctl: CtlPair) -> None:
    run = ctl.run
    run("auth", "enable")  # no root user
    run("user", "add", "root:rootpw")
    run("user", "add", "root:again")
    run("auth", "enable")  # root has no root role
    run("user", "grant-role", "root", "root")
    run("user", "add", "alice", "--interactive=false", stdin="pw\n")
    run("user", "add", "svc", "--no-password")
    run("user", "add", "bob", "--new-user-password=pw")
    run("role", "add", "app")
    run("role", "add", "app")
    run("role", "grant-permission", "app", "readwrite", "/app/", "--prefix")
    run("role", "grant-permission", "app", "read", "/cfg")
    run("role", "grant-permission", "app", "write", "/logs/", "/logs0")
    run("role", "grant-permission", "app", "read", "/all", "--from-key")
    run("role", "grant-permission", "app", "readwrite", "/cfg")  # replaces the type
    run("role", "grant-permission", "nope", "read", "x")
    run("role", "grant-permission", "app", "bogus", "x")
    run("user", "grant-role", "alice", "app")
    run("user", "grant-role", "alice", "nope")
    run("user", "grant-role", "ghost", "app")
    for fmt in FORMATS:
        run("-w", fmt, "user", "list")
        run("-w", fmt, "user", "get", "alice")
        run("-w", fmt, "user", "get", "alice", "--detail")
        run("-w", fmt, "role", "list")
        run("-w", fmt, "role", "get", "app")
    run("user", "get", "ghost")
    run("role", "get", "ghost")
    run("role", "revoke-permission", "app", "/cfg")
    run("role", "revoke-permission", "app", "/cfg")  # not granted
    run("role", "revoke-permission", "app", "/app/", "--prefix")
    run("role", "get", "app")
    run("user", "revoke-role", "alice", "nope")
    run("auth", "enable")
    run("user", "list")  # no user given
    run(ROOT, "user", "list")
    run("--user=root:wrong", "user", "list")
    run("--user=svc:x", "get", "k")  # a user with no password
    run(ROOT, "user", "delete", "root")
    run(ROOT, "user", "revoke-role", "root", "root")
    run(ROOT, "role", "delete", "root")
    run("--user=alice:pw", "user", "list")  # not root
    run("--user=alice:pw", "user", "get", "alice")
    run(ROOT, "user", "passwd", "alice", "--interactive=false", stdin="new\n")
    run("--user=alice:pw", "get", "/cfg")
    run("--user=alice:new", "get", "/cfg")
    run(ROOT, "role", "delete", "app")
    run(ROOT, "user", "get", "alice")
    run(ROOT, "user", "delete", "bob")
    run(ROOT, "user", "delete", "bob")
    for fmt in FORMATS:
        run(ROOT, "-w", fmt, "user", "add", f"u-{fmt}:pw")
        run(ROOT, "-w", fmt, "role", "add", f"r-{fmt}")
    run(ROOT, "auth", "disable")
    run("auth", "disable")
    run("user", "list")


def test_keys_commands_as_a_user(ctl: CtlPair) -> None:
    run = ctl.run
    run("put", "/app/1", "a")
    run("put", "/other", "o")
    for args in (
        ["user", "add", "root:rootpw"],
        ["user", "grant-role", "root", "root"],
        ["user", "add", "bob:pw"],
        ["role", "add", "app"],
        ["role", "grant-permission", "app", "readwrite", "/app/", "--prefix"],
        ["user", "grant-role", "bob", "app"],
        ["auth", "enable"],
    ):
        run(*args)
    bob = "--user=bob:pw"
    run("get", "/app/1")  # no user: refused
    run(bob, "get", "/app/1")
    run(bob, "get", "/app/", "--prefix")
    run(bob, "get", "/", "--prefix")  # more than bob may read
    run(bob, "put", "/app/2", "b")
    run(bob, "put", "/other", "x")
    run(bob, "del", "/app/2", "--prev-kv")
    run(bob, "del", "/other")
    run(bob, "txn", "--interactive=false", stdin='value("/app/1") = "a"\n\nput /app/3 c\n\nput /app/4 d\n\n')
    run(bob, "txn", "--interactive=false", stdin='value("/other") = "o"\n\nput /app/3 c\n\n\n')
    run(bob, "compaction", "2")
    run(bob, "defrag")  # root only (the error names no endpoint)
    run(bob, "lock", "/app/lk", "echo", "held")  # the lock's keys written as bob
    run(bob, "lock", "/elsewhere", "echo", "held")
    run(ROOT, "get", "", "--prefix", "--keys-only")
