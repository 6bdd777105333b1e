"""Watch over gRPC: creation, events, cancel, history, compaction, progress, errors, slow consumers.

Each scenario runs over several connections, so it goes through the member's
own gRPC server and through its front-end processes (the relay) alike.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from synod.api.mvccpb import kv_pb2
from tests.support.watching import WatchStream, channel

CONNECTIONS = 6


def run(coro):
    return asyncio.run(coro)


def test_events_in_order_with_prev_kv_then_cancel(synod):
    async def scenario() -> None:
        channels = [channel(synod.endpoint) for _ in range(CONNECTIONS)]
        kv = rpc_pb2_grpc.KVStub(channels[0])
        streams = [WatchStream(ch) for ch in channels]
        base = (await kv.Range(pb.RangeRequest(key=b"x"))).header.revision
        for s in streams:
            created = await s.create(b"w/", range_end=b"w0", prev_kv=True)
            assert (created.watch_id, created.header.revision) == (0, base)
        await kv.Put(pb.PutRequest(key=b"w/a", value=b"1"))
        await kv.Put(pb.PutRequest(key=b"w/a", value=b"2"))
        await kv.Put(pb.PutRequest(key=b"other", value=b"x"))
        await kv.DeleteRange(pb.DeleteRangeRequest(key=b"w/", range_end=b"w0"))
        for s in streams:
            got = [e for r in await s.events(3) for e in r.events]
            assert [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in got] == [
                (kv_pb2.Event.PUT, b"w/a", b"1", base + 1),
                (kv_pb2.Event.PUT, b"w/a", b"2", base + 2),
                (kv_pb2.Event.DELETE, b"w/a", b"", base + 4),
            ]
            assert not got[0].HasField("prev_kv")  # a create event has no previous value
            assert [got[1].prev_kv.value, got[2].prev_kv.value] == [b"1", b"2"]
            await s.send(cancel_request=pb.WatchCancelRequest(watch_id=0))
            canceled = await s.read()
            assert canceled.canceled and canceled.watch_id == 0
        for ch in channels:
            await ch.close()

    run(scenario())


def test_history_compaction_and_errors(synod):
    async def scenario() -> None:
        ch = channel(synod.endpoint)
        kv = rpc_pb2_grpc.KVStub(ch)
        for i in range(10):
            await kv.Put(pb.PutRequest(key=b"h", value=b"%d" % i))  # revisions 2..11
        s = WatchStream(ch)
        await s.create(b"h", start_revision=3, watch_id=7)
        got = [e.kv.value for r in await s.events(9) for e in r.events]
        assert got == [b"%d" % i for i in range(1, 10)]
        dup = await s.create(b"h", watch_id=7)
        assert dup.canceled and dup.watch_id == -1
        assert dup.cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream"
        empty = await s.create(b"b", range_end=b"a")
        assert empty.canceled and empty.cancel_reason == "mvcc: watcher range is empty"
        await kv.Compact(pb.CompactionRequest(revision=8, physical=True))
        await s.create(b"h", start_revision=5, watch_id=9)
        compacted = await s.read()
        assert (compacted.watch_id, compacted.canceled, compacted.compact_revision) == (9, True, 8)
        await s.send(progress_request=pb.WatchProgressRequest())
        progress = await s.read()
        assert (progress.watch_id, progress.header.revision, len(progress.events)) == (-1, 11, 0)
        await ch.close()

    run(scenario())


def test_revoked_lease_deletes_reach_watchers_in_one_revision(synod):
    async def scenario() -> None:
        ch = channel(synod.endpoint)
        kv, lease = rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.LeaseStub(ch)
        grant = await lease.LeaseGrant(pb.LeaseGrantRequest(TTL=60))
        for k in (b"l/1", b"l/2", b"l/3"):
            await kv.Put(pb.PutRequest(key=k, value=b"v", lease=grant.ID))
        s = WatchStream(ch)
        await s.create(b"l/", range_end=b"l0")
        revoke = await lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=grant.ID))
        (resp,) = await s.events(3)
        assert [(e.type, e.kv.key, e.kv.mod_revision) for e in resp.events] == [
            (kv_pb2.Event.DELETE, k, revoke.header.revision) for k in (b"l/1", b"l/2", b"l/3")
        ]
        await ch.close()

    run(scenario())


def test_filters_and_fragments(start_server):
    server = start_server("synod", "--max-request-bytes", "4096")

    async def scenario() -> None:
        ch = channel(server.endpoint)
        kv = rpc_pb2_grpc.KVStub(ch)
        s = WatchStream(ch)
        for i in range(6):
            await kv.Put(pb.PutRequest(key=b"f%d" % i, value=b"old" * 200))
        await s.create(b"f", range_end=b"g", filters=[pb.WatchCreateRequest.NODELETE], watch_id=1)
        await s.create(b"f", range_end=b"g", fragment=True, prev_kv=True, watch_id=2)
        puts = [pb.RequestOp(request_put=pb.PutRequest(key=b"f%d" % i, value=b"v" * 600)) for i in range(6)]
        await kv.Txn(pb.TxnRequest(success=puts))  # 6 events of ~1.2 KB (with prev_kv) in one revision
        await kv.DeleteRange(pb.DeleteRangeRequest(key=b"f", range_end=b"g"))
        by_id: dict[int, list[pb.WatchResponse]] = {1: [], 2: []}
        while sum(len(r.events) for r in by_id[2]) < 12:
            r = await s.read()
            by_id[r.watch_id].append(r)
        # Watcher 1: the 6 puts (with no prev_kv they fit); NODELETE filtered the deletes away.
        assert [(len(r.events), r.fragment) for r in by_id[1]] == [(6, False)]
        puts_fragments, deletes = by_id[2][:-1], by_id[2][-1]
        flags = [r.fragment for r in puts_fragments]
        assert len(flags) > 1 and flags == [True] * (len(flags) - 1) + [False]
        assert all(r.ByteSize() < 4096 for r in puts_fragments)
        assert sum(len(r.events) for r in puts_fragments) == 6
        assert [e.type for e in deletes.events] == [kv_pb2.Event.DELETE] * 6
        await ch.close()

    run(scenario())


def _rss_anon(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon")


def _member_and_front_ends(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def test_watchers_that_never_read_hold_up_nobody(synod):
    """1,000 watchers on 10 streams; 2 streams never read. Every put still completes, the other
    800 watchers get every event in order, and the server's memory stays bounded."""
    keys = [b"s/%03d" % i for i in range(100)]
    puts = 2000
    value = b"v" * 16384

    async def scenario() -> None:
        channels = [channel(synod.endpoint) for _ in range(10)]
        streams = [WatchStream(ch) for ch in channels]
        for s in streams:
            for i, key in enumerate(keys):
                await s.create(key, watch_id=i + 1)
        memory_before = sum(_rss_anon(p) for p in _member_and_front_ends(synod.proc.pid))
        readers, stalled = streams[:8], streams[8:]
        del stalled  # never read: their buffers fill, their watchers become victims

        async def read_all(s: WatchStream) -> list[tuple[bytes, int]]:
            return [
                (e.kv.key, e.kv.mod_revision) for r in await s.events(puts, timeout=120) for e in r.events
            ]

        reading = [asyncio.ensure_future(read_all(s)) for s in readers]
        kv = rpc_pb2_grpc.KVStub(channels[0])
        revisions = []
        for n in range(puts):
            resp = await kv.Put(pb.PutRequest(key=keys[n % len(keys)], value=value), timeout=30)
            revisions.append(resp.header.revision)
        expected = [(keys[n % len(keys)], revisions[n]) for n in range(puts)]
        for got in await asyncio.gather(*reading):
            assert got == expected
        memory_after = sum(_rss_anon(p) for p in _member_and_front_ends(synod.proc.pid))
        # Unbounded buffering would hold the 2 stalled streams' 2 x 2000 x 16 KiB = 64 MiB.
        assert memory_after - memory_before < 40 << 20, (memory_before, memory_after)
        for ch in channels:
            await ch.close()

    run(scenario())
