"""The cluster's members, as applied from the log: the backend's ``members`` bucket.

Changed only by applied entries (a member publishing its name and client
URLs, membership changes), so every member holds the same list. Each record is
a ``membershippb.Member`` keyed by the member ID (8 bytes, big-endian).
"""

from __future__ import annotations

import struct

from synod.api.membershippb import membership_pb2 as mpb
from synod.backend import backend as bk
from synod.backend.backend import Backend
from synod.server.cluster import Member

_KEY = struct.Struct(">Q")


class Membership:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._members: dict[int, Member] = {}
        self._removed = {_KEY.unpack(k)[0] for k, _ in backend.items(bk.MEMBERS_REMOVED)}
        for key, value in backend.items(bk.MEMBERS):
            m = mpb.Member.FromString(value)
            self._members[_KEY.unpack(key)[0]] = Member(
                m.ID,
                m.member_attributes.name,
                list(m.raft_attributes.peer_urls),
                list(m.member_attributes.client_urls),
                m.raft_attributes.is_learner,
            )

    def bootstrap(self, members: dict[int, Member]) -> None:
        """Record the initial members if none are recorded yet (names and client URLs come when published)."""
        if self._members:
            return
        for m in members.values():
            self._save(Member(m.id, "", list(m.peer_urls), [], m.is_learner))

    def _save(self, m: Member) -> None:
        self._members[m.id] = m
        record = mpb.Member(
            ID=m.id,
            raft_attributes=mpb.RaftAttributes(peer_urls=m.peer_urls, is_learner=m.is_learner),
            member_attributes=mpb.Attributes(name=m.name, client_urls=m.client_urls),
        )
        self._backend.put(bk.MEMBERS, _KEY.pack(m.id), record.SerializeToString())

    def set_attributes(self, member_id: int, name: str, client_urls: list[str]) -> None:
        """A member published itself (ignored for a member that is not, or no longer, in the cluster)."""
        m = self._members.get(member_id)
        if m is None:
            return
        self._save(Member(m.id, name, m.peer_urls, list(client_urls), m.is_learner))

    def add(self, m: Member) -> None:
        self._save(m)

    def remove(self, member_id: int) -> None:
        if self._members.pop(member_id, None) is not None:
            self._backend.delete(bk.MEMBERS, _KEY.pack(member_id))
            self._removed.add(member_id)
            self._backend.put(bk.MEMBERS_REMOVED, _KEY.pack(member_id), b"")

    def is_removed(self, member_id: int) -> bool:
        return member_id in self._removed

    def update_peer_urls(self, member_id: int, peer_urls: list[str]) -> None:
        m = self._members.get(member_id)
        if m is not None:
            self._save(Member(m.id, m.name, list(peer_urls), m.client_urls, m.is_learner))

    def promote(self, member_id: int) -> None:
        m = self._members.get(member_id)
        if m is not None:
            self._save(Member(m.id, m.name, m.peer_urls, m.client_urls, False))

    def get(self, member_id: int) -> Member | None:
        return self._members.get(member_id)

    def ids(self) -> set[int]:
        return set(self._members)

    def members(self) -> list[Member]:
        return [self._members[i] for i in sorted(self._members)]
