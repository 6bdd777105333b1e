"""The JSON gateway's Cluster paths on 3-member clusters: synod's answers beside a real etcd 3.4's.

The same membership changes through ``/v3/cluster/member/*`` on each cluster's
first member (members that are added never start): IDs named by order of
appearance, each member's URLs by its name, members sorted by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.http_json import post
from tests.support.servers import ClusterProcesses, free_port, wait_until


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterProcesses, ClusterProcesses]]:
    root: Path = tmp_path_factory.mktemp("gateway-cluster")
    synod = ClusterProcesses("synod", root / "synod", extra_args=["--frontend-procs", "0"])
    etcd = ClusterProcesses("etcd", root / "etcd")
    try:
        synod.start()
        etcd.start()
        yield synod, etcd
    finally:
        synod.kill()
        etcd.kill()


def _named(value: Any, names: dict[str, str], ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("cluster_id", "member_id", "ID") and isinstance(v, str):
                out[k] = ids.setdefault(v, f"<id{len(ids)}>")
            elif k == "members":
                out[k] = sorted(
                    (_named(m, names, ids) for m in v), key=lambda m: json.dumps(m, sort_keys=True)
                )
            else:
                out[k] = _named(v, names, ids)
        return out
    if isinstance(value, list):
        return [_named(v, names, ids) for v in value]
    if isinstance(value, str):
        for real, alias in names.items():
            value = value.replace(real, alias)
    return value


def _script(cluster: ClusterProcesses) -> list[tuple[int, Any]]:
    ep = cluster.members[0].endpoint
    idle = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    names = {u: f"<idle{i}>" for i, u in enumerate(idle)}
    for m in cluster.members:
        names[m.client_url] = f"<client:{m.name}>"
        names[m.peer_url] = f"<peer:{m.name}>"
    out = []

    def published() -> Any:
        members = post(ep, "/v3/cluster/member/list", {}).json["members"]
        return members if all("name" in m for m in members) else None

    ids: dict[str, str] = {}
    for m in sorted(wait_until(published, 30, "the members to publish themselves"), key=lambda m: m["name"]):
        ids[m["ID"]] = f"<id:{m['name']}>"

    def call(path: str, body: dict[str, Any]) -> Any:
        reply = post(ep, path, body)
        out.append((reply.status, reply.json))
        return reply.json

    def added(url: str, learner: bool = False) -> Any:
        """A cluster refuses changes for its first seconds (``unhealthy cluster``): wait it out."""

        def attempt() -> Any:
            reply = post(ep, "/v3/cluster/member/add", {"peerURLs": [url], "isLearner": learner})
            return reply if reply.status == 200 else None

        reply = wait_until(attempt, 30, "a voter to be accepted", interval=0.5)
        out.append((reply.status, reply.json))
        return reply.json

    call("/v3/cluster/member/list", {})
    learner = added(idle[0], learner=True)["member"]["ID"]
    call("/v3/cluster/member/list", {})
    call("/v3/cluster/member/promote", {"ID": learner})  # not started, so not in sync
    call("/v3/cluster/member/remove", {"ID": learner})
    voter = added(idle[1])["member"]["ID"]
    call("/v3/cluster/member/update", {"ID": voter, "peerURLs": [idle[0]]})
    call("/v3/cluster/member/list", {})
    call("/v3/cluster/member/remove", {"ID": voter})
    call("/v3/cluster/member/list", {})
    return [(status, _named(body, names, ids)) for status, body in out]


def test_membership_changes_over_json(clusters: tuple[ClusterProcesses, ClusterProcesses]) -> None:
    synod, etcd = (_script(c) for c in clusters)
    for n, (got, want) in enumerate(zip(synod, etcd, strict=True)):
        for answer in (got, want):  # the raft term may differ by an election; nothing else may
            if isinstance(answer[1], dict) and "header" in answer[1]:
                answer[1]["header"].pop("raft_term", None)
        assert got == want, f"step {n}\n  etcd:  {want}\n  synod: {got}"
