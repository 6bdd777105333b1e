"""Cluster membership at bootstrap: etcd's ``--initial-cluster``, member and cluster IDs.

``name=url,name=url,...`` lists every member's peer URLs (a name may appear
several times for several URLs). IDs are derived exactly as etcd derives them,
so a synod cluster started with the same flags as an etcd cluster reports the
same member and cluster IDs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synod.server import ids


@dataclass(slots=True)
class Member:
    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str] = field(default_factory=list)
    is_learner: bool = False


def parse_initial_cluster(text: str) -> dict[str, list[str]]:
    """``name=url,...`` -> name -> peer URLs, in the order given."""
    out: dict[str, list[str]] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, url = part.partition("=")
        if not sep or not name or not url:
            raise ValueError(f"--initial-cluster: {part!r} is not name=url")
        out.setdefault(name, []).append(url)
    if not out:
        raise ValueError("--initial-cluster is empty")
    return out


def bootstrap_members(initial_cluster: dict[str, list[str]], token: str) -> dict[int, Member]:
    members: dict[int, Member] = {}
    for name, urls in initial_cluster.items():
        member_id = ids.member_id(urls, token)
        if member_id in members:
            raise ValueError(
                f"--initial-cluster: members {members[member_id].name} and {name} share peer URLs"
            )
        members[member_id] = Member(member_id, name, sorted(urls))
    return members


def cluster_id_of(members: dict[int, Member]) -> int:
    return ids.cluster_id(list(members))
