"""The backend: applied state in LMDB (through py-lmdb), in named buckets.

One write transaction is always open; every read and write of the member goes
through it (they all run on the event-loop thread, so reads see the writes
applied so far). ``commit()`` ends it durably and opens the next; the server
calls it on an interval (etcd's backend batch interval), so that an fsync is
shared by many applied entries. Durability of acknowledged writes comes from
the WAL: what the backend had not committed before a crash is applied again
from the WAL, guarded by the consistent index kept in the ``meta`` bucket.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import lmdb

KEY = b"key"  # revision bytes -> mvccpb.KeyValue
META = b"meta"  # consistent index, compaction progress, member identity
LEASE = b"lease"
AUTH = b"auth"  # whether auth is enabled, and its revision
AUTH_USERS = b"authUsers"  # user name -> authpb.User
AUTH_ROLES = b"authRoles"  # role name -> authpb.Role
MEMBERS = b"members"
ALARM = b"alarm"
MEMBERS_REMOVED = b"members_removed"  # IDs of removed members (never to rejoin), as etcd's bucket
BUCKETS = (KEY, META, LEASE, AUTH, AUTH_USERS, AUTH_ROLES, MEMBERS, MEMBERS_REMOVED, ALARM)

DEFAULT_MAP_SIZE = 32 << 30  # address space only; the file grows with the data


class Backend:
    def __init__(self, path: str, *, map_size: int = DEFAULT_MAP_SIZE) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        self._env = lmdb.open(
            path,
            map_size=map_size,
            subdir=True,
            max_dbs=len(BUCKETS),
            readahead=False,
            meminit=False,
            sync=True,
            metasync=True,
        )
        self._dbs = {name: self._env.open_db(name) for name in BUCKETS}
        self._txn = self._env.begin(write=True)
        self.pending = 0  # writes since the last commit

    def get(self, bucket: bytes, key: bytes) -> bytes | None:
        value: bytes | None = self._txn.get(key, db=self._dbs[bucket])
        return value

    def put(self, bucket: bytes, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=self._dbs[bucket])
        self.pending += 1

    def delete(self, bucket: bytes, key: bytes) -> None:
        self._txn.delete(key, db=self._dbs[bucket])
        self.pending += 1

    def items(
        self, bucket: bytes, start: bytes = b"", end: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Key-value pairs with ``start <= key < end`` (no end: to the last key), in key order.

        The caller must not write to the bucket while iterating.
        """
        cursor = self._txn.cursor(db=self._dbs[bucket])
        if not cursor.set_range(start):
            return
        for key, value in cursor.iternext():
            if end is not None and key >= end:
                return
            yield key, value

    def keys(
        self, bucket: bytes, start: bytes = b"", end: bytes | None = None, limit: int = 0
    ) -> list[bytes]:
        """Up to ``limit`` (0: all) keys with ``start <= key < end``, in key order."""
        cursor = self._txn.cursor(db=self._dbs[bucket])
        out: list[bytes] = []
        if not cursor.set_range(start):
            return out
        for key in cursor.iternext(keys=True, values=False):
            if end is not None and key >= end:
                break
            out.append(key)
            if len(out) == limit:
                break
        return out

    def commit(self) -> None:
        """Make everything written so far durable and start the next batch."""
        self._txn.commit()
        self._txn = self._env.begin(write=True)
        self.pending = 0

    def copy_bytes(self) -> bytes:
        """The committed database as one file's bytes (a consistent LMDB copy; call ``commit`` first).

        Safe from another thread: a compacting copy reads in its own read transaction, whereas a
        plain copy would wait for the writer lock that the open write transaction holds.
        """
        with tempfile.TemporaryDirectory(dir=os.path.dirname(self.path) or ".") as tmp:
            self._env.copy(tmp, compact=True)
            with open(os.path.join(tmp, "data.mdb"), "rb") as f:
                return f.read()

    def size(self) -> int:
        """Bytes of the database file (what etcd reports as dbSize)."""
        info = self._env.info()
        stat = self._env.stat()
        return int((info["last_pgno"] + 1) * stat["psize"])

    def close(self, *, commit: bool = True) -> None:
        """Close the environment, committing the open batch (or abandoning it)."""
        if commit:
            self._txn.commit()
        else:
            self._txn.abort()
        self._env.close()
