"""``watch`` output, byte for byte as etcdctl 3.4 prints clientv3's watch responses.

``simple``: per event its type, then the previous key-value pair (with
``--prev-kv``) and the key-value pair as key and value lines; ``fields``: the
header, then ``"Type" : PUT`` and the pairs' fields per event; ``json``: Go's
encoding/json of clientv3's WatchResponse struct (``Header``, ``Events``,
``CompactRevision``, ``Canceled``, ``Created``: no omitempty at that level);
``protobuf``: a WatchResponse rebuilt from those five fields (no watch ID).
"""

from __future__ import annotations

import json

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.mvccpb import kv_pb2
from synod.ctl.errors import EXIT_BAD_FEATURE, CtlExit
from synod.ctl.printer import Printer, to_json
from synod.ctl.watch import WatchResponse


def event_type_name(event: kv_pb2.Event) -> str:
    """Go's String() of the event type (its number when it has no name)."""
    try:
        return kv_pb2.Event.EventType.Name(event.type)
    except ValueError:
        return str(event.type)


class WatchPrinter(Printer):
    """Watch responses in etcdctl's formats."""

    def watch(self, resp: WatchResponse) -> None:
        events = resp.events or []
        if self.format == "simple":
            for event in events:
                self._line(event_type_name(event))
                if event.HasField("prev_kv"):
                    self._kv(event.prev_kv)
                self._kv(event.kv)
        elif self.format == "fields":
            self._fields_header(resp.header)
            for event in events:
                self._line(f'"Type" : {event_type_name(event)}')
                if event.HasField("prev_kv"):
                    self._fields_kv("Prev", event.prev_kv)
                self._fields_kv("", event.kv)
        elif self.format == "json":
            value = {
                "Header": to_json(resp.header),
                "Events": None if resp.events is None else [to_json(e) for e in events],
                "CompactRevision": resp.compact_revision,
                "Canceled": resp.canceled,
                "Created": resp.created,
            }
            self._line(json.dumps(value, separators=(",", ":")))
        elif self.format == "protobuf":
            message = pb.WatchResponse(
                events=events,
                compact_revision=resp.compact_revision,
                canceled=resp.canceled,
                created=resp.created,
            )
            message.header.CopyFrom(resp.header)
            message.header.SetInParent()
            self.out.write(message.SerializeToString())
        else:
            raise CtlExit(EXIT_BAD_FEATURE, f"{self.format} not supported as output format")
