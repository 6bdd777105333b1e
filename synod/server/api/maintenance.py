"""The Maintenance calls that look after the backend: Alarm, Defragment, Hash, Snapshot.

(Status, MoveLeader and HashKV are answered with the Cluster service, ``cluster.py``.)

- ``Alarm``: synod raises no alarm yet (no space quota, no corruption check), so
  GET answers none, DEACTIVATE has nothing to clear; ACTIVATE is refused rather
  than accepted without its effect. etcd's response has no header; neither has this.
- ``Defragment``: LMDB reuses the pages it frees, so there is nothing to do; it
  answers as etcd does once done (an empty response).
- ``Hash``: a CRC-32C of a consistent copy of the backend. etcd hashes its bolt
  file, so the values never match etcd's; members of one synod cluster can't be
  compared with it either (HashKV is the call for that, as in etcd).
- ``Snapshot``: the backend as etcd streams its own, in 32 KiB blobs with the bytes
  still to come, then the SHA-256 of the whole as a last blob. It is an LMDB
  file (a synod backend), not a bolt one.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import crc32c
from grpc import StatusCode

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.rpctypes import ErrorCode, RPCError
from synod.server.api.header import Header
from synod.server.api.methods import StreamHandler, StreamWrite, UnaryHandler
from synod.server.etcdserver import EtcdServer

SNAPSHOT_CHUNK = 32 * 1024  # etcd's snapshotSendBufferSize


class MaintenanceService:
    def __init__(self, server: EtcdServer, header: Header) -> None:
        self._server = server
        self._header = header

    def handlers(self) -> dict[str, UnaryHandler]:
        return {
            "/etcdserverpb.Maintenance/Alarm": self.alarm,
            "/etcdserverpb.Maintenance/Defragment": self.defragment,
            "/etcdserverpb.Maintenance/Hash": self.hash,
        }

    def streams(self) -> dict[str, StreamHandler]:
        return {"/etcdserverpb.Maintenance/Snapshot": self.snapshot}

    async def alarm(self, request: pb.AlarmRequest) -> pb.AlarmResponse:
        await self._server.check_token()
        if request.action == pb.AlarmRequest.ACTIVATE:
            raise RPCError(
                ErrorCode(StatusCode.UNIMPLEMENTED, "synod: raising alarms is not implemented yet")
            )
        return pb.AlarmResponse()

    async def defragment(self, request: pb.DefragmentRequest) -> pb.DefragmentResponse:
        await self._server.check_admin(auth_words=True)
        return pb.DefragmentResponse()

    async def hash(self, request: pb.HashRequest) -> pb.HashResponse:
        await self._server.check_admin(auth_words=True)
        data = await self._server.backend_copy()
        resp = pb.HashResponse(hash=crc32c.crc32c(data))
        self._header.fill(resp.header)
        return resp

    async def snapshot(self, requests: AsyncIterator[bytes], write: StreamWrite) -> None:
        async for _ in requests:
            break
        await self._server.check_admin(auth_words=True)
        data = await self._server.backend_copy()
        for start in range(0, len(data), SNAPSHOT_CHUNK):
            blob = data[start : start + SNAPSHOT_CHUNK]
            resp = pb.SnapshotResponse(remaining_bytes=len(data) - start - len(blob), blob=blob)
            await write(resp.SerializeToString())
        await write(pb.SnapshotResponse(blob=hashlib.sha256(data).digest()).SerializeToString())
