"""etcdctl 3.4's member add (as a learner) / promote / update / remove against a 3-member synod cluster,
with the new member joining by --initial-cluster-state existing; the same script against a real etcd
cluster gives the same output (IDs, which depend on the time of the add, normalised)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.etcdctl import run_ctl
from tests.support.servers import ClusterProcesses, ServerProcess, free_port, wait_until


def normalise(text: str, names: dict[str, str]) -> str:
    """IDs out, addresses named; orders that follow the (random) IDs sorted."""
    for real, alias in names.items():
        text = text.replace(real, alias)
    text = re.sub(r"\b[0-9a-f]{8,16}\b", "<ID>", text)
    text = re.sub(r" +<ID>", " <ID>", text)  # etcdctl pads IDs to 16 columns (%16x)
    text = re.sub(
        r'ETCD_INITIAL_CLUSTER="([^"]*)"',
        lambda m: f'ETCD_INITIAL_CLUSTER="{",".join(sorted(m[1].split(",")))}"',
        text,
    )
    if text.count("\n") > 1 and "ETCD_NAME" not in text:
        text = "\n".join(sorted(text.splitlines())) + "\n"
    return text


def script(kind: str, root: Path) -> list[str]:
    cluster = ClusterProcesses(kind, root / kind).start()
    joined: ServerProcess | None = None
    try:
        eps = ",".join(cluster.endpoints)
        wait_until(lambda: run_ctl(eps, "put", "k", "v").returncode == 0, 30, "a first write")
        peer = f"http://127.0.0.1:{free_port()}"
        out = []

        # etcd refuses changes until every member has been connected for 5 s ("unhealthy cluster").
        def add() -> object:
            r = run_ctl(eps, "member", "add", "m4", f"--peer-urls={peer}", "--learner")
            return r if r.returncode == 0 else None

        added = wait_until(add, 60, "member add to be accepted", interval=0.5)
        out.append(added.stdout + added.stderr)
        new_id = re.search(r"Member\s+([0-9a-f]+)\s+added", added.stdout)
        assert new_id is not None, added
        initial = cluster.members[0].initial_cluster
        joined = ServerProcess(
            kind,
            root / kind / "m4",
            peer_port=int(peer.rsplit(":", 1)[1]),
            name="m4",
            initial_cluster=f"{initial},m4={peer}",
            extra_args=["--initial-cluster-state", "existing"],
        ).start()

        def started() -> bool:
            members = json.loads(run_ctl(eps, "member", "list", "-w", "json").stdout)["members"]
            return all(m.get("name") for m in members) and len(members) == 4

        wait_until(started, 60, "the new member to join and publish itself")
        names = {m.endpoint: f"<EP{i}>" for i, m in enumerate([*cluster.members, joined])}
        names.update({m.peer_url: f"<PEER{i}>" for i, m in enumerate([*cluster.members, joined])})
        out.append(run_ctl(eps, "member", "list").stdout)
        # A learner takes no linearizable reads.
        out.append(run_ctl(joined.endpoint, "get", "k").stderr.splitlines()[-1])
        out.append(run_ctl(joined.endpoint, "get", "k", "--consistency=s").stdout)

        def promoted() -> str | None:
            r = run_ctl(eps, "member", "promote", new_id.group(1))
            return r.stdout if r.returncode == 0 else None

        out.append(wait_until(promoted, 60, "the learner to catch up and be promoted", interval=0.5))
        out.append(run_ctl(eps, "member", "list").stdout)
        out.append(run_ctl(eps, "member", "update", new_id.group(1), f"--peer-urls={peer}").stdout)
        out.append(run_ctl(eps, "member", "remove", new_id.group(1)).stdout)
        out.append(run_ctl(eps, "member", "list").stdout)
        out.append(run_ctl(eps, "member", "remove", new_id.group(1)).stderr.splitlines()[-1])
        # A removed member stops by itself.
        wait_until(lambda: joined is not None and joined._exited(), 30, "the removed member to exit")
        return [normalise(o, names) for o in out]
    finally:
        if joined is not None:
            joined.kill()
        cluster.kill()


def test_membership_changes_through_etcdctl_match_etcds(tmp_path: Path) -> None:
    want = script("etcd", tmp_path)
    got = script("synod", tmp_path)
    assert got == want


def removed(endpoints: str, member_id: int) -> str | None:
    r = run_ctl(endpoints, "member", "remove", f"{member_id:x}")
    return r.stdout if r.returncode == 0 else None


def strict_checks(kind: str, root: Path) -> list[str]:
    cluster = ClusterProcesses(kind, root / f"strict-{kind}").start()
    try:
        live = ",".join(m.endpoint for m in cluster.members[:2])
        wait_until(lambda: run_ctl(live, "put", "k", "v").returncode == 0, 30, "a first write")

        def published() -> bool:
            members = json.loads(run_ctl(live, "member", "list", "-w", "json").stdout)["members"]
            return all(m.get("name") for m in members)

        wait_until(published, 30, "every member to publish itself")
        down = cluster.members[2]
        down_id = next(
            m["ID"]
            for m in json.loads(run_ctl(live, "member", "list", "-w", "json").stdout)["members"]
            if m["name"] == down.name
        )
        down.kill()
        peer = f"http://127.0.0.1:{free_port()}"
        out = [
            # With a voter down the cluster is not healthy enough to grow...
            run_ctl(live, "member", "add", "m4", f"--peer-urls={peer}").stderr.splitlines()[-1],
            # ...but the member that is down can be removed, once its peers have seen it go: it is
            # not part of the working quorum.
            wait_until(lambda: removed(live, down_id), 30, "the removal of the member that is down"),
            run_ctl(live, "member", "list").stdout,
        ]
        names = {m.endpoint: f"<EP{i}>" for i, m in enumerate(cluster.members)}
        names.update({m.peer_url: f"<PEER{i}>" for i, m in enumerate(cluster.members)})
        return [normalise(o, names) for o in out]
    finally:
        cluster.kill()


def test_strict_reconfiguration_checks_answer_as_etcds(tmp_path: Path) -> None:
    want = strict_checks("etcd", tmp_path)
    assert want[0] == "Error: etcdserver: unhealthy cluster"
    assert strict_checks("synod", tmp_path) == want


def test_member_update_keeps_a_learner_a_learner(tmp_path: Path) -> None:
    """Better than etcd 3.4, whose MemberUpdate lists an updated learner as a voter (etcd-io/etcd#21694)."""
    cluster = ClusterProcesses("synod", tmp_path / "synod").start()
    try:
        eps = ",".join(cluster.endpoints)
        wait_until(lambda: run_ctl(eps, "put", "k", "v").returncode == 0, 30, "a first write")
        old, new = (f"http://127.0.0.1:{free_port()}" for _ in range(2))

        def add() -> object:
            r = run_ctl(eps, "member", "add", "m4", f"--peer-urls={old}", "--learner", "-w", "json")
            return r if r.returncode == 0 else None

        added = json.loads(wait_until(add, 60, "member add to be accepted", interval=0.5).stdout)["member"]
        r = run_ctl(eps, "member", "update", f"{added['ID']:x}", f"--peer-urls={new}")
        assert r.returncode == 0, r
        members = json.loads(run_ctl(eps, "member", "list", "-w", "json").stdout)["members"]
        updated = next(m for m in members if m["ID"] == added["ID"])
        assert updated["peerURLs"] == [new] and updated.get("isLearner") is True, updated
    finally:
        cluster.kill()
