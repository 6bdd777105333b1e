"""The member, endpoint and move-leader commands' output, byte for byte as etcdctl 3.4 prints it.

What each format can print follows etcdctl's printer types:

- ``simple``: everything (``Member <%16x> added to cluster <%16x>``, rows
  joined by ``", "``, endpoint health on stderr).
- ``json``: the wire responses of member add/remove/update/list and
  move-leader as Go's encoding/json renders them, and etcdctl's own lists for
  the endpoint commands (``[{"Endpoint":...,"Status":{...}}]``,
  ``[{"endpoint":...,"health":true,"took":"1.2ms"}]``).
- ``protobuf``: the wire bytes of member add/remove/update/list and
  move-leader; the endpoint commands fail with ``protobuf not supported as
  output format`` (exit 4).
- ``fields``: member list and the endpoint commands; the other commands fail
  with ``fields not supported as output format`` (exit 4).
- ``table``: member list and the endpoint commands (table.py's layout); the
  others fail as ``fields`` does.

A command that fails for its format has already done its work (etcdctl
prints after the call). ``member promote`` prints only in ``simple``: in any
other format etcdctl 3.4 dereferences a nil printer and dies of Go's panic
(exit 2), after the promotion; synodctl ends the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from google.protobuf.message import Message

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.ctl.errors import EXIT_BAD_FEATURE, EXIT_PANIC, CtlExit
from synod.ctl.gostrconv import quote
from synod.ctl.invocation import encode
from synod.ctl.printer import JSONValue, Printer, go_bool, to_json
from synod.ctl.table import human_bytes, render_table

NIL_PANIC = "runtime error: invalid memory address or nil pointer dereference"
MEMBER_HEADER = ("ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner")
HEALTH_HEADER = ("endpoint", "health", "took", "error")
STATUS_HEADER = (
    "endpoint", "ID", "version", "db size", "is leader", "is learner",
    "raft term", "raft index", "raft applied index", "errors",
)  # fmt: skip
HASHKV_HEADER = ("endpoint", "hash")


@dataclass(frozen=True)
class EndpointHealth:
    """One endpoint's health check (etcdctl's ``epHealth``)."""

    endpoint: str
    health: bool
    took: str  # a Go duration; empty if the check never started
    error: str = ""


def go_json(value: JSONValue) -> str:
    """Go's json.Marshal text: UTF-8 as is, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")  # lone surrogates: U+FFFD
    for ch, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def go_strings(items: Sequence[str]) -> str:
    """fmt's ``%v`` of a []string: ``[a b]``."""
    return "[" + " ".join(items) + "]"


def _member_rows(resp: pb.MemberListResponse) -> list[list[str]]:
    return [
        [
            f"{m.ID:x}",
            "started" if m.name else "unstarted",
            m.name,
            ",".join(m.peerURLs),
            ",".join(m.clientURLs),
            go_bool(m.isLearner),
        ]
        for m in resp.members
    ]


def _health_rows(healths: Sequence[EndpointHealth]) -> list[list[str]]:
    return [[h.endpoint, go_bool(h.health), h.took, h.error] for h in healths]


def _status_rows(statuses: Sequence[tuple[str, pb.StatusResponse]]) -> list[list[str]]:
    return [
        [
            endpoint,
            f"{s.header.member_id:x}",
            s.version,
            human_bytes(s.dbSize),
            go_bool(s.leader == s.header.member_id),
            go_bool(s.isLearner),
            str(s.raftTerm),
            str(s.raftIndex),
            str(s.raftAppliedIndex),
            ", ".join(s.errors),
        ]
        for endpoint, s in statuses
    ]


def _hash_rows(hashes: Sequence[tuple[str, pb.HashKVResponse]]) -> list[list[str]]:
    return [[endpoint, str(h.hash)] for endpoint, h in hashes]


