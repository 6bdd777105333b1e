"""etcd's etcdctl 3.4 against 3- and 5-member synod clusters, compared with real etcd clusters started
with the same flags (same names, peer and client URLs, so the same IDs): move-leader, member list,
endpoint status and endpoint health."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.etcdctl import run_ctl as etcdctl
from tests.support.servers import ClusterProcesses, wait_until


def same_addresses(synod: ClusterProcesses, etcd: ClusterProcesses) -> None:
    for s, e in zip(synod.members, etcd.members, strict=True):
        s.peer_port, s.client_port, s.initial_cluster = e.peer_port, e.client_port, e.initial_cluster


def outputs(cluster: ClusterProcesses) -> dict[str, str]:
    endpoint = cluster.endpoints[0]
    wait_until(lambda: etcdctl(endpoint, "put", "k", "v").returncode == 0, 30, "a first write")

    # Every member has published its name and client URLs before member list is compared.
    def published() -> bool:
        members = json.loads(etcdctl(endpoint, "member", "list", "-w", "json").stdout)["members"]
        return all(m.get("name") for m in members)

    wait_until(published, 30, "every member to publish itself")
    status = json.loads(etcdctl(",".join(cluster.endpoints), "endpoint", "status", "-w", "json").stdout)
    leader = status[0]["Status"]["leader"]
    follower = next(r for r in status if r["Status"]["header"]["member_id"] != leader)
    leader_ep = next(r["Endpoint"] for r in status if r["Status"]["header"]["member_id"] == leader)
    target = f"{follower['Status']['header']['member_id']:x}"
    moved = etcdctl(leader_ep, "move-leader", target).stdout
    not_leader = etcdctl(follower["Endpoint"], "move-leader", target).stderr
    after = json.loads(etcdctl(",".join(cluster.endpoints), "endpoint", "status", "-w", "json").stdout)
    return {
        "moved": moved.replace(f"{leader:x}", "<OLD>").replace(target, "<NEW>"),
        "not leader": not_leader.replace(follower["Endpoint"], "<EP>"),
        "new leader": str({r["Status"]["leader"] for r in after} == {int(target, 16)}),
        "member list": etcdctl(endpoint, "member", "list").stdout,
        "member list json": etcdctl(endpoint, "member", "list", "-w", "json").stdout,
        "status": etcdctl(endpoint, "endpoint", "status", "--cluster", "-w", "json").stdout,
        "table": etcdctl(endpoint, "endpoint", "status", "--cluster", "-w", "table").stdout,
        "health": etcdctl(endpoint, "endpoint", "health", "--cluster").stdout
        + etcdctl(endpoint, "endpoint", "health", "--cluster").stderr,
    }


@pytest.mark.parametrize("size", [3, 5])
def test_member_list_endpoint_status_and_health_match_etcds(tmp_path: Path, size: int) -> None:
    etcd = ClusterProcesses("etcd", tmp_path, size=size).start()
    try:
        want = outputs(etcd)
    finally:
        etcd.kill()
    synod = ClusterProcesses("synod", tmp_path, size=size)
    same_addresses(synod, etcd)
    synod.start()
    try:
        got = outputs(synod)
    finally:
        synod.kill()

    assert got["moved"] == want["moved"] == "Leadership transferred from <OLD> to <NEW>\n"
    assert got["not leader"] == want["not leader"]
    assert got["new leader"] == want["new leader"] == "True"
    assert got["member list"] == want["member list"]
    got_members = json.loads(got["member list json"])
    want_members = json.loads(want["member list json"])
    assert got_members["members"] == want_members["members"]
    assert got_members["header"]["cluster_id"] == want_members["header"]["cluster_id"]

    def summary(text: str) -> list[tuple[str, int, bool]]:
        rows = json.loads(text)
        leaders = {r["Status"]["leader"] for r in rows}
        assert len(leaders) == 1  # every member names the same leader
        (leader,) = leaders
        return sorted(
            (r["Endpoint"], r["Status"]["header"]["member_id"], r["Status"]["header"]["member_id"] == leader)
            for r in rows
        )

    got_rows, want_rows = summary(got["status"]), summary(want["status"])
    assert [(e, m) for e, m, _ in got_rows] == [(e, m) for e, m, _ in want_rows]
    assert sum(is_leader for _, _, is_leader in got_rows) == 1
    for row in json.loads(got["status"]):
        st = row["Status"]
        assert st["raftTerm"] >= 2 and st["raftAppliedIndex"] <= st["raftIndex"] and st["dbSize"] > 0

    # The table has etcd's columns and one row per member.
    header = [line for line in got["table"].splitlines() if "ENDPOINT" in line]
    assert header == [line for line in want["table"].splitlines() if "ENDPOINT" in line]
    assert got["table"].count("| http://") == size

    healthy = re.findall(r"^(\S+) is healthy: successfully committed proposal", got["health"], re.M)
    assert sorted(healthy) == sorted(re.findall(r"^(\S+) is healthy", want["health"], re.M))
    assert len(healthy) == size
