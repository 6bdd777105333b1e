"""etcd's learner rule, applied to every method as etcd's interceptors apply it.

A learner is not in the quorum, so it can't vouch for anything newer than what it
has applied: it serves only ``Maintenance.Status`` and serializable ``Range`` (the
range handler refuses a linearizable one itself); every other unary call and every
stream is answered ``etcdserver: rpc not supported for learner``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message

from synod.server.api.methods import StreamHandler, StreamWrite, UnaryHandler
from synod.server.etcdserver import EtcdServer

SERVED_BY_LEARNERS = frozenset({"/etcdserverpb.Maintenance/Status", "/etcdserverpb.KV/Range"})


def gate_unary(etcd: EtcdServer, handlers: dict[str, UnaryHandler]) -> dict[str, UnaryHandler]:
    return {path: h if path in SERVED_BY_LEARNERS else _gated_unary(etcd, h) for path, h in handlers.items()}


def gate_streams(etcd: EtcdServer, streams: dict[str, StreamHandler]) -> dict[str, StreamHandler]:
    return {path: _gated_stream(etcd, s) for path, s in streams.items()}


def _gated_unary(etcd: EtcdServer, handler: UnaryHandler) -> UnaryHandler:
    async def call(request: Any) -> Message:
        etcd.refuse_on_learner()
        return await handler(request)

    return call


def _gated_stream(etcd: EtcdServer, serve: StreamHandler) -> StreamHandler:
    async def stream(requests: AsyncIterator[bytes], write: StreamWrite) -> None:
        etcd.refuse_on_learner()
        await serve(requests, write)

    return stream
