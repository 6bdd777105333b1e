"""A fault-injecting proxy on each member's advertised peer URL, for partitions between real processes.

Every member advertises its proxy's address (so member IDs and peer URLs are
what they would be without it) and listens on a private port behind it. A
synod peer connection opens with a hello naming sender and receiver
(synod/peer/transport.py), which the proxy reads to know which link a
connection is; ``cut(a, b)`` then drops the link both ways: open connections
are closed and new ones refused until ``heal``. The proxy runs in a thread
of the test process.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections.abc import Iterable

_HELLO = struct.Struct(">10sQQQ")


class PeerProxies:
    def __init__(self, routes: dict[int, int]) -> None:
        """``routes``: proxy port -> the member's private listen port."""
        self._routes = routes
        self._cut: set[tuple[int, int]] = set()  # (from member, to member)
        self._conns: set[tuple[int, int, asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the peer proxies did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        servers = []
        for listen, target in self._routes.items():
            servers.append(
                self._loop.run_until_complete(
                    asyncio.start_server(
                        lambda r, w, t=target: self._relay(r, w, t), "127.0.0.1", listen, reuse_address=True
                    )
                )
            )
        self._ready.set()
        self._loop.run_forever()
        for server in servers:
            server.close()
        for _, _, a, b in list(self._conns):
            a.close()
            b.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        for server in servers:
            self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: int) -> None:
        try:
            hello = await reader.readexactly(_HELLO.size)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        _, _, sender, receiver = _HELLO.unpack(hello)
        if (sender, receiver) in self._cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        up_writer.write(hello)
        entry = (sender, receiver, writer, up_writer)
        self._conns.add(entry)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._conns.discard(entry)
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    def _apply(self, cut: set[tuple[int, int]]) -> None:
        self._cut = cut
        for sender, receiver, a, b in list(self._conns):
            if (sender, receiver) in cut:
                a.close()
                b.close()

    def cut(self, groups: Iterable[Iterable[int]]) -> None:
        """Partition: members in different groups can't reach each other (both ways)."""
        sets = [set(g) for g in groups]
        cut = {(a, b) for g in sets for h in sets if g is not h for a in g for b in h}
        self._loop.call_soon_threadsafe(self._apply, cut)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._apply, set())

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
