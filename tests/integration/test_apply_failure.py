"""A bug while applying stops the member without committing half an entry; the WAL replays it."""

from __future__ import annotations

import asyncio

import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.mvcc import store as mvcc_store
from synod.rpctypes import RPCError
from synod.server.config import ServerConfig
from synod.server.etcdserver import EtcdServer


def test_failed_apply_is_not_committed_and_replays_whole(tmp_path, monkeypatch):
    cfg = ServerConfig(data_dir=str(tmp_path / "data"), backend_batch_interval=3600)

    async def crash_on_second_put() -> None:
        etcd = EtcdServer(cfg)
        await etcd.start()
        await etcd.put(pb.PutRequest(key=b"k1", value=b"v1"))
        real_put = mvcc_store.TxnWrite.put

        def put_then_fail(self, key, value, lease):
            real_put(self, key, value, lease)  # half the work is done...
            raise AssertionError("injected bug")

        monkeypatch.setattr(mvcc_store.TxnWrite, "put", put_then_fail)
        with pytest.raises(RPCError, match="etcdserver: server stopped"):
            await etcd.put(pb.PutRequest(key=b"k2", value=b"v2"))
        with pytest.raises(AssertionError, match="injected bug"):
            await etcd.wait_stopped()
        await etcd.stop()
        monkeypatch.setattr(mvcc_store.TxnWrite, "put", real_put)

    async def restart_and_read() -> pb.RangeResponse:
        etcd = EtcdServer(cfg)
        await etcd.start()
        try:
            return await etcd.range(pb.RangeRequest(key=b"k", range_end=b"l"))
        finally:
            await etcd.stop()

    asyncio.run(crash_on_second_put())
    got = asyncio.run(restart_and_read())
    assert [(kv.key, kv.mod_revision, kv.version) for kv in got.kvs] == [(b"k1", 2, 1), (b"k2", 3, 1)]
    assert got.header.revision == 3
