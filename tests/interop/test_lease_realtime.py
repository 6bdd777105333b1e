"""A short lease through etcd's own etcdctl expires in real time and takes its key with it."""

from __future__ import annotations

import subprocess

from tests.support.servers import wait_until


def etcdctl(endpoint: str, *args: str) -> str:
    return subprocess.run(
        ["etcdctl", f"--endpoints={endpoint}", *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def test_short_ttl_lease_expires_through_etcdctl(synod):
    granted = etcdctl(synod.endpoint, "lease", "grant", "2")
    assert granted.endswith("granted with TTL(2s)\n"), granted
    lease = granted.split()[1]
    etcdctl(synod.endpoint, "put", "--lease", lease, "ephemeral", "here")
    assert etcdctl(synod.endpoint, "get", "ephemeral", "--print-value-only") == "here\n"
    wait_until(lambda: etcdctl(synod.endpoint, "get", "ephemeral") == "", 15, "the lease to expire")
    assert etcdctl(synod.endpoint, "lease", "timetolive", lease) == f"lease {lease} already expired\n"