class ClusterPrinter(Printer):
    """``member``, ``endpoint`` and ``move-leader`` responses in etcdctl's formats."""

    def _text(self, text: str) -> None:
        self.out.write(encode(text + "\n"))

    def _unsupported(self) -> CtlExit:
        return CtlExit(EXIT_BAD_FEATURE, f"{self.format} not supported as output format")

    def _message(self, resp: Message) -> None:
        """etcdctl's printerRPC: the wire message as JSON or protobuf; no other format."""
        if self.format == "json":
            self._text(go_json(to_json(resp)))
        elif self.format == "protobuf":
            self.out.write(resp.SerializeToString())
        else:
            raise self._unsupported()

    def _rows(self, rows: list[list[str]]) -> None:
        for row in rows:
            self._text(", ".join(row))

    # -- member ---------------------------------------------------------------------------------------

    def member_add(self, resp: pb.MemberAddResponse) -> None:
        if self.format == "simple":
            self._text(f"Member {resp.member.ID:16x} added to cluster {resp.header.cluster_id:16x}")
        else:
            self._message(resp)

    def _member_change(
        self, member_id: int, done: str, resp: pb.MemberRemoveResponse | pb.MemberUpdateResponse
    ) -> None:
        if self.format == "simple":
            self._text(f"Member {member_id:16x} {done} cluster {resp.header.cluster_id:16x}")
        else:
            self._message(resp)

    def member_remove(self, member_id: int, resp: pb.MemberRemoveResponse) -> None:
        self._member_change(member_id, "removed from", resp)

    def member_update(self, member_id: int, resp: pb.MemberUpdateResponse) -> None:
        self._member_change(member_id, "updated in", resp)

    def member_promote(self, member_id: int, resp: pb.MemberPromoteResponse) -> None:
        if self.format != "simple":
            raise CtlExit(EXIT_PANIC, NIL_PANIC, raw=f"panic: {NIL_PANIC}\n")
        self._text(f"Member {member_id:16x} promoted in cluster {resp.header.cluster_id:16x}")

    def member_list(self, resp: pb.MemberListResponse) -> None:
        if self.format == "simple":
            self._rows(_member_rows(resp))
        elif self.format == "fields":
            self._fields_header(resp.header)
            for m in resp.members:
                self._text(f'"ID" : {m.ID}')
                self._text(f'"Name" : {quote(m.name)}')
                for url in m.peerURLs:
                    self._text(f'"PeerURL" : {quote(url)}')
                for url in m.clientURLs:
                    self._text(f'"ClientURL" : {quote(url)}')
                self._text(f'"IsLearner" : {go_bool(m.isLearner)}')
                self._text("")
        elif self.format == "table":
            self.out.write(encode(render_table(MEMBER_HEADER, _member_rows(resp))))
        else:
            self._message(resp)

    # -- endpoint -------------------------------------------------------------------------------------

    def endpoint_health(self, healths: Sequence[EndpointHealth], stderr: BinaryIO) -> None:
        if self.format == "simple":
            for h in healths:
                if h.error == "":
                    line = f"{h.endpoint} is healthy: successfully committed proposal: took = {h.took}\n"
                else:
                    line = f"{h.endpoint} is unhealthy: failed to commit proposal: {h.error}\n"
                stderr.write(encode(line))
        elif self.format == "json":
            items: list[JSONValue] = []
            for h in healths:
                item: dict[str, JSONValue] = {"endpoint": h.endpoint, "health": h.health, "took": h.took}
                if h.error:
                    item["error"] = h.error
                items.append(item)
            self._text(go_json(items))
        elif self.format == "fields":
            for h in healths:
                self._text(f'"Endpoint" : {quote(h.endpoint)}')
                self._text(f'"Health" : {go_bool(h.health)}')
                self._text(f'"Took" : {h.took}')
                self._text(f'"Error" : {h.error}')
                self._text("")
        elif self.format == "table":
            self.out.write(encode(render_table(HEALTH_HEADER, _health_rows(healths))))
        else:
            raise self._unsupported()

    def endpoint_status(self, statuses: Sequence[tuple[str, pb.StatusResponse]]) -> None:
        if self.format == "simple":
            self._rows(_status_rows(statuses))
        elif self.format == "json":
            self._text(go_json([{"Endpoint": ep, "Status": to_json(s)} for ep, s in statuses]))
        elif self.format == "fields":
            for endpoint, s in statuses:
                self._fields_header(s.header)
                self._text(f'"Version" : {quote(s.version)}')
                self._text(f'"DBSize" : {s.dbSize}')
                self._text(f'"Leader" : {s.leader}')
                self._text(f'"IsLearner" : {go_bool(s.isLearner)}')
                self._text(f'"RaftIndex" : {s.raftIndex}')
                self._text(f'"RaftTerm" : {s.raftTerm}')
                self._text(f'"RaftAppliedIndex" : {s.raftAppliedIndex}')
                self._text(f'"Errors" : {go_strings(s.errors)}')
                self._text(f'"Endpoint" : {quote(endpoint)}')
                self._text("")
        elif self.format == "table":
            self.out.write(encode(render_table(STATUS_HEADER, _status_rows(statuses))))
        else:
            raise self._unsupported()

    def endpoint_hashkv(self, hashes: Sequence[tuple[str, pb.HashKVResponse]]) -> None:
        if self.format == "simple":
            self._rows(_hash_rows(hashes))
        elif self.format == "json":
            self._text(go_json([{"Endpoint": ep, "HashKV": to_json(h)} for ep, h in hashes]))
        elif self.format == "fields":
            for endpoint, h in hashes:
                self._fields_header(h.header)
                self._text(f'"Endpoint" : {quote(endpoint)}')
                self._text(f'"Hash" : {h.hash}')
                self._text("")
        elif self.format == "table":
            self.out.write(encode(render_table(HASHKV_HEADER, _hash_rows(hashes))))
        else:
            raise self._unsupported()

    # -- move-leader ----------------------------------------------------------------------------------

    def move_leader(self, leader: int, target: int, resp: pb.MoveLeaderResponse) -> None:
        if self.format == "simple":
            self._text(f"Leadership transferred from {leader:x} to {target:x}")
        elif self.format in ("json", "protobuf"):
            self._message(resp)
        else:
            raise self._unsupported()
