"""A bidirectional gRPC call read by a thread: its responses, then how it ended, arrive on a queue.

The watch and lease keep-alive loops wait on one queue for everything (stream
responses, and stdin lines for ``watch -i``), so all of a command's work, its
output and its errors stay on the main thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from synod.ctl.rpc import REQUIRE_LEADER

Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass(frozen=True)
class StreamEnd:
    """The call is over: ``error`` is None when the server ended it cleanly (Go's io.EOF)."""

    error: grpc.RpcError | None


class BidiStream(Generic[Req, Resp]):
    """One call; ``send`` queues requests; responses, then a StreamEnd, go to ``inbox`` as (self, item)."""

    def __init__(
        self,
        method: Callable[..., Any],
        inbox: queue.Queue[tuple[object, object]],
        response_type: type[Resp],
    ) -> None:
        self._requests: queue.Queue[Req | None] = queue.Queue()
        self._inbox = inbox
        self._response_type = response_type
        self._call = method(self._outgoing(), metadata=REQUIRE_LEADER)
        threading.Thread(target=self._read, name="synodctl-stream", daemon=True).start()

    def _outgoing(self) -> Iterator[Req]:
        while (req := self._requests.get()) is not None:
            yield req

    def _read(self) -> None:
        try:
            for resp in self._call:
                assert isinstance(resp, self._response_type)
                self._inbox.put((self, resp))
        except grpc.RpcError as e:
            self._inbox.put((self, StreamEnd(e)))
            return
        self._inbox.put((self, StreamEnd(None)))

    def send(self, req: Req) -> None:
        self._requests.put(req)

    def close(self) -> None:
        """End the call from this side (what arrives from it afterwards is stale)."""
        self._requests.put(None)
        self._call.cancel()
