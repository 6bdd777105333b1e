"""The lease commands' output, byte for byte as etcdctl 3.4 prints it.

etcdctl prints clientv3's wrappers, not the wire messages, and their Go
quirks show: in ``json`` the header's fields sit at the top level (clientv3
embeds ``*ResponseHeader``) next to ``ID``/``TTL`` (or ``id``/``ttl``/
``granted-ttl``/``keys``, or ``leases``); in ``protobuf`` only the header is
written (its ``Marshal`` is the one the wrapper inherits), and ``revoke``
fails with Go's "marshal unsupported" message. ``simple`` prints IDs as
``%016x``.
"""

from __future__ import annotations

import json

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.ctl.errors import EXIT_BAD_FEATURE, CtlExit
from synod.ctl.gostrconv import quote
from synod.ctl.printer import JSONValue, Printer, to_json

# The responses clientv3 wraps in a struct that embeds their header.
Wrapped = (
    pb.LeaseGrantResponse | pb.LeaseKeepAliveResponse | pb.LeaseTimeToLiveResponse | pb.LeaseLeasesResponse
)


def lease_hex(lease_id: int) -> str:
    """Go's ``%016x`` of an int64 (a negative ID keeps its sign inside the width)."""
    return f"-{-lease_id:015x}" if lease_id < 0 else f"{lease_id:016x}"


def _header_text(h: pb.ResponseHeader) -> str:
    """gogoproto's compact text form of a header (``String()``): set fields, each followed by a space."""
    parts = [
        f"{name}:{value} "
        for name, value in (
            ("cluster_id", h.cluster_id),
            ("member_id", h.member_id),
            ("revision", h.revision),
            ("raft_term", h.raft_term),
        )
        if value
    ]
    return "".join(parts)


class LeasePrinter(Printer):
    """``lease`` responses in etcdctl's formats."""

    def _header_fields(self, resp: Wrapped) -> dict[str, JSONValue]:
        """The embedded header's fields, promoted to the top level of the Go struct's JSON."""
        if not resp.HasField("header"):
            return {}
        fields = to_json(resp.header)
        assert isinstance(fields, dict)
        return fields

    def _json(self, value: JSONValue) -> None:
        self._line(json.dumps(value, separators=(",", ":")))

    def _wrapper(
        self, resp: Wrapped, json_value: dict[str, JSONValue], simple: str | bytes, fields: list[str]
    ) -> None:
        if self.format == "simple":
            self._line(simple)
        elif self.format == "json":
            self._json({**self._header_fields(resp), **json_value})
        elif self.format == "fields":
            if resp.HasField("header"):
                self._fields_header(resp.header)
            for line in fields:
                self._line(line)
        elif self.format == "protobuf":
            self.out.write(resp.header.SerializeToString() if resp.HasField("header") else b"")
        else:
            raise CtlExit(EXIT_BAD_FEATURE, f"{self.format} not supported as output format")

    def grant(self, resp: pb.LeaseGrantResponse) -> None:
        self._wrapper(
            resp,
            {"ID": resp.ID, "TTL": resp.TTL, "Error": resp.error},
            f"lease {lease_hex(resp.ID)} granted with TTL({resp.TTL}s)",
            [f'"ID" : {resp.ID}', f'"TTL" : {resp.TTL}'],
        )

    def keep_alive(self, resp: pb.LeaseKeepAliveResponse) -> None:
        self._wrapper(
            resp,
            {"ID": resp.ID, "TTL": resp.TTL},
            f"lease {lease_hex(resp.ID)} keepalived with TTL({resp.TTL})",
            [f'"ID" : {resp.ID}', f'"TTL" : {resp.TTL}'],
        )

    def time_to_live(self, resp: pb.LeaseTimeToLiveResponse, keys: bool) -> None:
        if resp.grantedTTL == 0 and resp.TTL == -1:
            simple: str | bytes = f"lease {lease_hex(resp.ID)} already expired"
        else:
            simple = (
                f"lease {lease_hex(resp.ID)} granted with TTL({resp.grantedTTL}s), remaining({resp.TTL}s)"
            )
            if keys:
                simple = simple.encode() + b", attached keys([" + b" ".join(resp.keys) + b"])"
        value = to_json(pb.LeaseTimeToLiveResponse(keys=resp.keys))
        assert isinstance(value, dict)
        self._wrapper(
            resp,
            {"id": resp.ID, "ttl": resp.TTL, "granted-ttl": resp.grantedTTL, "keys": value.get("keys")},
            simple,
            [
                f'"ID" : {resp.ID}',
                f'"TTL" : {resp.TTL}',
                f'"GrantedTTL" : {resp.grantedTTL}',
                *(f'"Key" : {quote(k)}' for k in resp.keys),
            ],
        )

    def leases(self, resp: pb.LeaseLeasesResponse) -> None:
        if self.format == "simple":
            self._line(f"found {len(resp.leases)} leases")
            for item in resp.leases:
                self._line(lease_hex(item.ID))
            return
        self._wrapper(
            resp,
            {"leases": [{"id": item.ID} for item in resp.leases]},
            "",
            [f'"ID" : {item.ID}' for item in resp.leases],
        )

    def revoke(self, lease_id: int, resp: pb.LeaseRevokeResponse) -> None:
        if self.format == "simple":
            self._line(f"lease {lease_hex(lease_id)} revoked")
        elif self.format == "protobuf":
            header = _header_text(resp.header) if resp.HasField("header") else "<nil>"
            raise CtlExit(
                EXIT_BAD_FEATURE, f"marshal unsupported for type clientv3.LeaseRevokeResponse ({{{header}}})"
            )
        else:
            self._emit_message(resp)

    def _emit_message(self, resp: pb.LeaseRevokeResponse) -> None:
        if self.format == "json":
            self._json(to_json(resp))
        elif self.format == "fields":
            if resp.HasField("header"):
                self._fields_header(resp.header)
        else:
            raise CtlExit(EXIT_BAD_FEATURE, f"{self.format} not supported as output format")
