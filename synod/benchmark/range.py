"""The ``range`` benchmark: the same RangeRequest, linearizable or serializable, ``--total`` times."""

from __future__ import annotations

from dataclasses import dataclass

from synod.api.etcdserverpb import rpc_pb2
from synod.benchmark.load import UnaryRequests

RANGE_METHOD = "/etcdserverpb.KV/Range"


@dataclass
class RangeRequests(UnaryRequests):
    """One serialized RangeRequest for ``[key, end)`` (just ``key`` if ``end`` is empty), sent every time."""

    key: bytes
    end: bytes
    serializable: bool
    method: str = RANGE_METHOD

    def __post_init__(self) -> None:
        self._request = rpc_pb2.RangeRequest(
            key=self.key, range_end=self.end, serializable=self.serializable
        ).SerializeToString()

    def request(self, index: int) -> bytes:
        return self._request
